"""Adding local distribution files to the store and a house."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import operator
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wheelhouse._fs import (
    die_with_parent,
    gc_paused,
    interrupts_deferred,
    open_files_limit,
    open_regular,
    read_small,
    remove_quietly,
)
from wheelhouse.dists import read_dist_info
from wheelhouse.errors import (
    HashMismatchError,
    HelperProcessError,
    IntegrityError,
    InvalidInputError,
    WheelhouseError,
)
from wheelhouse.filenames import DistFilename, parse_filename
from wheelhouse.house import FileEntry, House, refuse_other_bytes
from wheelhouse.store import (
    SMALL_BLOB,
    Sha256,
    Store,
    adopt_temp_files_for,
    discard_temp,
    sha256_file,
)

__all__ = [
    "AddResult",
    "Incoming",
    "add_paths",
    "collect_dist_paths",
    "ingest",
    "store_distribution",
    "store_files",
]

log = logging.getLogger(__name__)

_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")
#: Up to this many files, each is looked up in the manifest by bisection (no full parse).
_FEW_LOOKUPS = 256

#: Called after each file is stored, with the entry it produced.
Progress = Callable[[FileEntry], None]


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add`` did."""

    #: Files new to the house.
    added: tuple[FileEntry, ...]
    #: Files the house already had, byte for byte.
    unchanged: tuple[FileEntry, ...]
    #: How many of the files *added* had their bytes in the store already (no copy
    #: made); the others were copied into it. (Files *unchanged* are not counted.)
    reused: int


def collect_dist_paths(paths: Iterable[Path]) -> list[Path]:
    """Expand directories to the wheels and sdists under them; keep files as they are.

    Hidden directories are skipped; symlinked directories are not followed.
    A path that does not exist is an error.
    """
    return [Path(p) for p in _collect(paths)]


def _walk(top: str, found: list[str], missing: list[str], odd: list[str],
          unreadable: list[str]) -> None:
    """The wheels and sdists under *top*, sorted, as ``os.walk`` would find them.

    What is a regular file is told by the directory entry's type where the
    file system gives one (no ``stat`` per file); a symlink is followed to
    what it names; a symlinked directory is not entered. A stack, not
    recursion: a tree deeper than the interpreter's recursion limit is walked
    too (as ``os.walk`` does from Python 3.12).
    """
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            # Skipped as os.walk skips it, but said: the files in it would be
            # missing from the house without a word.
            unreadable.append(f"{directory!r} ({e.strerror or e})")
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not name.startswith("."):
                        subdirs.append(entry.path)
                    continue
                if not name.endswith(_DIST_SUFFIXES):
                    continue
                if entry.is_file():  # follows a symlink
                    found.append(entry.path)
                    continue
                if entry.is_dir():
                    continue  # a symlinked directory: not entered, as os.walk
            except OSError:
                pass
            if entry.is_symlink() and not os.path.exists(entry.path):  # noqa: PTH110
                missing.append(entry.path)  # a dangling link
            else:
                odd.append(entry.path)
        stack.extend(reversed(subdirs))  # the first subdirectory is walked next


def _collect(paths: Iterable[Path]) -> list[str]:
    """:func:`collect_dist_paths`, as strings."""
    found: list[str] = []
    missing: list[str] = []
    odd: list[str] = []  # a FIFO, a device, a socket: reading one could block or never end
    unreadable: list[str] = []
    for path in paths:
        if path.is_dir():
            _walk(str(path), found, missing, odd, unreadable)
        elif path.is_file():
            found.append(str(path))
        elif path.exists():
            odd.append(str(path))
        else:
            missing.append(str(path))
    if odd:
        raise InvalidInputError(
            "not a regular file: " + ", ".join(repr(m) for m in odd),
            hint="wheels and sdists are plain files; remove or rename these",
        )
    if missing:
        raise InvalidInputError(
            "no such file or directory: " + ", ".join(repr(m) for m in missing)
        )
    for directory in unreadable:
        # Said, not fatal: a volume's root holds lost+found, which only root
        # may list (add /media/usb).
        log.warning("skipped the directory %s: it cannot be listed; any wheels in it "
                    "are not added", directory)
    return found


