"""File-system primitives: durable batches, atomic writes, directory syncs."""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "can_exchange",
    "die_with_parent",
    "exchange",
    "flushing",
    "fsync_dir",
    "interrupts_deferred",
    "name_unnamed",
    "open_regular",
    "open_unnamed",
    "read_small",
    "remove_quietly",
    "rename_noreplace",
    "scratch_dir",
    "sweep_dead_scratch",
    "sync_files",
    "write_all",
    "write_atomic",
    "write_many_atomic",
    "write_new",
]


@functools.cache
def _libc() -> Any:
    """The C library's symbols (Linux), loaded on first use: ctypes costs start-up time."""
    import ctypes

    # dlopen(NULL): the running program's symbols, libc's among them (no ldconfig run).
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def _load_syncfs() -> Callable[[int], int] | None:
    """syncfs(2) as a function returning 0 or the errno, or None where there is none."""
    # syncfs(2) flushes one file system in a single call: the cheap way to make a
    # batch of thousands of new files durable before they are published.
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        func = _libc().syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int

    def call(fd: int) -> int:
        return 0 if func(fd) == 0 else ctypes.get_errno()

    return call


def die_with_parent(parent: int) -> None:
    """In a worker process: have the kernel kill it when *parent* dies (Linux).

    A worker of a killed command would otherwise live on, holding the locks it
    inherited (the next command waits for them) and able to go on with work
    already handed to it. Where *parent* is not the direct parent (a fork
    server started the worker), the fork server's death stands for it.
    """
    if not sys.platform.startswith("linux"):
        return
    import signal

    pr_set_pdeathsig = 1
    try:
        _libc().prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: as before
        return
    if os.getppid() != parent and not _running(parent):  # it died before the prctl
        os.kill(os.getpid(), signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether process *pid* (Linux) has not exited.

    Not ``kill(pid, 0)``: that succeeds for a process that has exited and
    not yet been reaped (a zombie), which is how a parent that died a moment
    ago looks.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # noqa: PTH123
            state = f.read().rpartition(b")")[2].split()[:1]
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: as before, assumed alive
    return state not in ([b"Z"], [b"X"])


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


@functools.cache
def _load_renameat2(flags: int) -> Callable[[bytes, bytes], int] | None:
    """renameat2(2) with *flags*, returning 0 or the errno; None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        func = _libc().renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    at_fdcwd = -100

    def call(src: bytes, dst: bytes) -> int:
        if func(at_fdcwd, src, at_fdcwd, dst, flags) == 0:
            return 0
        return ctypes.get_errno()

    return call


def can_exchange() -> bool:
    """Whether :func:`exchange` may work here (Linux ``renameat2``)."""
    return _load_renameat2(_RENAME_EXCHANGE) is not None


def exchange(a: str, b: str) -> bool:
    """Atomically swap the paths *a* and *b* (both must exist); False where unsupported.

    One ``renameat2(RENAME_EXCHANGE)``: a reader finds either the old entry
    or the new one under each name, never none.
    """
    swap = _load_renameat2(_RENAME_EXCHANGE)
    if swap is None:
        return False
    err = swap(os.fsencode(a), os.fsencode(b))
    if err == 0:
        return True
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to the file descriptor *fd* (``os.write`` may write less)."""
    written = os.write(fd, data)
    if written == len(data):  # the common case: one call, no view
        return
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view) :]


