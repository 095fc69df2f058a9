"""The floor of goal (a): the file operations alone that any add into a store must do.

Usage::

    python benchmarks/_floor.py INPUT_DIR SCRATCH_DIR

For every wheel in INPUT_DIR, as ``wheelhouse add`` does and with nothing
else (no zip is parsed, no name checked, no manifest, no index page): read
it, hash it, write its blob into a store (an unnamed temp file in ``tmp/``
linked under its sha256), write a METADATA-sized blob the same way, and
hard-link both into a house's ``files/``; then flush the file system once,
as durable blobs need (``syncfs``). One process per CPU, as ``add`` uses.
simple503 works in place, with no copy and no links, so the time this takes
bounds from below what any store-based ``add`` can reach against it on this
machine, whatever its code.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

_METADATA_SIZE = 400  # the synthetic wheels' METADATA is smaller


def _stage(root: str, proc_fds: int, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    fd = os.open(f"{root}/tmp", os.O_TMPFILE | os.O_WRONLY, 0o444)
    try:
        os.write(fd, data)
        dest = f"{root}/blobs/{sha[:2]}/{sha}"
        os.link(str(fd), dest, src_dir_fd=proc_fds, follow_symlinks=True)
    finally:
        os.close(fd)
    return dest


def _work(src: str, root: str, names: list[str]) -> None:
    proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    for name in names:
        with open(f"{src}/{name}", "rb") as f:  # noqa: PTH123
            data = f.read()
        blob = _stage(root, proc_fds, data)
        metadata = _stage(root, proc_fds, data[:_METADATA_SIZE] + name.encode())
        os.link(blob, f"{root}/house/files/{name}")
        os.link(metadata, f"{root}/house/files/{name}.metadata")


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
            finally:
                os._exit(code)  # (an error's traceback is printed on the way)
        pids.append(pid)
    _work(src, root, names[0::workers])
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed |= os.waitstatus_to_exitcode(status) != 0
    fd = os.open(root, os.O_RDONLY)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    finally:
        os.close(fd)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
