"""Small file-system and process helpers (wheelhouse._fs)."""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING

import pytest

from tests.conftest import exited
from wheelhouse._fs import gc_paused, read_small

if TYPE_CHECKING:
    from pathlib import Path


def test_gc_paused_pauses_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the outer block still owns the pause
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_the_caller_turned_off_alone() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def _fake_syncfs(monkeypatch: pytest.MonkeyPatch, *, failing_call: int = 0,
                 error: int = 0) -> list[int]:
    """Stand in for syncfs: the descriptors it is called with; call *failing_call* fails."""
    import wheelhouse._fs as fs

    calls: list[int] = []

    def syncfs(fd: int) -> int:
        calls.append(fd)
        return error if len(calls) == failing_call else 0

    monkeypatch.setattr(fs, "_load_syncfs", lambda: syncfs)
    return calls


def test_flushing_flushes_in_the_background_until_the_block_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import wheelhouse._fs as fs

    calls = _fake_syncfs(monkeypatch)
    before = threading.active_count()
    with pytest.raises(ZeroDivisionError), fs.flushing(tmp_path, every=0.001):
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert threading.active_count() == before + 1
        1 / 0  # noqa: B018
    assert len(calls) >= 3
    assert threading.active_count() == before  # stopped, even after an error
    stopped = len(calls)
    time.sleep(0.01)
    assert len(calls) == stopped


def test_flushing_does_nothing_without_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import wheelhouse._fs as fs

    monkeypatch.setattr(fs, "_load_syncfs", lambda: None)
    before = threading.active_count()
    with fs.flushing(tmp_path):
        assert threading.active_count() == before


def test_flushing_raises_an_error_a_background_flush_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # syncfs reports a writeback error once per file system to descriptors
    # opened before it: one the background flush saw is not seen by the
    # final flush (a descriptor opened later), so it must not be dropped.
    import errno
    import time

    import wheelhouse._fs as fs

    calls = _fake_syncfs(monkeypatch, failing_call=2, error=errno.EIO)
    with pytest.raises(OSError, match="Input/output error") as info, \
            fs.flushing(tmp_path, every=0.001):
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
    assert info.value.errno == errno.EIO


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_worker_whose_parent_died_before_it_could_ask_to_die_with_it_dies(
    tmp_path: Path,
) -> None:
    # The parent has exited but is not reaped yet (a zombie, which still
    # answers kill(pid, 0)) when the worker calls die_with_parent.
    import os
    import time

    from wheelhouse._fs import die_with_parent

    survived = tmp_path / "survived"
    ready = tmp_path / "worker.pid"
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the child
        try:
            parent = os.getpid()
            worker = os.fork()
            if worker == 0:
                try:
                    (tmp_path / "pid.part").write_text(str(os.getpid()))
                    (tmp_path / "pid.part").replace(ready)  # whole, or not there
                    give_up = time.monotonic() + 10
                    while not exited(parent) and time.monotonic() < give_up:
                        time.sleep(0.001)
                    die_with_parent(parent)
                    survived.write_text("yes")
                finally:
                    os._exit(0)
            while not ready.exists():  # the worker knows whose death to wait for
                time.sleep(0.001)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        worker = int(ready.read_text())
        while time.monotonic() < deadline and not survived.exists() and not exited(worker):
            time.sleep(0.005)
        assert not survived.exists()
    finally:
        os.waitpid(middle, 0)  # reaped only now: a zombie all along


@pytest.mark.parametrize("size", [0, 1, 4095, 65536, 65537, 200_000])
def test_read_small_reads_whole_files_up_to_the_limit(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert read_small(str(path), 200_000) == data
    assert read_small(str(path), size) == data
    if size:
        assert read_small(str(path), size - 1) is None


def test_read_small_reads_a_file_that_grew_since_its_size_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100_000)
    real_fstat = os.fstat

    class Smaller:
        def __init__(self, st: os.stat_result) -> None:
            self.st_size = 10  # what it held when its size was taken
            self.st_mode = st.st_mode

    monkeypatch.setattr(os, "fstat", lambda fd: Smaller(real_fstat(fd)))
    assert read_small(str(path), 200_000) == b"a" * 100_000
    # Grown past the limit: not read whole (the caller streams it instead).
    assert read_small(str(path), 50_000) is None


def test_read_small_reads_on_after_a_short_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some file systems (FUSE, network ones) may return less than asked
    # before the end: the rest must still be read, never taken as the end.
    path = tmp_path / "f"
    path.write_bytes(b"0123456789" * 1000)
    real_read = os.read

    def short_read(fd: int, n: int) -> bytes:
        return real_read(fd, min(n, 1000))

    monkeypatch.setattr(os, "read", short_read)
    assert read_small(str(path), 1 << 20) == b"0123456789" * 1000


def test_a_ctrl_c_held_in_a_step_that_fails_is_not_lost() -> None:
    # A caller that carries on after the step's error (no helper: fork
    # failed) must still be interrupted.
    import signal

    from wheelhouse._fs import interrupts_deferred

    with pytest.raises(KeyboardInterrupt) as caught, interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        raise OSError("no fork now")
    assert isinstance(caught.value.__context__, OSError)
    # And held until the step ends, when it ends well.
    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        steps.append("done")
    assert steps == ["done"]


