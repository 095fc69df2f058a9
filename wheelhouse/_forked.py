"""One forked helper process sharing a job with its parent (POSIX).

:class:`Forked` runs a function in a child made by ``fork`` (it sees the
parent's memory as it was: nothing is pickled on the way in) and hands back
its result or exception. :class:`Chunks` lets the two take numbered chunks
of a job from either end, so that each does as much as it can, whatever the
other is busy with, and no chunk is done twice.

The standard library's pools start a manager thread, queues and pipes, and
pickle the work in; for one helper and one function, a bare fork is cheaper.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
from typing import TYPE_CHECKING, Generic, TypeVar

from wheelhouse._fs import die_with_parent, interrupts_deferred
from wheelhouse.errors import HelperProcessError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Chunks", "Forked", "can_fork", "shared", "take_all"]

T = TypeVar("T")
log = logging.getLogger(__name__)

_PAIR = struct.Struct("qq")


def can_fork() -> bool:
    """Whether a helper may be forked here and now.

    A POSIX system, at least two CPUs, and no other thread: a thread's locks
    (logging's, an import's) would stay locked forever in the child.
    """
    import threading

    return (hasattr(os, "fork") and (os.cpu_count() or 1) >= 2
            and threading.active_count() == 1)


class Forked(Generic[T]):
    """``fn()`` running in a forked child; :meth:`result` waits for what it returned.

    The child never runs the parent's exit handlers or ``finally`` blocks: it
    leaves by ``os._exit`` whatever happens, and the kernel kills it if the
    parent dies first (Linux). Its result (or exception) comes back pickled
    through a pipe.
    """

    def __init__(self, fn: Callable[[], T]) -> None:
        import pickle  # here, not at start-up: most commands never fork

        parent = os.getpid()
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:  # pragma: no cover - the child (coverage does not follow forks)
            code = 70  # EX_SOFTWARE: died before it could say why
            try:
                os.close(read_end)
                die_with_parent(parent)
                # Ctrl-C is the parent's to answer (it stops this helper),
                # even inside a step that holds interrupts (the handler that
                # holds them is inherited); SIGTERM ends it (a dead helper's
                # chunks are done again by the parent).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                try:
                    payload = pickle.dumps((True, fn()))
                except BaseException as e:  # noqa: BLE001 - every failure goes to the parent
                    payload = _pickled_error(e)
                view = memoryview(payload)
                while view:
                    view = view[os.write(write_end, view):]
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid = pid
        self._read_end: int | None = read_end
        self._reaped = False

    def result(self) -> T:
        """Wait for the child; return its result or raise its exception.

        HelperProcessError if it died without a word (killed, out of memory).
        """
        if self._read_end is None:
            raise HelperProcessError("the helper process was stopped")
        chunks = []
        try:
            while chunk := os.read(self._read_end, 1 << 16):
                chunks.append(chunk)
        except BaseException:  # an interrupt, say: not waiting for the child to finish
            self.stop()
            raise
        os.close(self._read_end)
        self._read_end = None
        # Its end of the pipe closed: it is leaving (stop() kills it if this is interrupted).
        _, status = os.waitpid(self.pid, 0)
        self._reaped = True
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not chunks:
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise HelperProcessError(f"the helper process failed ({how})")
        import pickle

        ok, value = pickle.loads(b"".join(chunks))  # our own child's bytes
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Kill the child (if it is still running) and reap it; idempotent."""
        if self._read_end is not None:
            os.close(self._read_end)
            self._read_end = None
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # reaped just before an interrupt
            os.waitpid(self.pid, 0)
        self._reaped = True


def _pickled_error(error: BaseException) -> bytes:
    """*error* pickled, or a RuntimeError saying what it was when it cannot be."""
    import pickle

    try:
        data = pickle.dumps((False, error))
        pickle.loads(data)  # some pickle but cannot be rebuilt
    except Exception:  # noqa: BLE001
        return pickle.dumps((False, HelperProcessError(f"{type(error).__name__}: {error}")))
    return data


