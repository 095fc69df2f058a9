"""`wheelhouse build` against a local upstream index, with the real pip."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_sdist, build_wheel, unpack_sdist
from tests.conftest import LocalIndex, Venv, isolated_env, run, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.build import build
from wheelhouse.dists import describe_blob
from wheelhouse.errors import (
    BuildError,
    IntegrityError,
    InvalidInputError,
    ResolutionError,
    WheelhouseError,
)
from wheelhouse.house import House
from wheelhouse.store import Store
from wheelhouse.targets import Target

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wheelhouse._pip import PipResult


AARCH64 = "manylinux_2_28_aarch64"
HOST_TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
MACHINE = platform.machine()


@pytest.fixture(scope="module")
def upstream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An upstream index (itself a house) with wheels for several platforms, sdists,
    a yanked release, extras and markers."""
    tmp = tmp_path_factory.mktemp("upstream")
    d = tmp / "dists"
    build_wheel(d, "app", "1.0", requires_dist=["lib>=1", "native", "fancy[extra]",
                                                "never ; python_version < '3'"])
    build_wheel(d, "lib", "1.0")
    build_wheel(d, "lib", "2.0")
    build_wheel(d, "lib", "3.0")  # yanked below: resolvers take 2.0
    build_wheel(d, "fancy", "1.0", requires_dist=["extradep ; extra == 'extra'"])
    build_wheel(d, "extradep", "1.0")
    build_sdist(d, "srconly", "1.0")
    build_wheel(d, "native", "1.0", tag=f"cp312-cp312-{AARCH64}")
    build_wheel(d, "native", "1.0", tag=f"{HOST_TAG}-{HOST_TAG}-manylinux_2_17_x86_64")
    build_wheel(d, "native", "1.0", tag=f"{HOST_TAG}-{HOST_TAG}-manylinux_2_17_aarch64")
    h = House.open(tmp / "house", create=True)
    add_paths(h, Store.open(tmp / "store"), [d])
    h.yank("lib==3.0", reason="broken")
    return h.root


@pytest.fixture
def upstream(upstream_dir: Path, serve_dir: Callable[[Path], LocalIndex]) -> LocalIndex:
    return serve_dir(upstream_dir)


def _opts(server: LocalIndex) -> list[str]:
    return ["--index-url", f"{server.url}/simple/"]


def _local_project(tmp_path: Path, requires_dist: Sequence[str] = ()) -> Path:
    """A project "mine" 1.0 unpacked from its sdist into tmp_path/src, as a user's checkout."""
    unpack_sdist(build_sdist(tmp_path / "d", "mine", "1.0", requires_dist=requires_dist),
                 tmp_path / "src")
    return tmp_path / "src" / "mine-1.0"


def _check_then_install(house: Path, req: Path, venv: Venv, chosen: dict[str, str]) -> None:
    """`check` (and its pip cross-check) and `install` both read *req* as *chosen*, offline."""
    out = wheelhouse("check", str(house), "-r", str(req), "--json", env=isolated_env())
    verdict = json.loads(out.stdout)
    assert verdict["ok"] and verdict["targets"][0]["chosen"] == chosen
    assert verdict["targets"][0]["pip"]["ok"] is True
    wheelhouse("install", str(house), "-r", str(req), "--python", str(venv.python),
               "--no-compile", env=isolated_env())
    assert venv.installed() == chosen


def test_build_for_this_machine_installs_offline(
    tmp_path: Path, store: Store, upstream: LocalIndex, venv: Venv
) -> None:
    house = tmp_path / "house"
    req = tmp_path / "requirements.txt"
    req.write_text("app\nsrconly==1.0\n")
    result = build(requirement_files=[req], house=house, store=store,
                   pip_options=_opts(upstream))

    names = sorted(e.filename for e in result.targets["host"])
    assert names == sorted([
        "app-1.0-py3-none-any.whl", "extradep-1.0-py3-none-any.whl",
        "fancy-1.0-py3-none-any.whl", "lib-2.0-py3-none-any.whl",
        f"native-1.0-{HOST_TAG}-{HOST_TAG}-manylinux_2_17_{MACHINE}.whl",
        "srconly-1.0-py3-none-any.whl",
    ])
    assert result.built == ("srconly-1.0-py3-none-any.whl",)
    manifest = House.open(house).read_manifest().by_filename()
    assert manifest["lib-2.0-py3-none-any.whl"].origin == (
        f"{upstream.url}/files/lib-2.0-py3-none-any.whl")
    assert manifest["srconly-1.0-py3-none-any.whl"].origin == (
        f"built:{upstream.url}/files/srconly-1.0.tar.gz")
    assert all(e.targets == ("host",) for e in result.targets["host"])

    # The network goes away; the house alone must do.
    upstream.__exit__(None, None, None)
    venv.pip("install", "--no-index", "--find-links", str(house / "files"), "-r", str(req))
    installed = venv.installed()
    assert installed["app"] == "1.0" and installed["srconly"] == "1.0"
    assert installed["lib"] == "2.0" and installed["extradep"] == "1.0"

    # The lock's hashes are exactly the house's files (the built wheel included).
    lock = house / "locks" / "host.requirements.txt"
    fresh = Venv(tmp_path / "venv2")
    run([sys.executable, "-m", "venv", "--without-pip", str(fresh.root)])
    fresh.pip("install", "--require-hashes", "--no-index", "--find-links",
              str(house / "files"), "-r", str(lock))
    assert fresh.installed() == installed

    report = json.loads((house / "wheelhouse-report.json").read_text())
    actions = {f["filename"]: f["action"] for f in report["targets"]["host"]}
    assert actions["srconly-1.0-py3-none-any.whl"] == "built"
    assert actions["lib-2.0-py3-none-any.whl"] == "downloaded"


