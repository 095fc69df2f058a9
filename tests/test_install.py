"""wheelhouse install: from a house into real venvs, no pip, compared with pip's own result."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.tags import sys_tags

from tests.builders import build_wheel
from tests.conftest import Venv, isolated_env, run, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.house import House
from wheelhouse.install import JOURNAL_NAME
from wheelhouse.store import Store  # noqa: TC001 - fixture annotations

HOST_TAG = str(next(iter(sys_tags())))


def make_house(root: Path, store: Store, wheels: list[Path]) -> Path:
    house = House.open(root, create=True)
    add_paths(house, store, wheels)
    return root


def site_packages(venv: Venv) -> Path:
    out = run([str(venv.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return Path(out.stdout.strip())


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def new_venv(path: Path, *, with_pip: bool = False) -> Venv:
    args = [sys.executable, "-m", "venv", str(path)]
    if not with_pip:
        args.insert(3, "--without-pip")
    run(args)
    return Venv(path)


@pytest.fixture
def app_house(tmp_path: Path, store: Store) -> Path:
    d = tmp_path / "dists"
    wheels = [
        build_wheel(d, "app", "1.0", requires_dist=[
            "lib>=1", "winonly; sys_platform == 'win32'", "speedup; extra == 'fast'"],
            console_scripts={"app-hello": "app:main"},
            files={"app/__init__.py": b"def main():\n    print('hello from app')\n",
                   "app/sub/mod.py": b"X = 1\n"}),
        build_wheel(d, "lib", "1.0"),
        # Newer, but for a Python that does not exist: never chosen.
        build_wheel(d, "lib", "2.0", requires_python="<3"),
        build_wheel(d, "speedup", "1.0", tag=HOST_TAG),
        build_wheel(d, "speedup", "1.0", tag="cp311-cp311-win_amd64"),
    ]
    return make_house(tmp_path / "house", store, wheels)


def test_install_matches_pip_and_runs(tmp_path: Path, app_house: Path) -> None:
    ours = new_venv(tmp_path / "ours")
    theirs = new_venv(tmp_path / "theirs")

    out = wheelhouse("install", str(app_house), "app[fast]", "--python", str(ours.python),
                     env=isolated_env())
    theirs.pip("install", "--no-index", "--find-links", str(app_house / "files"), "app[fast]")

    assert ours.installed() == theirs.installed() == {"app": "1.0", "lib": "1.0", "speedup": "1.0"}
    assert "installed 3" in out.stdout
    # Importable, console script runs with the venv's interpreter.
    run([str(ours.python), "-c", "import app, lib, speedup, app.sub.mod"])
    assert run([str(ours.bin / "app-hello")]).stdout == "hello from app\n"
    site = site_packages(ours)
    dist_info = site / "app-1.0.dist-info"
    assert (dist_info / "INSTALLER").read_text() == "wheelhouse\n"
    assert (dist_info / "REQUESTED").exists()
    assert not (site / "lib-1.0.dist-info" / "REQUESTED").exists()
    # The host wheel of speedup was installed, not the Windows one.
    wheel_txt = (site / "speedup-1.0.dist-info" / "WHEEL").read_text()
    assert HOST_TAG in wheel_txt
    # Bytecode compiled by the venv's interpreter and listed in RECORD.
    record = (dist_info / "RECORD").read_text()
    tag = sys.implementation.cache_tag
    assert f"app/__pycache__/__init__.{tag}.pyc" in record
    assert (site / "app" / "__pycache__" / f"__init__.{tag}.pyc").is_file()
    # Every file RECORD lists exists; every installed file is in RECORD.
    listed = {row.split(",")[0] for row in record.splitlines()}
    assert all((site / p).resolve().exists() for p in listed)


def test_install_into_venv_with_pip_inside(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v", with_pip=True)
    before = venv.installed()
    assert "pip" in before
    wheelhouse("install", str(app_house), "app", "--python", str(venv.python),
                "--no-compile", env=isolated_env())
    after = venv.installed()
    assert after == {**before, "app": "1.0", "lib": "1.0"}
    # pip sees a consistent environment.
    check = run([str(venv.python), "-m", "pip", "check"])
    assert "No broken requirements" in check.stdout
    assert not list(site_packages(venv).rglob("app/__pycache__"))


def test_active_venv_is_the_default(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(app_house), "lib", env=isolated_env({"VIRTUAL_ENV": str(venv.root)}))
    assert venv.installed() == {"lib": "1.0"}


def test_skip_exact_version_and_replace_others(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    wheels = [
        build_wheel(d, "lib", "1.0", files={"lib/__init__.py": b"V = 1\n", "lib/old.py": b""}),
        build_wheel(d, "lib", "2.0", files={"lib/__init__.py": b"V = 2\n"}),
    ]
    house = make_house(tmp_path / "house", store, wheels)
    venv = new_venv(tmp_path / "v")
    env = isolated_env()
    wheelhouse("install", str(house), "lib==1.0", "--python", str(venv.python), env=env)
    site = site_packages(venv)
    assert (site / "lib" / "old.py").exists()

    again = wheelhouse("install", str(house), "lib==1.0", "--python", str(venv.python), env=env)
    assert "already installed 1: lib-1.0" in again.stdout

    up = wheelhouse("install", str(house), "lib", "--python", str(venv.python), env=env)
    assert "replaced lib 1.0 -> 2.0" in up.stdout
    assert venv.installed() == {"lib": "2.0"}
    assert not (site / "lib" / "old.py").exists()
    assert not (site / "lib-1.0.dist-info").exists()
    assert not list(site.glob("lib/__pycache__/old.*"))
    assert run([str(venv.python), "-c", "import lib; print(lib.V)"]).stdout == "2\n"
    assert not list(site.glob(".wheelhouse-*"))


def test_dry_run_changes_nothing(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    before = tree(venv.root)
    out = wheelhouse("install", str(app_house), "app", "--python", str(venv.python),
                     "--dry-run", "--json", env=isolated_env())
    report = json.loads(out.stdout)
    assert sorted(i["name"] for i in report["installed"]) == ["app", "lib"]
    assert tree(venv.root) == before
    assert site.is_dir()


@pytest.mark.parametrize(
    ("wheels", "request_", "message"),
    [
        pytest.param([("app", "1.0", ["missing-dep>=1"], None, "py3-none-any")], "app",
                     "missing-dep>=1 (required by app==1.0): not in the house", id="missing-dep"),
        pytest.param([("cext", "1.0", [], None, "cp311-cp311-win_amd64")], "cext",
                     "no wheel for the platform", id="wrong-platform"),
        pytest.param([("old", "1.0", [], "<3.0", "py3-none-any")], "old",
                     "every wheel requires Python <3.0", id="requires-python"),
        pytest.param([("lib", "1.0", [], None, "py3-none-any")], "lib>=2",
                     "the house has 1.0; none satisfies >=2", id="version-excluded"),
    ],
)
def test_unsatisfiable_installs_nothing(
    tmp_path: Path, store: Store, wheels: list[tuple[str, str, list[str], str | None, str]],
    request_: str, message: str,
) -> None:
    d = tmp_path / "dists"
    built = [build_wheel(d, "ok", "1.0")]
    built += [build_wheel(d, n, v, requires_dist=r, requires_python=rp, tag=t)
              for n, v, r, rp, t in wheels]
    house = make_house(tmp_path / "house", store, built)
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    out = wheelhouse("install", str(house), "ok", request_, "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 1, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert tree(venv.root) == before


def test_extras_only_dependency(tmp_path: Path, app_house: Path) -> None:
    plain = new_venv(tmp_path / "plain")
    wheelhouse("install", str(app_house), "app", "--python", str(plain.python),
               "--no-compile", env=isolated_env())
    assert "speedup" not in plain.installed()


def _rewrite_member(wheel: Path, member: str, data: bytes, *, fix_record: bool) -> None:
    with zipfile.ZipFile(wheel) as zf:
        items = {i.filename: zf.read(i) for i in zf.infolist()}
    items[member] = data
    if fix_record:
        dist_info = next(n.split("/")[0] for n in items if n.endswith(".dist-info/RECORD"))
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines = [ln for ln in items[f"{dist_info}/RECORD"].decode().splitlines()
                 if not ln.startswith(member + ",")]
        lines.insert(0, f"{member},sha256={digest},{len(data)}")
        items[f"{dist_info}/RECORD"] = ("\n".join(lines) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, content in items.items():
            zf.writestr(name, content)


def test_record_mismatch_refused_and_nothing_installed(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    good = build_wheel(d, "good", "1.0", files={f"good/m{i}.py": b"x = 1\n" for i in range(50)})
    bad = build_wheel(d, "bad", "1.0", requires_dist=["good"],
                      files={"bad/__init__.py": b"SAFE = True\n", "bad/z.py": b"z = 1\n"})
    _rewrite_member(bad, "bad/z.py", b"import os  # tampered\n", fix_record=False)
    house = make_house(tmp_path / "house", store, [good, bad])
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)

    out = wheelhouse("install", str(house), "bad", "--python", str(venv.python),
                     env=isolated_env(), check=False)

    assert out.returncode == 3, out.stderr
    assert "bad-1.0-py3-none-any.whl" in out.stderr
    assert "bad/z.py" in out.stderr and "RECORD" in out.stderr
    assert tree(venv.root) == before  # the good wheel was rolled back too


def test_zip_slip_refused(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    evil = build_wheel(d, "evil", "1.0")
    _rewrite_member(evil, "../../../../escaped.py", b"pwned = 1\n", fix_record=True)
    house = make_house(tmp_path / "house", store, [evil])
    venv = new_venv(tmp_path / "v")
    before = tree(tmp_path)
    out = wheelhouse("install", str(house), "evil", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert "'..' in the path" in out.stderr
    assert tree(tmp_path) == before
    assert not list(tmp_path.rglob("escaped.py"))


def test_wheel_changed_in_house_is_refused(tmp_path: Path, app_house: Path) -> None:
    lib = app_house / "files" / "lib-1.0-py3-none-any.whl"
    data = lib.read_bytes()
    lib.unlink()  # a hard link to the store: replace it, never edit the blob
    lib.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    venv = new_venv(tmp_path / "v")
    out = wheelhouse("install", str(app_house), "lib", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3
    assert "hash mismatch" in out.stderr and "lib-1.0-py3-none-any.whl" in out.stderr


def test_hash_mode_requires_matching_hashes(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v")
    manifest = House.open(app_house).read_manifest().by_filename()
    good = manifest["lib-1.0-py3-none-any.whl"].sha256
    req = tmp_path / "req.txt"
    req.write_text(f"lib==1.0 --hash=sha256:{good}\n")
    wheelhouse("install", str(app_house), "-r", str(req), "--python", str(venv.python),
               env=isolated_env())
    assert venv.installed() == {"lib": "1.0"}

    other = new_venv(tmp_path / "other")
    req.write_text(f"lib==1.0 --hash=sha256:{'0' * 64}\n")
    out = wheelhouse("install", str(app_house), "-r", str(req), "--python", str(other.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "--hash" in out.stderr
    assert other.installed() == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--python", "/etc/passwd"], "is not an executable Python interpreter"),
        (["--python", "/nonexistent/python"], "no such interpreter"),
        ([], "no virtual environment is active"),
    ],
)
def test_bad_interpreter(app_house: Path, args: list[str], message: str) -> None:
    env = isolated_env()
    env.pop("VIRTUAL_ENV", None)
    out = wheelhouse("install", str(app_house), "lib", *args, env=env, check=False)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_not_a_python_script(tmp_path: Path, app_house: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    out = wheelhouse("install", str(app_house), "lib", "--python", str(fake),
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "is not a Python interpreter wheelhouse can use" in out.stderr


def test_system_interpreter_needs_consent(app_house: Path) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    out = wheelhouse("install", str(app_house), "lib", "--python", str(base), "--dry-run",
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "is a system interpreter" in out.stderr
    assert "--break-system-packages" in out.stderr


def test_target_and_prefix(tmp_path: Path, app_house: Path) -> None:
    target = tmp_path / "t"
    wheelhouse("install", str(app_house), "app", "--target", str(target), env=isolated_env())
    assert (target / "app" / "__init__.py").is_file()
    assert (target / "bin" / "app-hello").is_file()
    env = isolated_env({"PYTHONPATH": str(target)})
    run([sys.executable, "-c", "import app, lib"], env=env)

    prefix = tmp_path / "p"
    wheelhouse("install", str(app_house), "lib", "--prefix", str(prefix), env=isolated_env())
    assert list(prefix.rglob("lib.py"))
    assert all(p.is_relative_to(prefix) for p in prefix.rglob("*"))


def test_read_only_environment(tmp_path: Path, app_house: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    if os.geteuid() == 0:
        # Root writes through file modes; an immutable directory stops even root.
        made = run(["chattr", "+i", str(parent)], check=False)
        if made.returncode != 0:  # pragma: no cover - file systems without attributes
            pytest.skip(f"running as root and chattr +i failed: {made.stderr.strip()}")
    else:
        parent.chmod(0o555)
    try:
        out = wheelhouse("install", str(app_house), "lib", "--target", str(parent / "t"),
                         env=isolated_env(), check=False)
    finally:
        if os.geteuid() == 0:
            run(["chattr", "-i", str(parent)])
        parent.chmod(0o755)
    assert out.returncode == 1, out.stderr
    assert "the environment is read-only" in out.stderr
    assert list(parent.iterdir()) == []


def test_interrupted_install_is_completed(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    # What a SIGKILL half-way leaves: the journal, and part of lib's files.
    site.mkdir(parents=True, exist_ok=True)
    (site / JOURNAL_NAME).write_text(json.dumps({"version": 1, "installing": {"lib": "1.0"}}))
    (site / "lib.py").write_text("half")
    out = wheelhouse("install", str(app_house), "lib", "--python", str(venv.python),
                     env=isolated_env())
    assert "completed the interrupted install of lib" in out.stdout
    assert not (site / JOURNAL_NAME).exists()
    assert (site / "lib.py").read_text() == '__version__ = "1.0"\n'
    assert venv.installed() == {"lib": "1.0"}


def test_sigkill_then_rerun_completes(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    wheels = [build_wheel(d, f"pkg{i}", "1.0", padding=2_000_000) for i in range(12)]
    wheels.append(build_wheel(d, "top", "1.0", requires_dist=[f"pkg{i}" for i in range(12)]))
    house = make_house(tmp_path / "house", store, wheels)
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    argv = [sys.executable, "-m", "wheelhouse", "install", str(house), "top",
            "--python", str(venv.python), "--no-compile", "-j", "1"]
    proc = subprocess.Popen(argv, env=isolated_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    journal = site / JOURNAL_NAME
    import time

    deadline = time.monotonic() + 30
    while not journal.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    wheelhouse("install", str(house), "top", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    assert venv.installed() == {"top": "1.0", **{f"pkg{i}": "1.0" for i in range(12)}}
    assert not journal.exists()
    for i in range(12):
        assert (site / f"pkg{i}_data.bin").stat().st_size == 2_000_000


def test_interpreter_answers_are_cached_and_venvs_described_without_asking(
        tmp_path: Path) -> None:
    from wheelhouse import interpreter

    first = new_venv(tmp_path / "first")
    interpreter.query_interpreter(first.python)  # the base interpreter's answer is cached
    wrapper = tmp_path / "bin" / "python"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    interpreter.query_interpreter(wrapper)
    asked: list[str] = []
    real_ask = interpreter._ask

    def counting(exe: str, prefix: Path | None) -> dict[str, object]:
        asked.append(exe)
        return real_ask(exe, prefix)

    interpreter._ask = counting
    try:
        # A new venv of a known interpreter: described without starting it, and
        # exactly as it describes itself.
        second = new_venv(tmp_path / "second")
        described = interpreter.query_interpreter(second.python)
        assert asked == []
        own = interpreter._info(real_ask(str(second.python), None))
        assert (described.prefix, described.paths, described.executable, described.tags) == (
            own.prefix, own.paths, own.executable, own.tags)
        # A changed interpreter file is asked again.
        interpreter.query_interpreter(wrapper)
        assert asked == []
        wrapper.write_text(wrapper.read_text() + "# changed\n")
        interpreter.query_interpreter(wrapper)
        assert asked == [str(wrapper)]
    finally:
        interpreter._ask = real_ask
