"""The floor of goal (a): the file operations alone of an add into a store.

Usage::

    python benchmarks/_floor.py INPUT_DIR SCRATCH_DIR

For every wheel in INPUT_DIR, as ``wheelhouse add`` does it and with nothing
else (no zip is read, no name checked, no manifest, no index page): read it
(one ``open``, ``fstat``, ``read``), hash it, write it and a METADATA-sized
file into a store's ``tmp/`` as unnamed temp files, and, a batch of 200 at a
time, flush the file system (the bytes are durable before they are named,
PROMISES.md 2), link each under its sha256, and hard-link both into a house's
``files/``; at the end one more flush for the names. One process per CPU, as
``add`` uses.

simple503 works in place: it copies nothing and links nothing. The time this
takes is what file operations alone cost an ``add`` built as wheelhouse's is
(the wheel copied into a store, its METADATA a blob of its own, both linked
into the house), before any of the rest of its work: simple503's time over
this one bounds, loosely, how far such an add can get ahead of simple503.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import traceback
from pathlib import Path

_METADATA_SIZE = 400  # the synthetic wheels' METADATA is smaller
_BATCH = 200  # as add's batches of unnamed temp files

_libc = ctypes.CDLL(None, use_errno=True)


def _flush(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _work(src: str, root: str, names: list[str]) -> None:
    proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    for start in range(0, len(names), _BATCH):
        staged: list[tuple[str, int, str, int, str]] = []
        try:
            for name in names[start : start + _BATCH]:
                data = _read(f"{src}/{name}")
                temps = []
                for blob in (data, data[:_METADATA_SIZE] + name.encode()):
                    fd = os.open(f"{root}/tmp", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o444)
                    os.write(fd, blob)
                    temps.append((fd, hashlib.sha256(blob).hexdigest()))
                (fd, sha), (mfd, msha) = temps
                staged.append((name, fd, sha, mfd, msha))
            _flush(root)
            for name, fd, sha, mfd, msha in staged:
                blob = f"{root}/blobs/{sha[:2]}/{sha}"
                metadata = f"{root}/blobs/{msha[:2]}/{msha}"
                os.link(str(fd), blob, src_dir_fd=proc_fds, follow_symlinks=True)
                os.link(str(mfd), metadata, src_dir_fd=proc_fds, follow_symlinks=True)
                os.link(blob, f"{root}/house/files/{name}")
                os.link(metadata, f"{root}/house/files/{name}.metadata")
        finally:
            for _, fd, _, mfd, _ in staged:
                os.close(fd)
                os.close(mfd)


def main() -> int:
    """Do the file operations for every wheel in argv[1] under argv[2]."""
    src, root = sys.argv[1], sys.argv[2]
    names = sorted(p.name for p in Path(src).iterdir() if p.name.endswith(".whl"))
    Path(root, "tmp").mkdir(parents=True)
    Path(root, "house", "files").mkdir(parents=True)
    for i in range(256):
        Path(root, "blobs", f"{i:02x}").mkdir(parents=True)
    workers = max(1, os.cpu_count() or 1)
    pids = []
    for i in range(1, workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _work(src, root, names[i::workers])
                code = 0
            except Exception:  # noqa: BLE001 (a helper process: said, then its exit code)
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    _work(src, root, names[0::workers])
    failed = False
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed |= os.waitstatus_to_exitcode(status) != 0
    _flush(root)  # the names
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
