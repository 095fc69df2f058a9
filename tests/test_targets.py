from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from packaging import tags as ptags
from packaging.utils import parse_wheel_filename

from tests.builders import build_wheel
from tests.conftest import isolated_env, run
from wheelhouse.errors import InvalidTargetError
from wheelhouse.targets import (
    UV_PLATFORMS,
    Target,
    expand_platform,
    parse_platform,
    parse_python_version,
)


def _pep600(minor: int, arch: str, lowest: int) -> list[str]:
    """The PEP 600 expectation, computed independently: glibc down, aliases after."""
    aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    out = []
    for m in range(minor, lowest - 1, -1):
        out.append(f"manylinux_2_{m}_{arch}")
        if m in aliases:
            out.append(f"{aliases[m]}_{arch}")
    return out


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        pytest.param("manylinux_2_28_x86_64", _pep600(28, "x86_64", 5), id="glibc-x86_64"),
        pytest.param("manylinux_2_28_aarch64", _pep600(28, "aarch64", 17), id="glibc-aarch64"),
        pytest.param("manylinux2014_x86_64", _pep600(17, "x86_64", 5), id="legacy-2014"),
        pytest.param("manylinux1_i686", _pep600(5, "i686", 5), id="legacy-1"),
        pytest.param("x86_64-manylinux_2_28", _pep600(28, "x86_64", 5), id="uv-name"),
        pytest.param("musllinux_1_2_aarch64",
                     ["musllinux_1_2_aarch64", "musllinux_1_1_aarch64", "musllinux_1_0_aarch64"],
                     id="musl"),
        pytest.param("macosx_14_0_arm64", list(ptags.mac_platforms((14, 0), "arm64")),
                     id="macos-arm64"),
        pytest.param("macosx_11_0_x86_64", list(ptags.mac_platforms((11, 0), "x86_64")),
                     id="macos-x86_64"),
        pytest.param("win_amd64", ["win_amd64"], id="windows"),
        pytest.param("linux_x86_64", ["linux_x86_64"], id="plain-linux"),
        pytest.param("any", [], id="any"),
    ],
)
def test_expand_platform(platform: str, expected: list[str]) -> None:
    assert expand_platform(platform) == expected


def test_macos_accepts_older_versions_and_universal2() -> None:
    plats = expand_platform("macosx_14_0_arm64")
    for tag in ("macosx_14_0_arm64", "macosx_11_0_arm64", "macosx_14_0_universal2",
                "macosx_10_16_universal2"):
        assert tag in plats
    assert "macosx_15_0_arm64" not in plats


@pytest.mark.parametrize(("name", "tag"), sorted(UV_PLATFORMS.items()))
def test_uv_platform_names(name: str, tag: str) -> None:
    assert parse_platform(name) == tag
    assert expand_platform(name)[0] == tag or tag == "any"


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("x86_64-unknown-linux-gnu", "manylinux_2_28_x86_64"),
        ("aarch64-unknown-linux-gnu", "manylinux_2_28_aarch64"),
        ("x86_64-pc-windows-msvc", "win_amd64"),
        ("aarch64-apple-darwin", "macosx_13_0_arm64"),
        ("x86_64-unknown-linux-musl", "musllinux_1_2_x86_64"),
        ("aarch64-manylinux_2_40", "manylinux_2_40_aarch64"),
    ],
)
def test_well_known_uv_names(name: str, tag: str) -> None:
    assert parse_platform(name) == tag


@pytest.mark.parametrize("name", ["linux", "x86_64-unknown-linux-gnu",
                                  "aarch64-unknown-linux-gnu", "x86_64-unknown-linux-musl",
                                  "aarch64-apple-darwin", "x86_64-apple-darwin"])
def test_uv_names_mean_what_uv_takes_them_for(name: str, tmp_path: Path) -> None:
    # The real uv resolves a wheel tagged with the platform we read the name as,
    # and not one that needs a newer platform (glibc or macOS one minor later).
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv is not None
    tag = parse_platform(name)
    m = re.fullmatch(r"(manylinux_2_|musllinux_1_|macosx_)(\d+)(_0)?_(\w+)", tag)
    assert m is not None
    newer = f"{m.group(1)}{int(m.group(2)) + 1}{m.group(3) or ''}_{m.group(4)}"
    build_wheel(tmp_path / "w", "fits", "1.0", tag=f"cp312-cp312-{tag}")
    build_wheel(tmp_path / "w", "newer", "1.0", tag=f"cp312-cp312-{newer}")
    for project, ok in (("fits", True), ("newer", False)):
        (tmp_path / "r.in").write_text(f"{project}\n")
        proc = run([uv, "pip", "compile", "-q", "--no-index", "--find-links", str(tmp_path / "w"),
                    "--python-version", "3.12", "--python-platform", name,
                    str(tmp_path / "r.in")], env=isolated_env(), check=False)
        assert (proc.returncode == 0) == ok, (project, proc.stderr)