@dataclass(frozen=True, slots=True)
class Incoming:
    """A file on its way into a house."""

    #: Where its bytes are now.
    path: Path
    #: Its real file name (defaults to the path's name).
    filename: str | None = None
    #: Where it came from (defaults to the path's file: URL).
    origin: str | None = None
    #: Targets it serves (merged with any the house already records).
    targets: tuple[str, ...] = ()
    #: The sha256 it must have (an index's or a lock's), if known.
    expected_sha256: str | None = None
    #: Upstream upload time (PEP 700), if known.
    upload_time: str | None = None
    #: Upstream yank state: ``None`` if not yanked (or unknown), else the reason.
    yanked: str | None = None


@dataclass(slots=True)
class _Prepared:
    """A checked distribution whose bytes may still wait in temp files."""

    entry: FileEntry
    reused: bool
    temps: list[tuple[str | int, Sha256]]


# Files up to this size are read once into memory (hash, check and copy from
# one read); larger ones are streamed.
_IN_MEMORY = 8 * 1024 * 1024


# What a file given by its path alone comes with.
_PLAIN = Incoming(Path())


def _prepare(
    store: Store, item: Incoming | str, *, durable: bool, unnamed: bool = False
) -> _Prepared:
    """Check one wheel or sdist and stage its bytes in the store's tmp/.

    Known bytes (a stat) are not copied again. New bytes are checked from the
    very bytes that get stored, and left for :meth:`Store.publish_many` to name.
    A file whose sha256 differs from the one expected never gets a blob name.
    *item* may be a path alone (a string: tens of thousands of them cost no
    ``Path`` objects). *unnamed*: stage new bytes in unnamed temp files
    where possible (see :meth:`Store.stage`), for a caller that publishes
    every few hundred files.
    """
    if isinstance(item, str):
        path = item
        fn = parse_filename(os.path.basename(item))  # noqa: PTH119
        origin = _file_uri(item)
        item = _PLAIN
    else:
        path = str(item.path)
        fn = parse_filename(item.filename or item.path.name)
        origin = item.origin or _file_uri(path)
    try:
        data = read_small(path, _IN_MEMORY)
        if data is None:
            sha, size = sha256_file(path)
        else:
            sha, size = Sha256(hashlib.sha256(data).hexdigest()), len(data)
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror or e}") from e
    if item.expected_sha256 is not None and sha != item.expected_sha256:
        raise HashMismatchError(origin, item.expected_sha256, sha)
    prepared = _prepare_known(store, item, path, fn, origin, sha, size, data, durable=durable,
                              unnamed=unnamed)
    if prepared is not None:
        return prepared
    return _prepare_new(store, item, path, fn, origin, sha, size, data, durable=durable,
                        unnamed=unnamed)


_DIR_URIS: dict[str, str] = {}


def _file_uri(text: str) -> str:
    """``Path(text).absolute().as_uri()``, with each directory's part worked out once."""
    if os.sep != "/" or not text.startswith("/"):
        return Path(text).absolute().as_uri()  # (relative: depends on the working directory)
    head, _, name = text.rpartition("/")
    uri = _DIR_URIS.get(head)
    if uri is None:
        if len(_DIR_URIS) > 1000:
            _DIR_URIS.clear()
        # as_uri() quotes every character but "/", so a directory's part and
        # the name's can be quoted apart.
        uri = "file://" if head == "" else Path(head).absolute().as_uri().rstrip("/")
        _DIR_URIS[head] = uri
    return f"{uri}/{urllib.parse.quote_from_bytes(os.fsencode(name))}"


