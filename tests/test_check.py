"""wheelhouse check: per-target proof that requirements install from a house alone."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable  # noqa: TC003 - pytest fixtures resolve annotations
from pathlib import Path  # noqa: TC003 - pytest fixtures resolve annotations
from typing import Any

import pytest
from packaging.tags import sys_tags

from tests.builders import build_sdist, build_wheel
from tests.conftest import LocalIndex, Venv, isolated_env, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.house import House
from wheelhouse.store import Store  # noqa: TC001

HOST_TAG = str(next(iter(sys_tags())))


@pytest.fixture
def house(tmp_path: Path, store: Store) -> Path:
    d = tmp_path / "dists"
    wheels = [
        build_wheel(d, "app", "1.0", requires_dist=[
            "lib>=1", "cext", "winhelper; sys_platform == 'win32'", "fast; extra == 'speed'"]),
        build_wheel(d, "lib", "1.0"),
        build_wheel(d, "lib", "2.0", requires_python=">=3.12"),
        build_wheel(d, "cext", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64"),
        build_wheel(d, "cext", "1.0", tag="cp312-cp312-win_amd64"),
        build_wheel(d, "winhelper", "1.0"),
        build_wheel(d, "onlysdist-placeholder", "1.0"),
    ]
    root = tmp_path / "house"
    h = House.open(root, create=True)
    add_paths(h, store, wheels)
    # fast exists only as an sdist.
    sdist = build_sdist(d, "fast", "1.0")
    add_paths(h, store, [sdist])
    return root


def check_json(house: Path, *args: str, ok: bool) -> Any:
    out = wheelhouse("check", str(house), *args, "--json", env=isolated_env(), check=False)
    assert out.returncode == (0 if ok else 1), out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


def test_every_target_ok_and_pip_agrees(house: Path) -> None:
    result = check_json(house, "app", "--python-version", "3.12",
                        "--platform", "manylinux_2_28_x86_64", "--platform", "win_amd64", ok=True)
    targets = result["targets"]
    linux, windows = targets
    assert linux["chosen"] == {"app": "1.0", "lib": "2.0", "cext": "1.0"}
    assert windows["chosen"] == {"app": "1.0", "lib": "2.0", "cext": "1.0", "winhelper": "1.0"}
    for t in targets:
        assert t["pip"]["ok"] is True
        assert t["disagreement"] is None
    assert linux["pip"]["chosen"] == linux["chosen"]
    # pip evaluates markers for this machine even with --platform win_amd64; the
    # difference is explained as pip's, not reported as a bug in ours.
    assert windows["pip"]["chosen"] == linux["chosen"]
    assert "known pip limitation" in windows["pip_note"]


def test_requires_python_picks_older_version(house: Path) -> None:
    result = check_json(house, "lib", "--python-version", "3.10", "--platform", "win_amd64",
                        ok=True)
    (t,) = result["targets"]
    assert t["chosen"] == {"lib": "1.0"}


def test_table_names_what_is_missing_and_why(house: Path) -> None:
    out = wheelhouse("check", str(house), "app[speed]", "--python-version", "3.12",
                     "--platform", "macosx_14_0_arm64", "--platform", "manylinux_2_28_x86_64",
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    mac = next(i for i, ln in enumerate(lines) if ln.startswith("cp312-macosx_14_0_arm64"))
    assert "MISSING" in lines[mac]
    text = out.stdout
    assert "cext (required by app==1.0): no wheel for the platform cp312-macosx_14_0_arm64" in text
    assert "the house has wheels for cp312-cp312-manylinux_2_17_x86_64" in text
    assert "fast; extra == \"speed\" (required by app==1.0): only an sdist in the house" in text
    assert "pip disagrees" not in text


def test_version_excluded_by_constraint(tmp_path: Path, house: Path) -> None:
    constraints = tmp_path / "c.txt"
    constraints.write_text("lib<1\n")
    result = check_json(house, "lib", "-c", str(constraints), "--python-version", "3.12",
                        "--platform", "win_amd64", ok=False)
    (t,) = result["targets"]
    (unmet,) = t["unmet"]
    assert "excluded by <1 (constraint," in unmet["reason"]
    assert t["pip"]["ok"] is False
    assert t["disagreement"] is None


def test_missing_dependency(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    root = tmp_path / "house"
    add_paths(House.open(root, create=True), store,
              [build_wheel(d, "top", "1.0", requires_dist=["gone>=2", "alsogone"])])
    result = check_json(root, "top", "--python-version", "3.12", "--platform", "win_amd64",
                        ok=False)
    (t,) = result["targets"]
    reasons = {u["requirement"]: u["reason"] for u in t["unmet"]}
    assert reasons == {"gone>=2": "not in the house", "alsogone": "not in the house"}


def test_host_default_and_requirement_file_errors(tmp_path: Path, house: Path) -> None:
    out = wheelhouse("check", str(house), "lib", env=isolated_env())
    assert "OK" in out.stdout
    bad = tmp_path / "req.txt"
    bad.write_text("lib\nnot a requirement!!\n")
    out = wheelhouse("check", str(house), "-r", str(bad), env=isolated_env(), check=False)
    assert out.returncode == 1
    assert f"{bad}:2" in out.stderr


def test_this_interpreter_is_named_host_as_build_names_it(house: Path) -> None:
    from wheelhouse.targets import Target

    tag = str(Target.host())
    out = wheelhouse("check", str(house), "lib", env=isolated_env())
    assert out.stdout == f"host ({tag})  OK       1 distributions\n"
    (t,) = check_json(house, "lib", ok=True)["targets"]
    assert (t["target"], t["tag"]) == ("host", tag)


def test_default_targets_are_those_the_house_was_built_for(tmp_path: Path, store: Store) -> None:
    from wheelhouse.add import Incoming, ingest

    d = tmp_path / "dists"
    root = tmp_path / "built"
    ingest(House.open(root, create=True), store, [
        Incoming(build_wheel(d, "lib", "1.0"), targets=("cp312-win_amd64",
                                                         "cp311-manylinux_2_28_aarch64")),
        Incoming(build_wheel(d, "cext", "1.0", tag="cp312-cp312-win_amd64"),
                 targets=("cp312-win_amd64",)),
    ])
    result = check_json(root, "lib", "cext", ok=False)
    verdicts = {t["target"]: t["ok"] for t in result["targets"]}
    assert verdicts == {"cp311-manylinux_2_28_aarch64": False, "cp312-win_amd64": True}


def test_requirement_file_options_never_reach_pip(
    tmp_path: Path, house: Path, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    # An index the files name: any request pip makes to it is recorded.
    (tmp_path / "elsewhere").mkdir()
    elsewhere = serve_dir(tmp_path / "elsewhere")
    (tmp_path / "c.txt").write_text("lib<2\n")
    req = tmp_path / "req.txt"
    req.write_text(
        "--index-url http://127.0.0.1:9/simple\n"  # nothing listens on port 9
        "--find-links http://127.0.0.1:9/nothing\n"
        f"--extra-index-url {elsewhere.url}/simple\n"
        f"--find-links {elsewhere.url}/links\n"
        "--trusted-host 127.0.0.1\n"
        "-c c.txt\n"
        "lib\n"
    )
    result = check_json(house, "-r", str(req), "--python-version", "3.12",
                        "--platform", "win_amd64", ok=True)
    (t,) = result["targets"]
    # The nested constraint reached pip (without it pip would take lib 2.0).
    assert t["chosen"] == t["pip"]["chosen"] == {"lib": "1.0"}
    assert t["disagreement"] is None
    assert elsewhere.requests == []


@pytest.fixture
def yanked_house(tmp_path: Path, store: Store) -> Path:
    d = tmp_path / "dists"
    root = tmp_path / "yanked"
    h = House.open(root, create=True)
    add_paths(h, store, [build_wheel(d, "lib", "1.0"), build_wheel(d, "lib", "2.0"),
                         build_wheel(d, "old", "1.0"), build_wheel(d, "old", "2.0b1")])
    h.yank("lib==2.0", reason="broken")
    h.yank("old==1.0")
    return root


@pytest.mark.parametrize(
    ("requirement", "chosen"),
    [
        pytest.param("lib", {"lib": "1.0"}, id="yanked-newest-skipped"),
        pytest.param("lib==2.0", {"lib": "2.0"}, id="exact-pin-takes-yanked"),
        pytest.param("lib==2.*", None, id="wildcard-is-not-a-pin"),
        # The final release hides the pre-release before the yank hides the final.
        pytest.param("old", None, id="prerelease-not-taken-for-yanked-final"),
        pytest.param("old==1.*", None, id="wildcard-does-not-unlock-yanked"),
    ],
)
def test_yanked_files_pip_agrees(yanked_house: Path, requirement: str,
                                 chosen: dict[str, str] | None) -> None:
    result = check_json(yanked_house, requirement, "--python-version", "3.12",
                        "--platform", "win_amd64", ok=chosen is not None)
    (t,) = result["targets"]
    assert t["disagreement"] is None
    if chosen is None:
        (unmet,) = t["unmet"]
        assert unmet["reason"].startswith("only yanked files fit (")
        assert t["pip"]["ok"] is False
    else:
        assert t["chosen"] == t["pip"]["chosen"] == chosen


def test_cross_check_skipped_when_pip_is_not_available(
    house: Path, venv: Venv, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    from wheelhouse.cli import main

    # check runs pip with the interpreter running wheelhouse: here, one without pip.
    monkeypatch.setattr(sys, "executable", str(venv.python))
    assert main(["check", str(house), "lib", "--python-version", "3.12",
                 "--platform", "win_amd64", "--json"]) == 0
    (t,) = json.loads(capsys.readouterr().out)["targets"]
    assert t["ok"] is True and t["disagreement"] is None
    assert t["pip"]["ok"] is None and t["pip"]["chosen"] is None
    assert t["pip"]["skipped"].startswith("pip not available: ")
    assert "No module named pip" in t["pip"]["skipped"]

    caplog.clear()
    assert main(["check", str(house), "lib", "--python-version", "3.12",
                 "--platform", "win_amd64"]) == 0
    assert "OK" in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records] == [
        f"cross-check with pip skipped ({t['pip']['skipped']})"]


def test_sha512_hash_is_checked_against_the_file(tmp_path: Path, house: Path) -> None:
    name = "lib-1.0-py3-none-any.whl"
    good = hashlib.sha512((house / "files" / name).read_bytes()).hexdigest()
    req = tmp_path / "req.txt"
    req.write_text(f"lib==1.0 --hash=sha512:{good}\n")
    result = check_json(house, "-r", str(req), "--python-version", "3.12",
                        "--platform", "win_amd64", ok=True)
    (t,) = result["targets"]
    assert t["chosen"] == t["pip"]["chosen"] == {"lib": "1.0"}

    wrong = "0" * 128
    req.write_text(f"lib==1.0 --hash=sha512:{wrong}\n")
    result = check_json(house, "-r", str(req), "--python-version", "3.12",
                        "--platform", "win_amd64", ok=False)
    (t,) = result["targets"]
    assert t["unmet"] == [{
        "requirement": "lib==1.0", "required_by": f"{req}:1",
        "reason": f"hash mismatch for {name}: expected sha512={wrong}, got sha512={good} "
                  "(the --hash values do not match the house's file)"}]
    assert t["pip"]["ok"] is False
    assert t["disagreement"] is None


def test_unevaluable_marker_is_an_error_naming_the_line(tmp_path: Path, house: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text('lib\nlib; python_version ~= "3"\n')
    out = wheelhouse("check", str(house), "-r", str(req), "--python-version", "3.12",
                     "--platform", "win_amd64", env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert (f"error: {req}:2: cannot evaluate the environment marker of "
            "'lib; python_version ~= \"3\"' for cp312-win_amd64") in out.stderr


def _system_pip_version() -> tuple[int, ...] | None:
    import subprocess

    try:
        out = subprocess.run(["/usr/bin/python3", "-m", "pip", "--version"], capture_output=True,
                             text=True, timeout=60, check=False, env=isolated_env())
    except OSError:
        return None
    if out.returncode != 0 or not out.stdout.startswith("pip "):
        return None
    return tuple(int(p) for p in out.stdout.split()[1].split(".")[:2] if p.isdigit())


def test_pips_with_the_pep658_name_bug_install_from_a_house(tmp_path: Path, store: Store) -> None:
    # pip 22.3-23.0 (Debian 12's) fail on PEP 658 metadata under the old key when a
    # dependency is named with '_' but the project's own name has '-' (pypa/pip#12038):
    # a house advertises its metadata only under the PEP 714 names, which they ignore.
    version = _system_pip_version()
    if version is None or not ((22, 3) <= version < (23, 1)):
        pytest.skip(f"needs the system's pip 22.3-23.0 (found {version})")
    d = tmp_path / "dists"
    wheels = [build_wheel(d, "app", "1.0", requires_dist=["my_lib>=1"]),
              build_wheel(d, "my-lib", "1.0")]
    h = House.open(tmp_path / "house", create=True)
    add_paths(h, store, wheels)
    import subprocess

    out = subprocess.run(
        ["/usr/bin/python3", "-m", "pip", "install", "--dry-run", "--isolated",
         "--no-cache-dir", "--target", str(tmp_path / "t"),
         "--index-url", (h.root / "simple").as_uri() + "/", "app"],
        capture_output=True, text=True, timeout=120, check=False, env=isolated_env())
    assert out.returncode == 0, out.stderr
    assert "Would install app-1.0 my-lib-1.0" in out.stdout or "my_lib-1.0" in out.stdout


def test_a_damaged_file_fails_the_check_and_is_named(house: Path) -> None:
    lib = next((house / "files").glob("lib-1.0-*.whl"))
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.unlink()  # the house file is a hard link to the store's blob: replace, not edit
    lib.write_bytes(bytes(data))
    args = ("lib", "--python-version", "3.10", "--platform", "win_amd64")
    (t,) = check_json(house, *args, ok=False)["targets"]
    assert not t["ok"]
    (unmet,) = t["unmet"]
    assert unmet["requirement"] == "lib==1.0"
    assert "the house is damaged" in unmet["reason"] and lib.name in unmet["reason"]
    assert "wheelhouse verify" in unmet["reason"]
    assert t["disagreement"] is None  # pip refuses too: no bug in ours to report
    out = wheelhouse("check", str(house), *args, env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "bug in wheelhouse" not in out.stdout + out.stderr


def test_an_invalid_requires_python_is_ignored_as_pip_ignores_it(
    tmp_path: Path, store: Store
) -> None:
    # pip skips an unreadable Requires-Python (with a warning) and takes the
    # file; check must choose what pip chooses, not call it unmet.
    from tests.builders import metadata_text

    d = tmp_path / "dists"
    wheel = build_wheel(d, "odd", "1.0", metadata=metadata_text(
        "odd", "1.0", requires_python="not a specifier"))
    root = tmp_path / "house"
    add_paths(House.open(root, create=True), store, [wheel])
    result = check_json(root, "odd", ok=True)
    (t,) = result["targets"]
    assert t["chosen"] == {"odd": "1.0"}
    assert t["pip"]["ok"] is True and t["disagreement"] is None


@pytest.fixture
def pre_house(tmp_path: Path, store: Store) -> Path:
    d = tmp_path / "dists"
    root = tmp_path / "pre"
    h = House.open(root, create=True)
    add_paths(h, store, [build_wheel(d, "lib", "1.0"), build_wheel(d, "lib", "2.0b1"),
                         build_wheel(d, "other", "1.0"), build_wheel(d, "other", "2.0b1"),
                         build_wheel(d, "beta", "3.0rc1")])
    return root


@pytest.mark.parametrize(
    ("lines", "cli", "chosen"),
    [
        pytest.param("--all-releases lib\nlib\nother\n", (), {"lib": "2.0b1", "other": "1.0"},
                     id="all-releases-one"),
        pytest.param("--all-releases=lib,other\nlib\nother\n", (),
                     {"lib": "2.0b1", "other": "2.0b1"}, id="all-releases-two"),
        pytest.param("--pre\n--only-final other\nlib\nother\n", (),
                     {"lib": "2.0b1", "other": "1.0"}, id="pre-then-only-final"),
        pytest.param("--only-final lib\n--pre\nlib\nother\n", (),
                     {"lib": "1.0", "other": "2.0b1"}, id="only-final-survives-pre"),
        pytest.param("--all-releases :all:\n--only-final lib\nlib\nother\n", (),
                     {"lib": "1.0", "other": "2.0b1"}, id="all-then-one-final"),
        pytest.param("--only-final lib\n--all-releases :all:\nlib\nother\n", (),
                     {"lib": "2.0b1", "other": "2.0b1"}, id="all-clears-only-final"),
        pytest.param("--all-releases :all:,:none:\nlib\nother\n", (),
                     {"lib": "1.0", "other": "1.0"}, id="none-empties"),
        pytest.param("--only-final lib\nlib\nother\n", ("--pre",),
                     {"lib": "1.0", "other": "2.0b1"}, id="command-line-pre"),
        # Only a pre-release fits: pip's default takes it; --only-final never does.
        pytest.param("beta\n", (), {"beta": "3.0rc1"}, id="default-takes-lone-pre"),
        pytest.param("--only-final beta\nbeta\n", (), None, id="only-final-refuses-lone-pre"),
        pytest.param("--only-final :all:\nlib>=2.0b1\n", (), None,
                     id="only-final-beats-a-specifier"),
        pytest.param("--pypi-url http://127.0.0.1:9/simple\nlib\n", (), {"lib": "1.0"},
                     id="pypi-url"),
    ],
)
def test_pip_26_3_release_switches_in_requirement_files_pip_agrees(
        tmp_path: Path, pre_house: Path, lines: str, cli: tuple[str, ...],
        chosen: dict[str, str] | None) -> None:
    # pip 26.3's --all-releases / --only-final, in a requirements file, as pip
    # applies them (order matters; --pre is --all-releases :all: that keeps
    # the --only-final names). check resolves them itself and asks pip: both agree.
    req = tmp_path / "req.txt"
    req.write_text(lines)
    result = check_json(pre_house, "-r", str(req), *cli, "--python-version", "3.12",
                        "--platform", "win_amd64", ok=chosen is not None)
    (t,) = result["targets"]
    assert t["disagreement"] is None
    if chosen is None:
        (unmet,) = t["unmet"]
        assert "--only-final excludes them" in unmet["reason"], unmet
        assert t["pip"]["ok"] is False
    else:
        assert t["chosen"] == t["pip"]["chosen"] == chosen


def test_no_require_hashes_checks_a_hashed_line_without_hash_checking_mode(
        tmp_path: Path, pre_house: Path) -> None:
    # --no-require-hashes (pip 26.3): an unhashed, unpinned line is fine, and
    # the hashed line is still checked against the house's file.
    good = hashlib.sha256((pre_house / "files" / "lib-1.0-py3-none-any.whl").read_bytes())
    req = tmp_path / "req.txt"
    req.write_text(f"--no-require-hashes\nlib==1.0 --hash=sha256:{good.hexdigest()}\nother\n")
    result = check_json(pre_house, "-r", str(req), "--python-version", "3.12",
                        "--platform", "win_amd64", ok=True)
    (t,) = result["targets"]
    assert t["chosen"] == t["pip"]["chosen"] == {"lib": "1.0", "other": "1.0"}
    req.write_text(f"--no-require-hashes\nlib==1.0 --hash=sha256:{'0' * 64}\nother\n")
    result = check_json(pre_house, "-r", str(req), "--python-version", "3.12",
                        "--platform", "win_amd64", ok=False)
    (t,) = result["targets"]
    (unmet,) = t["unmet"]
    assert "hash mismatch for lib-1.0-py3-none-any.whl" in unmet["reason"]
    assert good.hexdigest() in unmet["reason"]
    # pip's dry run does not check the hash outside hash-checking mode (its real
    # install does, on download): said so, not reported as a wheelhouse bug.
    assert t["pip"]["ok"] is True and t["disagreement"] is None
    assert "a real 'pip install' refuses" in t["pip_note"]
    # Without it, the same file is hash-checking mode: "other" is refused.
    req.write_text(f"lib==1.0 --hash=sha256:{good.hexdigest()}\nother\n")
    out = wheelhouse("check", str(pre_house), "-r", str(req), env=isolated_env(), check=False)
    assert out.returncode == 1 and "not pinned with ==" in out.stderr


@pytest.mark.parametrize(("python_version", "requires_python", "chosen"), [
    pytest.param("3.8.5", ">=3.8.1", "2.0", id="micro-meets-a-micro-floor"),
    pytest.param("3.8", ">=3.8.1", "1.0", id="no-micro-is-x.y.0"),
    pytest.param("3.8.5", "<=3.8", "1.0", id="micro-above-a-minor-ceiling"),
    pytest.param("3.8", "===3.8.0", "2.0", id="arbitrary-equality-padded"),
    pytest.param("3.8", "===3.8", "1.0", id="arbitrary-equality-unpadded"),
])
def test_a_micro_python_version_decides_requires_python_as_in_pip(
        tmp_path: Path, store: Store, python_version: str, requires_python: str,
        chosen: str) -> None:
    # "--python-version 3.8.5" was cut to 3.8 (so 3.8.0), for us and for the
    # pip we asked: both agreed, and both were wrong for a 3.8.5 machine.
    d = tmp_path / "d"
    root = tmp_path / "house"
    add_paths(House.open(root, create=True), store, [
        build_wheel(d, "demo", "1.0"),
        build_wheel(d, "demo", "2.0", requires_python=requires_python)])
    result = check_json(root, "demo", "--python-version", python_version,
                        "--platform", "manylinux_2_28_x86_64", ok=True)
    (t,) = result["targets"]
    assert t["chosen"] == t["pip"]["chosen"] == {"demo": chosen}


def test_a_micro_python_version_sets_python_full_version_for_markers(
        tmp_path: Path, store: Store) -> None:
    d = tmp_path / "d"
    root = tmp_path / "house"
    add_paths(House.open(root, create=True), store, [
        build_wheel(d, "app", "1.0", requires_dist=["new; python_full_version >= '3.10.1'"]),
        build_wheel(d, "new", "1.0")])
    for version, wanted in (("3.10.13", {"app": "1.0", "new": "1.0"}), ("3.10", {"app": "1.0"})):
        result = check_json(root, "app", "--python-version", version, "--no-pip",
                            "--platform", "manylinux_2_28_x86_64", ok=True)
        assert result["targets"][0]["chosen"] == wanted, version