def write_new(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Create *path* (which must not exist) holding *data*; for files in a private directory."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def remove_quietly(path: str | Path) -> None:
    """Remove a file if it is there (a temp file on an error path)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # noqa: PTH108


def rename_noreplace(src: str, dst: str) -> bool:
    """Atomically give *src* the name *dst* unless *dst* exists; never replace it.

    Returns False (and leaves *src* in place) when *dst* already exists. One
    ``renameat2(RENAME_NOREPLACE)`` on Linux; elsewhere, or on a file system
    without it, ``link`` then ``unlink``, which is just as safe.
    """
    renameat2 = _load_renameat2(_RENAME_NOREPLACE)
    if renameat2 is not None:
        err = renameat2(os.fsencode(src), os.fsencode(dst))
        if err == 0:
            return True
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links here either: a plain rename, after a check. Two writers
        # racing here hold the same bytes (same name, same sha256).
        if os.path.exists(dst):  # noqa: PTH110
            return False
        os.rename(src, dst)  # noqa: PTH104
        return True
    os.unlink(src)  # noqa: PTH108
    return True


def fsync_dir(path: Path) -> None:
    """Make renames and links in *path* durable (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_files(
    paths: Iterable[Path | str], *, fds: Sequence[int] = (), fds_share_fs: bool = False
) -> None:
    """Make the data of every file in *paths*, and of every open file in *fds*, durable.

    As one fsync each would: on Linux one ``syncfs`` per file system does
    it; elsewhere each file is fsynced. *fds_share_fs*: the caller knows
    every file in *fds* is on one file system (no ``fstat`` each). Raises
    OSError if the data cannot be flushed.
    """
    paths = list(paths)
    if not paths and not fds:
        return
    syncfs = _load_syncfs()
    if syncfs is not None:
        # One stat per directory, not per file: a file is on its directory's
        # file system (a mount point is a directory, never a plain file).
        parents: dict[str, Path | str] = {}
        for path in paths:
            parents.setdefault(os.path.dirname(path), path)  # noqa: PTH120
        devices: dict[int, Path | str | int] = {}
        for path in parents.values():
            devices.setdefault(os.stat(path).st_dev, path)  # noqa: PTH116
        # (The first descriptor, the one opened first, sees any write-back
        # error since: syncfs reports one to each descriptor opened before it.)
        for fd in fds[:1] if fds_share_fs else fds:
            devices.setdefault(os.fstat(fd).st_dev, fd)
        for where in devices.values():
            fd = where if isinstance(where, int) else os.open(where, os.O_RDONLY)
            try:
                err = syncfs(fd)
                if err != 0:
                    raise OSError(err, os.strerror(err), str(where))
            finally:
                if not isinstance(where, int):
                    os.close(fd)
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for fd in fds:
        os.fsync(fd)


_PROC_FDS: int | None = None  # a descriptor of this process's /proc/self/fd
_NO_UNNAMED: set[str] = set()  # directories whose file system has no O_TMPFILE


def _forget_proc_fds() -> None:
    # In a forked child: the inherited descriptor shows the parent's table.
    global _PROC_FDS
    if _PROC_FDS is not None:
        with contextlib.suppress(OSError):
            os.close(_PROC_FDS)
        _PROC_FDS = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_proc_fds)


def open_unnamed(directory: str, mode: int) -> int | None:
    """A new file with no name yet on *directory*'s file system (``O_TMPFILE``), open for writing.

    None where there is no such thing (not Linux, an old kernel, a file
    system without it such as NFS, no ``/proc`` to name it through): the
    caller writes a named temp file instead. Give it a name with
    :func:`name_unnamed`; closed without one, it vanishes, even after a crash.
    """
    global _PROC_FDS
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or directory in _NO_UNNAMED:
        return None
    if _PROC_FDS is None:  # each process its own (see _forget_proc_fds)
        try:
            _PROC_FDS = os.open("/proc/self/fd", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
    try:
        return os.open(directory, flag | os.O_WRONLY | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP):
            _NO_UNNAMED.add(directory)  # not asked again
            return None
        if e.errno == errno.ENOENT:
            return None  # (the directory is gone: the caller's way makes it again)
        raise


def name_unnamed(fd: int, dest: str) -> bool:
    """Give the file open at *fd* (from :func:`open_unnamed`) the name *dest*, unless taken.

    Atomic: *dest* appears with all the file's bytes, or not at all. Returns
    False when *dest* exists (it is kept as it is). *fd* stays open.
    """
    if _PROC_FDS is None:  # not from open_unnamed in this process (a parent's, say)
        raise OSError(errno.EBADF, "no unnamed file opened by this process", str(fd))
    try:
        # linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW): no privilege needed,
        # unlike AT_EMPTY_PATH.
        os.link(str(fd), dest, src_dir_fd=_PROC_FDS, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


@contextlib.contextmanager
def flushing(path: str | Path, *, every: float = 0.05) -> Iterator[None]:
    """Flush the file system holding *path* in the background while the block runs.

    For a block that writes thousands of new files before one
    :func:`sync_files` makes them durable: flushed as they come (one
    ``syncfs`` every *every* seconds, in a thread that waits on the disk,
    not on the interpreter), they leave that last flush little to do. Does
    nothing where there is no ``syncfs``.

    An error a background flush met is raised (OSError) when the block ends
    without one of its own: syncfs reports a write-back error to each
    descriptor opened before it happened, once, so the final flush (a
    descriptor opened later) would not see it.
    """
    syncfs = _load_syncfs()
    if syncfs is None:
        yield
        return
    import threading

    stop = threading.Event()
    fd = os.open(path, os.O_RDONLY)
    errors: list[int] = []

    def flush() -> None:
        while not stop.wait(every):
            err = syncfs(fd)
            if err != 0 and not errors:
                errors.append(err)

    thread = threading.Thread(target=flush, name="wheelhouse-flush", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        os.close(fd)
    if errors:
        raise OSError(errors[0], os.strerror(errors[0]), str(path))


def open_regular(path: str | os.PathLike[str]) -> int:
    """Open a regular file for reading; raise OSError for anything else (a FIFO, a device).

    Non-blocking open, so that a FIFO put where a file was (between a
    directory walk and the read) does not hang the open, and a device
    (``/dev/zero``) is never read without end.
    """
    return _open_regular(path)[0]


def _open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_small(path: str, limit: int) -> bytes | None:
    """Read a whole regular file if it is at most *limit* bytes (else None), with few syscalls."""
    fd, st = _open_regular(path)
    try:
        size = st.st_size
        if size > limit:
            return None
        # One byte more than its size: exactly its size back is the whole
        # file, in one read, not a second one for EOF. Anything else (it grew
        # or shrank since the fstat, or a file system that reads less than
        # asked) is read on to the end.
        first = os.read(fd, size + 1)
        if len(first) == size:
            return first
        chunks = [first]
        total = len(first)
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                return None
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write *data* to *path* atomically: temp file in the same directory, fsync, rename."""
    write_many_atomic({path: data}, mode=mode)


_TOKEN = os.urandom(4).hex()
_COUNT = iter(range(1 << 62))


def _create_temp(directory: Path, mode: int) -> tuple[int, Path]:
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = directory / f".tmp-{os.getpid()}.{_TOKEN}.{next(_COUNT)}.part"
        try:
            # Created with its final mode (umask aside): no chmod later.
            return os.open(name, flags, mode), name
        except FileExistsError:
            continue
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    return fd, Path(tmp)


def write_many_atomic(files: Mapping[Path, bytes], *, mode: int = 0o644) -> None:
    """Write many files atomically, in the order given, with one durability flush.

    Every file is written to a temp file beside its destination, the batch is
    flushed to disk, then each temp file is renamed over its destination: a
    reader sees the old bytes or the new, never a mix, and a crash leaves at
    most ``.tmp-*.part`` files.
    """
    temps: list[tuple[Path, Path]] = []
    renamed = 0
    try:
        for path, data in files.items():
            fd, tmp = _create_temp(path.parent, mode)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb", buffering=0) as f:
                f.write(data)
        sync_files(tmp for tmp, _ in temps)
        for done, (tmp, path) in enumerate(temps, 1):
            tmp.replace(path)
            renamed = done
    finally:
        for tmp, _ in temps[renamed:]:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector in the block.

    For code that builds many objects that live on (50,000 manifest entries):
    each collection walks every tracked object still alive, and building that
    many sets off hundreds of collections that find nothing (an entry holds no
    cycle). Nested or already paused: nothing changes.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def open_files_limit() -> int | None:
    """The process's limit on open file descriptors (soft); None if it cannot be known.

    Unlimited reads as :data:`sys.maxsize`.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Let Ctrl-C and SIGTERM wait until the block is done, then take effect.

    For the few steps that must finish together (a house's manifest and its
    index): an interrupt in between would leave one without the other. A
    signal that arrives meanwhile is delivered again, to the handler that was
    there before, once the block has ended -- also when it ended with an
    exception of its own (a KeyboardInterrupt then comes with that one as its
    context): a Ctrl-C is never lost to an error the caller goes on from.
    Both a Ctrl-C and a SIGTERM held are delivered, in the order they came
    (a handler's exception, such as the KeyboardInterrupt, is raised after
    the other was delivered). Outside the main thread (no signals there)
    this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: object) -> None:
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # None: a handler installed from C, which cannot be put back from
            # Python; the default is the nearest.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        raised: BaseException | None = None
        for signum in dict.fromkeys(noted):
            try:
                signal.raise_signal(signum)  # (its Python handler runs before this returns)
            except BaseException as e:  # noqa: BLE001 - raised below, once the other is delivered
                raised = raised or e
        if raised is not None:
            raise raised


#: Inside a scratch directory: the file its process holds flocked while it lives.
_ALIVE = ".wheelhouse-alive"
#: A scratch directory without that file (killed between its creation and the
#: lock) is debris once it is this old.
_UNLOCKED_SCRATCH_SECONDS = 3600


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private temp directory, removed at the end, and by the next run if this one is killed.

    The directory holds a file flocked for as long as this process lives (the
    kernel drops the lock when the process dies, however it dies), so
    :func:`sweep_dead_scratch` can tell a killed run's directory from a live
    one without trusting process ids, which are reused.
    """
    import fcntl
    import shutil

    sweep_dead_scratch(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    fd = -1
    try:
        # Locked before it takes its name: a sweep that finds the name can
        # lock it only once this process is gone.
        fd = os.open(path / (_ALIVE + ".new"), os.O_RDWR | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        (path / (_ALIVE + ".new")).rename(path / _ALIVE)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def sweep_dead_scratch(prefix: str) -> int:
    """Remove this user's *prefix* directories in the temp dir whose process is gone.

    Returns how many went. A directory is taken only when its lock file can be
    locked (its owner died), or, with no lock file, when it holds nothing else
    and is over an hour old (killed as it began). A directory of anything else
    (an older wheelhouse's, another program's) has no lock file and is left.
    Never follows a symlink; anything it cannot read is left.
    """
    import fcntl
    import shutil
    import stat
    import time

    base = tempfile.gettempdir()
    removed = 0
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(prefix)]
    except OSError:
        return 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        try:
            fd = os.open(os.path.join(entry.path, _ALIVE),  # noqa: PTH118
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            try:
                left = os.listdir(entry.path)  # noqa: PTH208 - names, from a DirEntry
            except OSError:
                continue
            if (left not in ([], [_ALIVE + ".new"])
                    or time.time() - st.st_mtime < _UNLOCKED_SCRATCH_SECONDS):
                continue
            fd = -1
        except OSError:
            continue
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its process lives
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += not os.path.lexists(entry.path)
        finally:
            if fd >= 0:
                os.close(fd)
    return removed
