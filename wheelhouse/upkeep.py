"""Store upkeep: which houses use which blobs, what they take (du), and reclaiming the rest (gc)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wheelhouse.errors import (
    FormatVersionError,
    HouseError,
    InvalidInputError,
    StoreError,
)
from wheelhouse.house import MANIFEST_NAME, House

if TYPE_CHECKING:
    from pathlib import Path

    from wheelhouse.house import Manifest
    from wheelhouse.store import Store

__all__ = [
    "BlobUse",
    "GcResult",
    "HouseUsage",
    "StoreUsage",
    "disk_usage",
    "gc",
    "parse_age",
    "parse_size",
]

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\Z", re.IGNORECASE)
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])\Z", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """Parse a size in bytes, with an optional suffix.

    K, M, G, T (and KiB, MiB, GiB, TiB) are powers of 1024; kB, MB, GB, TB
    powers of 1000.

    >>> parse_size("10G"), parse_size("1.5GB"), parse_size("512MiB"), parse_size("100")
    (10737418240, 1500000000, 536870912, 100)
    """
    m = _SIZE.match(text.strip())
    if not m:
        raise InvalidInputError(
            f"not a size: {text!r}", hint="write it like 500M, 10G, 2GiB or 1.5GB"
        )
    number, unit = float(m.group(1)), m.group(2)
    letter = unit[:1].lower()
    power = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}[letter]
    decimal = len(unit) == 2 and unit[1].lower() == "b" and letter != "b"
    return int(number * (1000 if decimal else 1024) ** power)


def parse_age(text: str) -> float:
    """Parse an age such as ``30d``, ``12h``, ``2w``, ``90m`` or ``45s`` into seconds.

    >>> parse_age("30d"), parse_age("12h"), parse_age("2w")
    (2592000.0, 43200.0, 1209600.0)
    """
    m = _AGE.match(text.strip())
    if not m:
        raise InvalidInputError(
            f"not an age: {text!r}", hint="write it like 30d, 12h, 2w, 90m or 45s"
        )
    return float(m.group(1)) * _AGE_UNITS[m.group(2).lower()]


@dataclass(frozen=True, slots=True)
class BlobUse:
    """One blob in the store, and when it was last used."""

    #: Its sha256.
    sha256: str
    #: Its size in bytes.
    size: int
    #: When it was last published or linked into a house (seconds since the epoch).
    last_use: float
    #: Whether a registered house's manifest names it.
    referenced: bool
    #: Hard links to its bytes, the store's own included (more than 1: a house
    #: on this file system links it, registered or not).
    links: int = 1


@dataclass(frozen=True, slots=True)
class HouseUsage:
    """What one registered house holds."""

    #: The house directory.
    path: Path
    #: Distribution files in its manifest.
    files: int
    #: Their total size in bytes (metadata files not counted).
    size: int
    #: Blobs (files and metadata) its manifest names.
    blobs: int
    #: Of those, how many the store does not have (the house keeps its own copy).
    not_in_store: int


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """What the store and each house registered with it hold."""

    #: The store directory.
    root: Path
    #: Every blob.
    blobs: int
    #: Their total size in bytes.
    size: int
    #: Blobs some registered house names.
    referenced: int
    #: Their total size.
    referenced_size: int
    #: Blobs no registered house names but another directory hard-links (an
    #: unregistered house): gc keeps them, as removing them frees no space.
    linked_elsewhere: int
    #: Their total size.
    linked_elsewhere_size: int
    #: The houses, sorted by path.
    houses: tuple[HouseUsage, ...]
    #: Registered houses that no longer exist (gc forgets them).
    gone: tuple[Path, ...]

    @property
    def unreferenced(self) -> int:
        """Blobs nothing uses (what a plain gc removes)."""
        return self.blobs - self.referenced - self.linked_elsewhere

    @property
    def unreferenced_size(self) -> int:
        """Their total size (what a plain gc frees)."""
        return self.size - self.referenced_size - self.linked_elsewhere_size


@dataclass(frozen=True, slots=True)
class GcResult:
    """What ``gc`` removed (or, with ``dry_run``, would remove)."""

    #: The blobs removed, oldest use first.
    removed: tuple[BlobUse, ...]
    #: Bytes they took in the store.
    freed: int
    #: Of those, bytes released on disk: a blob a house still hard-links keeps
    #: its space until the house lets go of the file too.
    disk_freed: int
    #: Blobs no registered house names, kept because another directory (an
    #: unregistered house) hard-links them.
    linked_elsewhere: int
    #: Blobs kept.
    kept: int
    #: Bytes the kept blobs take.
    kept_size: int
    #: Registered houses that no longer exist, forgotten.
    forgotten: tuple[Path, ...]
    #: True if nothing was changed.
    dry_run: bool


def _manifest_blobs(manifest: Manifest) -> set[str]:
    shas: set[str] = set()
    for e in manifest.files:
        shas.add(e.sha256)
        if e.metadata_sha256 is not None:
            shas.add(e.metadata_sha256)
    return shas


def _read_houses(store: Store) -> tuple[dict[Path, Manifest], list[tuple[Path, Path]]]:
    """Manifests of the registered houses that exist, and the records of those gone.

    A house that exists but whose manifest cannot be read is an error: gc
    cannot tell which blobs it needs, so it must not guess.
    """
    live: dict[Path, Manifest] = {}
    gone: list[tuple[Path, Path]] = []
    for path, record in store.registered_houses(strict=True):
        manifest = path / MANIFEST_NAME
        if not manifest.is_file() and not manifest.is_symlink():
            # Gone, or being deleted (its manifest first, its files after). (A
            # house whose manifest someone removed by hand keeps its files: hard
            # links or copies of its own; only the store's copies may go.)
            gone.append((path, record))
            continue
        try:
            live[path] = House.open(path).read_manifest()
        except (HouseError, FormatVersionError) as e:
            if not (path / MANIFEST_NAME).is_file() and not (path / MANIFEST_NAME).is_symlink():
                # Gone between the look and the read: a house being deleted.
                gone.append((path, record))
                continue
            raise StoreError(
                f"cannot tell which blobs the house {path} uses: {e.message}",
                hint=f"repair it (wheelhouse verify {path}), or move it away and run gc again",
            ) from e
    return live, gone


def _scan_blobs(store: Store, referenced: set[str]) -> list[BlobUse]:
    blobs = []
    for name, path in store.iter_blobs():
        if not _HEX64.match(name) or path.parent.name != name[:2]:
            continue  # not ours to judge (nor where gc would remove it from): `verify`
        try:
            st = path.lstat()
        except OSError:
            continue
        # Publishing sets mtime; every hard link into a house sets ctime.
        blobs.append(BlobUse(name, st.st_size, max(st.st_mtime, st.st_ctime),
                             name in referenced, st.st_nlink))
    return blobs


def _elsewhere(blob: BlobUse) -> bool:
    return not blob.referenced and blob.links > 1


def disk_usage(store: Store) -> StoreUsage:
    """What the store holds, how much of it the registered houses use, and each house."""
    live, gone = _read_houses(store)
    referenced: set[str] = set()
    for manifest in live.values():
        referenced |= _manifest_blobs(manifest)
    blobs = _scan_blobs(store, referenced)
    present = {b.sha256 for b in blobs}
    houses = []
    for path, manifest in sorted(live.items()):
        shas = _manifest_blobs(manifest)
        houses.append(HouseUsage(
            path=path, files=len(manifest.files), size=sum(e.size for e in manifest.files),
            blobs=len(shas), not_in_store=len(shas - present),
        ))
    return StoreUsage(
        root=store.root,
        blobs=len(blobs),
        size=sum(b.size for b in blobs),
        referenced=sum(1 for b in blobs if b.referenced),
        referenced_size=sum(b.size for b in blobs if b.referenced),
        linked_elsewhere=sum(1 for b in blobs if _elsewhere(b)),
        linked_elsewhere_size=sum(b.size for b in blobs if _elsewhere(b)),
        houses=tuple(houses),
        gone=tuple(p for p, _ in gone),
    )


def gc(
    store: Store,
    *,
    dry_run: bool = False,
    max_size: int | None = None,
    older_than: float | None = None,
    now: float | None = None,
    timeout: float = 600.0,
) -> GcResult:
    """Remove blobs no registered house names; forget houses that no longer exist.

    A blob that no registered house names but that some other directory still
    hard-links (a house made before houses registered themselves, or moved)
    is kept: removing it would free no space. Then, if asked, trim further by least recent use (a blob is used when it
    is published or hard-linked into a house): every blob not used for
    *older_than* seconds, and the least recently used until the store holds at
    most *max_size* bytes. A house keeps working when a blob it names is
    trimmed — it holds its own link or copy — but the next build that needs
    the file fetches it again.

    Runs under the store's use lock held exclusive: no add, build or import
    is between choosing a blob and naming it in a manifest meanwhile.
    """
    now = time.time() if now is None else now
    with store.exclusive_use(timeout=timeout):
        live, gone = _read_houses(store)
        referenced: set[str] = set()
        for manifest in live.values():
            referenced |= _manifest_blobs(manifest)
        blobs = sorted(_scan_blobs(store, referenced), key=lambda b: (b.last_use, b.sha256))
        # Unused: no registered house names it, and nothing else hard-links it
        # (removing a blob an unregistered house links would free no space).
        remove = [b for b in blobs if not b.referenced and b.links <= 1]
        keep = [b for b in blobs if b.referenced or b.links > 1]
        elsewhere = sum(1 for b in blobs if _elsewhere(b))
        if older_than is not None:
            remove += [b for b in keep if now - b.last_use > older_than]
            keep = [b for b in keep if now - b.last_use <= older_than]
        if max_size is not None:
            total = sum(b.size for b in keep)
            while keep and total > max_size:
                oldest = keep.pop(0)  # sorted by last use
                remove.append(oldest)
                total -= oldest.size
        remove.sort(key=lambda b: (b.last_use, b.sha256))
        if not dry_run:
            for path, record in gone:
                log.info("forgetting %s (no longer a house)", path)
                store.forget_house(record)
            try:
                for blob in remove:
                    _remove_blob(store, blob.sha256)
            finally:
                _remove_old_records(store)  # the removed blobs' too, also after a failure
            store.clean_tmp()
    return GcResult(
        removed=tuple(remove),
        freed=sum(b.size for b in remove),
        disk_freed=sum(b.size for b in remove if b.links <= 1),
        linked_elsewhere=elsewhere,
        kept=len(keep),
        kept_size=sum(b.size for b in keep),
        forgotten=tuple(p for p, _ in gone),
        dry_run=dry_run,
    )


def _remove_old_records(store: Store) -> None:
    """Remove every record of a blob that an earlier version kept under ``meta/``.

    Nothing reads them any more (a blob's facts are read from its bytes), and
    each took a disk block: a store of 50,000 wheels kept 203 MB of them on
    ext4. Only names such a version wrote are removed, never through a link
    out of the store (:meth:`Store.forget_record`). An earlier version still
    in use writes the records it wants again.
    """
    meta = store.root / "meta" / "sha256"
    try:
        fans = [d for d in meta.iterdir() if d.is_dir() and not d.is_symlink()]
    except OSError:
        return
    for fan in fans:
        with contextlib.suppress(OSError):
            for record in fan.iterdir():
                name = record.name.removesuffix(".json")
                if record.name.endswith(".json") and _HEX64.match(name) and fan.name == name[:2]:
                    store.forget_record(name)


def _remove_blob(store: Store, sha256: str) -> None:
    try:
        store.blob_path(sha256).unlink(missing_ok=True)
    except OSError as e:
        raise StoreError(
            f"cannot remove blob sha256={sha256} from {store.root}: {e.strerror or e}"
        ) from e
