"""Portable bundles: one tar file that carries a house across an air gap, whole or as a delta.

A bundle is a tar archive (plain; ``.tar.gz``; ``.tar.zst`` where a zstd
library is at hand) whose members are, in order:

``wheelhouse-bundle.json``
    the bundle manifest: format version, every other member's name, sha256
    and size, and for a delta the digest of the manifest it builds on and the
    files (name and sha256) the receiving side must already have;
``wheelhouse.json``
    the house manifest, byte for byte;
``locks/NAME``
    the house's locks (small, always carried whole);
``files/NAME``
    every distribution file and ``.metadata`` file (a delta: only those the
    other side lacks).

Export streams every file through a hash (memory stays flat), and refuses a
house file whose bytes are not those its manifest names. Import reads the
bundle once, hashing every member into a temp file in the store; only when
every member matches, nothing is missing and nothing unexpected is present
are the blobs published and the house written. A bad bundle changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from wheelhouse._fs import fsync_dir, interrupts_deferred, write_many_atomic
from wheelhouse._hashing import BackgroundHash
from wheelhouse.errors import (
    BundleBaseError,
    BundleError,
    BundleIntegrityError,
    DiskSpaceError,
    FormatVersionError,
    HashMismatchError,
    HouseError,
    InvalidFilenameError,
    InvalidInputError,
    StoreError,
    WheelhouseError,
    is_format,
)
from wheelhouse.filenames import validate_component
from wheelhouse.house import (
    FILES_DIR,
    MANIFEST_NAME,
    METADATA_SUFFIX,
    House,
    Manifest,
    left_by_creation,
    refuse_other_bytes,
)
from wheelhouse.store import Sha256, Store, parse_sha256

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_MANIFEST",
    "BundleManifest",
    "BundleReport",
    "ExportResult",
    "ImportResult",
    "Member",
    "export",
    "import_bundle",
    "read_base_manifest",
    "verify_bundle",
]

log = logging.getLogger(__name__)

#: The bundle format version this wheelhouse writes and reads.
BUNDLE_FORMAT = 1
#: Name of the bundle manifest, the first member of every bundle.
BUNDLE_MANIFEST = "wheelhouse-bundle.json"
#: Directory of the house's locks, carried whole in every bundle.
LOCKS_DIR = "locks"

_CHUNK = 1024 * 1024
# Limits on the members read into memory (the rest is streamed).
_MAX_BUNDLE_MANIFEST = 256 * 1024 * 1024
_MAX_HOUSE_MANIFEST = 256 * 1024 * 1024
_MAX_LOCK = 16 * 1024 * 1024
# Space kept free beyond what the members need (tar headers, directories, slack).
_SPACE_MARGIN = 16 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip"}


# -- the bundle manifest ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One file a bundle carries (or, in a delta's base, expects the other side to have)."""

    #: Its path in the bundle and in the house: ``wheelhouse.json``, ``files/NAME`` or
    #: ``locks/NAME``.
    name: str
    #: Its sha256.
    sha256: Sha256
    #: Its size in bytes (``None`` in a delta's base list, where only the hash matters).
    size: int | None = None

    def to_json_line(self) -> str:
        """One line of compact JSON, keys sorted."""
        data: dict[str, Any] = {"name": self.name, "sha256": self.sha256}
        if self.size is not None:
            data["size"] = self.size
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_member_name(name: str) -> str:
    """Check that *name* is a path a bundle may carry; return it.

    >>> parse_member_name("files/demo-1.0-py3-none-any.whl")
    'files/demo-1.0-py3-none-any.whl'
    """
    if name == MANIFEST_NAME:
        return name
    directory, sep, leaf = name.partition("/")
    if not sep or directory not in (FILES_DIR, LOCKS_DIR):
        raise InvalidFilenameError(name, "not wheelhouse.json, files/NAME or locks/NAME")
    validate_component(leaf)
    return name


@dataclass(frozen=True, slots=True)
class BundleManifest:
    """The first member of a bundle: what every other member is, and what a delta builds on."""

    #: The members that follow, in order.
    members: tuple[Member, ...]
    #: A delta's base: files the receiving house (or its store) must already have.
    base: tuple[Member, ...] = ()
    #: A delta's base: the sha256 of the manifest it was made against.
    base_manifest_sha256: str | None = None
    #: Format version.
    format: int = field(default=BUNDLE_FORMAT)

    @property
    def is_delta(self) -> bool:
        """True for a delta (made with ``--since``)."""
        return self.base_manifest_sha256 is not None

    def render(self) -> bytes:
        """Stable JSON bytes, one member per line."""
        kind = "delta" if self.is_delta else "full"
        lines = [f'{{"format":{self.format},"kind":"{kind}",']
        if self.is_delta:
            lines.append(f'"base_manifest_sha256":"{self.base_manifest_sha256}",')
            base = ",\n".join(m.to_json_line() for m in self.base)
            lines.append(f'"base":[\n{base}\n],' if base else '"base":[],')
        body = ",\n".join(m.to_json_line() for m in self.members)
        lines.append(f'"members":[\n{body}\n]}}\n')
        return "\n".join(lines).encode()

    @classmethod
    def parse(cls, data: bytes, *, source: str) -> BundleManifest:
        """Parse and validate; refuse an unknown format, unsafe names and duplicates."""
        try:
            raw = json.loads(data)
        except ValueError as e:
            raise BundleIntegrityError(source, [f"{BUNDLE_MANIFEST} is not JSON ({e})"]) from e
        if not isinstance(raw, dict):
            raise BundleIntegrityError(source, [f"{BUNDLE_MANIFEST} is not a JSON object"])
        found = raw.get("format")
        if not is_format(found, BUNDLE_FORMAT):
            if type(found) is int and found > BUNDLE_FORMAT:
                raise FormatVersionError("bundle", source, found, BUNDLE_FORMAT)
            raise BundleIntegrityError(source, [f"unknown bundle format {found!r}"])
        problems: list[str] = []
        members = _parse_members(raw.get("members"), "members", problems, sized=True)
        base: tuple[Member, ...] = ()
        base_sha = raw.get("base_manifest_sha256")
        if base_sha is not None:
            try:
                parse_sha256(str(base_sha))
            except StoreError as e:
                problems.append(f"base_manifest_sha256: {e}")
            base = _parse_members(raw.get("base"), "base", problems, sized=False)
        names = [m.name for m in members] + [m.name for m in base]
        dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(
            names) else []
        problems += [f"{n}: listed more than once" for n in dupes]
        if MANIFEST_NAME not in {m.name for m in members}:
            problems.append(f"{MANIFEST_NAME} is not listed")
        if problems:
            raise BundleIntegrityError(source, [f"{BUNDLE_MANIFEST}: {p}" for p in problems])
        return cls(members, base, None if base_sha is None else str(base_sha))