CP312_AARCH64 = Target.parse(python_version="3.12", platform="manylinux_2_28_aarch64",
                             implementation="cp")
CP312_X86_64 = Target.parse(python_version="3.12", platform="manylinux_2_28_x86_64",
                            implementation="cp")
CP312_MUSL = Target.parse(python_version="3.12", platform="musllinux_1_2_aarch64",
                          implementation="cp")
CP312_MAC = Target.parse(python_version="3.12", platform="macosx_14_0_arm64",
                         implementation="cp")
CP312_WIN = Target.parse(python_version="3.12", platform="x86_64-pc-windows-msvc",
                         implementation="cp")
CP313T = Target.parse(python_version="3.13", platform="manylinux_2_28_x86_64",
                      implementation="cp", abi="cp313t")


@pytest.mark.parametrize(
    ("target", "filename", "accepted"),
    [
        (CP312_AARCH64, "numpy-2.1.3-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
         True),
        (CP312_AARCH64, "numpy-2.1.3-cp312-cp312-musllinux_1_2_aarch64.whl", False),
        (CP312_MUSL, "numpy-2.1.3-cp312-cp312-musllinux_1_2_aarch64.whl", True),
        (CP312_AARCH64, "cryptography-43.0.3-cp39-abi3-manylinux_2_28_aarch64.whl", True),
        (CP312_X86_64, "cryptography-43.0.3-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
         True),
        (CP312_AARCH64, "cryptography-43.0.3-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
         False),
        (CP312_MAC, "charset_normalizer-3.4.0-cp312-cp312-macosx_10_13_universal2.whl", True),
        (CP312_MAC, "charset_normalizer-3.4.0-cp312-cp312-macosx_11_0_arm64.whl", True),
        (CP312_MAC, "charset_normalizer-3.4.0-cp312-cp312-macosx_10_13_x86_64.whl", False),
        (CP312_WIN, "pydantic_core-2.23.4-cp312-none-win_amd64.whl", True),
        (CP312_WIN, "pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.whl", False),
        (CP312_AARCH64, "six-1.16.0-py2.py3-none-any.whl", True),
        (CP312_WIN, "six-1.16.0-py2.py3-none-any.whl", True),
        (CP312_X86_64,
         ("psutil-6.1.0-cp36-abi3-manylinux_2_12_x86_64.manylinux2010_x86_64.manylinux_2_17_x86_64"
         ".manylinux2014_x86_64.whl"), True),
        (CP312_X86_64, "PyYAML-5.4.1-cp36-cp36m-manylinux1_x86_64.whl", False),
        (CP312_X86_64, "simplejson-3.19.3-cp312-cp312-manylinux1_x86_64.whl", True),
        (CP312_X86_64, "orjson-3.10.11-cp312-cp312-manylinux_2_34_x86_64.whl", False),
        (CP312_X86_64, "orjson-3.10.11-cp311-cp311-manylinux_2_17_x86_64.whl", False),
        (CP312_X86_64, "foo-1.0-cp313-abi3-manylinux_2_17_x86_64.whl", False),
        (CP312_X86_64, "black-24.10.0-py3-none-any.whl", True),
        (CP312_X86_64, "zstandard-0.23.0-cp312-cp312-linux_x86_64.whl", False),
        (CP313T, "numpy-2.1.3-cp313-cp313t-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        (CP313T, "numpy-2.1.3-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", False),
    ],
)
def test_targets_accept_real_wheels(target: Target, filename: str, accepted: bool) -> None:
    _, _, _, file_tags = parse_wheel_filename(filename)
    assert target.supports(file_tags) is accepted


def test_target_tags_match_packaging_for_the_same_platforms() -> None:
    target = CP312_X86_64
    expected = list(dict.fromkeys([
        *ptags.cpython_tags((3, 12), ["cp312"], target.platform_tags()),
        *ptags.compatible_tags((3, 12), "cp312", target.platform_tags()),
    ]))
    assert target.tags() == expected
    assert str(target) == "cp312-manylinux_2_28_x86_64"


def test_host_target_equals_sys_tags() -> None:
    assert Target.host().tags() == list(dict.fromkeys(ptags.sys_tags()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"python_version": "3"}, "'3'", id="version-too-short"),
        pytest.param({"python_version": "three.twelve"}, "three.twelve", id="version-words"),
        pytest.param({"python_version": "2.7"}, "2.7", id="python2"),
        pytest.param({"platform": "manylinux_2_x_x86_64"}, "manylinux_2_x_x86_64", id="bad-glibc"),
        pytest.param({"platform": "win_amd64/../x"}, "win_amd64/../x", id="traversal"),
        pytest.param({"platform": ""}, "", id="empty-platform"),
        pytest.param({"platform": "foo-bar-baz"}, "foo-bar-baz", id="unknown-uv-name"),
        pytest.param({"implementation": "cpython!"}, "cpython!", id="bad-implementation"),
        pytest.param({"abi": "cp312<"}, "cp312<", id="bad-abi"),
        pytest.param({"platform": "manylinux_2_28_arm64"}, "64-bit ARM is 'aarch64'",
                     id="arm64-on-linux"),
        pytest.param({"platform": "musllinux_1_2_amd64"}, "'amd64' is not a Linux architecture",
                     id="amd64-on-musl"),
        pytest.param({"platform": "manylinux2014_x64"}, "'x64' is not a Linux architecture",
                     id="legacy-alias-bad-arch"),
    ],
)
def test_bad_targets_are_named(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidTargetError) as info:
        Target.parse(**kwargs)  # an empty platform included: it is not "this machine's"
    assert repr(message) in str(info.value) or message in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [("3.12", (3, 12)), ("312", (3, 12)),
                                                 ("3.9.18", (3, 9)), ("3.13", (3, 13))])
