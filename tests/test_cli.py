from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_wheel, corrupt_zip
from tests.conftest import Venv, WheelFactory, isolated_env, wheelhouse
from wheelhouse.cli import main
from wheelhouse.store import Store

if TYPE_CHECKING:
    from pathlib import Path


def test_python_m_wheelhouse_add_ls_verify(
    tmp_path: Path, store_env: dict[str, str], make_wheel: WheelFactory,
    make_sdist: WheelFactory,
) -> None:
    make_wheel("demo", "1.0")
    make_sdist("demo", "1.0")
    house = tmp_path / "house"
    out = wheelhouse("add", str(tmp_path / "dists"), "-o", str(house), env=store_env)
    assert "2 added" in out.stdout

    listing = wheelhouse("ls", str(house), env=store_env).stdout
    assert "demo-1.0-py3-none-any.whl" in listing and "demo-1.0.tar.gz" in listing

    data = json.loads(wheelhouse("ls", str(house), "--json", env=store_env).stdout)
    assert [d["filename"] for d in data] == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]

    ok = wheelhouse("verify", str(house), "--with-store", env=store_env)
    assert "0 problem(s)" in ok.stdout and "0 bad" in ok.stdout


def test_verify_catches_a_flipped_byte_in_the_store(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = make_wheel("demo", "1.0")
    assert main(["--store", str(store.root), "add", str(wheel), "-o", str(tmp_path / "h")]) == 0
    blob = next(p for _, p in store.iter_blobs() if p.stat().st_size == wheel.stat().st_size)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))  # in place: the house's hard link changes too
    capsys.readouterr()

    assert main(["--store", str(store.root), "verify"]) == 3
    out = capsys.readouterr().out
    assert f"BAD  {blob}" in out and "1 bad" in out

    assert main(["--store", str(store.root), "verify", str(tmp_path / "h")]) == 3
    assert "hash mismatch" in capsys.readouterr().out

    assert main(["--store", str(store.root), "verify", "--quarantine"]) == 3
    assert main(["--store", str(store.root), "verify"]) == 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(["add", "{missing}", "-o", "{house}"], 1, "no such file or directory",
                     id="missing-input"),
        pytest.param(["add", "{notzip}", "-o", "{house}"], 1, "not a readable zip archive",
                     id="not-a-zip"),
        pytest.param(["add", "{wheel}", "-o", "{file}"], 1, "is not a directory",
                     id="house-is-a-file"),
        pytest.param(["ls", "{missing}"], 1, "no house at", id="ls-no-house"),
        pytest.param(["ls", "{file}"], 1, "name the house's directory", id="ls-a-file"),
        pytest.param(["build", "{reqfile}", "-o", "{house}"], 1,
                     "is a file, given as a requirement", id="build-forgot-dash-r"),
        pytest.param(["build", "-r", "{missing}.txt", "-o", "{house}"], 1,
                     "hint: check the file names", id="build-missing-requirements-file"),
        pytest.param(["check", "{house}", "demo", "--python-version", "2.7"], 1,
                     "builds for Python 3 only", id="python-2"),
        pytest.param(["install", "{missing}", "demo"], 1, "hint: build one with 'wheelhouse build",
                     id="install-no-house-says-how-to-build-one"),
        pytest.param(["add", "{wheel}"], 2, "Missing option", id="usage-error"),
        pytest.param(["frobnicate"], 2, "No such command", id="unknown-command"),
    ],
)
def test_errors_are_one_clear_line_without_traceback(
    tmp_path: Path, store_env: dict[str, str], argv: list[str], code: int, message: str
) -> None:
    wheel = build_wheel(tmp_path / "in", "demo", "1.0")
    notzip = build_wheel(tmp_path / "bad", "broken", "1.0")
    corrupt_zip(notzip)
    afile = tmp_path / "afile"
    afile.write_text("x")
    reqfile = tmp_path / "requirements.txt"
    reqfile.write_text("demo\n")
    subst = {"missing": str(tmp_path / "missing"), "house": str(tmp_path / "house"),
             "notzip": str(notzip), "wheel": str(wheel), "file": str(afile),
             "reqfile": str(reqfile)}
    proc = wheelhouse(*[a.format(**subst) for a in argv], env=store_env, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    if code == 1:
        assert proc.stderr.startswith("error: ")


def test_store_option_reads_environment_and_says_so(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    help_text = wheelhouse("--help", env=store_env).stdout
    assert "WHEELHOUSE_STORE" in help_text
    wheel = build_wheel(tmp_path / "in", "demo", "1.0")
    env = dict(store_env, WHEELHOUSE_STORE=str(tmp_path / "env-store"))
    wheelhouse("add", str(wheel), "-o", str(tmp_path / "h"), env=env)
    assert Store.open(tmp_path / "env-store", create=False).verify().checked == 2


def test_terminal_escapes_from_packages_are_neutralised(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.builders import metadata_text

    wheel = build_wheel(tmp_path / "in", "demo", "1.0",
                        metadata=metadata_text("demo\x1b[2J", "1.0"))
    code = main(["--store", str(store.root), "add", str(wheel), "-o", str(tmp_path / "h")])
    err = capsys.readouterr().err
    assert code == 1
    assert "\x1b" not in err


def test_default_store_works_after_install_cached_the_interpreter(
    tmp_path: Path, venv: Venv
) -> None:
    # A fresh machine whose first command is `wheelhouse install` (a Dockerfile
    # stage): the interpreter facts it caches share the default store directory,
    # and a later `add` or `build` must still create the store there.
    env = isolated_env({"XDG_CACHE_HOME": str(tmp_path / "cache")})
    env.pop("WHEELHOUSE_STORE", None)
    wheel = build_wheel(tmp_path / "in", "demo", "1.0")
    made = wheelhouse("add", str(wheel), "-o", str(tmp_path / "h1"),
                      env=env | {"WHEELHOUSE_STORE": str(tmp_path / "elsewhere")})
    assert made.returncode == 0
    wheelhouse("install", str(tmp_path / "h1"), "demo", "--python", str(venv.python),
               "--dry-run", env=env)
    assert (tmp_path / "cache" / "wheelhouse" / "interpreters").is_dir()
    wheelhouse("add", str(wheel), "-o", str(tmp_path / "h2"), env=env)
    assert (tmp_path / "cache" / "wheelhouse" / "wheelhouse-store.json").is_file()


@pytest.mark.parametrize(
    ("toml", "args", "message"),
    [
        ('[project]\nname = "x"\ndependencies = "alpha"\n', [],
         "[project] dependencies must be a list of strings"),
        ('[project]\nname = "x"\ndependencies = [1]\n', [],
         "[project] dependencies must be a list of strings"),
        ('project = "x"\n', [], "[project] must be a table"),
        ('[project]\nname = "x"\noptional-dependencies = "x"\n', ["--extra", "x"],
         "[project.optional-dependencies] must be a table"),
        ('[dependency-groups]\ndev = "beta"\n', ["--group", "dev"],
         "dependency group 'dev' must be a list"),
        ('[dependency-groups]\ndev = [3]\n', ["--group", "dev"],
         "dependency group 'dev' holds 3"),
    ],
    ids=["deps-string", "deps-number", "project-string", "optional-string", "group-string",
         "group-number"],
)
def test_malformed_pyproject_is_a_clear_error(
    tmp_path: Path, toml: str, args: list[str], message: str
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(toml)
    out = wheelhouse("--store", str(tmp_path / "store"), "build", "--project", str(project),
                     *args, "-o", str(tmp_path / "house"), env=isolated_env(), check=False)
    assert out.returncode != 0
    assert message in out.stderr and "pyproject.toml" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "house").exists()


def test_a_failed_add_into_a_new_house_leaves_no_house_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = build_wheel(bad, "broken", "1.0")
    corrupt_zip(broken)
    out = wheelhouse("--store", str(tmp_path / "store"), "add", str(bad), "-o",
                     str(tmp_path / "house"), env=isolated_env(), check=False)
    assert out.returncode == 1 and "nothing was added" in out.stderr
    assert not (tmp_path / "house").exists()
    # An existing house is left as it was, not removed.
    good = build_wheel(tmp_path / "good", "good", "1.0")
    wheelhouse("--store", str(tmp_path / "store"), "add", str(good), "-o",
               str(tmp_path / "house"), env=isolated_env())
    out = wheelhouse("--store", str(tmp_path / "store"), "add", str(bad), "-o",
                     str(tmp_path / "house"), env=isolated_env(), check=False)
    assert out.returncode == 1
    assert (tmp_path / "house" / "files" / "good-1.0-py3-none-any.whl").is_file()


def test_a_store_path_under_a_file_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory\n")
    wheel = build_wheel(tmp_path / "d", "demo", "1.0")
    out = wheelhouse("--store", str(blocker / "store"), "add", str(wheel), "-o",
                     str(tmp_path / "house"), env=isolated_env(), check=False)
    assert out.returncode != 0
    assert f"{blocker} is a file" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "house").exists()


def test_the_quick_exit_keeps_the_exit_code_the_output_the_handlers_and_threads(
        tmp_path: Path) -> None:
    # run() ends the process without the interpreter's teardown: the code, all of
    # stdout, the exit handlers and a thread still running must not notice.
    import subprocess
    import sys

    code = f"""
import atexit, pathlib, sys, threading, time
atexit.register(lambda: pathlib.Path({str(tmp_path / "handler")!r}).write_text("ran"))
if sys.argv[1] == "thread":
    def late():
        time.sleep(0.3)
        pathlib.Path({str(tmp_path / "thread")!r}).write_text("done")
    threading.Thread(target=late).start()
sys.argv[1:2] = []
from wheelhouse.cli import run
run()
"""
    house = tmp_path / "house"
    wheel = build_wheel(tmp_path / "d", "demo", "1.0")
    wheelhouse("--store", str(tmp_path / "store"), "add", str(wheel), "-o", str(house),
               env=isolated_env())
    for mode in ("plain", "thread"):
        out = subprocess.run([sys.executable, "-c", code, mode, "ls", str(house), "--json"],
                             env=isolated_env(), capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert [f["filename"] for f in json.loads(out.stdout)] == ["demo-1.0-py3-none-any.whl"]
        assert (tmp_path / "handler").read_text() == "ran"
        (tmp_path / "handler").unlink()
    assert (tmp_path / "thread").read_text() == "done"
    out = subprocess.run([sys.executable, "-c", code, "plain", "ls", str(tmp_path / "nothing")],
                         env=isolated_env(), capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "error:" in out.stderr
    assert (tmp_path / "handler").read_text() == "ran"


@pytest.mark.parametrize("mode", ["plain", "thread"])
def test_a_ctrl_c_while_the_process_exits_ends_it_without_a_traceback(
        tmp_path: Path, mode: str) -> None:
    # The command is done; a Ctrl-C that lands while the exit handlers run (as
    # logging's flush does) or while a thread is waited for ends the process as
    # SIGINT's default action does. CI saw "Exception ignored in atexit
    # callback ... KeyboardInterrupt" with a traceback before.
    import signal
    import subprocess
    import sys

    code = """
import atexit, os, signal, sys, threading, time
atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
if sys.argv[1] == "thread":
    def late():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=late).start()
sys.argv[1:2] = []
from wheelhouse.cli import run
run()
"""
    house = tmp_path / "house"
    wheel = build_wheel(tmp_path / "d", "demo", "1.0")
    wheelhouse("--store", str(tmp_path / "store"), "add", str(wheel), "-o", str(house),
               env=isolated_env())
    out = subprocess.run([sys.executable, "-c", code, mode, "ls", str(house)],
                         env=isolated_env(), capture_output=True, text=True, check=False,
                         timeout=60)
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr
    assert out.returncode == -signal.SIGINT, out.stderr
    assert "demo-1.0-py3-none-any.whl" in out.stdout  # the command's output is all there


@pytest.mark.parametrize("redirect", [
    pytest.param(">&-", id="stdout"),
    pytest.param("2>&-", id="stderr"),
])
def test_the_quick_exit_with_a_standard_stream_closed_from_the_start(
        tmp_path: Path, redirect: str) -> None:
    # Started with its stdout or stderr closed (a daemon, 'cmd >&-'), Python has
    # no sys.stdout or sys.stderr (None): a command that succeeds still exits 0,
    # and with no traceback.
    import subprocess
    import sys

    house = tmp_path / "house"
    wheel = build_wheel(tmp_path / "d", "demo", "1.0")
    env = isolated_env({"WHEELHOUSE_STORE": str(tmp_path / "store")})
    wheelhouse("add", str(wheel), "-o", str(house), env=env)
    marker = tmp_path / "ran"
    code = (f"import atexit, pathlib; atexit.register(pathlib.Path({str(marker)!r}).touch);"
            "import runpy; runpy.run_module('wheelhouse', run_name='__main__')")
    out = subprocess.run(["sh", "-c", f'exec "$@" {redirect}', "sh", sys.executable, "-c", code,
                          "ls", str(house)],
                         env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert marker.exists()  # the exit handlers ran


def test_the_demo_prints_each_command_as_a_shell_reads_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # (Pasted into a shell, a path with spaces must stay one word.)
    import importlib.util
    import shlex
    import sys
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "demo.py"
    spec = importlib.util.spec_from_file_location("demo", path)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    argv = [sys.executable, "-c", "pass", str(tmp_path / "my house"), "a b"]
    demo.step(argv)
    (line,) = [x for x in capfd.readouterr().out.splitlines() if x.startswith("$ ")]
    assert shlex.split(line.removeprefix("$ ")) == argv
