"""Adding local distribution files to the store and a house."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wheelhouse.dists import read_dist_info
from wheelhouse.errors import HouseError, InvalidInputError, WheelhouseError
from wheelhouse.filenames import DistFilename, parse_filename
from wheelhouse.house import FileEntry, House
from wheelhouse.store import BlobMeta, Sha256, Store, sha256_file

__all__ = ["AddResult", "add_paths", "collect_dist_paths", "store_distribution"]

log = logging.getLogger(__name__)

_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")

#: Called after each file is stored, with the entry it produced.
Progress = Callable[[FileEntry], None]


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add`` did."""

    #: Files new to the house.
    added: tuple[FileEntry, ...]
    #: Files the house already had, byte for byte.
    unchanged: tuple[FileEntry, ...]
    #: Files whose bytes were already in the store (no copy made).
    reused: int


def collect_dist_paths(paths: Iterable[Path]) -> list[Path]:
    """Expand directories to the wheels and sdists under them; keep files as they are.

    Hidden directories are skipped; symlinked directories are not followed.
    A path that does not exist is an error.
    """
    found: list[Path] = []
    missing = []
    for path in paths:
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found.extend(
                    Path(dirpath) / f for f in sorted(filenames) if f.endswith(_DIST_SUFFIXES)
                )
        elif path.is_file():
            found.append(path)
        else:
            missing.append(str(path))
    if missing:
        raise InvalidInputError(
            "no such file or directory: " + ", ".join(repr(m) for m in missing)
        )
    return found


def store_distribution(store: Store, path: Path) -> tuple[FileEntry, bool]:
    """Put one wheel or sdist into the store, checked; return its house entry.

    The second value is True when the store already had the bytes. A file
    whose name is unsafe, whose archive is unreadable or whose metadata
    disagrees with its name never gets a blob name.
    """
    fn = parse_filename(path.name)
    origin = path.absolute().as_uri()
    try:
        sha, size = sha256_file(path)
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror or e}") from e
    if store.has(sha):
        meta = store.read_meta(sha)
        if meta is not None and meta.filename == fn.filename:
            return _entry(fn, meta, origin), True
        # Known bytes under a new name (or no record yet): check them against it.
        with store.open_blob(sha) as f:
            info = read_dist_info(f, fn, source=str(path))
        meta = _write_meta(store, fn, sha, size, info.requires_python, info.metadata, meta)
        return _entry(fn, meta, origin), True

    metadata: list[bytes | None] = []
    requires_python: list[str | None] = []

    def check(tmp: Path, tmp_sha: Sha256) -> None:
        with tmp.open("rb") as f:
            info = read_dist_info(f, fn, source=str(path))
        metadata.append(info.metadata)
        requires_python.append(info.requires_python)

    with path.open("rb") as src:
        # The file may change between the first hash and the copy: insist on the same bytes.
        sha2, size = store.put_stream(src, expected_sha256=sha, check=check, source=str(path))
    meta = _write_meta(store, fn, sha2, size, requires_python[0], metadata[0], None)
    return _entry(fn, meta, origin), False


def _write_meta(
    store: Store,
    fn: DistFilename,
    sha: Sha256,
    size: int,
    requires_python: str | None,
    metadata: bytes | None,
    existing: BlobMeta | None,
) -> BlobMeta:
    metadata_sha = store.put_bytes(metadata) if metadata is not None else None
    meta = BlobMeta(
        sha256=sha,
        size=size,
        kind=fn.kind,
        name=fn.name,
        version=str(fn.version),
        filename=fn.filename,
        tags=fn.tag_strings,
        requires_python=requires_python,
        metadata_sha256=metadata_sha if fn.kind == "wheel" else None,
    )
    if existing is None:
        store.write_meta(meta)
    return meta


def _entry(fn: DistFilename, meta: BlobMeta, origin: str) -> FileEntry:
    return FileEntry(
        filename=fn.filename,
        sha256=meta.sha256,
        size=meta.size,
        kind=fn.kind,
        project=fn.name,
        version=str(fn.version),
        requires_python=meta.requires_python,
        metadata_sha256=meta.metadata_sha256,
        origin=origin,
    )


def add_paths(
    house: House,
    store: Store,
    paths: Sequence[Path],
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> AddResult:
    """Add wheels and sdists (files or directories of them) to *house* via *store*.

    Every file is checked first; if any is bad, or would give a file name in
    the house different bytes, nothing in the house changes and one error
    lists every problem.
    """
    files = collect_dist_paths(paths)
    if not files:
        raise InvalidInputError(
            "no wheels or sdists found in: " + ", ".join(repr(str(p)) for p in paths)
        )

    def one(path: Path) -> tuple[FileEntry, bool] | WheelhouseError:
        try:
            result = store_distribution(store, path)
        except WheelhouseError as e:
            return e
        if progress is not None:
            progress(result[0])
        return result

    workers = jobs or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, files))

    problems = [str(o) for o in outcomes if isinstance(o, WheelhouseError)]
    stored = [o for o in outcomes if not isinstance(o, WheelhouseError)]
    incoming: dict[str, FileEntry] = {}
    for entry, _ in stored:
        prior = incoming.get(entry.filename)
        if prior is not None and prior.sha256 != entry.sha256:
            problems.append(
                f"two different files are named {entry.filename}: "
                f"sha256={prior.sha256} and sha256={entry.sha256}"
            )
        incoming[entry.filename] = entry
    if problems:
        raise InvalidInputError(
            f"{len(problems)} problem(s); nothing was added:\n  " + "\n  ".join(problems)
        )

    with house.lock():
        manifest = house.read_manifest()
        current = manifest.by_filename()
        conflicts = [
            f"{name}: the house has sha256={current[name].sha256}, the new file sha256={e.sha256}"
            for name, e in sorted(incoming.items())
            if name in current and current[name].sha256 != e.sha256
        ]
        if conflicts:
            raise HouseError(
                "a house never reuses a file name for different bytes:\n  "
                + "\n  ".join(conflicts),
                hint="remove the old file first with 'wheelhouse remove', or use another house",
            )
        added = [e for name, e in sorted(incoming.items()) if name not in current]
        unchanged = [current[name] for name in sorted(incoming) if name in current]
        for entry in added:
            house.link_from_store(store, entry)
        for entry in unchanged:
            house.link_from_store(store, entry)  # repairs a missing link, else a stat
        new_manifest = manifest.with_files(added) if added else manifest
        if added:
            house.write_manifest(new_manifest)
        house.write_index(new_manifest, previous=manifest)
    reused = sum(1 for _, was_there in stored if was_there)
    log.info("added %d file(s), %d unchanged, %d reused from the store",
             len(added), len(unchanged), reused)
    return AddResult(tuple(added), tuple(unchanged), reused)