def _parse_members(raw: object, key: str, problems: list[str], *, sized: bool
                   ) -> tuple[Member, ...]:
    if not isinstance(raw, list):
        problems.append(f"{key} is not a list")
        return ()
    out = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise TypeError("not an object")
            name = parse_member_name(str(item["name"]))
            sha = parse_sha256(str(item["sha256"]))
            size = item.get("size")
            if (sized or size is not None) and (
                not isinstance(size, int) or isinstance(size, bool) or size < 0
            ):
                raise ValueError(f"bad size {size!r}")
            out.append(Member(name, sha, size))
        except (KeyError, TypeError, ValueError, StoreError, InvalidFilenameError) as e:
            problems.append(f"{key}[{i}]: {e}")
    return tuple(out)


def _house_members(manifest: Manifest) -> dict[str, Sha256]:
    """Every file a house with *manifest* holds under files/: name -> sha256."""
    out: dict[str, Sha256] = {}
    for e in manifest.files:
        out[f"{FILES_DIR}/{e.filename}"] = e.sha256
        if e.metadata_sha256 is not None:
            out[f"{FILES_DIR}/{e.filename}{METADATA_SUFFIX}"] = e.metadata_sha256
    return out


# -- streams ------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """Write through to a file, hashing (on another thread) and counting the bytes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.hash = BackgroundHash()
        self.size = 0
        #: Set when the bundle is abandoned: later writes are dropped.
        self.dropped = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        if self.dropped:
            return n
        self.hash.update(data)
        self._raw.write(data)
        self.size += n
        return n


class _Sink(io.RawIOBase):
    """What the tar writer writes to: counts bytes (tarfile wants ``tell``)."""

    def __init__(self, target: IO[bytes] | io.RawIOBase) -> None:
        self._target = target
        self._pos = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        n = len(data)
        self._target.write(data)
        self._pos += n
        return n