def test_parse_python_version(text: str, expected: tuple[int, int]) -> None:
    assert parse_python_version(text) == expected


def test_manylinux_below_the_architecture_floor_is_refused() -> None:
    with pytest.raises(InvalidTargetError, match=r"2\.17"):
        expand_platform("manylinux_2_12_aarch64")


@pytest.mark.parametrize("tags_module", ["packaging", "pip-vendored"])
def test_a_pure_only_target_accepts_no_platform_of_this_machine(
        tags_module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # packaging before 26.4 (pip's vendored copy too) reads an empty platform
    # list as "this machine's platforms": a cp312-any target took
    # cp312-cp312-linux_x86_64 wheels.
    from wheelhouse import targets

    if tags_module == "pip-vendored":
        from pip._vendor.packaging import tags as vendored

        monkeypatch.setattr(targets, "ptags", vendored)
    target = Target.parse(python_version="3.12", platform="any")
    platforms = {t.platform for t in target.tags()}
    assert platforms == {"any"}
    assert "py3-none-any" in {str(t) for t in target.tags()}


def test_check_and_build_of_a_pure_only_target_never_take_a_binary_wheel(
        tmp_path: Path) -> None:
    # The house offers 1.0 pure and 2.0 for this machine only: the pure target
    # takes 1.0, and pip (asked with --platform any, not this machine's) agrees.
    import json

    from wheelhouse.add import add_paths
    from wheelhouse.house import House
    from wheelhouse.store import Store

    host = str(next(iter(ptags.sys_tags())))
    d = tmp_path / "d"
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, Store.open(tmp_path / "store"), [
        build_wheel(d, "demo", "1.0"), build_wheel(d, "demo", "2.0", tag=host)])
    out = run([sys.executable, "-m", "wheelhouse", "--store", str(tmp_path / "store"), "check",
               str(house.root), "demo", "--python-version",
               f"{sys.version_info[0]}.{sys.version_info[1]}", "--platform", "any", "--json"],
              env=isolated_env())
    (verdict,) = json.loads(out.stdout)["targets"]
    assert verdict["chosen"] == verdict["pip"]["chosen"] == {"demo": "1.0"}
    built = tmp_path / "built"
    run([sys.executable, "-m", "wheelhouse", "--store", str(tmp_path / "store"), "build", "demo",
         "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}", "--platform", "any",
         "--no-index", "--find-links", str(house.files_dir), "-o", str(built)],
        env=isolated_env())
    assert [e.filename for e in House.open(built).read_manifest().files] == [
        "demo-1.0-py3-none-any.whl"]


