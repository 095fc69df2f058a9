"""The forked helper and the chunks two processes share (wheelhouse._forked)."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, cast

import pytest

from tests.conftest import exited, interrupt_each_fork, reaped
from wheelhouse._forked import Chunks, Forked
from wheelhouse.errors import HelperProcessError, WheelhouseError

if TYPE_CHECKING:
    import mmap
    from pathlib import Path

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")


def test_the_helper_sees_the_parents_memory_and_hands_back_its_result() -> None:
    big = list(range(100_000))  # nothing is pickled on the way in
    helper = Forked(lambda: (os.getpid(), sum(big)))
    pid, total = helper.result()
    assert pid == helper.pid != os.getpid()
    assert total == sum(big)
    assert reaped(helper.pid)


def test_an_exception_in_the_helper_is_raised_in_the_parent() -> None:
    def fail() -> None:
        raise FileNotFoundError(2, "No such file or directory", "/nowhere")

    with pytest.raises(FileNotFoundError) as info:
        Forked(fail).result()
    assert info.value.filename == "/nowhere"


def test_an_exception_that_cannot_travel_is_named() -> None:
    class OddError(Exception):
        def __init__(self, a: str, b: str) -> None:  # pickle rebuilds with one argument
            super().__init__(f"{a}+{b}")

    def fail() -> None:
        raise OddError("x", "y")

    with pytest.raises(HelperProcessError, match=r"OddError: x\+y"):
        Forked(fail).result()


def test_a_helper_killed_is_a_wheelhouse_error_saying_so() -> None:
    helper = Forked(lambda: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(HelperProcessError, match="killed by signal 9") as info:
        helper.result()
    assert isinstance(info.value, WheelhouseError)
    assert reaped(helper.pid)


def test_stop_kills_and_reaps_the_helper_and_may_be_called_again() -> None:
    helper = Forked(lambda: time.sleep(60))
    helper.stop()
    assert reaped(helper.pid)
    helper.stop()
    with pytest.raises(HelperProcessError, match="stopped"):
        helper.result()


def test_the_helper_runs_none_of_the_parents_cleanup(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    try:
        helper = Forked(lambda: 1)
    finally:
        with ran.open("a") as f:  # the helper leaves before it could come here
            f.write(f"{os.getpid()}\n")
    assert helper.result() == 1
    assert ran.read_text().split() == [str(os.getpid())]


def test_the_helper_dies_with_its_parent(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    pid_file = tmp_path / "helper.pid"
    # A middle process forks the helper, then dies without stopping it.
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the child
        try:
            helper = Forked(lambda: time.sleep(60))
            pid_file.write_text(str(helper.pid))
        finally:
            os._exit(0)
    os.waitpid(middle, 0)
    helper_pid = int(pid_file.read_text())
    for _ in range(200):
        if exited(helper_pid):  # dead, or a zombie waiting for init to reap it
            break
        time.sleep(0.01)
    else:
        os.kill(helper_pid, signal.SIGKILL)
        pytest.fail("the helper outlived its parent")


def _take_from_both_ends(chunks: Chunks, *, pause: float = 0.0) -> tuple[list[int], list[int]]:
    """The chunks this process took from the front (a *pause* after each) and a helper from the back."""

    def take_from_back() -> list[int]:
        taken = []
        while (i := chunks.take(front=False)) is not None:
            taken.append(i)
        return taken

    helper = Forked(take_from_back)
    mine = []
    while (i := chunks.take(front=True)) is not None:
        mine.append(i)
        if pause:
            time.sleep(pause)
    return mine, helper.result()


def test_two_processes_take_every_chunk_once_from_either_end(tmp_path: Path) -> None:
    count = 300
    chunks = Chunks(count, str(tmp_path))
    mine, theirs = _take_from_both_ends(chunks, pause=0.0005)
    assert mine == list(range(len(mine)))  # a run from the front
    assert theirs == list(range(count - 1, len(mine) - 1, -1))  # the rest, from the back
    assert theirs  # the helper, not slowed down, took some
    assert chunks.split() == len(mine)
    chunks.close()


def test_a_take_is_atomic_even_when_reading_the_counters_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pause between reading the two counters and writing them back: two
    # processes that did not keep each other out of it would both read the
    # same pair, and take one chunk twice (or lose a take).
    import struct

    import wheelhouse._forked

    real = wheelhouse._forked._PAIR

    class SlowPair:
        size = real.size

        def unpack_from(self, buffer: mmap.mmap, offset: int) -> tuple[int, int]:
            pair = real.unpack_from(buffer, offset)
            time.sleep(0.002)
            return cast("tuple[int, int]", pair)

        def pack_into(self, buffer: mmap.mmap, offset: int, *values: int) -> None:
            real.pack_into(buffer, offset, *values)

    assert isinstance(real, struct.Struct)
    monkeypatch.setattr(wheelhouse._forked, "_PAIR", SlowPair())
    count = 60
    chunks = Chunks(count, str(tmp_path))
    mine, theirs = _take_from_both_ends(chunks)
    chunks.close()
    assert mine and theirs
    assert sorted(mine + theirs) == list(range(count))  # each once


def test_split_is_where_the_ends_met(tmp_path: Path) -> None:
    chunks = Chunks(10, str(tmp_path))
    assert [chunks.take(front=True) for _ in range(3)] == [0, 1, 2]
    assert [chunks.take(front=False) for _ in range(7)] == [9, 8, 7, 6, 5, 4, 3]
    assert chunks.take(front=True) is None
    assert chunks.take(front=False) is None
    assert chunks.split() == 3
    chunks.close()


def test_a_helper_killed_while_taking_a_chunk_does_not_hold_the_other_up(
    tmp_path: Path,
) -> None:
    chunks = Chunks(5, str(tmp_path))

    def die_holding_the_lock() -> None:
        fd = os.open(tmp_path, os.O_RDONLY)  # as take() does, in this process
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.kill(os.getpid(), signal.SIGKILL)

    helper = Forked(die_holding_the_lock)
    with pytest.raises(HelperProcessError):
        helper.result()
    signal.alarm(10)  # a lock left held would hang here
    try:
        assert [chunks.take(front=True) for _ in range(6)] == [0, 1, 2, 3, 4, None]
    finally:
        signal.alarm(0)
        chunks.close()


def test_an_interrupt_while_waiting_stops_the_helper_at_once() -> None:
    # An interrupt (Ctrl-C sent to this process alone) while waiting for the
    # result must not wait for the helper to finish its work, nor leave it
    # running (or unreaped) when stop() is called after.
    class AlarmError(Exception):
        pass

    def interrupt(_signum: int, _frame: object) -> None:
        raise AlarmError

    helper = Forked(lambda: time.sleep(5))
    previous = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(AlarmError):
            helper.result()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    helper.stop()
    assert time.monotonic() - started < 3
    assert reaped(helper.pid)


def test_shared_stops_a_helper_interrupted_as_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wheelhouse._forked
    from wheelhouse._forked import shared

    made = interrupt_each_fork(monkeypatch, wheelhouse._forked)
    monkeypatch.setattr(wheelhouse._forked, "can_fork", lambda: True)
    done: list[int] = []

    def work(i: int) -> None:
        time.sleep(0.2)  # the helper is still at work when the interrupt comes
        done.append(i)

    with pytest.raises(KeyboardInterrupt):
        shared(20, str(tmp_path), work, meanwhile=lambda: None)
    [helper] = made
    assert reaped(helper.pid)  # stopped, not left taking chunks for nobody
    assert done == []  # the interrupt came before this process did any


def test_a_helper_forked_while_interrupts_wait_answers_sigterm_and_leaves_ctrl_c_to_the_parent(
) -> None:
    # A helper forked inside a step that holds interrupts inherits the handler
    # that holds them; it must not keep it for its whole life.
    from wheelhouse._fs import interrupts_deferred

    def slow() -> str:
        time.sleep(0.5)
        return "done"

    with interrupts_deferred():
        ignoring = Forked(slow)
        terminated = Forked(slow)
    time.sleep(0.1)  # both past their start
    os.kill(ignoring.pid, signal.SIGINT)  # Ctrl-C is the parent's to answer
    os.kill(terminated.pid, signal.SIGTERM)
    assert ignoring.result() == "done"
    with pytest.raises(HelperProcessError, match=f"killed by signal {int(signal.SIGTERM)}"):
        terminated.result()
    ignoring.stop()
    terminated.stop()
