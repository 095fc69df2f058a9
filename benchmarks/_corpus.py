"""Synthetic corpora for the benchmarks: many small, valid wheels (generated, never committed)."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

VERSIONS_PER_PROJECT = 5


def _record(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def wheel_name(i: int) -> tuple[str, str, str]:
    """(project, version, filename) of the i-th synthetic wheel."""
    project = f"bench_pkg_{i // VERSIONS_PER_PROJECT:05d}"
    version = f"1.{i % VERSIONS_PER_PROJECT}.0"
    return project, version, f"{project}-{version}-py3-none-any.whl"


def write_wheel(directory: Path, i: int) -> Path:
    """Write the i-th synthetic wheel: a module, METADATA, WHEEL and RECORD (~1.5 kB)."""
    project, version, filename = wheel_name(i)
    dist_info = f"{project}-{version}.dist-info"
    files = {
        f"{project}/__init__.py": f"VALUE = {i}\n".encode() * 20,
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
            f"Summary: synthetic package {i}\nRequires-Python: >=3.8\n"
            f"Requires-Dist: bench-pkg-{(i // VERSIONS_PER_PROJECT + 1):05d}\n"
        ).encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [_record(p, d) for p, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return path


def _chunk(args: tuple[str, int, int]) -> None:
    directory, start, stop = args
    for i in range(start, stop):
        write_wheel(Path(directory), i)


def make_corpus(directory: Path, count: int) -> Path:
    """Write *count* wheels into *directory* (reused when already complete)."""
    marker = directory / ".complete"
    if marker.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    step = 2000
    jobs = [(str(directory), s, min(s + step, count)) for s in range(0, count, step)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_chunk, jobs))
    marker.write_text(str(count))
    return directory