def _prepare_known(
    store: Store, item: Incoming, path: str, fn: DistFilename, origin: str, sha: Sha256,
    size: int, data: bytes | None, *, durable: bool, unnamed: bool,
) -> _Prepared | None:
    # Known bytes are linked without being copied again: the blob is hashed
    # first (unless *path*, just hashed, is the blob itself), so a damaged one
    # is set aside and never linked; the incoming file then takes its place.
    if store.has(sha) and store.intact(sha, known_good=path):
        # What the house will publish about the file (its METADATA's digest,
        # Requires-Python, size) is read from the very bytes just hashed: the
        # store keeps no record of a blob's facts to take on trust. (A
        # metadata blob gc took while the wheel's blob was still linked from a
        # house being deleted is stored again.)
        if data is not None:
            info = read_dist_info(data, fn, source=path)
        else:
            with store.open_blob(sha) as f:
                info = read_dist_info(f, fn, source=path)
        metadata_sha, temps = _stage_metadata(store, fn, info.metadata, durable=durable,
                                              unnamed=unnamed)
        return _Prepared(_entry(fn, sha, size, info.requires_python, metadata_sha, origin, item),
                         True, temps)
    return None


def _prepare_new(
    store: Store, item: Incoming, path: str, fn: DistFilename, origin: str, sha: Sha256,
    size: int, data: bytes | None, *, durable: bool, unnamed: bool,
) -> _Prepared:
    tmp: str | int
    if data is not None:
        info = read_dist_info(data, fn, source=path)
        tmp = store.stage(data, durable=durable, unnamed=unnamed)  # the bytes just hashed
    else:
        with os.fdopen(open_regular(path), "rb") as src:
            tmp_path, tmp_sha, size = store.write_temp(src, durable=durable)
        tmp = str(tmp_path)
        try:
            if tmp_sha != sha:
                # The file changed between the first hash and the copy.
                raise HashMismatchError(path, sha, tmp_sha)
            with open(tmp, "rb") as f:  # noqa: PTH123
                info = read_dist_info(f, fn, source=path)
        except BaseException:
            remove_quietly(tmp)
            raise
    try:
        metadata_sha, temps = _stage_metadata(store, fn, info.metadata, durable=durable,
                                              new=True, unnamed=unnamed)
    except BaseException:
        discard_temp(tmp)
        raise
    return _Prepared(_entry(fn, sha, size, info.requires_python, metadata_sha, origin, item),
                     False, [(tmp, sha), *temps])


def _stage_metadata(
    store: Store,
    fn: DistFilename,
    metadata: bytes | None,
    *,
    durable: bool,
    new: bool = False,
    unnamed: bool = False,
) -> tuple[Sha256 | None, list[tuple[str | int, Sha256]]]:
    """A wheel's METADATA digest, and its blob staged unless the store has it intact.

    *new*: the wheel's own blob is new, so its METADATA most likely is too;
    one of at most ``SMALL_BLOB`` bytes is staged without a look first
    (publishing drops it if it is there, and sets a damaged one aside).
    """
    if metadata is None or fn.kind != "wheel":
        return None, []
    metadata_sha = Sha256(hashlib.sha256(metadata).hexdigest())
    # (A damaged METADATA blob is set aside by intact(), or when this one is
    # published over it, and these bytes take its place. Publishing hashes
    # only a small blob it finds there: a larger METADATA is looked at here
    # first even for a new wheel, or a damaged one would be kept and linked.)
    if (new and len(metadata) <= SMALL_BLOB) or not store.intact(metadata_sha):
        return metadata_sha, [(store.stage(metadata, durable=durable, unnamed=unnamed),
                               metadata_sha)]
    return metadata_sha, []


def _finish(store: Store, prepared: Sequence[_Prepared], *, flush_names: bool = True) -> None:
    """Publish every staged blob (one flush for the batch)."""
    store.publish_many([t for p in prepared for t in p.temps], flush_names=flush_names)


def store_distribution(store: Store, path: Path) -> tuple[FileEntry, bool]:
    """Put one wheel or sdist into the store, checked; return its house entry.

    The second value is True when the store already had the bytes. A file
    whose name is unsafe, whose archive is unreadable or whose metadata
    disagrees with its name never gets a blob name.
    """
    prepared = _prepare(store, Incoming(path), durable=True)
    _finish(store, [prepared])
    return prepared.entry, prepared.reused