@pytest.mark.parametrize("order", [("SIGINT", "SIGTERM"), ("SIGTERM", "SIGINT")])
def test_a_ctrl_c_and_a_sigterm_held_together_are_both_delivered(
    order: tuple[str, str],
) -> None:
    # The Ctrl-C's KeyboardInterrupt must not swallow the SIGTERM held with
    # it (run, for one, forwards SIGTERM to its command from a handler).
    import signal

    from wheelhouse._fs import interrupts_deferred

    seen: list[str] = []

    def on_term(_signum: int, _frame: object) -> None:
        seen.append("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            for name in order:
                signal.raise_signal(getattr(signal, name))
            seen.append("step done")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == ["step done", "SIGTERM"]


def test_naming_an_unnamed_file_this_process_did_not_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (As in a forked child, whose view of /proc/self/fd is forgotten.) Never
    # a link of whatever the descriptor's number names in the working directory.
    from wheelhouse import _fs

    monkeypatch.setattr(_fs, "_PROC_FDS", None)
    monkeypatch.chdir(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        (tmp_path / str(fd)).write_bytes(b"some unrelated file")
        with pytest.raises(OSError, match="no unnamed file"):
            _fs.name_unnamed(fd, str(tmp_path / "blob"))
    finally:
        os.close(fd)
    assert not (tmp_path / "blob").exists()


def test_a_killed_runs_scratch_directory_is_removed_by_the_next_and_a_live_ones_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from wheelhouse._fs import scratch_dir, sweep_dead_scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = ("import sys, tempfile, time; tempfile.tempdir = sys.argv[1]\n"
            "from wheelhouse._fs import scratch_dir\n"
            "with scratch_dir('wheelhouse-build-') as d:\n"
            "    (d / 'download.part').write_bytes(b'x' * 1000)\n"
            "    print(d, flush=True); time.sleep(60)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        killed, live = (Path(p.stdout.readline().strip()) for p in procs)  # type: ignore[union-attr]
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        assert (killed / "download.part").exists()  # what a kill -9 leaves
        # Not ours: a symlink to a directory, and a directory of a killed run
        # of another tool whose name merely starts alike.
        target = tmp_path / "elsewhere"
        target.mkdir()
        (target / "keep").write_text("x")
        (tmp_path / "wheelhouse-build-link").symlink_to(target)
        fresh_unlocked = tmp_path / "wheelhouse-build-justmade"
        fresh_unlocked.mkdir()  # created a moment ago, not locked yet: may be starting
        old_unlocked = tmp_path / "wheelhouse-build-old"
        old_unlocked.mkdir()  # killed before its lock: empty, and old
        os.utime(old_unlocked, (time.time() - 7200, time.time() - 7200))
        # An older wheelhouse's temp dir (no lock file), long running: not ours to take.
        foreign = tmp_path / "wheelhouse-build-olderversion"
        foreign.mkdir()
        (foreign / "download.part").write_bytes(b"x")
        os.utime(foreign, (time.time() - 7200, time.time() - 7200))

        with scratch_dir("wheelhouse-build-") as mine:
            assert mine.is_dir()
            assert not killed.exists() and not old_unlocked.exists()
            assert (live / "download.part").exists() and fresh_unlocked.is_dir()
            assert (target / "keep").exists()
            assert (foreign / "download.part").exists()
        assert not mine.exists()
        assert sweep_dead_scratch("wheelhouse-build-") == 0  # nothing else is dead
    finally:
        for p in procs:
            p.kill()
            p.wait()
            p.stdout.close()  # type: ignore[union-attr]
    assert sweep_dead_scratch("wheelhouse-build-") == 1  # the live one, now killed
    assert not live.exists()


def test_a_scratch_directory_being_made_is_never_swept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Between its lock file's creation and its lock, another run's sweep could
    # lock the file and take the directory of a live run.
    import subprocess
    import tempfile
    import time

    from wheelhouse._fs import sweep_dead_scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = ("import fcntl, sys, tempfile, time\n"
            "tempfile.tempdir = sys.argv[1]\n"
            "real = fcntl.flock\n"
            "def slow(fd, op):\n"
            "    print('locking', flush=True); time.sleep(1.0); return real(fd, op)\n"
            "fcntl.flock = slow\n"
            "from wheelhouse._fs import scratch_dir\n"
            "with scratch_dir('wheelhouse-build-') as d:\n"
            "    (d / 'download.part').write_bytes(b'x')\n"
            "    print('used', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locking"
    time.sleep(0.2)
    assert sweep_dead_scratch("wheelhouse-build-") == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "used", err


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_only_a_regular_file_is_read(tmp_path: Path, kind: str) -> None:
    # A FIFO or a link to /dev/zero put where a wheel was (after add walked
    # the directory) hung the open, or was read without end.
    import time

    from wheelhouse._fs import open_regular
    from wheelhouse.store import sha256_file

    path = tmp_path / "demo-1.0-py3-none-any.whl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    started = time.monotonic()
    for read in (lambda: read_small(str(path), 1 << 20), lambda: sha256_file(path),
                 lambda: os.close(open_regular(path))):
        with pytest.raises(OSError, match="not a regular file"):
            read()
    assert time.monotonic() - started < 2