def test_a_pypy_target_takes_pypy_wheels_and_pip_agrees(tmp_path: Path) -> None:
    # PyPy's wheels are tagged pp310-pypy310_pp73-<platform>: a pp target
    # without --abi took only pure wheels (and pip, asked without --abi, this
    # machine's CPython ABI).
    import json

    from wheelhouse.add import add_paths
    from wheelhouse.house import House
    from wheelhouse.store import Store

    target = Target.parse(python_version="3.10", platform="manylinux_2_28_x86_64",
                          implementation="pp")
    assert str(target.tags()[0]) == "pp310-pypy310_pp73-manylinux_2_28_x86_64"
    d = tmp_path / "d"
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, Store.open(tmp_path / "store"), [
        build_wheel(d, "demo", "1.0"),
        build_wheel(d, "demo", "2.0", tag="pp310-pypy310_pp73-manylinux_2_17_x86_64")])
    out = run([sys.executable, "-m", "wheelhouse", "--store", str(tmp_path / "store"), "check",
               str(house.root), "demo", "--python-version", "3.10", "--implementation", "pp",
               "--platform", "manylinux_2_28_x86_64", "--json"], env=isolated_env())
    (verdict,) = json.loads(out.stdout)["targets"]
    assert verdict["chosen"] == verdict["pip"]["chosen"] == {"demo": "2.0"}


def test_micro_versions_are_targets_of_their_own(tmp_path: Path) -> None:
    # 2.0 needs Python >= 3.8.5. A build for 3.8.1 takes 1.0; the same house
    # built again for 3.8.10 is a new resolution (not the last one's), and
    # 'check' of the house reads the targets back with their micro versions.
    import json

    from wheelhouse.house import House

    wheels = tmp_path / "wheels"
    build_wheel(wheels, "mdemo", "1.0")
    build_wheel(wheels, "mdemo", "2.0", requires_python=">=3.8.5")
    env = isolated_env({"WHEELHOUSE_STORE": str(tmp_path / "store")})
    house = tmp_path / "house"

    def build(*versions: str) -> dict[str, list[str]]:
        args = [a for v in versions for a in ("--python-version", v)]
        out = run([sys.executable, "-m", "wheelhouse", "build", "mdemo", "-o", str(house),
                   "--no-index", "-f", str(wheels), "--platform", "any", *args, "--json"],
                  env=env)
        return dict(json.loads(out.stdout)["targets"])

    assert build("3.8.1") == {"cp38_1-any": ["mdemo-1.0-py3-none-any.whl"]}
    assert build("3.8.10") == {"cp38_10-any": ["mdemo-2.0-py3-none-any.whl"]}
    assert build("3.8.1", "3.8.10") == {"cp38_1-any": ["mdemo-1.0-py3-none-any.whl"],
                                        "cp38_10-any": ["mdemo-2.0-py3-none-any.whl"]}
    out = run([sys.executable, "-m", "wheelhouse", "check", str(house), "mdemo", "--json"],
              env=env)
    chosen = {t["target"]: t["chosen"] for t in json.loads(out.stdout)["targets"]}
    assert chosen == {"cp38_1-any": {"mdemo": "1.0"}, "cp38_10-any": {"mdemo": "2.0"}}
    assert House.open(house).verify() == []


def test_without_a_python_version_this_interpreters_micro_version_decides(
        tmp_path: Path) -> None:
    # pip without --python-version judges Requires-Python by this interpreter's
    # full version; so does a --platform target (its name has no micro version).
    import json

    from wheelhouse.house import House

    major, minor, micro = sys.version_info[:3]
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "mdemo", "1.0")
    build_wheel(wheels, "mdemo", "2.0", requires_python=f">={major}.{minor}.{micro}")
    env = isolated_env({"WHEELHOUSE_STORE": str(tmp_path / "store")})
    house = tmp_path / "house"
    out = run([sys.executable, "-m", "wheelhouse", "build", "mdemo", "-o", str(house),
               "--no-index", "-f", str(wheels), "--platform", "manylinux_2_28_x86_64",
               "--json"], env=env)
    ((name, files),) = json.loads(out.stdout)["targets"].items()
    assert files == ["mdemo-2.0-py3-none-any.whl"]
    assert name.startswith(f"cp{major}{minor}-") and name.endswith("-manylinux_2_28_x86_64")
    out = run([sys.executable, "-m", "wheelhouse", "check", str(house), "mdemo", "--json"],
              env=env)
    assert json.loads(out.stdout)["targets"][0]["chosen"] == {"mdemo": "2.0"}
    # A given micro version names the target with "_" (PEP 751: no dot in a
    # pylock file's name).
    out = run([sys.executable, "-m", "wheelhouse", "build", "mdemo", "-o", str(house),
               "--no-index", "-f", str(wheels), "--platform", "any",
               "--python-version", f"{major}.{minor}.{micro}", "--json"], env=env)
    assert f"cp{major}{minor}_{micro}-any" in json.loads(out.stdout)["targets"]
    from packaging.pylock import is_valid_pylock_path

    locks = sorted((house / "locks").glob("pylock.*.toml"))
    assert locks and all(is_valid_pylock_path(p) for p in locks)
    assert House.open(house).verify() == []
