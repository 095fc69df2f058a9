"""Scratch areas for the benchmarks: room checks before, and guaranteed removal after, /dev/shm.

/dev/shm is shared memory for the whole machine: `multiprocessing` semaphores and
other programs need it. A benchmark that fills it (bytes or inodes) or leaves its
tree behind breaks them. So, for a run in memory:

- :func:`fits` checks the free inodes and bytes (``os.statvfs``, and the memory
  actually available, since tmpfs pages are RAM) against an estimate of what the
  run will create, keeping a reserve for everyone else; the caller skips what
  does not fit and says so;
- :func:`shm_scratch` removes the tree in a ``finally:`` -- on success, on an
  error, on Ctrl-C, and on SIGTERM/SIGHUP (turned into ``SystemExit``).

On tmpfs every directory entry counts against the inode limit, hard links
included: ``cp -al`` of a tree costs as many inodes as the tree has entries.

On disk nothing is deleted between runs (see BENCHMARKING.md), and the tree is left
for the user to remove when the disk is idle. What is deleted once, at the start
(:func:`fresh_disk_scratch`), is waited out: on ext4 without a journal (this
machine's disk) a new file may not reuse an inode deleted less than 60 seconds
ago, or 300 while that inode's table block is unwritten, and each allocation
walks past every such inode (``recently_deleted`` in fs/ext4/ialloc.c): for
minutes after a large tree is deleted, creating a file costs several times the
kernel time. A tool that creates more files pays more, so the figures taken then
measure the deletion, not the tools.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

SHM = Path("/dev/shm")
RESERVE = 0.10  # of the filesystem's inodes and bytes, always left free for others


def is_shm(path: Path) -> bool:
    """Whether *path* lies under /dev/shm."""
    return Path(path).absolute().is_relative_to(SHM)


def _mem_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, when known."""
    try:
        with open("/proc/meminfo") as f:  # noqa: PTH123 - tiny read, no Path needed
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def room(path: Path) -> tuple[int | None, int, list[str]]:
    """Inodes (None: no limit) and bytes that may still be used under *path*, past the reserve.

    Bytes are capped by the memory available when *path* is under /dev/shm (tmpfs
    pages are RAM). The third item describes the state, for messages.
    """
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    st = os.statvfs(probe)
    pct = f"{int(RESERVE * 100)}%"
    notes = []
    inodes = None
    if st.f_files:  # 0 on a tmpfs without an inode limit
        inodes = st.f_favail - int(st.f_files * RESERVE)
        notes.append(f"{st.f_favail:,} inodes free ({pct} of {st.f_files:,} kept in reserve)")
    free = st.f_bavail * st.f_frsize
    mem = _mem_available() if is_shm(probe) else None
    nbytes = min(free, free if mem is None else mem) - int(st.f_blocks * st.f_frsize * RESERVE)
    notes.append(f"{free / 1e9:.2f} GB free" + (f", {mem / 1e9:.2f} GB of memory available"
                                                 if mem is not None else "")
                 + f" ({pct} of {st.f_blocks * st.f_frsize / 1e9:.2f} GB kept in reserve)")
    return inodes, nbytes, notes


def fits(path: Path, inodes: int, nbytes: int, what: str) -> bool:
    """Whether *inodes* entries and *nbytes* bytes fit under *path*, keeping a reserve.

    Prints why not, and what is free, when they do not.
    """
    spare_inodes, spare_bytes, notes = room(path)
    if (spare_inodes is None or inodes <= spare_inodes) and nbytes <= spare_bytes:
        return True
    print(f"skipped: {what} under {path}: needs ~{inodes:,} inodes and ~{nbytes / 1e9:.2f} GB; "
          + "; ".join(notes), flush=True)
    return False


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so ``finally:`` blocks run."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


def remove(path: Path) -> None:
    """Remove a tree; say so on stderr if anything is left."""
    shutil.rmtree(path, ignore_errors=True)
    if Path(path).exists():
        print(f"warning: could not remove all of {path}; remove it by hand", file=sys.stderr,
              flush=True)


@contextmanager
def shm_scratch(root: Path) -> Iterator[Path]:
    """A fresh, empty *root* under /dev/shm, removed whatever happens."""
    if not is_shm(root):
        raise ValueError(f"{root} is not under {SHM}")
    exit_on_termination()
    try:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        yield root
    finally:
        remove(root)


def _block_device_name(path: Path) -> tuple[str, str] | None:
    """The file system type and the kernel's name of the device holding *path*, if known.

    Matched by device number (``st_dev``), not by mount point: a mount stacked
    on another at the same place hides it, and only the device tells which.
    """
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    dev = probe.stat().st_dev
    major_minor = f"{os.major(dev)}:{os.minor(dev)}"
    fstype = None
    try:
        with open("/proc/self/mountinfo") as f:  # noqa: PTH123
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) > 2 and fields[2] == major_minor and right.split():
                    fstype = right.split()[0]
    except OSError:
        return None
    if fstype is None:
        return None
    name = Path(os.path.realpath(f"/sys/dev/block/{major_minor}")).name
    return fstype, name


def inode_reuse_wait(path: Path) -> float:
    """Seconds to wait after deleting many files under *path* before timing file creation there.

    320 (300 and a margin) on ext4 without a journal (see the module's docstring), else 0: with a
    journal, ext4 reuses deleted inodes at once.
    """
    found = _block_device_name(path)
    if found is None or found[0] != "ext4":
        return 0.0
    _, name = found
    journal = Path(f"/sys/fs/ext4/{name}/journal_task")
    try:
        has_journal = journal.read_text().strip() != "<none>"
    except OSError:
        # Older kernels: a journaled ext4 has its jbd2 directory.
        has_journal = any(Path("/proc/fs/jbd2").glob(f"{name}-*"))
    return 0.0 if has_journal else 320.0


def fresh_disk_scratch(root: Path) -> None:
    """An empty *root* on disk; what was there is deleted, then waited out (see above)."""
    existed = root.exists()
    if existed:
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if existed:
        waited_out(root)
    else:
        os.sync()


def waited_out(path: Path) -> None:
    """Flush, then wait until files deleted under *path* just now no longer slow creating files."""
    os.sync()
    wait = inode_reuse_wait(path)
    if wait:
        print(f"(waiting {wait:.0f} s: the file system holding {path} does not reuse the inodes "
              "just deleted for that long, and creating files costs more until then)",
              flush=True)
        time.sleep(wait)


def fresh_bytecode() -> None:
    """Compile wheelhouse's modules first, as an install does.

    With ``PYTHONDONTWRITEBYTECODE`` set (some machines set it), an edited
    module would be compiled again by every command timed: start-up would
    measure the compiler, not wheelhouse.
    """
    import subprocess
    import sys

    import wheelhouse

    package = str(Path(wheelhouse.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
