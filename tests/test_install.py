"""wheelhouse install: from a house into real venvs, no pip, compared with pip's own result."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from packaging.tags import sys_tags

from tests.builders import build_wheel
from tests.conftest import (
    Venv,
    isolated_env,
    kill_leaves_no_workers,
    own_session,
    run,
    wheelhouse,
)
from wheelhouse import _fs
from wheelhouse.add import add_paths
from wheelhouse.house import House
from wheelhouse.install import JOURNAL_NAME
from wheelhouse.store import Store  # noqa: TC001 - fixture annotations

if TYPE_CHECKING:
    from collections.abc import Iterator

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


def contents(root: Path) -> dict[str, bytes]:
    """Every file under *root* (relative path) with its bytes."""
    return {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()}


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
                   "app/sub/mod.py": b"X = 1\n",
                   # Every other install scheme, as pip lays them out.
                   "app-1.0.data/scripts/app-tool": b"#!python\nprint('tool')\n",
                   "app-1.0.data/scripts/app-sh": b"#!/bin/sh\necho sh\n",
                   "app-1.0.data/headers/app.h": b"#define APP 1\n",
                   "app-1.0.data/data/share/app/notes.txt": b"notes\n"}),
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
    # The same files in the same places as pip (bytecode aside: pip compiles more levels).
    def files(venv: Venv) -> set[str]:
        return {p for p in tree(venv.root)
                if "__pycache__" not in p and not (venv.root / p).is_dir()}

    assert files(ours) == files(theirs)
    assert (ours.root / "include" / "site" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            / "app" / "app.h").is_file()
    assert (ours.root / "share" / "app" / "notes.txt").read_text() == "notes\n"
    # Scripts from .data: #!python rewritten to the venv's interpreter, others kept.
    assert run([str(ours.bin / "app-tool")]).stdout == "tool\n"
    assert (ours.bin / "app-tool").read_text().startswith(f"#!{ours.python}")
    assert (ours.bin / "app-sh").read_text() == "#!/bin/sh\necho sh\n"
    for script in ("app-tool", "app-sh", "app-hello"):
        assert os.access(ours.bin / script, os.X_OK)
        assert (ours.bin / script).stat().st_mode == (theirs.bin / script).stat().st_mode
    # RECORD and the files agree both ways: everything listed exists, and
    # everything installed is listed.
    listed: set[Path] = set()
    for rec in site.glob("*.dist-info/RECORD"):
        listed |= {Path(os.path.normpath(site / row.split(",")[0]))
                   for row in rec.read_text().splitlines()}
    assert all(p.exists() for p in listed)
    skeleton = files(new_venv(tmp_path / "skeleton"))
    installed = {ours.root / p for p in tree(ours.root) - skeleton
                 if (ours.root / p).is_file() and JOURNAL_NAME not in p}
    assert installed == listed


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
        pytest.param([("requests-toolbelt", "1.0", [], None, "py3-none-any")],
                     "requests-toolbel",
                     "requests-toolbel (required by command line): not in the house "
                     "(did you mean 'requests-toolbelt'?)", id="typo-gets-a-suggestion"),
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


#: The CLI with zlib-ng hidden, as it runs where the 'fast' extra is not installed.
_WITHOUT_ZLIB_NG = ("import sys; sys.modules['zlib_ng'] = None; sys.argv[0] = 'wheelhouse';"
                    "from wheelhouse.cli import run; run()")


def _wheelhouse_with(inflater: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with zlib-ng (the 'fast' extra, in the test dependencies) or with zlib."""
    if inflater != "zlib":
        return wheelhouse(*args, env=isolated_env(), check=False)
    return run([sys.executable, "-c", _WITHOUT_ZLIB_NG, *args], env=isolated_env(), check=False)


@pytest.mark.parametrize("inflater", ["zlib_ng.zlib_ng", "zlib"])
def test_either_inflater_installs_the_same_bytes_and_refuses_a_damaged_stream(
        tmp_path: Path, store: Store, inflater: str) -> None:
    # The CLI really runs with the inflater this case names.
    code = (_WITHOUT_ZLIB_NG.split("sys.argv")[0] if inflater == "zlib" else "") + (
        "import wheelhouse.install as i; print(i._inflater.__name__)")
    assert run([sys.executable, "-c", code]).stdout.split() == [inflater]
    d = tmp_path / "dists"
    body = b"".join(b"line %d = %r\n" % (i, hashlib.sha256(b"%d" % i).hexdigest())
                    for i in range(3000))
    good = build_wheel(d, "good", "1.0", files={"good/__init__.py": body})
    bad = build_wheel(d, "bad", "1.0", files={"bad/__init__.py": b"SAFE = True\n",
                                               "bad/big.py": body})
    for wheel in (good, bad):  # deflated, whatever the builder did
        with zipfile.ZipFile(wheel) as zf:
            items = [(i.filename, zf.read(i)) for i in zf.infolist()]
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content in items:
                zf.writestr(name, content)
    with zipfile.ZipFile(bad) as zf:
        info = zf.getinfo("bad/big.py")
        raw = bad.read_bytes()
        start = (info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26:
                                                              info.header_offset + 28], "little")
                 + int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little"))
    # A deflate block of the reserved type 3: no inflater can read past it.
    bad.write_bytes(raw[:start] + b"\xff" + raw[start + 1:])
    house = make_house(tmp_path / "house", store, [good, bad])
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)

    out = _wheelhouse_with(inflater, "install", str(house), "good", "bad", "--no-compile",
                           "--python", str(venv.python))

    assert out.returncode == 3, out.stderr
    assert "bad-1.0-py3-none-any.whl is not a valid wheel" in out.stderr
    assert "'bad/big.py'" in out.stderr and "Traceback" not in out.stderr
    assert tree(venv.root) == before
    out = _wheelhouse_with(inflater, "install", str(house), "good", "--no-compile",
                           "--python", str(venv.python))
    assert out.returncode == 0, out.stderr
    assert (site_packages(venv) / "good" / "__init__.py").read_bytes() == body


def _put_in_house_as_it_is(house: Path, wheel: Path) -> None:
    """Put *wheel*'s bytes in the house under its name, the manifest naming them.

    add refuses a wheel no installer would install; a house from elsewhere (an
    older wheelhouse, one written by hand) may still hold one, and install
    must refuse it too.
    """
    target = house / "files" / wheel.name
    target.unlink()  # (a hard link to the store's blob: never written through)
    shutil.copyfile(wheel, target)
    manifest = json.loads((house / "wheelhouse.json").read_text())
    (entry,) = [e for e in manifest["files"] if e["filename"] == wheel.name]
    entry.update(sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                 size=wheel.stat().st_size)
    (house / "wheelhouse.json").write_text(json.dumps(manifest))