class Chunks:
    """Chunks ``0 .. count-1`` of a job, taken from either end by two processes, each once.

    The parent takes them from the front, the helper from the back.

    The two counters live in memory shared across the fork. A take holds an
    ``flock`` on *lock_dir*, opened anew by each process (locks on one shared
    descriptor would not keep the two apart); a process that dies lets go of
    it with its descriptors.
    """

    def __init__(self, count: int, lock_dir: str) -> None:
        """OSError if *lock_dir* cannot be locked (NFS: flock on a directory fails)."""
        import fcntl
        import mmap

        self._shared = mmap.mmap(-1, _PAIR.size)  # MAP_SHARED | MAP_ANONYMOUS
        _PAIR.pack_into(self._shared, 0, 0, count)
        self._lock_dir = lock_dir
        self._fd: int | None = None
        self._fd_pid = 0
        # Tried now, before a helper is started: not from take(), midway. (Not
        # kept: a helper would inherit it, and with it a lock this process holds.)
        try:
            fd = os.open(lock_dir, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        except BaseException:
            self._shared.close()
            raise

    def take(self, *, front: bool) -> int | None:
        """The next chunk from the front (or the back), or None when none is left."""
        import fcntl

        if self._fd_pid != os.getpid():  # a fresh descriptor in each process
            self._fd = os.open(self._lock_dir, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._fd_pid = os.getpid()
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            low, high = _PAIR.unpack_from(self._shared, 0)
            if low >= high:
                return None
            if front:
                _PAIR.pack_into(self._shared, 0, low + 1, high)
                return int(low)
            _PAIR.pack_into(self._shared, 0, low, high - 1)
            return int(high - 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def split(self) -> int:
        """Where the front's chunks end and the back's begin (once none is left)."""
        low, _ = _PAIR.unpack_from(self._shared, 0)
        return int(low)

    def close(self) -> None:
        """Let go of this process's descriptor and the shared memory."""
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._shared.close()


def take_all(chunks: Chunks, *, front: bool, work: Callable[[int], None]) -> None:
    """Take chunks from one end and do each, until none is left."""
    while (i := chunks.take(front=front)) is not None:
        work(i)


def shared(
    count: int,
    lock_dir: str,
    work: Callable[[int], None],
    *,
    meanwhile: Callable[[], T],
    helper: Callable[[Chunks], None] | None = None,
    redo: Callable[[int], None] | None = None,
) -> T:
    """Chunks ``0 .. count-1`` done once each, by this process and a forked helper.

    The helper takes chunks from the back (*helper* is its whole part, given
    the chunks: by default it does *work* on each); this process runs
    *meanwhile* (other work of its own, whose result is returned), then takes
    chunks from the front. A helper that dies (killed, out of memory) has the
    chunks it took, done or half done, done again here by *redo* (default
    *work*); an error it raised is raised here. Where no helper can be
    started (another thread runs, no fork now, no ``flock`` on *lock_dir*:
    NFS), all of it is done here.
    """
    chunks: Chunks | None = None
    process: Forked[None] | None = None
    try:
        if can_fork():
            try:
                chunks = Chunks(count, lock_dir)
                back = chunks
                # An interrupt waits until the helper is in hand, to be stopped below.
                with interrupts_deferred():
                    process = Forked(lambda: helper(back) if helper is not None
                                     else take_all(back, front=False, work=work))
            except OSError as e:  # no lock on a directory (NFS), no fork now (EAGAIN, ENOMEM)
                log.debug("no helper process: %s", e)
        result = meanwhile()
        if process is None or chunks is None:
            for i in range(count):
                work(i)
            return result
        take_all(chunks, front=True, work=work)
        try:
            process.result()
        except HelperProcessError as e:
            log.debug("%s: its chunks are done here", e)
            for i in range(chunks.split(), count):
                (redo or work)(i)
    finally:
        if process is not None:
            process.stop()
        if chunks is not None:
            chunks.close()
    return result