class _HashingReader(io.RawIOBase):
    """Read from a file, hashing the bytes (the raw bundle, before decompression)."""

    def __init__(self, raw: IO[bytes], *, hashing: bool) -> None:
        self._raw = raw
        self.hash = BackgroundHash() if hashing else None
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            if self.hash is not None:
                self.hash.update(bytes(memoryview(buffer)[:n]))
            self.size += n
        return int(n or 0)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if self.hash is not None:
            self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever is left."""
        while self.read(_CHUNK):
            pass


class _ForwardReader(io.RawIOBase):
    """A forward-only stream made seekable enough for tarfile.

    tarfile's reader seeks forward over padding and, at times, one byte back;
    this serves both from a one-pass stream (a decompressor), keeping the last
    bytes read.
    """

    _KEEP = 4096

    def __init__(self, src: Any) -> None:
        self._src = src
        self._pos = 0
        self._tail = b""  # the last bytes read, ending at _pos
        self._replay = b""  # bytes to serve again after a backward seek

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - len(self._replay)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = [self._replay]
            self._replay = b""
            while chunk := self._src.read(_CHUNK):
                chunks.append(chunk)
                self._advance(chunk)
            return b"".join(chunks)
        out = b""
        if self._replay:
            out, self._replay = self._replay[:size], self._replay[size:]
            size -= len(out)
        if size > 0:
            data = self._src.read(size)
            # A decompressor may return less than asked before the end.
            while data and len(data) < size:
                more = self._src.read(size - len(data))
                if not more:
                    break
                data += more
            self._advance(data)
            out = out + data if out else data
        return out

    def _advance(self, data: bytes) -> None:
        self._pos += len(data)
        self._tail = (self._tail + data)[-self._KEEP:] if len(data) < self._KEEP else data[
            -self._KEEP:]

    def seek(self, offset: int, whence: int = 0) -> int:
        current = self.tell()
        target = offset if whence == 0 else current + offset if whence == 1 else None
        if target is None:
            raise OSError(errno.ESPIPE, "cannot seek from the end of a bundle stream")
        if target < current:
            back = self._pos - target
            if back > len(self._tail):
                raise OSError(errno.ESPIPE, "cannot seek back in a bundle stream")
            self._replay = self._tail[len(self._tail) - back:]
            return target
        # Forward: replayed bytes first, then read and drop.
        skip = target - current
        if self._replay:
            dropped = min(skip, len(self._replay))
            self._replay = self._replay[dropped:]
            skip -= dropped
        while skip > 0:
            chunk = self.read(min(skip, _CHUNK))
            if not chunk:
                break
            skip -= len(chunk)
        return self.tell()


def _zstd_module(action: str) -> Any:
    """The zstd library: the standard library's (Python 3.14+) or ``zstandard``."""
    for name in ("compression.zstd", "zstandard"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BundleError(
        f"cannot {action} a .tar.zst bundle: no zstd library in this Python",
        hint="install zstandard into wheelhouse's environment (its zstd extra: pip install "
        "zstandard, or \"$WHEELHOUSE_SRC[zstd]\" from a clone), or use Python 3.14+, "
        "or use a plain .tar or .tar.gz bundle",
    )


_GZ_SUFFIXES = (".tar.gz", ".tgz")
_ZST_SUFFIXES = (".tar.zst", ".tzst", ".tar.zstd")
#: The names a bundle may have (compared in lower case).
BUNDLE_SUFFIXES = (".tar", *_GZ_SUFFIXES, *_ZST_SUFFIXES)


def _compression_for(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_GZ_SUFFIXES):
        return "gz"
    if name.endswith(_ZST_SUFFIXES):
        return "zst"
    for suffix in (".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip"):
        if name.endswith(suffix):
            raise InvalidInputError(
                f"unsupported bundle type {suffix!r}: {str(path)!r}",
                hint="name the bundle .tar (default, plain), .tar.gz or .tar.zst",
            )
    return ""


# -- export -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What ``export`` wrote."""

    #: The bundle file.
    path: Path
    #: Its sha256 (read it out to the receiving side).
    sha256: str
    #: Its size in bytes.
    size: int
    #: Distribution files the house holds.
    files: int
    #: Members written (manifest, locks and files).
    members: int
    #: Files left out because the other side has them (deltas).
    skipped: int
    #: Bytes of file members carried.
    payload: int
    #: For a delta, the sha256 of the manifest it builds on.
    base_manifest_sha256: str | None


def read_base_manifest(path: Path | str) -> tuple[Manifest, str]:
    """The manifest a delta builds on, and its sha256, from a manifest, house or bundle.

    *path* is a ``wheelhouse.json``, a house directory, or a bundle (full or
    delta: its house manifest is checked against the bundle manifest's digest).
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        with path.open("rb") as f:
            head = f.read(1)
    except OSError as e:
        raise InvalidInputError(
            f"cannot read --since {str(path)!r}: {e.strerror or e}",
            hint="name the receiving side's wheelhouse.json, or the last bundle sent to it",
        ) from e
    if head == b"{":
        data = path.read_bytes()
        return Manifest.parse(data, source=str(path)), hashlib.sha256(data).hexdigest()
    try:
        with _BundleReader(path, hash_bundle=False) as reader:
            bm = reader.bundle_manifest
            info = reader.next_member()
            want = next(m for m in bm.members if m.name == MANIFEST_NAME)
            if info is None or info.name != MANIFEST_NAME:
                raise BundleIntegrityError(str(path),
                                           [f"{MANIFEST_NAME} is not the second member"])
            found = reader.read_small(info, want, _MAX_HOUSE_MANIFEST)
            if found is None:
                raise BundleIntegrityError(str(path), reader.problems)
    except BundleIntegrityError as e:
        raise BundleIntegrityError(
            e.bundle, e.problems, consequence="so it cannot be the base of a delta (--since)",
            hint="name the receiving side's wheelhouse.json, its house, or the last bundle "
            "sent to it") from None
    return Manifest.parse(found, source=f"{path}:{MANIFEST_NAME}"), want.sha256


def export(
    house: House | Path | str,
    out: Path | str,
    *,
    since: Path | str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> ExportResult:
    """Write *house* to the bundle *out*; with *since*, only what that side lacks.

    The compression follows *out*'s suffix: ``.tar.gz``/``.tgz`` gzip,
    ``.tar.zst`` zstd (needs a zstd library), anything else a plain tar (wheels
    are compressed already). Every file is hashed while it is copied and must
    match the house manifest. The bundle is written to a temp file beside
    *out* and renamed into place only when complete; byte-identical for the
    same house. *progress* receives each member's name and size.
    """
    house = house if isinstance(house, House) else House.open(house)
    out = Path(out).expanduser().absolute()
    compression = _compression_for(out)
    zstd = _zstd_module("write") if compression == "zst" else None
    base: Manifest | None = None
    base_sha: str | None = None
    if since is not None:
        base, base_sha = read_base_manifest(since)
    with house.lock():
        try:
            manifest_bytes = house.manifest_path.read_bytes()
        except OSError as e:
            raise HouseError(f"cannot read {house.manifest_path}: {e.strerror or e}") from e
        manifest = Manifest.parse(manifest_bytes, source=str(house.manifest_path))
        have = set(_house_members(base).values()) if base is not None else set()
        members = [Member(MANIFEST_NAME, _sha(manifest_bytes), len(manifest_bytes))]
        small = {MANIFEST_NAME: manifest_bytes}
        for name, data in _read_locks(house):
            members.append(Member(name, _sha(data), len(data)))
            small[name] = data
        base_members: list[Member] = []
        for name, sha in _house_members(manifest).items():
            if sha in have:
                base_members.append(Member(name, sha))
                continue
            path = house.root / name
            try:
                st = path.lstat()
            except OSError as e:
                raise HouseError(
                    f"{path} is missing: the house does not match its manifest",
                    hint=f"run 'wheelhouse verify {house.root}'",
                ) from e
            if not stat.S_ISREG(st.st_mode):
                raise HouseError(f"{path} is not a regular file",
                                 hint=f"run 'wheelhouse verify {house.root}'")
            members.append(Member(name, sha, st.st_size))
        bm = BundleManifest(tuple(members), tuple(base_members), base_sha)
        payload = sum(m.size or 0 for m in members)
        _check_space(out.parent, payload + 1024 * (len(members) + 2))
        digest, size = _write_bundle(out, bm, small, house.root, compression, zstd, progress)
    return ExportResult(
        path=out, sha256=digest, size=size, files=len(manifest.files), members=len(members),
        skipped=len(base_members),
        payload=sum(m.size or 0 for m in members if m.name.startswith(f"{FILES_DIR}/")),
        base_manifest_sha256=base_sha,
    )


def _sha(data: bytes) -> Sha256:
    return Sha256(hashlib.sha256(data).hexdigest())


def _read_locks(house: House) -> list[tuple[str, bytes]]:
    locks = house.root / LOCKS_DIR
    if locks.is_symlink() or not locks.is_dir():
        return []
    out = []
    for path in sorted(locks.iterdir()):
        if path.name.startswith(".") or path.is_symlink() or not path.is_file():
            continue
        try:
            validate_component(path.name)
        except InvalidFilenameError:
            log.warning("not bundled: %s (not a safe file name)", path)
            continue
        data = path.read_bytes()
        if len(data) > _MAX_LOCK:
            log.warning("not bundled: %s (larger than %d bytes)", path, _MAX_LOCK)
            continue
        out.append((f"{LOCKS_DIR}/{path.name}", data))
    return out


def _check_space(directory: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(directory).free
    except OSError as e:
        raise InvalidInputError(f"cannot write to {directory}: {e.strerror or e}") from e
    if free < needed + _SPACE_MARGIN:
        raise DiskSpaceError(str(directory), needed + _SPACE_MARGIN, free)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    # Same house, same bytes: no times, owners or modes from this machine.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _VerifyingReader(io.RawIOBase):
    """Read a house file for the tar writer, hashing it on the way."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.hash.update(data)
        return data


def _write_bundle(
    out: Path, bm: BundleManifest, small: dict[str, bytes], root: Path, compression: str,
    zstd: Any, progress: Callable[[str, int], None] | None,
) -> tuple[str, int]:
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    except OSError as e:
        raise InvalidInputError(f"cannot write {out}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    try:
        with contextlib.ExitStack() as stack, os.fdopen(fd, "wb", buffering=0) as raw:
            hashed = _HashingWriter(raw)
            stack.callback(hashed.hash.close)
            buffered = io.BufferedWriter(hashed, buffer_size=_CHUNK)
            compressor: Any = None
            if compression == "gz":
                # mtime=0 and no file name: the same house gives the same bytes.
                compressor = gzip.GzipFile(filename="", mode="wb", fileobj=buffered, mtime=0,
                                           compresslevel=6)
            elif compression == "zst":
                if hasattr(zstd, "ZstdFile"):
                    compressor = zstd.ZstdFile(buffered, mode="wb")
                else:
                    compressor = zstd.ZstdCompressor(level=3).stream_writer(
                        buffered, closefd=False)
            # Runs last (after the file is closed): whatever is still buffered
            # after an error is dropped, never flushed into a closed file.
            stack.callback(_discard, hashed, compressor, buffered)
            sink = _Sink(compressor if compressor is not None else buffered)
            with tarfile.TarFile(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT,
                                 copybufsize=_CHUNK) as tf:
                data = bm.render()
                tf.addfile(_tarinfo(BUNDLE_MANIFEST, len(data)), io.BytesIO(data))
                for m in bm.members:
                    size = m.size or 0
                    if m.name in small:
                        tf.addfile(_tarinfo(m.name, size), io.BytesIO(small[m.name]))
                    else:
                        _add_file(tf, root / m.name, m, size)
                    if progress is not None:
                        progress(m.name, size)
            if compressor is not None:
                compressor.close()  # flushes the compressed stream's end
            buffered.flush()
            os.fsync(raw.fileno())
            digest, size = hashed.hash.hexdigest(), hashed.size
        tmp.chmod(0o644 & ~_umask())
        tmp.replace(out)
        fsync_dir(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest, size


def _discard(hashed: _HashingWriter, *streams: Any) -> None:
    hashed.dropped = True
    for stream in streams:
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _add_file(tf: tarfile.TarFile, path: Path, m: Member, size: int) -> None:
    try:
        f = path.open("rb")
    except OSError as e:
        raise HouseError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        reader = _VerifyingReader(f)
        try:
            tf.addfile(_tarinfo(m.name, size), reader)
        except OSError as e:
            if e.args and e.args[0] == "unexpected end of data":
                raise HouseError(f"{path} changed while it was exported (it got shorter)",
                                 hint="export again when nothing is writing to the house"
                                 ) from e
            raise
    actual = reader.hash.hexdigest()
    if actual != m.sha256:
        raise HashMismatchError(str(path), m.sha256, actual)


# -- reading ------------------------------------------------------------------


class _BundleReader:
    """Walk a bundle's members once, checking each tar entry before it is read."""

    def __init__(self, path: Path, *, hash_bundle: bool) -> None:
        self.path = path
        self.source = str(path)
        self._hash_bundle = hash_bundle
        self._stack = contextlib.ExitStack()
        #: Problems found so far (every one makes the bundle bad).
        self.problems: list[str] = []
        self._seen: set[str] = set()
        self.raw: _HashingReader
        self.bundle_manifest: BundleManifest
        self._tf: tarfile.TarFile

    def __enter__(self) -> _BundleReader:  # noqa: PYI034 - a private class, never subclassed
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self) -> None:
        try:
            f = self._stack.enter_context(self.path.open("rb"))
        except OSError as e:
            raise InvalidInputError(f"cannot read the bundle {self.source}: {e.strerror or e}"
                                    ) from e
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InvalidInputError(f"{self.source} is not a file")
        head = f.read(8)
        f.seek(0)
        for magic, kind in _OTHER_MAGIC.items():
            if head.startswith(magic):
                raise BundleError(f"{self.source} is a {kind} file, not a wheelhouse bundle",
                                  hint="bundles are .tar, .tar.gz or .tar.zst files")
        self.raw = _HashingReader(f, hashing=self._hash_bundle)
        if self.raw.hash is not None:
            self._stack.callback(self.raw.hash.close)
        src: Any = self.raw
        if head.startswith(_GZIP_MAGIC):
            src = self._stack.enter_context(gzip.GzipFile(fileobj=self.raw, mode="rb"))
        elif head.startswith(_ZSTD_MAGIC):
            zstd = _zstd_module("read")
            if hasattr(zstd, "ZstdFile"):
                src = self._stack.enter_context(zstd.ZstdFile(self.raw, mode="rb"))
            else:
                src = self._stack.enter_context(zstd.ZstdDecompressor().stream_reader(
                    self.raw, read_across_frames=True, closefd=False))
        self._stream = _ForwardReader(src)
        try:
            self._tf = tarfile.TarFile(fileobj=self._stream, mode="r", copybufsize=_CHUNK)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise BundleIntegrityError(self.source, [f"not a readable tar archive ({e})"]
                                       ) from e
        first = self.next_member(expect_manifest=True)
        if self.problems:
            raise BundleIntegrityError(self.source, self.problems)
        if first is None or first.name != BUNDLE_MANIFEST:
            found = "nothing" if first is None else repr(first.name)
            raise BundleIntegrityError(
                self.source, [f"the first member must be {BUNDLE_MANIFEST}, found {found}"])
        data = self._read_limited(first, _MAX_BUNDLE_MANIFEST)
        self.bundle_manifest = BundleManifest.parse(data, source=self.source)
        self._expected = {m.name: m for m in self.bundle_manifest.members}

    def next_member(self, *, expect_manifest: bool = False) -> tarfile.TarInfo | None:
        """The next safe, expected, regular member; refused ones are noted and skipped."""
        while True:
            try:
                info = self._tf.next()
            except WheelhouseError:
                raise
            except Exception as e:  # a damaged stream fails in many ways (zlib, zstd, tar)
                raise self._broken(e) from e
            # Memory stays flat, however many members (tarfile keeps every TarInfo).
            self._tf.members.clear()  # type: ignore[attr-defined]
            if info is None:
                return None
            problem = self._check(info, expect_manifest=expect_manifest)
            if problem is None:
                return info
            self.problems.append(problem)

    def _check(self, info: tarfile.TarInfo, *, expect_manifest: bool) -> str | None:
        name = info.name
        shown = repr(name)
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            return f"{shown}: absolute path (refused: tar-slip)"
        if ".." in name.replace("\\", "/").split("/"):
            return f"{shown}: path with '..' (refused: tar-slip)"
        if info.issym() or info.islnk():
            return f"{shown}: a link to {info.linkname!r} (refused: only regular files)"
        if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
            return f"{shown}: a device or pipe (refused: only regular files)"
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or info.issparse():
            # (A pax-format sparse member is a regular file with holes.)
            return f"{shown}: not a regular file (refused: only regular files)"
        if name in self._seen:
            return f"{shown}: appears more than once"
        self._seen.add(name)
        if expect_manifest:
            return None
        if name not in self._expected:
            return f"{shown}: not listed in {BUNDLE_MANIFEST} (unexpected member)"
        want = self._expected[name].size
        if info.size != want:
            return f"{shown}: {info.size} bytes, {BUNDLE_MANIFEST} says {want}"
        return None

    def _broken(self, e: BaseException) -> BundleIntegrityError:
        return BundleIntegrityError(self.source, [
            *self.problems, f"the bundle is truncated or damaged ({e})"])

    def open_member(self, info: tarfile.TarInfo) -> IO[bytes]:
        """A stream of the member's bytes."""
        f = self._tf.extractfile(info)
        assert f is not None  # regular files only reach here
        return f

    def _read_limited(self, info: tarfile.TarInfo, limit: int) -> bytes:
        if info.size > limit:
            raise BundleIntegrityError(self.source, [
                f"{info.name!r}: {info.size} bytes, more than the {limit} allowed"])
        try:
            return self.open_member(info).read()
        except Exception as e:  # a damaged stream fails in many ways (zlib, zstd, tar)
            raise self._broken(e) from e

    def read_small(self, info: tarfile.TarInfo, want: Member, limit: int) -> bytes | None:
        """Read a small member whole and check it; None (problem noted) if it is wrong."""
        data = self._read_limited(info, limit)
        actual = _sha(data)
        if actual != want.sha256:
            self.problems.append(
                f"{info.name!r}: sha256={actual}, {BUNDLE_MANIFEST} says sha256={want.sha256}")
            return None
        return data

    def finish(self) -> str | None:
        """Check the end of the archive and that nothing listed is missing; the bundle's sha256.

        After the last member a tar holds at least two zero blocks and nothing
        else; anything more was added, anything less is a truncated bundle.
        """
        missing = sorted(set(self._expected) - self._seen)
        end_problem: str | None = None
        try:
            self._stream.seek(self._tf.offset)
            rest = 0
            while chunk := self._stream.read(_CHUNK):
                if chunk.count(0) != len(chunk):
                    end_problem = ("data after the end of the archive (a member added or a "
                                   "header damaged)")
                    break
                rest += len(chunk)
            else:
                if rest < 2 * tarfile.BLOCKSIZE:
                    end_problem = "the bundle is truncated (no end-of-archive marker)"
            self.raw.drain()
        except Exception as e:  # noqa: BLE001 - a damaged stream fails in many ways (zlib, zstd, tar)
            end_problem = f"the bundle is truncated or damaged ({e})"
        if missing and end_problem is not None:
            # The archive stops early: one problem, not one per member never reached.
            shown = ", ".join(repr(n) for n in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            self.problems.append(
                f"the bundle is truncated or damaged: it stops after {len(self._seen)} "
                f"member(s); {len(missing)} listed in {BUNDLE_MANIFEST} never came "
                f"({shown}{more})")
        else:
            if end_problem is not None:
                self.problems.append(end_problem)
            self.problems += [f"{name!r}: listed in {BUNDLE_MANIFEST} but missing "
                              "(member removed?)" for name in missing]
        return self.raw.hash.hexdigest() if self.raw.hash is not None else None


# -- verify and import --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What a good bundle holds (``verify``)."""

    #: The bundle file.
    path: Path
    #: Its sha256.
    sha256: str
    #: Its size in bytes.
    size: int
    #: The bundle manifest.
    bundle_manifest: BundleManifest
    #: The house manifest it carries.
    manifest: Manifest

    @property
    def is_delta(self) -> bool:
        """True for a delta."""
        return self.bundle_manifest.is_delta


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import`` did."""

    #: The house written.
    house: Path
    #: Distribution files it now holds.
    files: int
    #: Blobs the store did not have before.
    new_blobs: int
    #: Bytes of those.
    new_bytes: int
    #: Files taken out of the house (gone from the newer manifest).
    removed: int
    #: True for a delta.
    delta: bool
    #: The bundle's sha256, if it was computed.
    bundle_sha256: str | None


class _ReadFailedError(Exception):
    """Reading a member failed (not OSError: the store must not take it for its own)."""


class _Guarded(io.RawIOBase):
    """A member stream whose read errors become _ReadFailedError."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._f.read(size)
        except Exception as e:  # a damaged stream fails in many ways (zlib, zstd, tar)
            raise _ReadFailedError(str(e)) from e


class _Staging:
    """Where verified member bytes wait (store temp files) until the whole bundle is good."""

    def __init__(self, store: Store | None, present: set[str] | None = None) -> None:
        self.store = store
        #: Blobs the store is known to have (checked once, up front).
        self.present = present if present is not None else set()
        self.temps: dict[Sha256, Path] = {}
        self.new_bytes = 0

    def take(self, src: IO[bytes], sha: Sha256, size: int | None = None) -> tuple[str, int]:
        """Read a member; stage it if the store lacks it; return the sha256 and size it had.

        *size*: the member's size, when known; a small member is read whole
        (one read, one write), a large one streamed.
        """
        if size is not None and size <= _CHUNK:
            data = src.read(size + 1)  # (one byte more: a longer stream is caught)
            actual = _sha(data)
            if (actual == sha and self.store is not None and sha not in self.temps
                    and sha not in self.present):
                self.temps[sha] = Path(self.store.stage(data))
                self.new_bytes += len(data)
            return actual, len(data)
        if self.store is None or sha in self.temps or sha in self.present:
            h = hashlib.sha256()
            size = 0
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
            return h.hexdigest(), size
        tmp, actual, size = self.store.write_temp(src, durable=False)
        if actual != sha:
            tmp.unlink(missing_ok=True)
        else:
            self.temps[sha] = tmp
            self.new_bytes += size
        return actual, size

    def discard(self) -> None:
        for tmp in self.temps.values():
            tmp.unlink(missing_ok=True)
        self.temps.clear()


def _scan(reader: _BundleReader, staging: _Staging) -> tuple[Manifest | None, dict[str, bytes]]:
    """Read every member after the bundle manifest, checking (and staging) each."""
    manifest: Manifest | None = None
    small: dict[str, bytes] = {}
    expected = {m.name: m for m in reader.bundle_manifest.members}
    while (info := reader.next_member()) is not None:
        want = expected[info.name]
        if info.name == MANIFEST_NAME or info.name.startswith(f"{LOCKS_DIR}/"):
            limit = _MAX_HOUSE_MANIFEST if info.name == MANIFEST_NAME else _MAX_LOCK
            data = reader.read_small(info, want, limit)
            if data is not None:
                small[info.name] = data
            continue
        try:
            actual, _ = staging.take(cast("IO[bytes]", _Guarded(reader.open_member(info))),
                                     want.sha256, info.size)
        except _ReadFailedError as e:
            raise reader._broken(e.__cause__ or e) from e
        if actual != want.sha256:
            reader.problems.append(
                f"{info.name!r}: sha256={actual}, {BUNDLE_MANIFEST} says sha256={want.sha256}")
    if MANIFEST_NAME in small:
        try:
            manifest = Manifest.parse(small[MANIFEST_NAME],
                                      source=f"{reader.source}:{MANIFEST_NAME}")
        except HouseError as e:
            reader.problems.append(str(e.message))
        # A newer house manifest format (FormatVersionError) is raised as it is:
        # not damage, but a wheelhouse too old to read it.
    return manifest, small


def _cross_check(bm: BundleManifest, manifest: Manifest) -> list[str]:
    """The house manifest and the bundle manifest must describe the same files."""
    problems = []
    needed = _house_members(manifest)
    provided = {m.name: m for m in (*bm.members, *bm.base) if m.name.startswith(f"{FILES_DIR}/")}
    for name in sorted(set(needed) - set(provided)):
        problems.append(f"{name!r}: in {MANIFEST_NAME} but neither carried nor in the base")
    for name in sorted(set(provided) - set(needed)):
        problems.append(f"{name!r}: carried but not in {MANIFEST_NAME}")
    sizes = {f"{FILES_DIR}/{e.filename}": e.size for e in manifest.files}
    for name in sorted(set(needed) & set(provided)):
        m = provided[name]
        if m.sha256 != needed[name]:
            problems.append(f"{name!r}: sha256={m.sha256} in {BUNDLE_MANIFEST}, "
                            f"sha256={needed[name]} in {MANIFEST_NAME}")
        elif m.size is not None and name in sizes and m.size != sizes[name]:
            problems.append(f"{name!r}: {m.size} bytes in {BUNDLE_MANIFEST}, "
                            f"{sizes[name]} in {MANIFEST_NAME}")
    return problems


_NOT_THE_BUNDLE = ("this is not the bundle that was exported, or it changed on the way: "
                   "ask for it again (and check the digest you were given)")


def verify_bundle(bundle: Path | str, *, expect_sha256: str | None = None) -> BundleReport:
    """Check a bundle without importing it: every member's sha256 and size, nothing extra.

    Raises BundleIntegrityError listing every problem (HashMismatchError if
    the bundle's own sha256 is not *expect_sha256*).
    """
    path = Path(bundle)
    try:
        with _BundleReader(path, hash_bundle=True) as reader:
            manifest, _ = _scan(reader, _Staging(None))
            digest = reader.finish()
            bm = reader.bundle_manifest
            problems = reader.problems
            if manifest is not None:
                problems += _cross_check(bm, manifest)
            if problems or manifest is None:
                raise BundleIntegrityError(str(path), problems or ["no house manifest"])
            size = reader.raw.size
    except BundleIntegrityError as e:  # verify imports nothing: do not say it did not
        raise BundleIntegrityError(e.bundle, e.problems, consequence="") from None
    assert digest is not None
    if expect_sha256 is not None and digest != expect_sha256.lower():
        raise HashMismatchError(str(path), expect_sha256.lower(), digest, hint=_NOT_THE_BUNDLE)
    return BundleReport(path, digest, size, bm, manifest)


def import_bundle(
    bundle: Path | str,
    house: Path | str,
    *,
    store: Store,
    expect_sha256: str | None = None,
) -> ImportResult:
    """Import *bundle* into the house at *house* (created if missing) through *store*.

    Every member is hashed into a temp file in the store first; only when all
    match — nothing missing, nothing unexpected, the house manifest and the
    bundle manifest agreeing, and (if given) the bundle's own sha256 equal to
    *expect_sha256* — are the blobs published and the house written: its
    files, manifest (byte for byte), locks and index. A bad bundle changes
    nothing. A delta needs the files it builds on, in the house or the store;
    a missing one is an error naming it, raised before anything is read.
    """
    path = Path(bundle)
    house_root = Path(house).expanduser().absolute()
    with store.in_use():
        current = _current_manifest(house_root)
        staging = _Staging(store)
        try:
            with _BundleReader(path, hash_bundle=expect_sha256 is not None) as reader:
                bm = reader.bundle_manifest
                from_house = _check_base(bm, current, house_root, store, path)
                # Blobs the store has, up front (gc cannot remove any meanwhile:
                # in_use), each hashed first: a damaged one is set aside and
                # taken from the bundle. (The house's file is no proof: a hard
                # link to the blob, it is the same bytes, edited or not.)
                staging.present = {m.sha256 for m in bm.members
                                   if m.name.startswith(f"{FILES_DIR}/") and store.has(m.sha256)
                                   and store.intact(m.sha256)}
                _check_import_space(bm, store, house_root, current, staging.present)
                manifest, small = _scan(reader, staging)
                digest = reader.finish()
                problems = reader.problems
                if manifest is not None:
                    problems += _cross_check(bm, manifest)
                if problems or manifest is None:
                    raise BundleIntegrityError(str(path), problems or ["no house manifest"])
            if expect_sha256 is not None and digest != expect_sha256.lower():
                raise HashMismatchError(str(path), expect_sha256.lower(), str(digest),
                                        hint=_NOT_THE_BUNDLE)
            # Refusals that need no store change: before any blob is published.
            _refuse_name_reuse(current, manifest)
            House(house_root).check_files_dir()
            # Base files the store lacks come from the house, checked like the rest.
            for name, sha in from_house.items():
                with (house_root / name).open("rb") as f:
                    actual, _ = staging.take(f, sha)
                if actual != sha:
                    raise HashMismatchError(str(house_root / name), sha, actual)
            new_blobs, new_bytes = len(staging.temps), staging.new_bytes
            store.publish_many([(tmp, sha) for sha, tmp in staging.temps.items()])
            staging.temps.clear()
        finally:
            staging.discard()
        removed = _write_house(house_root, store, manifest, small)
    return ImportResult(
        house=house_root, files=len(manifest.files), new_blobs=new_blobs, new_bytes=new_bytes,
        removed=removed, delta=bm.is_delta, bundle_sha256=digest,
    )


def _refuse_name_reuse(current: Manifest | None, manifest: Manifest) -> None:
    """A house never takes other bytes under a file name it has (as ``add`` refuses it)."""
    if current is None:
        return
    refuse_other_bytes(
        current.by_filename(), manifest.files, theirs="the bundle's",
        heading="a house never reuses a file name for different bytes; nothing was imported",
        hint="this bundle comes from a house where the same file name has other bytes "
        "(rebuilt from source at the same version?): import it into another house, "
        "or remove the file first with 'wheelhouse remove HOUSE FILE'",
    )


def _current_manifest(house_root: Path) -> Manifest | None:
    """The receiving house's manifest, or None for a new (absent or empty) directory.

    Nothing is created here: a bad bundle must leave no new house behind.
    """
    if (house_root / MANIFEST_NAME).is_file():
        return House.open(house_root).read_manifest()
    if house_root.exists():
        if not house_root.is_dir():
            raise HouseError(f"house path {house_root} exists and is not a directory",
                             hint="name a new or existing directory with -o")
        # (What a creation killed before its manifest leaves counts as empty.)
        if any(not left_by_creation(p) for p in house_root.iterdir()):
            raise HouseError(f"{house_root} is not empty and is not a house",
                             hint="name a new or empty directory with -o")
    return None


def _check_base(bm: BundleManifest, current: Manifest | None, house_root: Path, store: Store,
                bundle: Path) -> dict[str, Sha256]:
    """Every base file must be in the store or the house; return those only the house has."""
    have = _house_members(current) if current is not None else {}
    from_house: dict[str, Sha256] = {}
    missing = []
    for m in bm.base:
        # A base file the house links to its blob is taken as it is: hashing
        # every base file would make a delta cost what the whole house costs.
        # (Not so for a file the bundle carries: its good bytes are at hand;
        # see import_bundle. 'wheelhouse verify HOUSE' hashes every file.)
        if store.has(m.sha256) and store.intact(m.sha256, known_good=house_root / m.name):
            continue
        path = house_root / m.name
        if have.get(m.name) == m.sha256 and path.is_file() and not path.is_symlink():
            from_house[m.name] = m.sha256
        else:
            missing.append(f"{m.name} (sha256={m.sha256})")
    if missing:
        raise BundleBaseError(str(bundle), str(house_root), missing)
    return from_house


def _check_import_space(bm: BundleManifest, store: Store, house_root: Path,
                        current: Manifest | None, present: set[str]) -> None:
    new = {m.sha256: m.size or 0 for m in bm.members
           if m.name.startswith(f"{FILES_DIR}/") and m.sha256 not in present}
    _check_space(store.root, sum(new.values()))
    # Across file systems the house gets copies, not links.
    target = house_root if house_root.exists() else house_root.parent
    with contextlib.suppress(OSError):
        if target.stat().st_dev != store.root.stat().st_dev:
            have = set(_house_members(current).values()) if current is not None else set()
            _check_space(target, sum(m.size or 0 for m in bm.members
                                     if m.name.startswith(f"{FILES_DIR}/")
                                     and m.sha256 not in have))


def _write_house(house_root: Path, store: Store, manifest: Manifest,
                 small: dict[str, bytes]) -> int:
    """Link the files, write locks, manifest (exact bytes) and index; drop files now gone."""
    house = House.open(house_root, create=True)
    with house.lock():
        old = house.read_manifest()
        _refuse_name_reuse(old, manifest)  # (again: another command may have changed it)
        house.link_many_from_store(store, manifest.files)
        locks = {name.split("/", 1)[1]: data for name, data in small.items()
                 if name.startswith(f"{LOCKS_DIR}/")}
        if locks or (house.root / LOCKS_DIR).is_dir():
            lock_dir = house.own_subdir(LOCKS_DIR)
            write_many_atomic({lock_dir / name: data for name, data in sorted(locks.items())})
            for path in sorted(lock_dir.iterdir()):
                if path.name not in locks and not path.is_dir():
                    path.unlink()
        # The manifest, the index and the files that go, together: an
        # interrupt waits, and leaves neither a stale index nor a stray file.
        with interrupts_deferred():
            write_many_atomic({house.manifest_path: small[MANIFEST_NAME]})
            new = manifest  # (parsed from these very bytes)
            house.commit(new, previous=old, manifest_written=True)
            keep = new.by_filename()
            gone = [e for e in old.files if e.filename not in keep]
            for entry in gone:
                house.unlink_file(entry)
    # (What an import killed after its manifest left, the next lock-holder
    # removes: see House.lock.)
    return len(gone)