def test_zip_slip_refused(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    evil = build_wheel(d, "evil", "1.0")
    house = make_house(tmp_path / "house", store, [evil])
    _rewrite_member(evil, "../../../../escaped.py", b"pwned = 1\n", fix_record=True)
    _put_in_house_as_it_is(house, evil)
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
    # A project left unhashed: said once (not once per file), and the hint is about hashes.
    req.write_text(f"lib==1.0 --hash=sha256:{good}\napp==1.0\n")
    out = wheelhouse("install", str(app_house), "-r", str(req), "--python", str(other.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    app_line = next(line for line in out.stderr.splitlines() if line.strip().startswith("app"))
    assert app_line.count("not pinned with --hash") == 1, out.stderr
    assert "hash-checking mode" in out.stderr.split("hint:")[1]
    assert other.installed() == {}

    # sha512 (pip accepts sha256, sha384 and sha512): computed from the house's file.
    wheel = app_house / "files" / "lib-1.0-py3-none-any.whl"
    sha512 = hashlib.sha512(wheel.read_bytes()).hexdigest()
    req.write_text(f"lib==1.0 --hash=sha512:{sha512}\n")
    wheelhouse("install", str(app_house), "-r", str(req), "--python", str(other.python),
               "--no-compile", env=isolated_env())
    assert other.installed() == {"lib": "1.0"}
    third = new_venv(tmp_path / "third")
    req.write_text(f"lib==1.0 --hash=sha512:{'1' * 128}\n")
    out = wheelhouse("install", str(app_house), "-r", str(req), "--python", str(third.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "lib-1.0-py3-none-any.whl" in out.stderr
    assert "1" * 128 in out.stderr and sha512 in out.stderr
    assert third.installed() == {}


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
    assert "hello" not in out.stderr  # another program's output explains nothing
    # A Python that fails says why.
    fake.write_text("#!/bin/sh\necho 'SyntaxError: invalid syntax' >&2\nexit 1\n")
    out = wheelhouse("install", str(app_house), "lib", "--python", str(fake),
                     env=isolated_env(), check=False)
    assert "(it did not answer as Python does: SyntaxError: invalid syntax)" in out.stderr
    # A wrapper that found no Python (a pyenv shim) says so on its first line.
    fake.write_text("#!/bin/sh\n(echo 'pyenv: python3.12: command not found'; echo;"
                    " echo 'The python3.12 command exists in these Python versions:';"
                    " echo '      Python 2 and 3 to be found at the same time.') >&2\nexit 127\n")
    out = wheelhouse("install", str(app_house), "lib", "--python", str(fake),
                     env=isolated_env(), check=False)
    assert "(it did not answer as Python does: pyenv: python3.12: command not found)" in out.stderr


def test_system_interpreter_needs_consent(app_house: Path) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    out = wheelhouse("install", str(app_house), "lib", "--python", str(base), "--dry-run",
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "is a system interpreter" in out.stderr
    assert "--break-system-packages" in out.stderr


def test_target_and_prefix(tmp_path: Path, app_house: Path) -> None:
    target = tmp_path / "t"
    out = wheelhouse("install", str(app_house), "app", "--target", str(target),
                     env=isolated_env())
    assert f"into {target} (files for " in out.stdout  # not "into <some interpreter>"
    assert (target / "app" / "__init__.py").is_file()
    assert (target / "bin" / "app-hello").is_file()
    env = isolated_env({"PYTHONPATH": str(target)})
    run([sys.executable, "-c", "import app, lib"], env=env)

    prefix = tmp_path / "p"
    before = tree(tmp_path)
    wheelhouse("install", str(app_house), "app", "--prefix", str(prefix), env=isolated_env())
    new = tree(tmp_path) - before
    assert any(p.endswith("/lib.py") for p in new)
    assert all(p == "p" or p.startswith("p/") for p in new)  # nothing written elsewhere
    assert (prefix / "bin" / "app-hello").is_file()
    purelib = next(prefix.rglob("site-packages"))
    env = isolated_env({"PYTHONPATH": str(purelib)})
    run([sys.executable, "-c", "import app, lib"], env=env)


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make *directory* read-only for the block, root included."""
    if os.geteuid() == 0:
        # Root writes through file modes; an immutable directory stops even root.
        made = run(["chattr", "+i", str(directory)], check=False)
        if made.returncode != 0:  # pragma: no cover - file systems without attributes
            pytest.skip(f"running as root and chattr +i failed: {made.stderr.strip()}")
    else:
        directory.chmod(0o555)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            run(["chattr", "-i", str(directory)])
        directory.chmod(0o755)


def test_read_only_environment(tmp_path: Path, app_house: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    with read_only(parent):
        out = wheelhouse("install", str(app_house), "lib", "--target", str(parent / "t"),
                         env=isolated_env(), check=False)
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


def test_interrupted_before_record_is_completed(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    site.mkdir(parents=True, exist_ok=True)
    # Killed after the metadata but before RECORD was written; and a dead run's stash.
    (site / JOURNAL_NAME).write_text(json.dumps({"version": 1, "installing": {"lib": "1.0"}}))
    dist_info = site / "lib-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n")
    (site / "lib.py").write_text("half")
    dead = site / ".wheelhouse-stash-999999999"
    (dead / "replaced").mkdir(parents=True)

    dry = wheelhouse("install", str(app_house), "lib", "--python", str(venv.python),
                     "--dry-run", env=isolated_env())
    assert "would complete the interrupted install of lib" in dry.stdout
    assert "completed" not in dry.stdout
    assert (site / JOURNAL_NAME).exists() and (site / "lib.py").read_text() == "half"

    out = wheelhouse("install", str(app_house), "lib", "--python", str(venv.python),
                     env=isolated_env())
    assert "completed the interrupted install of lib" in out.stdout
    assert (dist_info / "RECORD").is_file()
    assert (site / "lib.py").read_text() == '__version__ = "1.0"\n'
    assert venv.installed() == {"lib": "1.0"}
    assert not (site / JOURNAL_NAME).exists()
    assert not dead.exists()


def _install_to_kill(tmp_path: Path, store: Store, count: int, padding: int,
                     jobs: int) -> tuple[Path, Venv, Path, list[str]]:
    """A house of *count* padded wheels under 'top', a fresh venv, its site-packages,
    and the command that installs 'top' into it (slow enough to be killed midway)."""
    d = tmp_path / "dists"
    wheels = [build_wheel(d, f"pkg{i}", "1.0", padding=padding) for i in range(count)]
    wheels.append(build_wheel(d, "top", "1.0", requires_dist=[f"pkg{i}" for i in range(count)]))
    house = make_house(tmp_path / "house", store, wheels)
    venv = new_venv(tmp_path / "v")
    argv = [sys.executable, "-m", "wheelhouse", "install", str(house), "top",
            "--python", str(venv.python), "--no-compile", "-j", str(jobs)]
    return house, venv, site_packages(venv), argv


def test_sigkill_then_rerun_completes(tmp_path: Path, store: Store) -> None:
    house, venv, site, argv = _install_to_kill(tmp_path, store, 12, 2_000_000, jobs=1)
    proc = subprocess.Popen(argv, env=isolated_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    journal = site / JOURNAL_NAME
    import time

    deadline = time.monotonic() + 30
    while (not list(site.glob("pkg*_data.bin")) and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.001)
    assert proc.poll() is None, "the install finished before it could be killed"
    proc.kill()  # mid-way: some wheels written, others not
    proc.wait()
    assert journal.exists()
    wheelhouse("install", str(house), "top", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    assert venv.installed() == {"top": "1.0", **{f"pkg{i}": "1.0" for i in range(12)}}
    assert not journal.exists()
    for i in range(12):
        assert (site / f"pkg{i}_data.bin").stat().st_size == 2_000_000


def test_interpreter_answers_are_cached_and_venvs_described_without_asking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wheelhouse import interpreter

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = new_venv(tmp_path / "first")
    interpreter.query_interpreter(first.python)  # the base interpreter's answer is cached
    # A link to the real interpreter: cached by the link's own identity.
    link = tmp_path / "bin" / "python"
    link.parent.mkdir()
    link.symlink_to(os.path.realpath(first.python))
    interpreter.query_interpreter(link)
    # A wrapper script (a pyenv shim): what it runs can change without it changing.
    wrapper = tmp_path / "shim" / "python"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    asked: list[str] = []
    real_ask = interpreter._ask

    def counting(exe: str, prefix: Path | None) -> dict[str, object]:
        asked.append(exe)
        return real_ask(exe, prefix)

    monkeypatch.setattr(interpreter, "_ask", counting)
    # A new venv of a known interpreter: described without starting it, and
    # exactly as it describes itself.
    second = new_venv(tmp_path / "second")
    described = interpreter.query_interpreter(second.python)
    assert asked == []
    own = interpreter._info(real_ask(str(second.python), None))
    assert (described.prefix, described.paths, described.executable, described.tags) == (
        own.prefix, own.paths, own.executable, own.tags)
    assert described.is_venv
    interpreter.query_interpreter(link)
    assert asked == []
    # A replaced link is asked again.
    link.unlink()
    link.symlink_to(os.path.realpath(first.python))
    interpreter.query_interpreter(link)
    assert asked == [str(link)]
    # A wrapper is asked every time.
    interpreter.query_interpreter(wrapper)
    interpreter.query_interpreter(wrapper)
    assert asked == [str(link), str(wrapper), str(wrapper)]


def test_an_interpreter_this_packaging_does_not_support_answers_with_its_own_pips(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # packaging 26.4 needs Python 3.10: on a 3.8 or 3.9 interpreter the probe
    # could not import it, and 'install --python .venv38/bin/python' failed.
    # It answers with the packaging its own pip vendors instead (stood in for
    # here by a packaging that cannot be imported).
    from wheelhouse import interpreter

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    broken = tmp_path / "newer" / "packaging"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("from typing import NotThereYet\n")
    (broken / "tags.py").write_text("")
    real = interpreter._info(interpreter._ask(sys.executable, None))
    monkeypatch.setattr(interpreter, "_packaging_root", lambda: str(broken.parent))
    answer = interpreter._info(interpreter._ask(sys.executable, None))
    assert answer.tags[:20] == real.tags[:20] and answer.markers == real.markers
    assert answer.version == real.version


def test_a_venv_answer_never_describes_its_base(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from wheelhouse import interpreter

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    venv = new_venv(tmp_path / "v")
    assert interpreter.query_interpreter(venv.python).is_venv  # asked first, cache cold
    base = interpreter.query_interpreter(os.path.realpath(venv.python))
    assert not base.is_venv
    assert base.prefix == sys.base_prefix
    assert not base.paths["purelib"].startswith(str(venv.root))
    # A stale cache from an older layout is asked again, not trusted.
    for f in (tmp_path / "cache" / "wheelhouse" / "interpreters").glob("*.json"):
        data = json.loads(f.read_text())
        data["format"] = 1
        data["info"]["prefix"] = "/nonexistent"
        f.write_text(json.dumps(data))
    assert interpreter.query_interpreter(os.path.realpath(venv.python)).prefix == sys.base_prefix


def test_python_given_by_name_is_found_on_path(tmp_path: Path, app_house: Path) -> None:
    venv = new_venv(tmp_path / "v")
    env = isolated_env({"PATH": f"{venv.bin}{os.pathsep}{os.environ['PATH']}"})
    wheelhouse("install", str(app_house), "lib", "--python", "python3", "--no-compile", env=env)
    assert venv.installed() == {"lib": "1.0"}
    out = wheelhouse("install", str(app_house), "lib", "--python", "no-such-python-here",
                     env=env, check=False)
    assert out.returncode == 1
    assert "'no-such-python-here' is not on PATH" in out.stderr
    assert "Traceback" not in out.stderr


def test_rollback_restores_another_distributions_file(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    owner = build_wheel(d, "owner", "1.0", files={"shared/conf.py": b"OWNER = True\n"})
    good = build_wheel(d, "good", "1.0", files={"good/__init__.py": b""})
    intruder = build_wheel(d, "intruder", "1.0", requires_dist=["good", "broken"],
                           files={"shared/conf.py": b"INTRUDER = True\n"})
    broken = build_wheel(d, "broken", "1.0", files={"broken/__init__.py": b"ok = 1\n"})
    _rewrite_member(broken, "broken/__init__.py", b"tampered = 1\n", fix_record=False)
    house = make_house(tmp_path / "house", store, [owner, good, intruder, broken])
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(house), "owner", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    before = contents(venv.root)
    for jobs in ("1", "4"):
        out = wheelhouse("install", str(house), "intruder", "--python", str(venv.python),
                         "--no-compile", "-j", jobs, env=isolated_env(), check=False)
        assert out.returncode == 3, out.stderr
        assert "broken-1.0-py3-none-any.whl" in out.stderr
        after = contents(venv.root)
        assert after == before  # owner's shared/conf.py is back, byte for byte
        assert not list(site_packages(venv).glob(".wheelhouse-*"))


def test_unexpected_error_in_a_worker_rolls_back(tmp_path: Path, store: Store) -> None:
    d = tmp_path / "dists"
    wheels = [build_wheel(d, f"pkg{i}", "1.0", files={f"pkg{i}/__init__.py": b""})
              for i in range(4)]
    odd = build_wheel(d, "odd", "1.0", requires_dist=[f"pkg{i}" for i in range(4)])
    # A RECORD whose size column is not a number: not an OSError or an IntegrityError.
    with zipfile.ZipFile(odd) as zf:
        items = {i.filename: zf.read(i) for i in zf.infolist()}
    record = "odd-1.0.dist-info/RECORD"
    items[record] = items[record].replace(b",20\n", b",twenty\n", 1)
    assert b"odd.py,sha256=" in items[record] and b",twenty\n" in items[record]
    with zipfile.ZipFile(odd, "w") as zf:
        for name, content in items.items():
            zf.writestr(name, content)
    house = make_house(tmp_path / "house", store, [*wheels, odd])
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    out = wheelhouse("install", str(house), "odd", "--python", str(venv.python), "-j", "3",
                     env=isolated_env(), check=False)
    assert out.returncode == 1, out.stderr
    assert "odd-1.0-py3-none-any.whl" in out.stderr and "nothing was installed" in out.stderr
    assert "Traceback" not in out.stderr
    assert tree(venv.root) == before


@pytest.mark.parametrize(("when", "how"), [
    ("writing", "ctrl-c"), ("compiling", "ctrl-c"),
    # docker stop, a CI timeout: SIGTERM to the command (or, from systemd, to
    # its whole group): undone as Ctrl-C is, not left for the next run.
    ("writing", "sigterm"), ("writing", "sigterm-to-the-group"),
])
def test_an_interrupt_rolls_back_everything(tmp_path: Path, store: Store, when: str,
                                            how: str) -> None:
    import signal
    import time

    d = tmp_path / "dists"
    if when == "writing":
        wheels = [build_wheel(d, f"big{i}", "1.0", padding=8_000_000) for i in range(8)]
        deps = [f"big{i}" for i in range(8)]
        args = ["--no-compile"]
    else:  # many modules: compiling them takes a while
        wheels = [build_wheel(d, f"mods{i}", "1.0", files={
            f"mods{i}/m{j}.py": f"def f{j}(x):\n    return [x * k for k in range({j})]\n".encode()
            for j in range(600)}) for i in range(4)]
        deps = [f"mods{i}" for i in range(4)]
        args = []
    wheels.append(build_wheel(d, "top", "1.0", requires_dist=deps))
    house = make_house(tmp_path / "house", store, wheels)
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    before = tree(venv.root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wheelhouse", "install", str(house), "top",
         "--python", str(venv.python), "-j", "2", *args],
        env=isolated_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    pattern = "big*_data.bin" if when == "writing" else "mods*/__pycache__/*.pyc"
    deadline = time.monotonic() + 60
    while (not list(site.glob(pattern)) and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.002)
    assert proc.poll() is None, "the install finished before it could be interrupted"
    if how == "ctrl-c":  # as a terminal does: to the whole process group, workers included
        os.killpg(proc.pid, signal.SIGINT)
    elif how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    # 130 after a Ctrl-C, 143 (128 + SIGTERM) after a SIGTERM, as a shell says them.
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err
    assert ("interrupted" if how == "ctrl-c" else "terminated (SIGTERM)") in err
    assert "Traceback" not in err
    assert tree(venv.root) == before


def test_no_shared_memory_falls_back_to_threads(tmp_path: Path, app_house: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    from wheelhouse import install as install_mod
    from wheelhouse.resolver import WantedSet

    def no_semaphores(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(concurrent.futures.ProcessPoolExecutor, "__init__", no_semaphores)
    monkeypatch.setattr(install_mod, "_use_processes", lambda: True)
    venv = new_venv(tmp_path / "v")
    wanted = WantedSet()
    wanted.add("app")
    report = install_mod.install(app_house, wanted, python=venv.python,
                                 compile_bytecode=False, jobs=2)
    assert {n for n, _v, _f in report.installed} == {"app", "lib"}
    assert venv.installed() == {"app": "1.0", "lib": "1.0"}


def test_symlinked_directory_out_of_the_env_is_never_followed(tmp_path: Path,
                                                              store: Store) -> None:
    d = tmp_path / "dists"
    v1 = build_wheel(d, "victim", "1.0", files={"linked/data.py": b"V1 = 1\n"})
    v2 = build_wheel(d, "victim", "2.0", files={"victim.py": b"V2 = 1\n"})
    house = make_house(tmp_path / "house", store, [v1, v2])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    wheelhouse("install", str(house), "victim==1.0", "--python", str(venv.python),
               "--no-compile", env=isolated_env())
    # Someone points a directory inside the env at a directory outside it.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.py").write_text("PRECIOUS = 1\n")
    import shutil

    shutil.rmtree(site / "linked")
    (site / "linked").symlink_to(outside)
    # Replacing victim 1.0 removes its RECORD's files: never the one outside.
    wheelhouse("install", str(house), "victim==2.0", "--python", str(venv.python),
               "--no-compile", env=isolated_env())
    assert (outside / "data.py").read_text() == "PRECIOUS = 1\n"
    assert venv.installed() == {"victim": "2.0"}
    # Installing files through the link is refused, and nothing is left behind.
    out = wheelhouse("install", str(house), "victim==1.0", "--python", str(venv.python),
                     "--no-compile", env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert "symbolic link leading outside" in out.stderr
    assert [p.name for p in outside.iterdir()] == ["data.py"]
    assert (outside / "data.py").read_text() == "PRECIOUS = 1\n"
    assert venv.installed() == {"victim": "2.0"}


def test_installing_into_wheelhouses_own_environment_warns(tmp_path: Path,
                                                            app_house: Path) -> None:
    # wheelhouse installed in a venv, asked to install into that same venv.
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    site.mkdir(parents=True, exist_ok=True)
    import wheelhouse as package

    (site / "wheelhouse-src.pth").write_text(
        "\n".join([str(Path(package.__file__).parent.parent),
                   *[p for p in sys.path if p.endswith("site-packages")]]) + "\n")
    out = run([str(venv.python), "-m", "wheelhouse", "install", str(app_house), "lib",
               "--python", str(venv.python), "--no-compile"], env=isolated_env())
    assert "the environment wheelhouse itself runs from" in out.stderr
    assert (site / "lib.py").is_file()
    other = new_venv(tmp_path / "other")
    out = run([str(venv.python), "-m", "wheelhouse", "install", str(app_house), "lib",
               "--python", str(other.python), "--no-compile"], env=isolated_env())
    assert "itself runs from" not in out.stderr


def test_python_given_as_a_relative_path_is_that_file_not_a_path_lookup(
    tmp_path: Path, app_house: Path
) -> None:
    venv = new_venv(tmp_path / "v")
    proc = run([sys.executable, "-m", "wheelhouse", "install", str(app_house), "lib",
                "--python", "./v/bin/python", "--no-compile"], cwd=tmp_path, env=isolated_env())
    assert f"into {venv.python}" in proc.stdout or "into v/bin/python" in proc.stdout
    assert "lib" in Venv(venv.root).installed()
    # A relative path that does not exist is an error, never another interpreter.
    missing = run([sys.executable, "-m", "wheelhouse", "install", str(app_house), "lib",
                   "--python", "./python", "--no-compile"], cwd=tmp_path, env=isolated_env(),
                  check=False)
    assert missing.returncode == 1
    assert "no such interpreter: './python'" in missing.stderr


def test_failed_upgrade_puts_back_the_bytecode_python_wrote_on_import(
    tmp_path: Path, store: Store
) -> None:
    d = tmp_path / "dists"
    v1 = build_wheel(d, "mod", "1.0", files={"mod/__init__.py": b"X = 1\n"})
    v2 = build_wheel(d, "mod", "2.0", files={"mod/__init__.py": b"X = 2\n"})
    bad = build_wheel(d, "bad", "1.0", files={"bad/__init__.py": b"B = 1\n"})
    with zipfile.ZipFile(bad) as zf:  # a member whose bytes do not match RECORD
        items = {i.filename: zf.read(i) for i in zf.infolist()}
    items["bad/__init__.py"] = b"B = 2\n"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, content in items.items():
            zf.writestr(name, content)
    house = make_house(tmp_path / "house", store, [v1, v2, bad])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    wheelhouse("install", str(house), "mod==1.0", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    writes_bytecode = {k: v for k, v in isolated_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    # Python writes bytecode on import, which no RECORD lists.
    run([str(venv.python), "-c", "import mod"], env=writes_bytecode)
    assert list(site.glob("mod/__pycache__/__init__.*.pyc"))

    before = contents(venv.root)
    out = wheelhouse("install", str(house), "mod==2.0", "bad", "--python", str(venv.python),
                     "--no-compile", env=isolated_env(), check=False)
    assert out.returncode != 0 and "bad-1.0-py3-none-any.whl" in out.stderr
    assert contents(venv.root) == before


def test_bytecode_of_a_module_includes_a_killed_compilers_temp_file(tmp_path: Path) -> None:
    from wheelhouse.install import _pycs_of

    cache = tmp_path / "__pycache__"
    cache.mkdir()
    names = ["m.cpython-311.pyc", "m.cpython-311.opt-1.pyc", "m.cpython-311.pyc.140372184759728",
             "mx.cpython-311.pyc", "m.cpython-311.pyc.tmp", "m.txt"]
    for name in names:
        (cache / name).write_bytes(b"")
    found = sorted(Path(p).name for p in _pycs_of(str(tmp_path / "m.py")))
    assert found == ["m.cpython-311.opt-1.pyc", "m.cpython-311.pyc",
                     "m.cpython-311.pyc.140372184759728"]


@pytest.mark.parametrize("failure", ["permission", "ctrl-c"])
def test_an_upgrade_stopped_while_the_old_version_moves_aside_puts_it_all_back(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    # The old version's files move aside one by one before the new one is
    # written; a failure or Ctrl-C on the fifth move must put back the four
    # before it, not lose them.
    from wheelhouse import install as install_mod
    from wheelhouse.resolver import WantedSet

    d = tmp_path / "dists"
    modules = {f"many/m{i}.py": f"X = {i}\n".encode() for i in range(20)}
    v1 = build_wheel(d, "many", "1.0", files=modules)
    v2 = build_wheel(d, "many", "2.0", files=modules)
    house = make_house(tmp_path / "house", store, [v1, v2])
    venv = new_venv(tmp_path / "v")

    def want(spec: str) -> WantedSet:
        wanted = WantedSet()
        wanted.add(spec)
        return wanted

    install_mod.install(house, want("many==1.0"), python=venv.python, compile_bytecode=False)
    before = tree(venv.root)
    real_move = install_mod._move
    calls = []

    def failing_move(src: str, dest: str) -> None:
        calls.append(src)
        if len(calls) == 5:
            if failure == "permission":
                raise PermissionError(1, "Operation not permitted", src)
            raise KeyboardInterrupt
        real_move(src, dest)

    monkeypatch.setattr(install_mod, "_move", failing_move)
    expected = install_mod.InstallError if failure == "permission" else KeyboardInterrupt
    with pytest.raises(expected) as info:
        install_mod.install(house, want("many==2.0"), python=venv.python,
                            compile_bytecode=False)
    if failure == "permission":
        assert "many 1.0" in str(info.value) and "nothing was changed" in str(info.value)
    monkeypatch.setattr(install_mod, "_move", real_move)
    assert tree(venv.root) == before
    assert venv.installed() == {"many": "1.0"}


@pytest.mark.skipif(os.name != "posix", reason="the lock is flock on POSIX")
def test_two_installs_into_one_environment_take_turns(
    tmp_path: Path, app_house: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelhouse import install as install_mod
    from wheelhouse.errors import LockTimeoutError
    from wheelhouse.resolver import WantedSet

    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    before = tree(venv.root)
    # Another process installing into the environment holds its lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import fcntl, os, time\n"
         f"fd = os.open({str(site)!r}, os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(install_mod, "_LOCK_TIMEOUT", 0.5)
        wanted = WantedSet()
        wanted.add("app")
        with pytest.raises(LockTimeoutError) as info:
            install_mod.install(app_house, wanted, python=venv.python, compile_bytecode=False)
        assert str(site) in str(info.value)
        assert tree(venv.root) == before
    finally:
        holder.kill()
        holder.communicate()
    # Once the other is done, the install goes ahead.
    install_mod.install(app_house, wanted, python=venv.python, compile_bytecode=False)
    assert venv.installed() == {"app": "1.0", "lib": "1.0"}


@pytest.mark.parametrize("command", ["install", "check"])
def test_a_url_requirement_no_house_file_came_from_is_refused_offline(
    tmp_path: Path, app_house: Path, command: str
) -> None:
    # It names a file the house does not have: taking the house's own version of
    # the project instead, or asking the network, would both be wrong.
    req = tmp_path / "requirements.txt"
    req.write_text("lib @ https://example.invalid/lib-7.0-py3-none-any.whl\n")
    venv = new_venv(tmp_path / "v")
    extra = ["--python", str(venv.python)] if command == "install" else []
    out = wheelhouse(command, str(app_house), "-r", str(req), *extra, env=isolated_env(),
                     check=False)
    assert out.returncode == 1, out.stderr
    assert f"{req}:1" in out.stderr and "names a URL" in out.stderr
    assert "Traceback" not in out.stderr and "example.invalid" in out.stderr
    assert venv.installed() == {}


def test_a_requirements_file_with_a_byte_order_mark_is_read_as_pip_reads_it(
    tmp_path: Path, app_house: Path
) -> None:
    req = tmp_path / "requirements.txt"
    req.write_bytes("\ufefflib==1.0\n".encode())  # as Windows editors save it
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(app_house), "-r", str(req), "--python", str(venv.python),
               "--no-compile", env=isolated_env())
    assert venv.installed() == {"lib": "1.0"}


def test_python_named_as_a_plain_file_here_that_cannot_run_says_so(
    tmp_path: Path, app_house: Path
) -> None:
    (tmp_path / "afile").write_text("not a program\n")
    out = run([sys.executable, "-m", "wheelhouse", "install", str(app_house), "lib",
               "--python", "afile"], env=isolated_env(), check=False, cwd=tmp_path)
    assert out.returncode == 1
    assert "'./afile' is not an executable Python interpreter" in out.stderr
    assert "no such interpreter" not in out.stderr


def test_an_extra_the_project_does_not_provide_is_said_as_pip_says_it(
    tmp_path: Path, app_house: Path
) -> None:
    venv = new_venv(tmp_path / "v")
    out = wheelhouse("install", str(app_house), "lib[nosuch]", "--python", str(venv.python),
                     "--no-compile", env=isolated_env())
    assert "lib 1.0 does not provide the extra 'nosuch'" in out.stderr
    assert venv.installed() == {"lib": "1.0"}


def test_an_extra_named_only_in_requires_dist_markers_is_provided(
    tmp_path: Path, app_house: Path
) -> None:
    venv = new_venv(tmp_path / "v")
    out = wheelhouse("install", str(app_house), "app[fast]", "--python", str(venv.python),
                     "--no-compile", env=isolated_env())
    assert "does not provide" not in out.stderr
    assert venv.installed() == {"app": "1.0", "lib": "1.0", "speedup": "1.0"}


def test_nothing_to_do_in_a_read_only_environment_is_not_an_error(
    tmp_path: Path, app_house: Path
) -> None:
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(app_house), "lib", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    with read_only(site_packages(venv)):
        out = wheelhouse("install", str(app_house), "lib", "--python", str(venv.python),
                         env=isolated_env(), check=False)
    assert out.returncode == 0, out.stderr
    assert "already installed" in out.stdout + out.stderr


def test_a_directory_named_like_the_python_does_not_hide_the_one_on_path(
    tmp_path: Path, app_house: Path
) -> None:
    import shutil

    name = Path(shutil.which("python3") or sys.executable).name
    (tmp_path / name).mkdir()  # a python3/ folder, as monorepos have
    out = run([sys.executable, "-m", "wheelhouse", "install", str(app_house), "lib",
               "--python", name, "--target", str(tmp_path / "t"), "--dry-run"],
              env=isolated_env(), check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "lib" in out.stdout


def test_a_failure_while_earlier_wheels_compile_kills_the_compilers_and_rolls_back(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bytecode is compiled as soon as each wheel is written, while the others are
    # still being written: a later wheel's failure stops the compilers before the
    # rollback, and no bytecode (not even a compiler's temp file) is left.
    import time

    from wheelhouse import install as install_mod
    from wheelhouse.errors import IntegrityError
    from wheelhouse.resolver import WantedSet

    d = tmp_path / "dists"
    mods = build_wheel(d, "mods", "1.0", files={
        f"mods/m{j}.py": f"def f{j}(x):\n    return [x * k for k in range({j})]\n".encode()
        * 20 for j in range(400)})
    bad = build_wheel(d, "bad", "1.0", requires_dist=["mods"], files={"bad/z.py": b"z = 1\n"})
    _rewrite_member(bad, "bad/z.py", b"import os  # tampered\n", fix_record=False)
    house = make_house(tmp_path / "house", store, [mods, bad])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    before = tree(venv.root)
    seen_compiling: list[bool] = []
    original_add = install_mod._Compilers.add

    def add_then_wait_for_bytecode(self: install_mod._Compilers, files: list[str],
                                   sizes: list[int]) -> None:
        original_add(self, files, sizes)
        deadline = time.monotonic() + 30
        while not list(site.glob("mods/__pycache__/*.pyc")) and time.monotonic() < deadline:
            time.sleep(0.001)
        seen_compiling.append(bool(list(site.glob("mods/__pycache__/*.pyc"))))

    monkeypatch.setattr(install_mod._Compilers, "add", add_then_wait_for_bytecode)
    wanted = WantedSet()
    wanted.add("bad")
    with pytest.raises(IntegrityError, match=r"bad/z\.py"):
        install_mod.install(house, wanted, python=venv.python, jobs=1)
    assert seen_compiling == [True]  # mods was compiling when bad failed
    assert tree(venv.root) == before


def test_a_stopped_wheel_never_removes_a_file_that_was_there_before(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wheel's new files are logged in one write before it is written; a file
    # that was already there is not among them, so a rollback after the worker
    # stopped half-way (here: a write fails before it got to that file) leaves
    # it alone, though the wheel has a file of that name.
    from wheelhouse import install as install_mod
    from wheelhouse.resolver import WantedSet

    d = tmp_path / "dists"
    files = {f"pkg/m{j}.py": b"x = 1\n" for j in range(20)}
    files["stray.py"] = b"OURS = 1\n"
    wheel = build_wheel(d, "pkg", "1.0", files=files)
    with zipfile.ZipFile(wheel) as zf:
        names = [i.filename for i in zf.infolist()]
    assert names.index("stray.py") > 5  # written after the failure below
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    (site / "stray.py").write_text("THEIRS = 1\n")
    before = contents(venv.root)
    calls = 0
    original_write_all = _fs.write_all

    def write_then_fail(fd: int, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        original_write_all(fd, data)

    monkeypatch.setattr(install_mod, "write_all", write_then_fail)
    wanted = WantedSet()
    wanted.add("pkg")
    with pytest.raises(install_mod.InstallError, match="No space left"):
        install_mod.install(house, wanted, python=venv.python, compile_bytecode=False, jobs=1)
    after = contents(venv.root)
    assert after == before
    logs = list(site.glob(".wheelhouse-stash-*/*.log"))
    assert logs == []  # the stash went with the rollback


def test_a_wheel_with_a_member_named_twice_is_refused(tmp_path: Path, store: Store) -> None:
    import warnings

    d = tmp_path / "dists"
    wheel = build_wheel(d, "twice", "1.0", files={"twice.py": b"A = 1\n"})
    house = make_house(tmp_path / "house", store, [wheel])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        with zipfile.ZipFile(wheel, "a") as zf:
            zf.writestr("twice.py", b"A = 1\n")
    _put_in_house_as_it_is(house, wheel)
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    out = wheelhouse("install", str(house), "twice", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert "appears twice" in out.stderr
    assert tree(venv.root) == before


def test_wheels_and_members_too_big_for_memory_are_streamed_and_still_checked(
    tmp_path: Path, app_house: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the limits a wheel is hashed, then read member by member from the file,
    # and a member is inflated and checked as it is written: the same result, and
    # a member that does not match RECORD is still refused.
    from wheelhouse import install as install_mod
    from wheelhouse.errors import IntegrityError
    from wheelhouse.resolver import WantedSet

    monkeypatch.setattr(install_mod, "_IN_MEMORY_MAX", 0)
    monkeypatch.setattr(install_mod, "_WHOLE_MEMBER_MAX", 0)
    streamed, whole = new_venv(tmp_path / "streamed"), new_venv(tmp_path / "whole")
    wanted = WantedSet()
    wanted.add("app[fast]")
    install_mod.install(app_house, wanted, python=streamed.python)
    monkeypatch.undo()
    install_mod.install(app_house, wanted, python=whole.python)

    def site_contents(venv: Venv) -> dict[str, object]:
        site = site_packages(venv)
        out: dict[str, object] = {p: (site / p).read_bytes() for p in tree(site)
                                  if (site / p).is_file() and "__pycache__" not in p}
        for p in [p for p in out if p.endswith("RECORD")]:
            # Scripts name the venv's interpreter: the rows of the rest.
            out[p] = sorted(row for row in (site / p).read_text().splitlines()
                            if not row.startswith("../"))
        return out

    assert site_contents(streamed) == site_contents(whole)
    assert len(site_contents(whole)) > 10

    d = tmp_path / "dists"
    bad = build_wheel(d, "bad", "1.0", files={"bad/z.py": b"z = 1\n"})
    _rewrite_member(bad, "bad/z.py", b"import os  # tampered\n", fix_record=False)
    house = make_house(tmp_path / "house2", store, [bad])
    monkeypatch.setattr(install_mod, "_IN_MEMORY_MAX", 0)
    monkeypatch.setattr(install_mod, "_WHOLE_MEMBER_MAX", 0)
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    wanted = WantedSet()
    wanted.add("bad")
    with pytest.raises(IntegrityError, match=r"bad/z\.py.*does not match RECORD"):
        install_mod.install(house, wanted, python=venv.python)
    assert tree(venv.root) == before


def test_a_compiler_that_dies_is_not_an_install_failure(tmp_path: Path) -> None:
    # Its modules get no bytecode (none is listed in RECORD then), as when a
    # module does not compile; the install itself goes on.
    import shutil
    import types

    from wheelhouse.install import _Compilers

    true = shutil.which("true")
    assert true is not None
    info = types.SimpleNamespace(executable=true)
    compilers = _Compilers(info, 2)  # type: ignore[arg-type]
    files = [str(tmp_path / f"m{i}.py") for i in range(2000)]
    compilers.add(files[:1000], [10] * 1000)
    for proc in compilers._procs:
        proc.wait()
    compilers.add(files[1000:], [10] * 1000)  # into pipes nobody reads
    assert compilers.finish() == set(files)
    assert not list(tmp_path.glob("__pycache__/*"))


# ---------------------------------------------------------------------------
# Review of the install-perf rewrite: holes found, and the tests that hold them shut


def test_a_rollback_puts_back_another_distributions_bytecode(tmp_path: Path,
                                                             store: Store) -> None:
    # A module of another distribution that a failing install overwrote is set
    # aside and put back by the rollback -- and so is that module's bytecode,
    # which its RECORD lists: the rollback removes only bytecode it compiled.
    d = tmp_path / "dists"
    owner = build_wheel(d, "owner", "1.0", files={"shared/conf.py": b"OWNER = True\n"})
    intruder = build_wheel(d, "intruder", "1.0", requires_dist=["broken"],
                           files={"shared/conf.py": b"INTRUDER = True\n"})
    broken = build_wheel(d, "broken", "1.0", files={"broken/__init__.py": b"ok = 1\n"})
    _rewrite_member(broken, "broken/__init__.py", b"tampered = 1\n", fix_record=False)
    house = make_house(tmp_path / "house", store, [owner, intruder, broken])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    wheelhouse("install", str(house), "owner", "--python", str(venv.python),
               env=isolated_env())
    pycs = list(site.glob("shared/__pycache__/conf.*.pyc"))
    assert len(pycs) == 1
    record = next(site.glob("owner-1.0.dist-info/RECORD")).read_text()
    assert str(pycs[0].relative_to(site)) in record
    before = contents(venv.root)
    for jobs in ("1", "2"):
        out = wheelhouse("install", str(house), "intruder", "--python", str(venv.python),
                         "-j", jobs, env=isolated_env(), check=False)
        assert out.returncode == 3, out.stderr
        after = contents(venv.root)
        assert after == before


def test_a_directory_swapped_for_a_link_between_two_wheels_is_not_followed(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One wheel makes a directory; before the next wheel writes into it, it is
    # replaced by a link leading out of the environment. The next wheel is
    # refused, nothing is written outside, and everything is rolled back.
    import shutil

    from wheelhouse import install as install_mod
    from wheelhouse.errors import IntegrityError
    from wheelhouse.resolver import WantedSet

    d = tmp_path / "dists"
    first = build_wheel(d, "first", "1.0", files={"nspkg/first.py": b"A = 1\n"})
    second = build_wheel(d, "second", "1.0", requires_dist=["first"],
                         files={"nspkg/second.py": b"B = 1\n"})
    house = make_house(tmp_path / "house", store, [first, second])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    outside = tmp_path / "outside"
    outside.mkdir()
    before = tree(venv.root)
    original = install_mod._install_one
    done: list[str] = []

    def swap_after_first(path: Path, *args: object, **kwargs: object) -> None:
        original(path, *args, **kwargs)  # type: ignore[arg-type]
        done.append(path.name)
        if len(done) == 1:
            shutil.move(str(site / "nspkg"), str(outside / "nspkg"))
            (site / "nspkg").symlink_to(outside / "nspkg")

    monkeypatch.setattr(install_mod, "_install_one", swap_after_first)
    # One worker (a thread): the second wheel is written after the first.
    monkeypatch.setattr(install_mod, "_use_processes", lambda: False)
    wanted = WantedSet()
    wanted.add("second")
    with pytest.raises(IntegrityError, match="symbolic link leading outside"):
        install_mod.install(house, wanted, python=venv.python, compile_bytecode=False, jobs=1)
    assert len(done) == 1
    # Only what the first wheel wrote is out there (moved by whoever made the
    # link): the second wrote nothing through it, the rollback removed nothing.
    module = done[0].split("-")[0] + ".py"
    assert [p.name for p in (outside / "nspkg").iterdir()] == [module]
    (site / "nspkg").unlink()
    assert tree(venv.root) == before


@pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                    reason="forked workers: Linux with more than one CPU")
def test_sigkill_of_the_main_process_takes_the_workers_with_it(tmp_path: Path,
                                                              store: Store) -> None:
    # Forked workers outlived a killed install: they held the environment's lock
    # (the next run waited 10 minutes, then failed) and could go on writing wheels
    # already handed to them after the next run had started.
    import time

    house, venv, site, argv = _install_to_kill(tmp_path, store, 16, 3_000_000, jobs=3)
    with own_session(argv, isolated_env()) as proc:
        deadline = time.monotonic() + 30
        while (not list(site.glob("pkg*_data.bin")) and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.0005)
        assert proc.poll() is None, "the install finished before it could be killed"
        kill_leaves_no_workers(proc)
    # And the next run takes the lock at once, undoes the killed one, and installs.
    out = wheelhouse("install", str(house), "top", "--python", str(venv.python),
                     "--no-compile", env=isolated_env(), timeout=60)
    assert "was killed midway" in out.stderr and "undone" in out.stderr
    assert venv.installed() == {"top": "1.0", **{f"pkg{i}": "1.0" for i in range(16)}}
    assert not (site / JOURNAL_NAME).exists()


def test_a_full_disk_right_after_logging_a_file_that_exists_never_removes_it(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file that was there before is set aside before its replacement is logged
    # as created. Logged the other way round, a log write that failed in between
    # (a full disk, just where one is likely) left a rollback that took the file
    # for one of ours and removed it, with nothing set aside to put back.
    from wheelhouse import install as install_mod
    from wheelhouse.resolver import WantedSet

    d = tmp_path / "dists"
    wheel = build_wheel(d, "pkg", "1.0", files={"pkg/__init__.py": b"", "stray.py": b"OURS = 1\n"})
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    (site / "stray.py").write_text("THEIRS = 1\n")
    before = contents(venv.root)
    original_write = install_mod._Log._write
    logged: list[str] = []

    def fail_after_stray_is_logged(self: install_mod._Log, text: str) -> None:
        if logged and "\tW\t" in logged[-1] and logged[-1].rstrip("\n").endswith("stray.py"):
            raise OSError(28, "No space left on device")
        logged.append(text)
        original_write(self, text)

    monkeypatch.setattr(install_mod._Log, "_write", fail_after_stray_is_logged)
    wanted = WantedSet()
    wanted.add("pkg")
    with pytest.raises(install_mod.InstallError, match="No space left"):
        install_mod.install(house, wanted, python=venv.python, compile_bytecode=False, jobs=1)
    assert any(t.rstrip("\n").endswith("stray.py") for t in logged)
    after = contents(venv.root)
    assert after == before


@pytest.mark.parametrize("death", ["killed", "exits at once"])
def test_a_compiler_that_dies_is_said(tmp_path: Path, app_house: Path, death: str,
                                      monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    # A dead compiler costs its modules their bytecode, not the install -- and the
    # user is told, with how many modules have none (they import all the same).
    import logging

    from wheelhouse import install as install_mod
    from wheelhouse.resolver import WantedSet

    script = {"killed": "import os, signal\nos.read(0, 1)\nos.kill(os.getpid(), signal.SIGKILL)\n",
              "exits at once": "pass\n"}[death]
    monkeypatch.setattr(install_mod, "_COMPILE", script)
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    wanted = WantedSet()
    wanted.add("app")
    with caplog.at_level(logging.WARNING, logger="wheelhouse.install"):
        report = install_mod.install(app_house, wanted, python=venv.python, jobs=1)
    assert venv.installed() == {"app": "1.0", "lib": "1.0"}
    assert report.compiled == 0
    assert not list(site.rglob("*.pyc"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("compiler" in w and "3 module(s) have no bytecode" in w for w in warnings), warnings


def test_a_file_never_replaces_another_distributions_directory(tmp_path: Path,
                                                               store: Store) -> None:
    # A wheel with a file where another distribution has a directory: setting the
    # directory aside "to put it back on a rollback" removed it, every file of it,
    # with the stash when the install succeeded. Refused, and nothing changes.
    d = tmp_path / "dists"
    owner = build_wheel(d, "owner", "1.0", files={"ownerpkg/__init__.py": b"",
                                                  "ownerpkg/core.py": b"CORE = 1\n"})
    clobber = build_wheel(d, "clobber", "1.0", files={"ownerpkg": b"not a package\n",
                                                      "clobber.py": b""})
    house = make_house(tmp_path / "house", store, [owner, clobber])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    wheelhouse("install", str(house), "owner", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    before = contents(venv.root)
    out = wheelhouse("install", str(house), "clobber", "--python", str(venv.python),
                     "--no-compile", env=isolated_env(), check=False)
    assert out.returncode != 0, out.stderr
    assert "ownerpkg" in out.stderr and "directory" in out.stderr.lower()
    assert (site / "ownerpkg" / "core.py").read_bytes() == b"CORE = 1\n"
    after = contents(venv.root)
    assert after == before


@pytest.mark.parametrize("algorithm", ["md5", "sha1"])
def test_a_record_hash_weaker_than_sha256_is_refused(tmp_path: Path, store: Store,
                                                      algorithm: str) -> None:
    # The wheel format allows sha256 or stronger; a member checked only by md5 or
    # sha1 (right or not) is not verified, and is refused as a bad RECORD.
    d = tmp_path / "dists"
    wheel = build_wheel(d, "weak", "1.0", files={"weak.py": b"W = 1\n"})
    with zipfile.ZipFile(wheel) as zf:
        items = {i.filename: zf.read(i) for i in zf.infolist()}
    record = "weak-1.0.dist-info/RECORD"
    digest = base64.urlsafe_b64encode(hashlib.new(algorithm, b"W = 1\n").digest())
    lines = [ln for ln in items[record].decode().splitlines() if not ln.startswith("weak.py,")]
    lines.insert(0, f"weak.py,{algorithm}={digest.rstrip(b'=').decode()},6")
    items[record] = ("\n".join(lines) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, content in items.items():
            zf.writestr(name, content)
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    out = wheelhouse("install", str(house), "weak", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert "weak.py" in out.stderr and algorithm in out.stderr
    assert tree(venv.root) == before


@pytest.mark.parametrize("member", ["odd-1.0.data/data//x.txt", "odd-1.0.data/data/./x.txt",
                                    "odd-1.0.data/scripts"])
def test_a_member_in_no_valid_data_scheme_is_an_integrity_error(tmp_path: Path, store: Store,
                                                                 member: str) -> None:
    # Said as a bad wheel (exit 3, naming the member), not as an internal error
    # with the repr of installer's exception.
    d = tmp_path / "dists"
    wheel = build_wheel(d, "odd", "1.0")
    _rewrite_member(wheel, member, b"x\n", fix_record=True)
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    out = wheelhouse("install", str(house), "odd", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert repr(member) in out.stderr and "<" not in out.stderr
    assert tree(venv.root) == before


def test_bytecode_shipped_in_a_wheel_is_skipped_and_said_plainly(
    tmp_path: Path, store: Store
) -> None:
    # As installer: a .pyc inside a wheel is never installed; said as one log
    # line naming the file, not as a Python warning with its source line.
    shipped = b"not bytecode anyone should run"
    wheel = build_wheel(tmp_path / "dists", "shipsbytecode", "1.0", files={
        "shipsbytecode/__init__.py": b"X = 1\n",
        "shipsbytecode/__pycache__/__init__.cpython-311.pyc": shipped,
    })
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    out = wheelhouse("install", str(house), "shipsbytecode", "--python", str(venv.python),
                     "--no-compile", env=isolated_env())
    said = out.stdout + out.stderr
    assert ("not installing shipsbytecode/__pycache__/__init__.cpython-311.pyc" in said)
    assert "RuntimeWarning" not in said and "warnings.warn" not in said
    site = site_packages(venv)
    assert not (site / "shipsbytecode" / "__pycache__").exists()
    assert venv.installed() == {"shipsbytecode": "1.0"}


def test_a_large_member_streams_through_the_inflater_in_bounded_reads(tmp_path: Path) -> None:
    # Members too big to inflate at once are inflated as read, with the same
    # inflater: whole, in pieces no larger than asked, never past the declared
    # size + 1, and a damaged or truncated stream is a zip error naming the member.
    from wheelhouse.install import _Inflating, _WheelBytes

    body = b"".join(hashlib.sha256(b"%d" % i).digest() * 3 for i in range(40_000))
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", body)
        zf.writestr("small.txt", b"hello")
    data = wheel.read_bytes()

    def stream_of(data: bytes, name: str = "big.bin") -> tuple[_Inflating, int]:
        path = tmp_path / f"{hashlib.sha256(data).hexdigest()}.whl"
        path.write_bytes(data)
        wb = _WheelBytes(path, hashlib.sha256(data).hexdigest())
        info = wb.zipfile.getinfo(name)
        stream = wb.member_stream(info)
        assert stream is not None
        return stream, info.file_size

    stream, size = stream_of(data)
    pieces = []
    while piece := stream.read(100_000):
        assert len(piece) <= 100_000
        pieces.append(piece)
    assert b"".join(pieces) == body and size == len(body)
    stream, _ = stream_of(data, "small.txt")
    assert stream.read() == b"hello"

    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("big.bin")
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28],
                                         "little"), int.from_bytes(
        data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    # The central directory understating the size: at most one byte more comes out.
    lying = bytearray(data)
    cd = data.rindex(b"PK\x01\x02", 0, data.rindex(b"PK\x01\x02"))  # big.bin's entry
    lying[cd + 24:cd + 28] = (1000).to_bytes(4, "little")
    stream, size = stream_of(bytes(lying))
    assert size == 1000
    assert len(b"".join(iter(lambda: stream.read(300), b""))) == 1001
    # A block of the reserved type 3, and a stream cut short.
    damaged = data[:start] + b"\xff" + data[start + 1:]
    stream, _ = stream_of(damaged)
    with pytest.raises(zipfile.BadZipFile, match=r"'big\.bin'"):
        stream.read(1000)
    cut = bytearray(data)
    cd = data.rindex(b"PK\x01\x02", 0, data.rindex(b"PK\x01\x02"))
    compressed = int.from_bytes(data[cd + 20:cd + 24], "little")
    cut[cd + 20:cd + 24] = (compressed // 2).to_bytes(4, "little")
    stream, _ = stream_of(bytes(cut))
    with pytest.raises(zipfile.BadZipFile, match=r"'big\.bin': truncated"):
        while stream.read(1 << 16):
            pass


def test_a_streamed_member_longer_than_record_says_is_refused_before_it_is_all_read() -> None:
    # The zip may declare far more than RECORD does: the first byte past RECORD's
    # size ends it, rather than a disk filled first and the install undone after.
    import io

    from wheelhouse.install import _RecordMismatchError, _VerifyingStream

    data = b"x" * 100_000
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    stream = _VerifyingStream(io.BytesIO(data), "m.bin", f"sha256={digest}", 100)
    with pytest.raises(_RecordMismatchError, match="size does not match RECORD"):
        stream.read(1000)
    ok = _VerifyingStream(io.BytesIO(data[:100]), "m.bin",
                          "sha256=" + base64.urlsafe_b64encode(
                              hashlib.sha256(data[:100]).digest()).rstrip(b"=").decode(), 100)
    assert ok.read(1000) == data[:100] and ok.read(1000) == b"" and ok.digest is not None


def test_a_local_header_name_that_is_not_utf8_is_a_zip_error(tmp_path: Path) -> None:
    # The UTF-8 flag set over bytes that are not UTF-8: "not a valid wheel", not
    # a UnicodeDecodeError.
    from wheelhouse.install import _WheelBytes

    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("\u00e9.txt", b"hello")  # non-ASCII: written with the UTF-8 flag
    data = bytearray(wheel.read_bytes())
    at = data.index("\u00e9".encode())  # the local header's copy of the name comes first
    data[at:at + 2] = b"\xff\xfe"
    wheel.write_bytes(bytes(data))
    wb = _WheelBytes(wheel, hashlib.sha256(bytes(data)).hexdigest())
    with pytest.raises(zipfile.BadZipFile, match="not UTF-8"):
        wb.whole_member(wb.zipfile.infolist()[0])


def test_a_signed_wheel_installs_with_its_unlisted_signature(tmp_path: Path, store: Store) -> None:
    # RECORD.jws cannot list itself in RECORD (the wheel spec); pip installs
    # such a wheel, and so must install. Any other unlisted member is refused.
    d = tmp_path / "dists"
    wheel = build_wheel(d, "signed", "1.0", files={"signed.py": b"S = 1\n"})
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("signed-1.0.dist-info/RECORD.jws", b'{"signatures": []}')
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(house), "signed", "--python", str(venv.python), env=isolated_env())
    (site,) = venv.root.glob("lib/python*/site-packages")
    assert (site / "signed-1.0.dist-info" / "RECORD.jws").read_bytes() == b'{"signatures": []}'
    assert "signed-1.0.dist-info/RECORD.jws,sha256=" in (
        site / "signed-1.0.dist-info" / "RECORD").read_text()


@pytest.mark.parametrize("which", ["site-packages", "bin"])
def test_an_environment_whose_install_directories_lead_outside_it_is_refused(
    tmp_path: Path, store: Store, which: str
) -> None:
    # Written through the link, the files would land outside the environment,
    # where the roll-back (which never reaches outside) could not take them back.
    d = tmp_path / "dists"
    wheel = build_wheel(d, "tool", "1.0", files={"tool/__init__.py": b"def main(): pass\n"},
                        console_scripts={"tool": "tool:main"})
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    (inside,) = (venv.root.glob("lib/python*/site-packages") if which == "site-packages"
                 else [venv.root / "bin"])
    outside = tmp_path / "outside"
    shutil.move(str(inside), str(outside))
    inside.symlink_to(outside)
    before_outside, before_venv = tree(outside), tree(venv.root)
    out = wheelhouse("install", str(house), "tool", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert f"refusing to install into {inside}" in out.stderr
    assert "leads outside" in out.stderr
    assert tree(outside) == before_outside and tree(venv.root) == before_venv


@pytest.mark.parametrize("name", ["sub/dir", "../up", "ctl\x1b[31mred", "back\\slash", ".."])
def test_a_script_name_of_more_than_one_file_name_is_refused(
    tmp_path: Path, store: Store, name: str
) -> None:
    d = tmp_path / "dists"
    wheel = build_wheel(d, "tool", "1.0", files={"tool/__init__.py": b"def main(): pass\n"},
                        console_scripts={name: "tool:main"})
    house = make_house(tmp_path / "house", store, [wheel])
    venv = new_venv(tmp_path / "v")
    before = tree(venv.root)
    out = wheelhouse("install", str(house), "tool", "--python", str(venv.python),
                     env=isolated_env(), check=False)
    assert out.returncode == 3, out.stderr
    assert "refusing the console script" in out.stderr and "\x1b" not in out.stderr
    assert tree(venv.root) == before


def test_an_upgrade_killed_midway_is_undone_by_the_next_run_whatever_it_installs(
    tmp_path: Path, store: Store
) -> None:
    # kill -9 half-way through an upgrade: half-written files of the new
    # version under their real names, the old version's files moved aside.
    # The next run, even one that installs something else, puts the old
    # version back as it was (not: deletes the only copy of it).
    import time

    d = tmp_path / "dists"
    old = build_wheel(d, "big", "1.0", files={"big/__init__.py": b"V = 1\n",
                                              "big/only_in_1.py": b"A = 1\n"})
    house1 = make_house(tmp_path / "house1", store, [old])
    new = build_wheel(tmp_path / "d2", "big", "2.0", padding=60_000_000,
                      files={"big/__init__.py": b"V = 2\n", "big/only_in_2.py": b"B = 2\n"})
    other = build_wheel(tmp_path / "d2", "other", "1.0")
    house2 = make_house(tmp_path / "house2", store, [new, other])
    venv = new_venv(tmp_path / "v")
    site = site_packages(venv)
    wheelhouse("install", str(house1), "big", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    before = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*")
              if p.is_file()}
    argv = [sys.executable, "-m", "wheelhouse", "install", str(house2), "big==2.0",
            "--python", str(venv.python), "--no-compile", "-j", "1"]
    proc = subprocess.Popen(argv, env=isolated_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while (not list(site.glob("big_data.bin")) and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.0005)
    assert proc.poll() is None, "the install finished before it could be killed"
    proc.kill()
    proc.wait()
    assert not (site / "big-1.0.dist-info").exists()  # moved aside by the killed run

    out = wheelhouse("install", str(house2), "other", "--python", str(venv.python),
                     "--no-compile", env=isolated_env())

    assert "was killed midway" in out.stderr
    after = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*")
             if p.is_file() and not p.relative_to(site).as_posix().startswith("other")}
    assert after == before
    assert venv.installed() == {"big": "1.0", "other": "1.0"}
    assert [p.name for p in site.iterdir() if p.name.startswith(".wheelhouse")] == []


def test_a_rollback_run_again_never_removes_what_it_put_back(tmp_path: Path) -> None:
    # A rollback killed half-way is finished by the next run, from the same
    # logs: a file whose original was already put back (its stashed copy is
    # gone) is the original now, not the file the logs say was created.
    from wheelhouse import install as install_mod

    root = tmp_path / "env"
    stash = root / ".wheelhouse-stash-1"
    stash.mkdir(parents=True)
    restored, replaced, created = root / "restored.py", root / "replaced.py", root / "new.py"
    for path, text in ((restored, "original"), (replaced, "old version"), (created, "new")):
        path.write_text(text)
    (stash / "w.log").write_text(
        f"1\tM\t{restored}\t{stash / 'w-1'}\n"   # set aside, and already put back
        f"2\tW\t{restored}\n"
        f"3\tW\t{replaced}\n"                   # the replaced version's file, put back
        f"4\tW\t{created}\n")                   # created, to be removed
    (stash / "moves.txt").write_text(json.dumps([str(replaced), str(stash / "r" / "0")]) + "\n")
    install_mod._rollback(stash, root)
    assert restored.read_text() == "original"
    assert replaced.read_text() == "old version"
    assert not created.exists()


def _killed_upgrade(tmp_path: Path, store: Store) -> tuple[Path, Venv, Path, int]:
    """foo 1.0 installed, then an upgrade to 2.0 SIGKILLed once its wheel is written."""
    d = tmp_path / "dists"
    wheels = [build_wheel(d, "foo", "1.0", files={"foo.py": b'__version__ = "1.0"\n'}),
              build_wheel(d, "foo", "2.0", files={"foo.py": b'__version__ = "2.0"\n'}),
              build_wheel(d, "bar", "1.0")]
    house = make_house(tmp_path / "house", store, wheels)
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(house), "foo==1.0", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    code = (
        "import os, signal, sys\n"
        "import wheelhouse.install as m\n"
        "real = m._run_jobs\n"
        "m._run_jobs = lambda *a, **k: (real(*a, **k), os.kill(os.getpid(), signal.SIGKILL))\n"
        "from wheelhouse.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    killed = subprocess.run([sys.executable, "-c", code, "install", str(house), "foo==2.0",
                             "--python", str(venv.python), "--no-compile"],
                            env=isolated_env(), capture_output=True, check=False)
    assert killed.returncode == -9
    site = site_packages(venv)
    (stash,) = site.glob(".wheelhouse-stash-*")
    assert (site / "foo.py").read_text() == '__version__ = "2.0"\n'
    return house, venv, site, int(stash.name.rsplit("-", 1)[1])


def test_a_killed_run_whose_process_id_is_taken_again_is_undone_all_the_same(
    tmp_path: Path, store: Store
) -> None:
    # Under the environment's lock no other install runs: a stash is a dead
    # run's whatever process has its id now (here: this test's own).
    house, venv, site, pid = _killed_upgrade(tmp_path, store)
    dry = wheelhouse("install", str(house), "bar", "--python", str(venv.python), "--dry-run",
                     env=isolated_env())
    assert "killed midway: the install itself will undo it first" in dry.stderr
    assert (site / "foo.py").read_text() == '__version__ = "2.0"\n'  # a dry run changes nothing
    # Every process id taken by a live process again.
    code = ("import sys\nimport wheelhouse.install as m\nm._is_dead = lambda pid: False\n"
            "from wheelhouse.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    out = run([sys.executable, "-c", code, "install", str(house), "bar", "--python",
               str(venv.python), "--no-compile"])
    assert f"(process {pid}): undone" in out.stderr
    assert (site / "foo.py").read_text() == '__version__ = "1.0"\n'
    assert venv.installed() == {"foo": "1.0", "bar": "1.0"}
    # And an install of foo 2.0 afterwards is a plain one.
    wheelhouse("install", str(house), "foo==2.0", "--python", str(venv.python), "--no-compile",
               env=isolated_env())
    assert venv.installed() == {"foo": "2.0", "bar": "1.0"}


def test_a_killed_run_in_an_environment_copied_since_is_left_alone(
    tmp_path: Path, store: Store
) -> None:
    # Its logs name the original environment: undoing it from the copy would
    # write there.
    house, venv, site, _pid = _killed_upgrade(tmp_path, store)
    copy = tmp_path / "copy"
    shutil.copytree(venv.root, copy, symlinks=True)
    original = tree(venv.root)
    out = wheelhouse("install", str(house), "bar", "--python", str(copy / "bin" / "python"),
                     "--no-compile", env=isolated_env())
    assert "holds an install killed midway elsewhere" in out.stderr
    assert tree(venv.root) == original
    assert list((copy / site.relative_to(venv.root)).glob(".wheelhouse-stash-*"))


def test_a_sigterm_while_a_killed_run_is_undone_waits_for_the_undo(
    tmp_path: Path, store: Store
) -> None:
    import signal
    import time

    house, venv, site, _pid = _killed_upgrade(tmp_path, store)
    code = (
        "import sys, time\n"
        "import wheelhouse.install as m\n"
        "real = m._rollback\n"
        "def slow(*a, **k):\n"
        "    print('undoing', flush=True)\n"
        "    time.sleep(1.5)\n"
        "    return real(*a, **k)\n"
        "m._rollback = slow\n"
        "from wheelhouse.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "install", str(house), "bar",
                             "--python", str(venv.python), "--no-compile"],
                            env=isolated_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "undoing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert (site / "foo.py").read_text() == '__version__ = "1.0"\n'  # the undo finished
    assert "bar" not in venv.installed()  # and nothing else began
    assert list(site.glob(".wheelhouse-stash-*")) == []


def _installed_by_pip_and_by_us(tmp_path: Path, house: Path, req: str) -> tuple[str, str]:
    """The demo.py that pip installs from *house* (its index) and the one wheelhouse installs."""
    theirs = new_venv(tmp_path / "pip-venv", with_pip=True)
    (tmp_path / "req.txt").write_text(req)
    run([str(theirs.python), "-m", "pip", "install", "-q", "--no-cache-dir", "--index-url",
         (house / "simple").as_uri() + "/", "-r", str(tmp_path / "req.txt")],
        env=isolated_env())
    ours = new_venv(tmp_path / "our-venv")
    wheelhouse("install", str(house), "-r", str(tmp_path / "req.txt"), "--python",
               str(ours.python), "--no-compile", env=isolated_env())
    return ((site_packages(theirs) / "demo.py").read_text(),
            (site_packages(ours) / "demo.py").read_text())


def test_of_one_versions_wheels_the_highest_build_tag_is_installed_as_pip_installs_it(
        tmp_path: Path, store: Store) -> None:
    d = tmp_path / "d"
    wheels = [build_wheel(d, "demo", "1.0", build_tag=b, files={"demo.py": f"BUILD = {b}\n".encode()})
              for b in ("2", "10", "1")]
    wheels.append(build_wheel(d, "demo", "1.0", files={"demo.py": b"BUILD = None\n"}))
    house = make_house(tmp_path / "house", store, wheels)
    pip_got, ours = _installed_by_pip_and_by_us(tmp_path, house, "demo\n")
    assert pip_got == ours == "BUILD = 10\n"


def test_a_hash_pin_chooses_among_a_versions_wheels_as_pip_does(
        tmp_path: Path, store: Store) -> None:
    # The pin names the pure wheel; a better-tagged wheel of the same version
    # is in the house too. pip installs the pinned one; wheelhouse refused
    # ("hash mismatch" for the better-tagged wheel).
    d = tmp_path / "d"
    pure = build_wheel(d, "demo", "1.0", files={"demo.py": b"KIND = 'pure'\n"})
    native = build_wheel(d, "demo", "1.0", tag=HOST_TAG, files={"demo.py": b"KIND = 'native'\n"})
    house = make_house(tmp_path / "house", store, [pure, native])
    digest = hashlib.sha256(pure.read_bytes()).hexdigest()
    pip_got, ours = _installed_by_pip_and_by_us(
        tmp_path, house, f"demo==1.0 --hash=sha256:{digest}\n")
    assert pip_got == ours == "KIND = 'pure'\n"


def test_a_sha512_pin_reads_only_the_pinned_versions_files(tmp_path: Path, store: Store) -> None:
    # A sha384/sha512 pin is checked by reading the file: only files of the
    # version the requirement leaves are read (another version's file missing
    # from the house is none of this install's business).
    d = tmp_path / "d"
    pinned = build_wheel(d, "demo", "1.0")
    house = make_house(tmp_path / "house", store, [
        pinned, build_wheel(d, "demo", "2.0"), build_wheel(d, "demo", "3.0b1")])
    for name in ("demo-2.0-py3-none-any.whl", "demo-3.0b1-py3-none-any.whl"):
        (house / "files" / name).unlink()
    req = tmp_path / "req.txt"
    req.write_text(f"demo==1.0 --hash=sha512:{hashlib.sha512(pinned.read_bytes()).hexdigest()}\n")
    venv = new_venv(tmp_path / "v")
    wheelhouse("install", str(house), "-r", str(req), "--python", str(venv.python),
               "--no-compile", env=isolated_env())
    assert venv.installed() == {"demo": "1.0"}


def test_the_interpreter_cache_keeps_the_answers_used_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each temporary venv (a test suite's, a CI job's) left its answer in the
    # user's cache for good.
    from wheelhouse import interpreter

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(interpreter, "_CACHE_KEEP", 3)
    links = []
    for i in range(5):
        link = tmp_path / f"bin{i}" / "python"
        link.parent.mkdir()
        link.symlink_to(os.path.realpath(sys.executable))
        links.append(link)
    interpreter.query_interpreter(links[0])
    cache_dir = tmp_path / "cache" / "wheelhouse" / "interpreters"
    (first,) = cache_dir.glob("*.json")
    for link in links[1:]:
        interpreter.query_interpreter(links[0])  # used again: kept
        interpreter.query_interpreter(link)
    kept = sorted(cache_dir.glob("*.json"))
    assert len(kept) == 3 and first in kept