def store_files(store: Store, items: Sequence[Incoming]) -> list[FileEntry]:
    """Put files in the store only (no house), each checked; skip any that fail.

    Used to keep what a failed build did download. A file whose hash differs
    from the one expected is skipped, never stored.
    """
    prepared = []
    for item in items:
        try:
            prepared.append(_prepare(store, item, durable=False))
        except WheelhouseError as e:
            log.warning("not kept: %s", e)
    _finish(store, prepared)
    return [p.entry for p in prepared]


def _entry(
    fn: DistFilename, sha: Sha256, size: int, requires_python: str | None,
    metadata_sha: Sha256 | None, origin: str, item: Incoming,
) -> FileEntry:
    return FileEntry(
        filename=fn.filename,
        sha256=sha,
        size=size,
        kind=fn.kind,
        project=fn.name,
        version=str(fn.version),
        requires_python=requires_python,
        metadata_sha256=metadata_sha,
        origin=origin,
        upload_time=item.upload_time,
        yanked=item.yanked,
        targets=tuple(sorted(set(item.targets))),
    )


# Below this many files, processes cost more to start than they save.
_PROCESS_THRESHOLD = 400
# Files per chunk handed to a helper process, at least.
_MIN_CHUNK = 50
# Files staged in unnamed temp files before they are published, at most.
_UNNAMED_BATCH = 200


def _start_worker(parent: int) -> None:
    # The worker's temp files are the parent's (see adopt_temp_files_for); and it
    # dies with the parent: else a killed add leaves workers holding the store's
    # use lock (inherited), and gc waits for them for good.
    adopt_temp_files_for(parent)
    die_with_parent(parent)


@dataclass(frozen=True, slots=True)
class _Problem:
    """An error as plain data: it crosses a process boundary safely."""

    message: str
    integrity: bool


def _prepare_one(
    store: Store, item: Incoming | str, *, unnamed: bool = False
) -> _Prepared | _Problem:
    try:
        return _prepare(store, item, durable=False, unnamed=unnamed)
    except WheelhouseError as e:
        return _Problem(str(e), isinstance(e, IntegrityError))


def _prepare_chunk(
    store_root: str, items: Sequence[Incoming | str]
) -> list[_Prepared | _Problem]:
    """In a helper process (or the command's own, taking its share): check, stage, publish.

    The chunk's good blobs are published here, a batch at a time (one flush
    for the batch, then their names): the parent gets back only entries, so
    neither the staging nor the naming of 50,000 blobs waits on one process.
    Bytes are staged in unnamed temp files where the file system allows it
    (see :meth:`Store.stage`), each batch holding a few hundred descriptors
    until it is published. Bad bytes never get a name; good blobs of a batch
    that fails elsewhere stay in the store as any unreferenced blob does (gc
    reclaims them).
    """
    store = Store(Path(store_root))
    size = _batch_size()
    outcomes: list[_Prepared | _Problem] = []
    for start in range(0, len(items), size):
        batch: list[_Prepared | _Problem] = []
        try:
            for item in items[start : start + size]:
                batch.append(_prepare_one(store, item, unnamed=True))
        except BaseException:
            for o in batch:
                if isinstance(o, _Prepared):
                    for tmp, _ in o.temps:
                        discard_temp(tmp)
            raise
        prepared = [o for o in batch if isinstance(o, _Prepared)]
        try:
            # The blobs' names are flushed once by the parent, for every chunk.
            _finish(store, prepared, flush_names=False)
        except WheelhouseError as e:
            problem = _Problem(str(e), isinstance(e, IntegrityError))
            outcomes.extend(problem if isinstance(o, _Prepared) else o for o in batch)
            continue
        outcomes.extend(
            _Prepared(o.entry, o.reused, []) if isinstance(o, _Prepared) else o
            for o in batch
        )
    return outcomes


# A published outcome as it crosses the pipe from a helper: the entry's fields
# in order, then whether its blob was reused. (Pickling 25,000 dataclasses
# and building them again from their state took 0.25 s, here 0.1 s.)
_Packed = tuple[Any, ...]
_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(FileEntry))


