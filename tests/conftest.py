"""Shared fixtures: isolation from this machine's pip configuration, builders, servers."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typing_extensions import Self

from tests.builders import build_sdist, build_wheel
from wheelhouse.store import Store

# The test machine carries a pip configuration of its own (extra indexes,
# find-links, constraints). No test may depend on it or be disturbed by it.
_ISOLATION = {
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_NO_INPUT": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
    "UV_NO_CONFIG": "1",
    "UV_NO_CACHE": "1",
    "UV_PYTHON_DOWNLOADS": "never",
}


def isolated_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for subprocesses: no PIP_*/UV_*/WHEELHOUSE_* from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "WHEELHOUSE_"))
    }
    env.update(_ISOLATION)
    env.update(extra or {})
    return env


#: The environment as the test run found it (for the opt-in network tests, which
#: reach the registry through this machine's own pip configuration).
ORIGINAL_ENV = dict(os.environ)


def pytest_configure(config: pytest.Config) -> None:
    # In-process code (the CLI run through main()) sees the same isolation.
    for key in [k for k in os.environ if k.startswith(("PIP_", "UV_", "WHEELHOUSE_"))]:
        del os.environ[key]
    os.environ.update(_ISOLATION)
    # Started in the background by a shell without job control (`cmd &` in a
    # script, nohup), the run inherits SIGINT ignored, and Python then leaves
    # it so: the Ctrl-C tests would see no KeyboardInterrupt, here or in the
    # processes they start. A terminal's Ctrl-C is what they test.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh store for one test."""
    return Store.open(tmp_path / "store")


@pytest.fixture
def store_env(store: Store) -> dict[str, str]:
    """Environment for a wheelhouse subprocess using the test's store."""
    return isolated_env({"WHEELHOUSE_STORE": str(store.root)})


WheelFactory = Callable[..., Path]


@pytest.fixture
def make_wheel(tmp_path: Path) -> WheelFactory:
    """Build a wheel into tmp_path/dists (see tests.builders.build_wheel)."""
    return functools.partial(build_wheel, tmp_path / "dists")


@pytest.fixture
def make_sdist(tmp_path: Path) -> WheelFactory:
    """Build an sdist into tmp_path/dists (see tests.builders.build_sdist)."""
    return functools.partial(build_sdist, tmp_path / "dists")


def run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
        cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a subprocess with the isolated environment, capturing text output."""
    proc = subprocess.run(
        argv,
        env=env if env is not None else isolated_env(),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def wheelhouse(*args: str, env: dict[str, str], check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m wheelhouse``) in a subprocess."""
    return run([sys.executable, "-m", "wheelhouse", *args], env=env, check=check,
               timeout=timeout)


class Venv:
    """A fresh virtual environment (without pip; pip runs from outside with --python)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / ("python.exe" if os.name == "nt" else "python")

    def pip(self, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the test environment's pip against this venv."""
        return run([sys.executable, "-m", "pip", "--python", str(self.python), *args],
                   env=env, check=check)

    def installed(self) -> dict[str, str]:
        """Map normalised project name to version, as the venv's Python sees it."""
        code = (
            "import importlib.metadata as m, json, re;"
            "print(json.dumps({re.sub(r'[-_.]+','-',d.metadata['Name']).lower(): d.version"
            " for d in m.distributions()}))"
        )
        out = run([str(self.python), "-c", code]).stdout
        import json

        result: dict[str, str] = json.loads(out)
        return result


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    """A fresh venv with no packages (not even pip)."""
    root = tmp_path / "venv"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv:
        run([uv, "venv", "--quiet", "--python", sys.executable, str(root)])
    else:
        run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    return Venv(root)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]
    owner: LocalIndex

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        self.requests.append(f"{self.command} {self.path}")
        agent = self.headers.get("User-Agent", "")
        self.owner.agents.append((self.path, agent))
        refuse = self.owner.refuse
        if refuse is not None and refuse(self.path, agent):
            self.send_error(503, "refused by the test")
            return None
        return super().send_head()


class LocalIndex:
    """A directory served over HTTP on 127.0.0.1 (port 0) in a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: "GET /path" for every request served, in order.
        self.requests: list[str] = []
        #: (path, User-Agent) of every request.
        self.agents: list[tuple[str, str]] = []
        #: Answer 503 to the requests for which this returns True: (path, User-Agent).
        self.refuse: Callable[[str, str], bool] | None = None
        handler_class = type("Handler", (_QuietHandler,),
                             {"requests": self.requests, "owner": self})
        handler = functools.partial(handler_class, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def serve_dir() -> Iterator[Callable[[Path], LocalIndex]]:
    """Serve directories over HTTP for the duration of a test: ``serve_dir(path).url``."""
    servers: list[LocalIndex] = []

    def start(root: Path) -> LocalIndex:
        server = LocalIndex(root).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def interrupt_each_fork(monkeypatch: pytest.MonkeyPatch, *modules: Any) -> list[Any]:
    """Make each helper forked (``Forked``, as *modules* call it) be followed at once by a Ctrl-C.

    Returns the list the helpers made are put in, to check they were stopped.
    """
    from wheelhouse._forked import Forked

    made: list[Any] = []

    def interrupted(fn: Callable[[], object]) -> Any:
        made.append(Forked(fn))
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came right now
        return made[-1]

    for module in modules:
        monkeypatch.setattr(module, "Forked", interrupted)
    return made


def reaped(pid: int) -> bool:
    """Whether our child *pid* is gone: neither running nor a zombie left to reap."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def exited(pid: int) -> bool:
    """Whether process *pid* has exited: gone, or a zombie not yet reaped (Linux, /proc).

    Read here, not through the code under test (``_fs``'s own check).
    """
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def processes_in_session(sid: int) -> list[int]:
    """The live (not zombie) processes of session *sid*, from /proc."""
    out = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # session; not a zombie
                out.append(int(stat_file.parent.name))
    return out


@contextlib.contextmanager
def own_session(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run *argv* in a session of its own; whatever of it is left is killed on exit."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def kill_leaves_no_workers(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL *proc* alone (not its session): none of its worker processes may outlive it."""
    assert len(processes_in_session(proc.pid)) > 1, "no workers to outlive it"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while processes_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processes_in_session(proc.pid) == []