def test_warm_rebuild_needs_no_network(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    house = tmp_path / "house"
    first = build(["app"], house=house, store=store, pip_options=_opts(upstream))
    assert not first.from_cache
    requests_before = len(upstream.requests)
    upstream.__exit__(None, None, None)  # any request now fails

    again = build(["app"], house=house, store=store, pip_options=_opts(upstream))
    assert again.from_cache
    assert {e.filename for e in again.targets["host"]} == {
        e.filename for e in first.targets["host"]}
    offline = build(["app"], house=house, store=store, pip_options=_opts(upstream),
                    offline=True)
    assert offline.from_cache
    assert len(upstream.requests) == requests_before

    # Another house on the same machine reuses the store: nothing downloaded twice.
    upstream2 = LocalIndex(upstream.root).__enter__()
    try:
        other = build(["app"], house=tmp_path / "other", store=store,
                      pip_options=_opts(upstream2))
    finally:
        upstream2.__exit__(None, None, None)
    assert other.downloaded == ()
    gets = [r for r in upstream2.requests if r.startswith("GET /files/") and
            not r.endswith(".metadata")]
    assert gets == []


def test_offline_without_a_previous_resolution_is_refused(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    with pytest.raises(InvalidInputError, match="--offline"):
        build(["app"], house=tmp_path / "house", store=store, pip_options=_opts(upstream),
              offline=True)
    assert upstream.requests == []


def test_offline_says_what_changed_and_remembers_several_resolutions(
    tmp_path: Path, store: Store, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    house = tmp_path / "house"
    target = Target.parse(python_version="3.12", platform=AARCH64, implementation="cp")
    # pip settings count, but only their digests are kept: values may hold credentials.
    (tmp_path / "links-17.123456").mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links-17.123456"))
    build(["app"], house=house, store=store, targets=[target], pip_options=_opts(upstream))
    assert "17.123456" not in (house / ".wheelhouse-build.json").read_text()
    monkeypatch.delenv("PIP_FIND_LINKS")
    build(["app"], house=house, store=store, pip_options=_opts(upstream))
    upstream.__exit__(None, None, None)  # any request now fails
    # Both resolutions are remembered: the host-only one still answers offline.
    assert build(["app"], house=house, store=store, pip_options=_opts(upstream),
                 offline=True).from_cache
    # A timeout or a progress bar does not change what pip resolves.
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "7")
    monkeypatch.setenv("PIP_PROGRESS_BAR", "off")
    assert build(["app"], house=house, store=store, pip_options=_opts(upstream),
                 offline=True).from_cache
    # A changed pip setting that does is named (by name only: values may hold credentials).
    monkeypatch.setenv("PIP_PRE", "1")
    with pytest.raises(InvalidInputError) as info:
        build(["app"], house=house, store=store, pip_options=_opts(upstream), offline=True)
    assert "the pip configuration changed (PIP_PRE added)" in info.value.message
    monkeypatch.delenv("PIP_PRE")
    with pytest.raises(InvalidInputError) as info:
        build(["app", "lib"], house=house, store=store, pip_options=_opts(upstream),
              offline=True)
    assert "the requirements given on the command line differ" in info.value.message


def test_offline_names_the_files_the_store_lost(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    house = tmp_path / "house"
    first = build(["app"], house=house, store=store, pip_options=_opts(upstream))
    lost = next(e for e in first.targets["host"] if e.project == "lib")
    blob = store.blob_path(lost.sha256)
    blob.chmod(0o644)
    blob.unlink()
    with pytest.raises(InvalidInputError) as info:
        build(["app"], house=house, store=store, pip_options=_opts(upstream), offline=True)
    assert f"{lost.filename} (sha256={lost.sha256}, for host)" in info.value.message
    assert "the store no longer has 1 of the files it chose" in info.value.message


def test_offline_and_refresh_together_are_refused(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    build(["app"], house=tmp_path / "house", store=store, pip_options=_opts(upstream))
    with pytest.raises(InvalidInputError, match="--offline and --refresh"):
        build(["app"], house=tmp_path / "house", store=store, pip_options=_opts(upstream),
              offline=True, refresh=True)


def test_isolated_reads_no_pip_configuration_file(
    tmp_path: Path, store: Store, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip's own --isolated still reads the machine-wide configuration files and
    # the one PIP_CONFIG_FILE names; `build --isolated` reads none (as its own
    # view of the indexes does).
    (tmp_path / "constraints.txt").write_text("app==99\n")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nconstraint = {tmp_path / 'constraints.txt'}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    with pytest.raises(WheelhouseError) as info:  # the configuration is honoured without it
        build(["app"], house=tmp_path / "h1", store=store, pip_options=_opts(upstream))
    assert "app" in str(info.value)
    result = build(["app"], house=tmp_path / "h2", store=store, pip_options=_opts(upstream),
                   isolated=True)
    assert any(e.project == "app" for e in result.targets["host"])


def test_an_index_pip_could_not_reach_is_said_even_when_the_rest_answered(
    tmp_path: Path, store: Store, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pip retries an index that does not answer, then resolves from the others
    # without a word: the build succeeds, and says what was left out.
    monkeypatch.setenv("PIP_RETRIES", "0")  # (pip then says nothing at all)
    with socket.socket() as s:  # bound, never listening: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = build(["lib"], house=tmp_path / "house", store=store,
                       pip_options=[*_opts(upstream),
                                    "--extra-index-url", f"http://127.0.0.1:{port}/simple/"])
    assert any(e.project == "lib" for e in result.targets["host"])
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("pip could not reach 127.0.0.1 while resolving for this interpreter" in m
               for m in said), said
    # An extra index without the project (a 404) is ordinary: nothing said.
    caplog.clear()
    build(["lib"], house=tmp_path / "house2", store=store,
          pip_options=[*_opts(upstream), "--extra-index-url", f"{upstream.url}/nothing/"])
    assert not [r for r in caplog.records if "could not reach" in r.getMessage()]


def test_isolated_pip_gets_no_pip_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip's --isolated does not reach the pip it starts for build dependencies:
    # the variables themselves are withheld.
    from wheelhouse._pip import SubprocessPip

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nenv\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PIP_FIND_LINKS", "http://127.0.0.1:9/links/")
    seen = SubprocessPip(isolated=True, python=str(fake))(["--version"]).stdout
    assert "PIP_FIND_LINKS" not in seen and f"PIP_CONFIG_FILE={os.devnull}" in seen
    assert "PIP_FIND_LINKS=" in SubprocessPip(python=str(fake))(["--version"]).stdout


def test_changed_local_project_is_built_again(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    project = _local_project(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text(f"{project}\n")
    house = tmp_path / "house"
    first = build(requirement_files=[req], house=house, store=store, pip_options=_opts(upstream))
    assert [e.filename for e in first.targets["host"]] == ["mine-1.0-py3-none-any.whl"]
    assert build(requirement_files=[req], house=house, store=store,
                 pip_options=_opts(upstream)).from_cache
    # The user edits the project and bumps its version: built again, not the old wheel.
    pkg_info = project / "PKG-INFO"
    pkg_info.write_text(pkg_info.read_text().replace("Version: 1.0", "Version: 1.1"))
    (project / "src" / "mine.py").write_text('__version__ = "1.1"\nX = 2\n')
    again = build(requirement_files=[req], house=house, store=store,
                  pip_options=_opts(upstream))
    assert not again.from_cache
    assert [e.filename for e in again.targets["host"]] == ["mine-1.1-py3-none-any.whl"]
    # Edited again without a new version: other bytes under the same name,
    # which a house refuses, saying what to do; the house keeps what it had.
    (project / "src" / "mine.py").write_text('__version__ = "1.1"\nX = 3\n')
    before = (house / "wheelhouse.json").read_bytes()
    with pytest.raises(WheelhouseError) as info:
        build(requirement_files=[req], house=house, store=store, pip_options=_opts(upstream))
    assert "mine-1.1-py3-none-any.whl" in str(info.value)
    assert "new version" in (info.value.hint or "")
    assert (house / "wheelhouse.json").read_bytes() == before


def test_a_local_project_named_by_file_url_is_fingerprinted_like_its_path(
    tmp_path: Path,
) -> None:
    # "mine @ file:///..." (quoted: a space in the path) is the same project
    # as its path, and an edit under it is noticed either way.
    from wheelhouse.build import _local_fingerprints

    project = tmp_path / "my src" / "mine"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "mod.py").write_text("X = 1\n")
    url = project.as_uri()
    assert "%20" in url
    lines = [f"mine @ {url}", f"mine[fast] @ {url} ; python_version > '3'", str(project)]
    before = [_local_fingerprints([line]) for line in lines]
    assert all(len(f) == 1 for f in before)
    assert len({next(iter(f.values())) for f in before}) == 1
    (project / "pkg" / "mod.py").write_text("X = 22\n")
    after = [_local_fingerprints([line]) for line in lines]
    assert len({next(iter(f.values())) for f in after}) == 1
    assert next(iter(after[0].values())) != next(iter(before[0].values()))


def test_foreign_target_gets_wheels_for_it_and_pure_built_wheels(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    house = tmp_path / "house"
    target = Target.parse(python_version="3.12", platform=AARCH64, implementation="cp")
    result = build(["app", "srconly"], house=house, store=store, targets=[target],
                   pip_options=_opts(upstream))
    files = sorted(e.filename for e in result.targets[str(target)])
    assert f"native-1.0-cp312-cp312-{AARCH64}.whl" in files
    assert "srconly-1.0-py3-none-any.whl" in files  # built here, pure: serves aarch64 too
    assert not any("x86_64" in f for f in files)
    upstream.__exit__(None, None, None)
    # pip itself agrees the house serves that target, offline.
    run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links",
         str(house / "files"), "--platform", AARCH64, "--python-version", "3.12",
         "--only-binary=:all:", "--target", str(tmp_path / "t"), "app", "srconly"],
        env=isolated_env())


def test_two_targets_share_pure_files(tmp_path: Path, store: Store, upstream: LocalIndex) -> None:
    arm = Target.parse(python_version="3.12", platform=AARCH64, implementation="cp")
    result = build(["app"], house=tmp_path / "house", store=store,
                   targets=[Target.host(), arm], pip_options=_opts(upstream))
    manifest = House.open(tmp_path / "house").read_manifest().by_filename()
    assert set(manifest["lib-2.0-py3-none-any.whl"].targets) == {"host", str(arm)}
    assert manifest[f"native-1.0-cp312-cp312-{AARCH64}.whl"].targets == (str(arm),)
    assert set(result.targets) == {"host", str(arm)}


def test_a_target_nothing_serves_names_package_and_target(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    target = Target.parse(python_version="3.12", platform="win_amd64", implementation="cp")
    with pytest.raises(ResolutionError) as info:
        build(["app"], house=tmp_path / "house", store=store, targets=[target],
              pip_options=_opts(upstream))
    assert "native" in str(info.value) and "cp312-win_amd64" in str(info.value)
    result = build(["app"], house=tmp_path / "house2", store=store, targets=[target],
                   pip_options=_opts(upstream), allow_missing=True)
    assert "cp312-win_amd64" in result.missing
    # The command says which package, on its one line per missing target.
    proc = wheelhouse("--store", str(store.root), "build", "app", "-o", str(tmp_path / "h3"),
                      "--index-url", f"{upstream.url}/simple/", "--python-version", "3.12",
                      "--platform", "win_amd64", "--allow-missing", env=isolated_env())
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("MISSING ")]
    assert line.startswith("MISSING cp312-win_amd64: pip could not resolve") and "native" in line
    # A house built for two targets, one of which got nothing: check (with no
    # target named) checks both, and fails, as the build said.
    arm = Target.parse(python_version="3.12", platform=AARCH64, implementation="cp")
    build(["app"], house=tmp_path / "h4", store=store, targets=[arm, target],
          pip_options=_opts(upstream), allow_missing=True)
    out = wheelhouse("check", str(tmp_path / "h4"), "app", "--no-pip", env=isolated_env(),
                     check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert any(x.startswith("cp312-win_amd64") and "MISSING" in x for x in out.stdout.splitlines())
    assert any(x.startswith(str(arm)) and " OK " in x for x in out.stdout.splitlines())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("app\nlib==\n", "requirements.txt:2", id="malformed-line"),
        pytest.param("-e ./somewhere\n", "editable", id="editable"),
        pytest.param("-r missing.txt\n", "missing.txt", id="missing-nested-file"),
    ],
)
def test_bad_requirement_files_name_file_and_line(
    tmp_path: Path, store: Store, upstream: LocalIndex, content: str, message: str
) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(content)
    proc = wheelhouse("--store", str(store.root), "build", "-r", str(req), "-o",
                      str(tmp_path / "house"), "--index-url", f"{upstream.url}/simple/",
                      env=isolated_env(), check=False)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert upstream.requests == []


def test_unknown_package_is_named(tmp_path: Path, store: Store, upstream: LocalIndex) -> None:
    with pytest.raises(ResolutionError, match="no-such-package"):
        build(["no-such-package==1.0"], house=tmp_path / "house", store=store,
              pip_options=_opts(upstream))
    # The failed build leaves no empty house behind, in a new or an empty directory.
    assert not (tmp_path / "house").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResolutionError):
        build(["no-such-package==1.0"], house=tmp_path / "empty", store=store,
              pip_options=_opts(upstream))
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_failed_build_leaves_an_existing_house_as_it_was(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    house = tmp_path / "house"
    build(["lib==1.0"], house=house, store=store, pip_options=_opts(upstream))
    before = {str(p.relative_to(house)): p.read_bytes() for p in house.rglob("*")
              if p.is_file() and p.name != ".wheelhouse-build.json"}
    with pytest.raises(ResolutionError, match="no-such-package"):
        build(["no-such-package==1.0"], house=house, store=store, pip_options=_opts(upstream))
    after = {str(p.relative_to(house)): p.read_bytes() for p in house.rglob("*")
             if p.is_file() and p.name != ".wheelhouse-build.json"}
    assert after == before


def test_hash_mismatch_enters_nothing(tmp_path: Path, store: Store, upstream: LocalIndex) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("lib==1.0 --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises((IntegrityError, ResolutionError)) as info:
        build(requirement_files=[req], house=tmp_path / "house", store=store,
              pip_options=_opts(upstream))
    assert "0" * 64 in str(info.value) or "HASH" in str(info.value).upper()
    assert not (tmp_path / "house").exists()  # no empty house left behind


def _serve_sdist_with_backend(tmp_path: Path, name: str, backend: Callable[[bytes], bytes],
                              serve_dir: Callable[[Path], LocalIndex]) -> LocalIndex:
    """An index serving one sdist *name* 1.0 whose in-tree backend.py is *backend* of the
    usual one (a build that fails, or writes a wheel that lies)."""
    import io
    import tarfile

    d = tmp_path / "dists"
    sdist = build_sdist(d, name, "1.0")
    with tarfile.open(sdist) as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                   for m in tf.getmembers()]
    with tarfile.open(sdist, "w:gz") as tf:
        for m, data in members:
            if m.name.endswith("backend.py"):
                data = backend(data)
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data))
    h = House.open(tmp_path / "up", create=True)
    add_paths(h, Store.open(tmp_path / "upstore"), [d])
    return serve_dir(h.root)


def test_a_failing_sdist_build_names_the_package(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    # The backend replaced with one that fails.
    server = _serve_sdist_with_backend(
        tmp_path, "broken", lambda data: data + b"\ndef build_wheel(*a, **k):\n"
        b"    raise SystemExit('boom: no compiler')\n", serve_dir)
    with pytest.raises(BuildError) as info:
        build(["broken"], house=tmp_path / "house", store=store, pip_options=_opts(server))
    assert "broken" in str(info.value) and "boom: no compiler" in str(info.value)
    assert info.value.exit_code == 5


@pytest.mark.parametrize(("change", "said"), [
    pytest.param("files['../../evil.pth'] = b'import os'",
                 "member '../../evil.pth': '..' in the path", id="traversal"),
    pytest.param("files['extra.py'] = b'X = 1'",
                 "member 'extra.py' is not in RECORD", id="not-in-record"),
    pytest.param("record[0] = record[0].split(',')[0] + ',sha256=AAAA,3'",
                 "RECORD says sha256=AAAA", id="wrong-hash"),
])
def test_a_built_wheel_that_fails_its_own_record_never_enters_the_store(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex], change: str,
    said: str,
) -> None:
    # A build runs someone's code: its wheel is checked member by member
    # against RECORD before the store sees it (pip refuses such a wheel at
    # install; check must not call a house holding it installable).
    from tests.builders import BACKEND

    anchor = "    record.append(f\"{dist_info}/RECORD,,\")\n"
    assert anchor in BACKEND
    backend = BACKEND.replace(anchor, f"    {change}\n" + anchor)
    if "files[" in change:  # after RECORD is made: the member is not listed
        backend = BACKEND.replace(
            "    with zipfile.ZipFile(", f"    {change}\n    with zipfile.ZipFile(")
    server = _serve_sdist_with_backend(tmp_path, "liar", lambda _: backend.encode(), serve_dir)
    blobs_before = sorted(store.root.glob("blobs/*/*/*"))
    with pytest.raises(BuildError) as info:
        build(["liar"], house=tmp_path / "house", store=store, pip_options=_opts(server))
    assert "liar 1.0 produced a malformed wheel liar-1.0-py3-none-any.whl" in str(info.value)
    assert said in str(info.value)
    assert info.value.exit_code == 5
    assert sorted(store.root.glob("blobs/*/*/*")) == blobs_before
    assert not (tmp_path / "house" / "files" / "liar-1.0-py3-none-any.whl").exists()


def test_a_build_failing_with_a_long_traceback_is_still_a_build_failure(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    # pip's words that say "a build failed" come before the traceback: a long
    # one pushed them out of the tail kept for the message, and the failure
    # was called a resolution failure (exit 1, "check the names").
    server = _serve_sdist_with_backend(
        tmp_path, "deep", lambda data: data + b"\ndef _down(n):\n    if n:\n"
        b"        return _down(n - 1)\n    raise RuntimeError('no compiler')\n"
        b"\ndef get_requires_for_build_wheel(config_settings=None):\n    return _down(60)\n",
        serve_dir)
    with pytest.raises(BuildError) as info:
        build(["deep"], house=tmp_path / "house", store=store, pip_options=_opts(server))
    assert info.value.exit_code == 5
    assert "build failed" in str(info.value)


def test_a_killed_builds_scratch_directory_is_removed_by_the_next_build(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex],
    upstream: LocalIndex,
) -> None:
    # kill -9 (the OOM killer, a CI timeout) while pip builds an sdist: the
    # build's scratch directory (its downloads) stays in the temp dir. The next
    # build removes it; a build still running keeps its own.
    import signal
    import subprocess
    import time

    started = tmp_path / "backend-started"
    server = _serve_sdist_with_backend(
        tmp_path, "slow", lambda data: data + (
            "\nimport pathlib as _p, time as _t\n"
            "def build_wheel(*a, **k):\n"
            f"    _p.Path({str(started)!r}).touch()\n"
            "    _t.sleep(60)\n").encode(), serve_dir)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = isolated_env({"TMPDIR": str(scratch), "WHEELHOUSE_STORE": str(store.root)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "wheelhouse", "build", "slow", "-o", str(tmp_path / "h1"),
         "--index-url", f"{server.url}/simple/"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the sdist build never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = [p.name for p in scratch.iterdir() if p.name.startswith("wheelhouse-build-")]
        assert len(left) == 1  # what the kill left
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # pip, and the backend it runs
    wheelhouse("build", "lib", "-o", str(tmp_path / "h2"), "--index-url",
               f"{upstream.url}/simple/", env=env)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("wheelhouse-")] == []


def test_cli_build_json(tmp_path: Path, store: Store, upstream: LocalIndex) -> None:
    proc = wheelhouse("--store", str(store.root), "build", "lib", "-o", str(tmp_path / "h"),
                      "--index-url", f"{upstream.url}/simple/", "--json", env=isolated_env())
    data = json.loads(proc.stdout)
    assert data["targets"]["host"] == ["lib-2.0-py3-none-any.whl"]
    assert data["downloaded"] == ["lib-2.0-py3-none-any.whl"]



def test_pylock_lists_the_house_files_and_uv_installs_from_it(
    tmp_path: Path, store: Store, upstream: LocalIndex, venv: Venv
) -> None:
    import shutil

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    house = tmp_path / "house"
    build(["app", "srconly"], house=house, store=store, pip_options=_opts(upstream))
    lock = house / "locks" / "pylock.host.toml"
    data = tomllib.loads(lock.read_text())
    assert data["lock-version"] == "1.0"
    manifest = House.open(house).read_manifest().by_filename()
    for package in data["packages"]:
        for wheel in package["wheels"]:
            entry = manifest[wheel["name"]]
            assert wheel["hashes"] == {"sha256": entry.sha256}
            assert (lock.parent / wheel["path"]).resolve() == (house / "files" / wheel["name"])
    upstream.__exit__(None, None, None)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv is not None
    run([uv, "pip", "install", "--offline", "--python", str(venv.python), "-r", str(lock)],
        env=isolated_env())
    assert venv.installed()["srconly"] == "1.0"


def test_lock_with_pip_tools_then_build_from_the_lock(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    from wheelhouse.lock import lock

    source = tmp_path / "requirements.in"
    source.write_text("app\n")
    out = tmp_path / "requirements.txt"
    result = lock([source], output=out, pip_options=_opts(upstream))
    text = out.read_text()
    assert result.pins == 5
    assert "lib==2.0" in text and "--hash=sha256:" in text
    built = build(requirement_files=[out], house=tmp_path / "house", store=store,
                  pip_options=_opts(upstream))
    assert {e.project for e in built.targets["host"]} == {"app", "lib", "native", "fancy",
                                                          "extradep"}


def test_a_lock_names_the_sources_given_not_those_of_this_machines_pip_configuration(
    tmp_path: Path, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelhouse.lock import lock

    (tmp_path / "links").mkdir()
    (tmp_path / "mirror").mkdir()
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {tmp_path / 'links'}\n"
                      f"extra-index-url = {(tmp_path / 'mirror').as_uri()}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    source = tmp_path / "requirements.in"
    source.write_text(f"--find-links {tmp_path / 'team-wheels'}\nlib\n")
    (tmp_path / "team-wheels").mkdir()
    out = tmp_path / "requirements.txt"
    lock([source], output=out, pip_options=_opts(upstream))
    text = out.read_text()
    assert "lib==2.0" in text
    # What the command line and the requirement file named stays; the machine's does not.
    assert f"--index-url {upstream.url}/simple/" in text
    assert f"--find-links {tmp_path / 'team-wheels'}" in text
    assert str(tmp_path / "links") not in text and "mirror" not in text
    # Named in a file, as pip reads them: a relative find-links folder, an index
    # whose URL holds a ${TOKEN} (it goes back in unexpanded), its trusted host.
    monkeypatch.setenv("WH_TEST_TOKEN", "s3cr3t")
    monkeypatch.setenv("PIP_RETRIES", "0")
    sub = tmp_path / "sub"
    (sub / "wheels").mkdir(parents=True)
    (sub / "requirements.in").write_text(
        "--find-links ./wheels\n"
        "--extra-index-url http://me:${WH_TEST_TOKEN}@127.0.0.1:9/extra/\n"
        "--trusted-host 127.0.0.1:9\nlib\n")
    lock([sub / "requirements.in"], output=out, pip_options=_opts(upstream))
    text = out.read_text()
    assert "lib==2.0" in text and "s3cr3t" not in text
    assert "--extra-index-url http://me:${WH_TEST_TOKEN}@127.0.0.1:9/extra/" in text
    assert "--trusted-host 127.0.0.1:9" in text
    assert any(line.startswith("--find-links ") and line.rstrip("/").endswith("wheels")
               for line in text.splitlines()), text


def test_a_lock_keeps_an_index_whose_variable_is_empty_as_pip_read_it(
    tmp_path: Path, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip leaves a ${NAME} set to "" as written (as an unset one), and pip-tools
    # writes the URL pip used: the lock keeps that source, as written.
    from wheelhouse.lock import lock

    monkeypatch.setenv("WH_TEST_EMPTY", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    source = tmp_path / "requirements.in"
    source.write_text("--extra-index-url http://127.0.0.1:9/${WH_TEST_EMPTY}/extra/\nlib\n")
    out = tmp_path / "requirements.txt"
    lock([source], output=out, pip_options=_opts(upstream))
    text = out.read_text()
    assert "lib==2.0" in text
    assert "--extra-index-url http://127.0.0.1:9/${WH_TEST_EMPTY}/extra/" in text.splitlines()


def test_a_lock_keeps_a_command_line_index_with_a_dollar_brace_as_given(
    tmp_path: Path, upstream: LocalIndex
) -> None:
    # pip expands ${NAME} in requirement files only, never in a command-line
    # option: pip used this URL as typed, pip-tools wrote it so, and it stays
    # in the lock as typed even with WH_TEST_VAR set. The same text in a file
    # is expanded, and goes back in as written.
    source = tmp_path / "requirements.in"
    source.write_text("--extra-index-url http://127.0.0.1:9/${WH_TEST_VAR}/file/\nlib\n")
    out = tmp_path / "requirements.txt"
    wheelhouse("lock", "-r", str(source), "-o", str(out),
               "--index-url", f"{upstream.url}/simple/",
               "--extra-index-url", "http://127.0.0.1:9/${WH_TEST_VAR}/cli/",
               env=isolated_env({"WH_TEST_VAR": "expanded", "PIP_RETRIES": "0"}))
    sources = [line for line in out.read_text().splitlines() if line.startswith("--")]
    assert sources == [f"--index-url {upstream.url}/simple/",
                       "--extra-index-url http://127.0.0.1:9/${WH_TEST_VAR}/cli/",
                       "--extra-index-url http://127.0.0.1:9/${WH_TEST_VAR}/file/"]


def test_a_lock_never_holds_a_password_written_into_an_index_url(
    tmp_path: Path, upstream: LocalIndex, caplog: pytest.LogCaptureFixture
) -> None:
    # A lock is committed: credentials typed into a URL (not as ${VAR}) stay out,
    # and never stand in the lock's file even for a moment (pip-tools writes a
    # scratch copy).
    from wheelhouse.lock import lock

    host = upstream.url.removeprefix("http://")
    source = tmp_path / "requirements.in"
    source.write_text(f"--extra-index-url http://me:s3cretpw@{host}/simple/\nlib\n")
    out = tmp_path / "requirements.txt"
    lock([source], output=out,
         pip_options=["--index-url", f"http://user:0therpw@{host}/simple/"])
    text = out.read_text()
    assert "lib==2.0" in text and "s3cretpw" not in text and "0therpw" not in text
    assert f"--index-url http://{host}/simple/" in text
    assert f"--extra-index-url http://{host}/simple/" in text
    assert "credentials in --index-url were left out of the lock" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    # A scratch copy a killed run left goes with the next run; a lock that is
    # a symbolic link is written where it points.
    (tmp_path / ".requirements.txt.4242.tmp").write_text("me:s3cretpw")
    lock([source], output=out, pip_options=["--index-url", f"http://{host}/simple/"])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "real.txt").write_text("# placeholder\n")
    out.unlink()
    out.symlink_to(tmp_path / "locks" / "real.txt")
    lock([source], output=out, pip_options=["--index-url", f"http://{host}/simple/"])
    assert out.is_symlink() and "lib==2.0" in (tmp_path / "locks" / "real.txt").read_text()


def test_a_lock_never_holds_a_password_beside_a_variable_in_an_index_url(
    tmp_path: Path, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ${NAME} elsewhere in the URL (its path here) kept the URL as written,
    # the password typed into it too. Only credentials that are variables stay.
    from wheelhouse.lock import lock

    monkeypatch.setenv("WH_TEST_PATH", "simple")
    monkeypatch.setenv("WH_TEST_TOKEN", "t0ken")
    monkeypatch.setenv("PIP_RETRIES", "0")
    host = upstream.url.removeprefix("http://")
    source = tmp_path / "requirements.in"
    source.write_text(f"--index-url http://me:s3cretpw@{host}/${{WH_TEST_PATH}}/\n"
                      "--extra-index-url http://me:${WH_TEST_TOKEN}@127.0.0.1:9/${WH_TEST_PATH}/\n"
                      "lib\n")
    out = tmp_path / "requirements.txt"
    lock([source], output=out)
    sources = [line for line in out.read_text().splitlines() if line.startswith("--")]
    assert sources == [f"--index-url http://{host}/${{WH_TEST_PATH}}/",
                       "--extra-index-url http://me:${WH_TEST_TOKEN}@127.0.0.1:9/${WH_TEST_PATH}/"]


def test_lock_of_an_unknown_name_says_so_without_a_traceback(
    tmp_path: Path, upstream: LocalIndex
) -> None:
    source = tmp_path / "requirements.in"
    source.write_text("nosuchpkg\n")
    out = wheelhouse("lock", "-r", str(source), "-o", str(tmp_path / "requirements.txt"),
                     "--index-url", f"{upstream.url}/simple/", env=isolated_env(), check=False)
    assert out.returncode != 0
    assert "nosuchpkg" in out.stderr and "Traceback" not in out.stderr
    assert 'File "' not in out.stderr  # no frames either
    assert not (tmp_path / "requirements.txt").exists()


def test_lock_for_another_platform_says_how_instead(tmp_path: Path) -> None:
    from wheelhouse.errors import InvalidTargetError
    from wheelhouse.lock import lock

    with pytest.raises(InvalidTargetError, match="pip-tools can only lock") as info:
        lock(["requirements.in"], output=tmp_path / "x.txt", platform="win_amd64")
    assert "--platform" in str(info.value)


def test_pyproject_dependencies_extras_and_groups(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\ndependencies = ["lib<2"]\n'
        '[project.optional-dependencies]\nfast = ["native"]\n'
        '[dependency-groups]\ntest = ["srconly"]\nall = [{include-group = "test"}, "fancy"]\n'
    )
    proc = wheelhouse("--store", str(store.root), "build", "--project", str(project),
                      "--extra", "fast", "--group", "all", "-o", str(tmp_path / "h"),
                      "--index-url", f"{upstream.url}/simple/", "--json", env=isolated_env())
    files = json.loads(proc.stdout)["targets"]["host"]
    assert {f.split("-")[0] for f in files} == {"lib", "native", "srconly", "fancy"}
    assert "lib-1.0-py3-none-any.whl" in files
    bad = wheelhouse("--store", str(store.root), "build", "--project", str(project),
                     "--group", "nope", "-o", str(tmp_path / "h2"), env=isolated_env(),
                     check=False)
    assert bad.returncode == 1 and "no dependency group 'nope'" in bad.stderr


@pytest.mark.parametrize("index_metadata", [True, False], ids=["pep658", "no-pep658"])
def test_sdists_are_kept_with_their_build_dependencies(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex], index_metadata: bool
) -> None:
    d = tmp_path / "dists"
    build_sdist(d, "needsbuild", "1.0", build_requires=["buildhelper>=1"])
    build_wheel(d, "buildhelper", "1.0")
    up = House.open(tmp_path / "up", create=True)
    add_paths(up, Store.open(tmp_path / "upstore"), [d])
    root = up.root if index_metadata else _without_metadata(up.root, tmp_path / "mirror")
    server = serve_dir(root)
    house = tmp_path / "house"
    build(["needsbuild"], house=house, store=store, pip_options=_opts(server),
          keep_sdists=True)
    files = {e.filename for e in House.open(house).read_manifest().files}
    assert files == {"needsbuild-1.0.tar.gz", "needsbuild-1.0-py3-none-any.whl",
                     "buildhelper-1.0-py3-none-any.whl"}
    if not index_metadata:
        # Fetched by pip for the two isolated builds of the sdist (its metadata,
        # then its wheel), then by the resolution of the build dependencies,
        # whose copy and page the build keeps: not a fourth time.
        assert server.requests.count("GET /files/buildhelper-1.0-py3-none-any.whl") == 3
        assert server.requests.count("GET /simple/buildhelper/") == 3
    server.__exit__(None, None, None)
    # The offline side can build the sdist from the house alone.
    run([sys.executable, "-m", "pip", "wheel", "--no-index", "--find-links",
         str(house / "files"), "--wheel-dir", str(tmp_path / "rebuilt"),
         str(house / "files" / "needsbuild-1.0.tar.gz")], env=isolated_env())
    assert (tmp_path / "rebuilt" / "needsbuild-1.0-py3-none-any.whl").is_file()


def test_network_down_mid_build_keeps_what_finished_and_leaves_the_house_alone(
    tmp_path: Path, store: Store, upstream_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wheelhouse.acquire
    import wheelhouse.upstream

    # The pip path: two pip download processes, one of which meets the outage.
    monkeypatch.setattr(wheelhouse.acquire, "_FILES_PER_PROCESS", 1)
    monkeypatch.setattr(wheelhouse.upstream, "direct_fetcher", lambda *a, **k: None)
    from wheelhouse._pip import SubprocessPip
    from wheelhouse.errors import NetworkError

    server = LocalIndex(upstream_dir).__enter__()
    import threading

    real = SubprocessPip()
    other_done = threading.Event()

    def flaky_pip(args: Sequence[str], *, cwd: Path | None = None) -> PipResult:
        if args[0] != "download":
            return real(args, cwd=cwd)
        if "app-1.0" in Path(args[args.index("-r") + 1]).read_text():
            other_done.wait(60)
            server.__exit__(None, None, None)  # the network goes down mid-build
            return real(args, cwd=cwd)
        try:
            return real(args, cwd=cwd)
        finally:
            other_done.set()

    house = tmp_path / "house"
    with pytest.raises(NetworkError) as info:
        build(["app"], house=house, store=store, pip_options=_opts(server), pip=flaky_pip,
              jobs=2)
    assert "downloading" in str(info.value)
    assert not house.exists()  # not half-written, and no empty house left behind
    assert store.verify().ok
    kept = [d for d in (describe_blob(p) for _, p in store.iter_blobs()) if d is not None]
    assert kept, "the chunk that finished is kept in the store"
    assert all(name != "app" for name, _, _ in kept)


def test_build_records_upstream_upload_time_and_yank(tmp_path: Path, store: Store) -> None:
    """PEP 700 upload times and PEP 592 yanks come from the upstream's own pages,
    so pip's --uploaded-prior-to and uv's --exclude-newer work against the house."""
    from dataclasses import replace

    from wheelhouse.serve import serving

    d = tmp_path / "dists"
    up = House.open(tmp_path / "up", create=True)
    add_paths(up, Store.open(tmp_path / "up-store"),
              [build_wheel(d, "lib", v) for v in ("1.0", "2.0", "3.0")])
    times = {"1.0": "2024-01-01T00:00:00Z", "2.0": "2025-01-01T00:00:00Z",
             "3.0": "2026-01-01T00:00:00Z"}
    m = up.read_manifest()
    up.write_manifest(m.with_files(replace(e, upload_time=times[e.version]) for e in m.files))
    up.reindex()
    up.yank("lib==3.0", reason="broken")

    house = tmp_path / "house"
    with serving(up.root) as url:  # negotiates PEP 691 JSON, which carries upload-time
        for pin in ("lib==1.0", "lib==2.0", "lib==3.0"):
            build([pin], house=house, store=store,
                  pip_options=["--index-url", f"{url}/simple/"])
    entries = {e.version: e for e in House.open(house).read_manifest().files}
    assert {v: e.upload_time for v, e in entries.items()} == times
    assert entries["3.0"].yanked == "broken"
    assert entries["1.0"].yanked is None and entries["2.0"].yanked is None

    with serving(house) as url:
        page = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{url}/simple/lib/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}),
        ).read())
        assert {f["filename"]: f["upload-time"] for f in page["files"]} == {
            f"lib-{v}-py3-none-any.whl": t for v, t in times.items()}
        # pip, against the house, sees only what was uploaded before the cut-off.
        report = tmp_path / "report.json"
        run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--index-url", f"{url}/simple/", "--report", str(report),
             "--uploaded-prior-to", "2024-06-01T00:00:00Z", "lib"])
        chosen = json.loads(report.read_text())["install"]
        assert [i["metadata"]["version"] for i in chosen] == ["1.0"]
        # uv's exclude-newer works the same way.
        uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
        req = tmp_path / "req.in"
        req.write_text("lib\n")
        out = run([uv, "pip", "compile", "--no-header", "--index-url", f"{url}/simple/",
                   "--exclude-newer", "2025-06-01T00:00:00Z", str(req)])
        assert "lib==2.0" in out.stdout


def test_unreachable_index_is_a_network_error(tmp_path: Path) -> None:
    out = wheelhouse("--store", str(tmp_path / "store"), "build", "app", "-o",
                     str(tmp_path / "house"), "--index-url", "http://127.0.0.1:9/simple/",
                     env=isolated_env({"PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}), check=False)
    assert out.returncode == 4, out.stderr
    assert "no package index could be reached: http://127.0.0.1:9/simple/" in out.stderr
    assert "Traceback" not in out.stderr


def test_requirements_with_local_paths_serve_install_and_check_too(
    tmp_path: Path, store: Store, upstream: LocalIndex, venv: Venv
) -> None:
    project = _local_project(tmp_path, ["lib"])
    req = tmp_path / "requirements.txt"
    req.write_text(f"{project}\n")
    house = tmp_path / "house"
    build(requirement_files=[req], house=house, store=store, pip_options=_opts(upstream))
    upstream.__exit__(None, None, None)
    # The same file, elsewhere: the project directory is not there any more.
    moved = tmp_path / "elsewhere" / "mine-1.0"
    moved.parent.mkdir()
    project.rename(moved)
    req.write_text(f"{moved}\n")
    _check_then_install(house, req, venv, {"lib": "2.0", "mine": "1.0"})


def test_a_local_project_with_extras_is_rebuilt_when_edited_and_checked_and_installed(
    tmp_path: Path, store: Store, upstream: LocalIndex, venv: Venv
) -> None:
    # pip's spelling of a local project with extras, "./project[fast]", with a marker.
    project = _local_project(tmp_path, ["lib; extra == 'fast'"])
    req = tmp_path / "requirements.txt"
    req.write_text(f"{project}[fast] ; python_version >= '3'\n")
    house = tmp_path / "house"
    first = build(requirement_files=[req], house=house, store=store, pip_options=_opts(upstream))
    assert {e.filename for e in first.targets["host"]} >= {"mine-1.0-py3-none-any.whl"}
    assert any(e.project == "lib" for e in first.targets["host"])  # the extra's dependency
    assert build(requirement_files=[req], house=house, store=store,
                 pip_options=_opts(upstream)).from_cache
    # Edited, with a new version: seen through the extras, built again.
    pkg_info = project / "PKG-INFO"
    pkg_info.write_text(pkg_info.read_text().replace("Version: 1.0", "Version: 1.1"))
    again = build(requirement_files=[req], house=house, store=store,
                  pip_options=_opts(upstream))
    assert not again.from_cache
    assert "mine-1.1-py3-none-any.whl" in {e.filename for e in again.targets["host"]}
    upstream.__exit__(None, None, None)
    # check and install read the line as the latest wheel built from there, extras kept.
    _check_then_install(house, req, venv, {"lib": "2.0", "mine": "1.1"})


def test_build_from_a_file_index_reads_files_in_place_and_checks_their_hashes(
    tmp_path: Path, store: Store, upstream_dir: Path
) -> None:
    # A local mirror (file:// index) is read where it lies: no copy through pip,
    # the sources untouched, and the index's sha256 still checked byte for byte.
    mirror = tmp_path / "mirror"
    shutil.copytree(upstream_dir, mirror)
    lib = next((mirror / "files").glob("lib-2.0-*.whl"))
    before = {p.name: p.read_bytes() for p in (mirror / "files").iterdir()}
    opts = ["--index-url", (mirror / "simple").as_uri() + "/"]
    result = build(["lib"], house=tmp_path / "house", store=store, pip_options=opts)
    (entry,) = result.targets["host"]
    assert entry.filename == lib.name and entry.origin == lib.as_uri()
    assert {p.name: p.read_bytes() for p in (mirror / "files").iterdir()} == before
    # The same file with other bytes than its index page's hash: refused, named.
    lib.write_bytes(lib.read_bytes() + b"tampered")
    with pytest.raises(WheelhouseError) as info:
        build(["lib"], house=tmp_path / "house2", store=Store.open(tmp_path / "s2", create=True),
              pip_options=opts)
    assert lib.name in str(info.value) and "expected sha256=" in str(info.value)
    assert not (tmp_path / "house2").exists()


def test_files_are_fetched_here_and_pip_takes_over_what_fails(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    # Files with an index hash are fetched by wheelhouse itself; one the server
    # refuses to it is fetched by pip, and the house is the same.
    upstream.refuse = lambda path, agent: "lib-" in path and agent == "wheelhouse"
    said: list[str] = []
    try:
        result = build(["app"], house=tmp_path / "house", store=store,
                       pip_options=_opts(upstream), progress=said.append)
    finally:
        upstream.refuse = None
    # Progress: files done of the total, bytes and rate; then what pip takes over.
    fetched = [line for line in said if line.startswith("downloaded ")]
    assert fetched and " file(s), " in fetched[-1] and fetched[-1].endswith(" MB/s")
    assert "pip downloads 1 file(s)" in said
    got = {e.filename for e in result.targets["host"]}
    assert any(f.startswith("lib-2.0-") for f in got) and any(f.startswith("app-") for f in got)
    files = [(p, a) for p, a in upstream.agents if p.startswith("/files/")]
    assert ("wheelhouse" in {a for p, a in files if "/app-" in p})
    lib = {a.split("/")[0] for p, a in files if "/lib-2.0-" in p}
    assert lib == {"wheelhouse", "pip"}  # refused here, then fetched by pip
    assert House.open(tmp_path / "house").verify() == []


def test_a_proxy_in_pips_configuration_leaves_downloads_to_pip(
    tmp_path: Path, store: Store, upstream: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading
    import urllib.error

    proxied: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        """A forward proxy for plain HTTP: what pip sends it, it fetches."""

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            proxied.append(self.path)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            request = urllib.request.Request(self.path, headers={
                k: v for k, v in self.headers.items() if k.lower() in ("user-agent", "accept")})
            try:
                with opener.open(request, timeout=30) as r:
                    status, headers, body = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                status, headers, body = e.code, e.headers, e.read()
            self.send_response(status)
            self.send_header("Content-Type", headers.get("Content-Type", "text/html"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        conf = tmp_path / "pip.conf"
        conf.write_text(f"[global]\nproxy = http://127.0.0.1:{proxy.server_address[1]}\n")
        monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
        build(["lib==1.0"], house=tmp_path / "house", store=store,
              pip_options=_opts(upstream))
    finally:
        proxy.shutdown()
        proxy.server_close()
    files = [(p, a) for p, a in upstream.agents if p.startswith("/files/")]
    assert files and {a.split("/")[0] for _, a in files} == {"pip"}
    assert any("/files/lib-1.0-" in p for p in proxied)  # through the proxy, as configured
    # Everything, the pages read for upload times included, went through it.
    assert len(proxied) == len(upstream.agents)


@pytest.mark.parametrize("index_metadata", [True, False], ids=["pep658", "no-pep658"])
def test_a_file_served_with_other_bytes_is_refused_naming_both_hashes(
    tmp_path: Path, store: Store, upstream_dir: Path, serve_dir: Callable[[Path], LocalIndex],
    index_metadata: bool,
) -> None:
    # With PEP 658 metadata the build downloads the file; without, pip does while
    # it resolves: the same integrity error either way.
    mirror = tmp_path / "mirror"
    if index_metadata:
        shutil.copytree(upstream_dir, mirror)
    else:
        _without_metadata(upstream_dir, mirror)
    lib = next((mirror / "files").glob("lib-2.0-*.whl"))
    good = hashlib.sha256(lib.read_bytes()).hexdigest()
    lib.write_bytes(lib.read_bytes() + b"tampered")
    server = serve_dir(mirror)
    with pytest.raises(IntegrityError) as info:
        build(["lib==2.0"], house=tmp_path / "house", store=store, pip_options=_opts(server))
    message = str(info.value)
    assert lib.name in message and good in message
    assert hashlib.sha256(lib.read_bytes()).hexdigest() in message
    assert not (tmp_path / "house").exists()
    assert list(store.iter_blobs()) == []


def _without_metadata(upstream_dir: Path, mirror: Path) -> Path:
    """A copy of the upstream index whose pages advertise no PEP 658 metadata, as many
    mirrors serve them: pip then downloads each wheel it considers to read its metadata."""
    import re

    shutil.copytree(upstream_dir, mirror)
    for page in (mirror / "simple").glob("*/index.html"):
        page.write_text(re.sub(r' data-(core|dist-info)-metadata="[^"]*"', "",
                               page.read_text()))
    for meta in (mirror / "files").glob("*.metadata"):
        meta.unlink()
    return mirror


def test_what_pip_downloads_while_it_resolves_is_not_downloaded_again(
    tmp_path: Path, store: Store, upstream_dir: Path, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    server = serve_dir(_without_metadata(upstream_dir, tmp_path / "mirror"))
    said: list[str] = []
    result = build(["app"], house=tmp_path / "house", store=store, pip_options=_opts(server),
                   progress=said.append)
    got = {e.filename for e in result.targets["host"]}
    assert {f.split("-")[0] for f in got} == {"app", "lib", "native", "fancy", "extradep"}
    # Every wheel and every project page crossed the network once: pip fetched
    # them to resolve, and the build kept them (pages give the upload times).
    gets = [r.split()[1] for r in server.requests if r.startswith("GET ")]
    files = [g for g in gets if g.startswith("/files/")]
    assert sorted(files) == sorted(f"/files/{f}" for f in got)
    pages = [g for g in gets if g.startswith("/simple/")]
    assert len(pages) == len(set(pages))
    assert f"{len(got)} file(s) pip downloaded while it resolved are kept" in said
    assert set(result.downloaded) == got
    house = House.open(tmp_path / "house")
    assert house.verify() == []
    assert {e.filename for e in house.read_manifest().files if e.yanked is None} == got


def test_a_pip_whose_internals_differ_still_builds(
    tmp_path: Path, store: Store, upstream_dir: Path, serve_dir: Callable[[Path], LocalIndex],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import wheelhouse._pip

    # The keeping wrapper finds no such function: pip runs as it is, and the
    # build downloads what pip downloaded and deleted.
    monkeypatch.setattr(wheelhouse._pip, "_KEEPING", wheelhouse._pip._KEEPING.replace(
        "collector._get_index_content", "collector._no_such_function"))
    server = serve_dir(_without_metadata(upstream_dir, tmp_path / "mirror"))
    result = build(["lib==2.0"], house=tmp_path / "house", store=store,
                   pip_options=_opts(server))
    assert [e.filename for e in result.targets["host"]] == ["lib-2.0-py3-none-any.whl"]
    files = [r for r in server.requests if r.startswith("GET /files/")]
    assert files == ["GET /files/lib-2.0-py3-none-any.whl"] * 2
    assert House.open(tmp_path / "house").verify() == []


def test_pip_reads_json_pages_without_the_wheels_the_target_cannot_use(
    tmp_path: Path, upstream_dir: Path
) -> None:
    # pip builds a Link for every file of a JSON page and rejects each wheel
    # whose tags the target cannot use (most of its CPU for numpy's page).
    # The wrapper drops those from the page first: pip resolves the same, and
    # never sees them.
    from wheelhouse._pip import _KEEPING
    from wheelhouse.serve import serving

    reports = {}
    with serving(upstream_dir) as url:
        for trim in ("1", ""):
            keep = tmp_path / f"keep{trim}"
            keep.mkdir()
            report = tmp_path / f"report{trim}.json"
            proc = run([sys.executable, "-c", _KEEPING, "install", "--dry-run",
                        "--ignore-installed", "-vv", "--report", str(report),
                        "--index-url", f"{url}/simple/", "app"],
                       env=isolated_env({"WHEELHOUSE_PIP_KEEP": str(keep),
                                         "WHEELHOUSE_PIP_TRIM": trim}))
            skipped = [line for line in (proc.stdout + proc.stderr).splitlines()
                       if "none of the wheel's tags" in line]
            reports[trim] = ([(i["metadata"]["name"], i["download_info"]["url"])
                              for i in json.loads(report.read_text())["install"]], skipped)
            # The kept copy of every page is the whole page, as the index sent it.
            kept = [json.loads(line) for line in (keep / "kept.jsonl").read_text().splitlines()]
            native = next(k for k in kept if k.get("page", "").endswith("/native/"))
            assert native["content_type"].startswith("application/vnd.pypi.simple.v1+json")
            assert len(json.loads(Path(native["path"]).read_bytes())["files"]) == 3
    (trimmed, none_skipped), (whole, skipped) = reports["1"], reports[""]
    assert trimmed == whole and any(name == "native" for name, _ in trimmed)
    assert none_skipped == [] and skipped, "the target cannot use some 'native' wheels"


def test_a_build_from_json_pages_gets_what_one_from_html_pages_gets(
    tmp_path: Path, upstream_dir: Path, upstream: LocalIndex
) -> None:
    from wheelhouse.serve import serving

    got = {}
    with serving(upstream_dir) as url:  # PEP 691 JSON pages, as pypi.org serves them
        for name, index in (("json", f"{url}/simple/"), ("html", f"{upstream.url}/simple/")):
            result = build(["app"], house=tmp_path / name, store=Store.open(tmp_path / "s"),
                           pip_options=["--index-url", index], targets=[
                               Target.host(), Target.parse(python_version="3.12",
                                                           platform=AARCH64,
                                                           implementation="cp")])
            got[name] = {t: sorted(e.filename for e in entries)
                         for t, entries in result.targets.items()}
    assert got["json"] == got["html"]
    assert any("aarch64" in f for files in got["json"].values() for f in files)


def test_read_kept_takes_only_files_inside_its_folder(tmp_path: Path) -> None:
    from wheelhouse._pip import read_kept

    kept = tmp_path / "kept"
    (kept / "0").mkdir(parents=True)
    (kept / "0" / "a-1.0-py3-none-any.whl").write_bytes(b"a")
    (kept / "1").write_bytes(b"<html></html>")
    records = [
        {"file": "a-1.0-py3-none-any.whl", "sha256": "ab" * 32,
         "path": str(kept / "0" / "a-1.0-py3-none-any.whl")},
        {"file": "evil.whl", "sha256": "cd" * 32, "path": str(tmp_path / "x" / "evil.whl")},
        {"file": "b.whl", "sha256": "ef" * 32, "path": str(kept / "0" / ".." / ".." / "b.whl")},
        {"page": "http://i/simple/a/", "url": "http://i/simple/a/", "content_type": "text/html",
         "path": str(kept / "1")},
        {"page": "http://i/simple/b/", "url": "http://i/simple/b/", "content_type": "text/html",
         "path": "/etc/passwd"},
    ]
    (kept / "kept.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"file": "cut sh')
    got = read_kept(kept)
    assert got.files == {("a-1.0-py3-none-any.whl", "ab" * 32):
                         kept / "0" / "a-1.0-py3-none-any.whl"}
    assert got.pages == {"http://i/simple/a/": ("http://i/simple/a/", "text/html", kept / "1")}
    assert read_kept(tmp_path / "nothing-here").files == {}


def test_a_kept_sdist_is_checked_against_the_hash_the_index_gives(
    tmp_path: Path, store: Store, upstream_dir: Path, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    # pip checks a download against the user's --hash, not the index's; the
    # copy pip leaves is checked again before it is built, and the index's
    # wrong hash is an integrity error, as for a file fetched by the build.
    mirror = _without_metadata(upstream_dir, tmp_path / "mirror")
    sdist = mirror / "files" / "srconly-1.0.tar.gz"
    good = hashlib.sha256(sdist.read_bytes()).hexdigest()
    page = mirror / "simple" / "srconly" / "index.html"
    page.write_text(page.read_text().replace(good, "0" * 64))
    server = serve_dir(mirror)
    req = tmp_path / "requirements.txt"
    req.write_text(f"srconly==1.0 --hash=sha256:{good}\n")
    with pytest.raises(IntegrityError) as info:
        build(requirement_files=[req], house=tmp_path / "house", store=store,
              pip_options=_opts(server))
    message = str(info.value)
    assert "srconly" in message and good in message and "0" * 64 in message
    assert not (tmp_path / "house").exists()
    assert list(store.iter_blobs()) == []


def test_ctrl_c_during_a_build_lets_pip_clean_up_after_itself(
    tmp_path: Path, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    import os
    import signal
    import subprocess
    import time

    d = tmp_path / "dists"
    # sdists: pip builds each one's metadata in a fresh environment of its own,
    # so at any moment it has temp directories to remove.
    build_wheel(d, "buildhelper", "1.0")
    for i in range(60):
        build_sdist(d, f"many{i}", "1.0", build_requires=["buildhelper"])
    up = House.open(tmp_path / "up", create=True)
    add_paths(up, Store.open(tmp_path / "upstore"), [d])
    mirror = _without_metadata(up.root, tmp_path / "mirror")  # pip downloads as it resolves
    server = serve_dir(mirror)
    temp = tmp_path / "temp"
    temp.mkdir()
    req = tmp_path / "requirements.txt"
    req.write_text("".join(f"many{i}\n" for i in range(60)))
    env = isolated_env({"TMPDIR": str(temp), "WHEELHOUSE_STORE": str(tmp_path / "store")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "wheelhouse", "build", "-r", str(req), "-o",
         str(tmp_path / "house"), "--index-url", f"{server.url}/simple/"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    deadline = time.monotonic() + 60
    while (not any(p.name.startswith("pip-") for p in temp.iterdir())
           and proc.poll() is None and time.monotonic() < deadline):
        time.sleep(0.01)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole group
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    left = [p.name for p in temp.iterdir() if p.name.startswith("pip-")]
    assert left == []


def test_an_index_whose_pep658_metadata_is_not_the_wheels_is_refused(
    tmp_path: Path, store: Store, upstream_dir: Path, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    # The index says app needs only lib (its own .metadata, hash and all); the
    # wheel says more. pip resolves with the index's copy: the house would lack
    # what app needs.
    mirror = tmp_path / "mirror"
    shutil.copytree(upstream_dir, mirror)
    meta = mirror / "files" / "app-1.0-py3-none-any.whl.metadata"
    old_sha = hashlib.sha256(meta.read_bytes()).hexdigest()
    lines = [line for line in meta.read_text().splitlines(keepends=True)
             if not line.startswith("Requires-Dist:") or "lib" in line]
    meta.write_text("".join(lines))
    new_sha = hashlib.sha256(meta.read_bytes()).hexdigest()
    for page in (mirror / "simple" / "app").iterdir():
        page.write_text(page.read_text().replace(old_sha, new_sha))
    server = serve_dir(mirror)
    with pytest.raises(IntegrityError) as info:
        build(["app"], house=tmp_path / "house", store=store, pip_options=_opts(server))
    message = str(info.value)
    assert "app-1.0-py3-none-any.whl" in message and "PEP 658" in message
    assert new_sha in message and old_sha in message
    assert not (tmp_path / "house").exists()
    assert list(store.iter_blobs()) == []


def test_requirement_file_options_are_read_as_pip_reads_them(tmp_path: Path) -> None:
    # optparse's ways, which pip accepts: a short option's value right after
    # it, a unique prefix of a long option.
    from wheelhouse.errors import InvalidInputError
    from wheelhouse.requirements import scan_requirement_files

    (tmp_path / "other.txt").write_text("lib\n")
    (tmp_path / "links").mkdir()
    main = tmp_path / "requirements.txt"
    main.write_text("-rother.txt\n-f./links\n--find=./links2\n"
                    "--extra=http://127.0.0.1:9/simple/\n--trusted host.example\n"
                    "app -Ckey=value\n")
    scan = scan_requirement_files([main])
    assert scan.requirements == ["lib", "app"]
    assert "./links" in scan.find_links and "./links2" in scan.find_links
    assert scan.index_options == ["--extra-index-url", "http://127.0.0.1:9/simple/"]
    assert scan.trusted_hosts == ["host.example"]
    # An ambiguous prefix is no option at all (pip: "ambiguous option").
    main.write_text("--no\napp\n")
    with pytest.raises(InvalidInputError,
                       match=r"requirements\.txt:1: ambiguous option: --no \(--no-binary"):
        scan_requirement_files([main])


def test_pip_26_3_requirement_file_options_build_check_and_install(
        tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex],
        venv: Venv) -> None:
    # pip 26.3's --all-releases / --only-final / --no-require-hashes /
    # --pypi-url in a requirements file: build hands the file to pip, and
    # check and install read the switches as pip does (they were "unknown
    # option" before).
    d = tmp_path / "dists"
    h = House.open(tmp_path / "upstream", create=True)
    add_paths(h, store, [build_wheel(d, "lib", "1.0"), build_wheel(d, "lib", "2.0b1"),
                         build_wheel(d, "other", "1.0"), build_wheel(d, "other", "2.0b1")])
    index = serve_dir(h.root)
    req = tmp_path / "requirements.txt"
    req.write_text(f"--pypi-url {index.url}/simple/\n--pre\n--only-final other\n"
                   "--no-require-hashes\nlib\nother\n")
    house = tmp_path / "house"
    result = build(requirement_files=[req], house=house, store=store)
    assert sorted(e.filename for e in result.targets["host"]) == [
        "lib-2.0b1-py3-none-any.whl", "other-1.0-py3-none-any.whl"]
    _check_then_install(house, req, venv, {"lib": "2.0b1", "other": "1.0"})


def test_pip_26_3_requirement_file_options_are_read_and_checked(tmp_path: Path) -> None:
    from wheelhouse.errors import InvalidInputError
    from wheelhouse.requirements import scan_requirement_files

    main = tmp_path / "requirements.txt"
    main.write_text("--pypi-url=http://127.0.0.1:9/simple/\n--all-releases lib,other\n"
                    "--pre\n--only-final=:all:\n--no-require-hashes\napp\n")
    scan = scan_requirement_files([main])
    assert scan.requirements == ["app"]
    assert scan.index_options == ["--index-url", "http://127.0.0.1:9/simple/"]
    assert scan.release_control == [("all_releases", "lib,other"), ("pre", ""),
                                    ("only_final", ":all:")]
    assert scan.no_require_hashes
    main.write_text("app\n--only-final\n")
    with pytest.raises(InvalidInputError,
                       match=r"requirements\.txt:2: --only-final option requires 1 argument"):
        scan_requirement_files([main])
    main.write_text("--require-hashes\n--no-require-hashes\napp\n")
    with pytest.raises(InvalidInputError, match="mutually exclusive"):
        scan_requirement_files([main])


def test_a_wheel_whose_member_cannot_be_read_is_an_invalid_distribution(tmp_path: Path) -> None:
    from tests.builders import damage_member
    from wheelhouse.dists import check_wheel_contents
    from wheelhouse.errors import InvalidDistributionError
    from wheelhouse.filenames import parse_filename

    wheel = build_wheel(tmp_path, "dmg", "1.0", files={"dmg.py": b"X = 1\n" * 500})
    check_wheel_contents(wheel, parse_filename(wheel.name))
    damage_member(wheel, "dmg.py", how="data")
    with pytest.raises(InvalidDistributionError, match="not a readable wheel"):
        check_wheel_contents(wheel, parse_filename(wheel.name))


def test_two_indexes_offering_one_file_name_with_different_bytes_are_said(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pip takes one of the two without a word; the build says they disagree.
    servers = []
    for n, padding in enumerate((0, 10)):
        d = tmp_path / f"dists{n}"
        build_wheel(d, "twice", "1.0", padding=padding)
        h = House.open(tmp_path / f"up{n}", create=True)
        add_paths(h, Store.open(tmp_path / f"upstore{n}"), [d])
        servers.append(serve_dir(h.root))
    first, second = servers
    result = build(["twice"], house=tmp_path / "house", store=store,
                   pip_options=[*_opts(first), "--extra-index-url", f"{second.url}/simple/"])
    (entry,) = result.targets["host"]
    assert "twice-1.0-py3-none-any.whl: the indexes disagree about its bytes" in caplog.text
    assert f"pip took sha256={entry.sha256}" in caplog.text
    # One index alone: nothing said.
    caplog.clear()
    build(["twice"], house=tmp_path / "house2", store=store, pip_options=_opts(first))
    assert "disagree" not in caplog.text


def test_build_reads_constraint_files_first_as_pip_does(tmp_path: Path, store: Store) -> None:
    # pip reads -c files before -r files: the requirement file's --index-url,
    # read last, is the one it uses; the build names that one when nothing
    # answers (it named the constraint file's).
    con = tmp_path / "c.txt"
    con.write_text("--index-url http://127.0.0.1:9/from-constraints/\n")
    req = tmp_path / "r.txt"
    req.write_text("--index-url http://127.0.0.1:9/from-requirements/\ndemo\n")
    out = wheelhouse("--store", str(store.root), "build", "-r", str(req), "-c", str(con),
                     "-o", str(tmp_path / "house"),
                     env=isolated_env({"PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}), check=False)
    assert out.returncode != 0
    assert "from-requirements" in out.stderr and "from-constraints" not in out.stderr, out.stderr


def test_a_local_project_touched_but_not_changed_is_not_built_again(
    tmp_path: Path, store: Store, upstream: LocalIndex
) -> None:
    # A CI job's fresh checkout, a 'touch', a Docker COPY: every file has a new
    # time and the same bytes. The project was built again, its wheel's zip
    # times differed, and the house refused the same name with other bytes.
    project = _local_project(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text(f"{project}\n")
    house = tmp_path / "house"
    build(requirement_files=[req], house=house, store=store, pip_options=_opts(upstream))
    later = time.time() + 3600
    for path in project.rglob("*"):
        os.utime(path, (later, later))
    again = build(requirement_files=[req], house=house, store=store,
                  pip_options=_opts(upstream))
    assert again.from_cache
    assert [e.filename for e in again.targets["host"]] == ["mine-1.0-py3-none-any.whl"]