def _pack(outcomes: Sequence[_Prepared | _Problem]) -> list[_Packed | _Problem]:
    """*outcomes* (published: no temp files left) as plain tuples, for a pipe."""
    fields = operator.attrgetter(*_ENTRY_FIELDS)
    out: list[_Packed | _Problem] = []
    for o in outcomes:
        if isinstance(o, _Problem):
            out.append(o)
        else:
            assert not o.temps
            out.append((*fields(o.entry), o.reused))
    return out


def _unpack(packed: Sequence[_Packed | _Problem]) -> list[_Prepared | _Problem]:
    """The outcomes :func:`_pack` packed."""
    return [o if isinstance(o, _Problem) else _Prepared(FileEntry(*o[:-1]), o[-1], [])
            for o in packed]


def _batch_size() -> int:
    """Files staged before they are published: each may hold two descriptors open.

    At most _UNNAMED_BATCH, and a quarter of what the descriptor limit
    leaves, whatever else is open.
    """
    soft = open_files_limit()
    return 16 if soft is None else max(1, min(_UNNAMED_BATCH, (soft - 64) // 4))


def _prepare_all(
    store: Store, files: Sequence[Incoming | str], *, jobs: int | None
) -> list[_Prepared | _Problem]:
    """Check and stage every file: threads for a few (large) files, processes for many.

    Small wheels are dominated by Python-level work that holds the GIL, so a
    large batch is spread over processes; a few large files are dominated by
    hashing and copying, which release the GIL, so threads do.
    """
    cpus = os.cpu_count() or 1
    if len(files) >= _PROCESS_THRESHOLD and cpus > 1 and jobs != 1:
        workers = min(jobs or cpus, cpus)
        size = max(_MIN_CHUNK, len(files) // (workers * 8))
        forked = _prepare_forked(store, files, workers, size)
        if forked is not None:
            return forked
        # Imported here: multiprocessing costs ~0.1 s to import, wasted on small adds.
        from concurrent.futures import ProcessPoolExecutor

        chunks = [files[i : i + size] for i in range(0, len(files), size)]
        try:
            procs = ProcessPoolExecutor(
                max_workers=workers, initializer=_start_worker, initargs=(os.getpid(),))
        except OSError as e:
            # No shared memory for the pool's semaphores (a full /dev/shm, or none
            # at all in some sandboxes): threads do the same work, slower.
            log.info("no worker processes (%s): using threads", e)
        else:
            with procs:
                results = procs.map(_prepare_chunk, [str(store.root)] * len(chunks), chunks)
                outcomes = [item for chunk in results for item in chunk]
            store.flush()  # the names the helpers gave, before any house uses them
            return outcomes
    workers = jobs or min(8, cpus + 2)
    done: list[_Prepared | _Problem] = []
    if workers == 1:
        try:
            for p in files:
                done.append(_prepare_one(store, p))
        except BaseException:
            _discard_staged(done)
            raise
        return done
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_prepare_one, store, p) for p in files]
        try:
            return [f.result() for f in futures]
        except BaseException:
            # Interrupted (Ctrl-C), or a thread failed: what the others staged
            # (a large file copied whole into tmp/) goes now, not with the
            # next run's clean-up.
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True)
            _discard_staged([f.result() for f in futures
                             if f.done() and not f.cancelled() and f.exception() is None])
            raise


def _discard_staged(outcomes: Sequence[_Prepared | _Problem], *,
                    named_only: bool = False) -> None:
    """Drop the temp files *outcomes* staged and did not publish.

    *named_only*: unnamed ones are left (publishing may have closed them
    already; the kernel drops them with their descriptor).
    """
    for o in outcomes:
        if isinstance(o, _Prepared):
            for tmp, _ in o.temps:
                if not (named_only and isinstance(tmp, int)):
                    with contextlib.suppress(OSError):
                        discard_temp(tmp)


def _prepare_forked(
    store: Store, files: Sequence[Incoming | str], workers: int, size: int
) -> list[_Prepared | _Problem] | None:
    """:func:`_prepare_chunk` over *files* in chunks of *size*, by this process and forked helpers.

    This process takes chunks from the front, *workers* - 1 helpers (forked:
    the list of files is not pickled to them) from the back, until none is
    left; only the helpers' outcomes cross a pipe. A helper that dies (the
    kernel short of memory, say) has its chunks done again here: a chunk
    done twice finds its blobs already stored. None where no helper can be
    forked (another thread runs, no flock on the store's directory): the
    caller uses a process pool.
    """
    from wheelhouse._forked import Chunks, Forked, can_fork

    if not can_fork():
        return None
    bounds = [(i, min(i + size, len(files))) for i in range(0, len(files), size)]
    root = str(store.root)
    try:
        chunks = Chunks(len(bounds), str(store.tmp_dir))
    except OSError as e:
        log.debug("no helper processes: %s", e)
        return None
    parent = os.getpid()

    def helper() -> dict[int, list[_Packed | _Problem]]:
        adopt_temp_files_for(parent)
        done = {}
        while (i := chunks.take(front=False)) is not None:
            done[i] = _pack(_prepare_chunk(root, files[bounds[i][0] : bounds[i][1]]))
        return done

    done: dict[int, list[_Prepared | _Problem]] = {}
    helpers: list[Forked[dict[int, list[_Packed | _Problem]]]] = []
    try:
        for _ in range(workers - 1):
            try:
                # An interrupt waits until the helper is in hand (stopped below).
                with interrupts_deferred():
                    helpers.append(Forked(helper))
            except OSError as e:  # no fork now (EAGAIN, ENOMEM): fewer helpers
                log.debug("no more helper processes: %s", e)
                break
        while (i := chunks.take(front=True)) is not None:
            done[i] = _prepare_chunk(root, files[bounds[i][0] : bounds[i][1]])
        for h in helpers:
            try:
                done.update((i, _unpack(packed)) for i, packed in h.result().items())
            except HelperProcessError as e:
                log.debug("%s: its chunks are done here", e)
        for i, (start, stop) in enumerate(bounds):
            if i not in done:
                done[i] = _prepare_chunk(root, files[start:stop])
    finally:
        for h in helpers:
            h.stop()
        chunks.close()
    store.flush()  # the names the helpers gave, before any house uses them
    return [o for i in range(len(bounds)) for o in done[i]]


class _Clock:
    """Phase timings, logged at debug level (``wheelhouse -vv add``)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        log.debug("%s: %.3f s", phase, now - self.last)
        self.last = now


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
    # Plain strings, not objects, until a worker takes each one up: at
    # 50,000 files the difference is tens of megabytes.
    files = _collect(paths)
    if not files:
        raise InvalidInputError(
            "no wheels or sdists found in: " + ", ".join(repr(str(p)) for p in paths)
        )
    with store.in_use():
        return _ingest(house, store, files, jobs=jobs, progress=progress)


def ingest(
    house: House,
    store: Store,
    files: Sequence[Incoming],
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> AddResult:
    """Check files, put them in *store*, and link them into *house* (one manifest update).

    All or nothing for the house: if any file is bad, or would give a name in
    the house different bytes, the house does not change and one error lists
    every problem. Targets are merged with those the house already records.
    """
    # Shared use of the store from choosing blobs to naming them in the
    # manifest: gc waits (see Store.in_use).
    with store.in_use():
        return _ingest(house, store, list(files), jobs=jobs, progress=progress)


# Tens of thousands of entries that live to the end, in the workers (forked in
# here: they inherit the pause) and here: collections would find nothing.
@gc_paused()
def _ingest(
    house: House, store: Store, files: Sequence[Incoming | str], *, jobs: int | None,
    progress: Progress | None,
) -> AddResult:
    clock = _Clock()
    outcomes = _prepare_all(store, files, jobs=jobs)
    clock.lap("check and stage")
    try:
        return _ingest_prepared(house, store, outcomes, clock, progress)
    except BaseException:
        # Interrupted before the staged files were published: they go.
        _discard_staged(outcomes, named_only=True)
        raise


def _ingest_prepared(
    house: House, store: Store, outcomes: list[_Prepared | _Problem], clock: _Clock,
    progress: Progress | None,
) -> AddResult:
    failures = [o for o in outcomes if isinstance(o, _Problem)]
    problems = [f.message for f in failures]
    stored = [o for o in outcomes if not isinstance(o, _Problem)]
    if progress is not None:
        for p in stored:
            progress(p.entry)
    if problems:
        # Bad bytes never get a blob name; good ones may still be staged.
        for p in stored:
            for tmp, _ in p.temps:
                discard_temp(tmp)
    else:
        _finish(store, stored)
        clock.lap("publish")
    incoming: dict[str, FileEntry] = {}
    for entry in (p.entry for p in stored):
        prior = incoming.get(entry.filename)
        if prior is not None and prior.sha256 != entry.sha256:
            problems.append(
                f"two different files are named {entry.filename}: "
                f"sha256={prior.sha256} and sha256={entry.sha256}"
            )
        incoming[entry.filename] = entry
    if problems:
        error = IntegrityError if any(f.integrity for f in failures) else InvalidInputError
        raise error(
            f"{len(problems)} problem(s); nothing was added:\n  " + "\n  ".join(problems)
        )

    with house.lock():
        manifest = house.read_manifest()
        current: dict[str, FileEntry] = {}
        if len(incoming) <= _FEW_LOOKUPS:
            # A bisection each: a large manifest's other lines stay unparsed.
            for e in incoming.values():
                found = manifest.find(e)
                if found is not None:
                    current[found.filename] = found
        else:
            current = manifest.by_filename()
        # (A house's names that differ from an incoming one only in case are
        # among its project's: all of them are in current for a large add.)
        same_projects = ([] if len(incoming) > _FEW_LOOKUPS else
                         [f.filename for p in {e.project for e in incoming.values()}
                          for f in manifest.project_files(p)])
        refuse_other_bytes(
            current, incoming.values(), theirs="the new file", also_named=same_projects,
            heading="a house never reuses a file name for different bytes",
            hint="a project rebuilt from source at the same version gives other bytes: "
            "give it a new version, or remove the old file first with "
            "'wheelhouse remove HOUSE FILE'; or use another house",
        )
        added = [e for name, e in sorted(incoming.items()) if name not in current]
        unchanged = [current[name] for name in sorted(incoming) if name in current]
        # Files already there may gain targets (a build for one more platform)
        # and upstream facts (an upload time learned, a yank upstream).
        retargeted = []
        for name, e in sorted(incoming.items()):
            if name not in current:
                continue
            old = current[name]
            new = replace(
                old, targets=tuple(sorted({*old.targets, *e.targets})),
                upload_time=e.upload_time or old.upload_time,
                yanked=e.yanked if e.yanked is not None else old.yanked,
            )
            if new != old:
                retargeted.append(new)
        changed = added + retargeted
        new_manifest = manifest.with_files(changed) if changed else manifest
        rendered = None
        if changed:
            # The manifest's bytes are rendered while a helper links files, when many.
            rendered = house.link_many_from_store(store, added, meanwhile=new_manifest.render)
        for entry in unchanged:
            house.link_from_store(store, entry)  # repairs a missing link, else a stat
        with interrupts_deferred():  # the manifest and the index, together
            if changed:
                house.write_manifest(new_manifest, rendered=rendered)
            clock.lap("link and manifest")
            house.commit(new_manifest, previous=manifest, manifest_written=True)
            clock.lap("index")
    # Each file counted once: one the house already had is unchanged, not reused.
    from_store = {p.entry.filename for p in stored if p.reused}
    reused = sum(1 for e in added if e.filename in from_store)
    log.info("added %d file(s) (%d reused from the store), %d unchanged",
             len(added), reused, len(unchanged))
    return AddResult(tuple(added), tuple(unchanged), reused)
