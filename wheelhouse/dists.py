"""Distribution contents: what a wheel or sdist says about itself (core metadata)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import stat
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelhouse import _zipread
from wheelhouse.errors import InvalidDistributionError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

    from packaging.metadata import RawMetadata
    from packaging.utils import NormalizedName

    from wheelhouse.filenames import DistFilename, Kind

__all__ = [
    "DistInfo",
    "describe_blob",
    "parse_core_metadata",
    "parse_email",
    "read_build_requires",
    "read_dist_info",
    "scan_headers",
]

# A METADATA file larger than this is not metadata; refuse rather than read it.
_MAX_METADATA = 16 * 1024 * 1024

# How much of a .tar.gz sdist is read looking for its PKG-INFO (or pyproject.toml).
# PKG-INFO may come last (hatchling and flit_core write it after every other
# file), so a real sdist may be read through, and a small file that inflates
# to gigabytes (a gzip bomb) or to millions of members would be too: an 8 MB
# file made add inflate 8 GiB (17 s), a 12 MB one read 2 million members
# (30 s, 1 GB of memory). Real sdists stay far below both limits: one within
# the registry's usual 100 MB upload limit unpacks to around a gigabyte of
# source at gzip's usual ratios, and the largest hold tens of thousands of
# members. Past either limit the file is refused, and nothing past the byte
# limit is ever inflated (the check comes before the seek over a member's
# data). Each limit costs at most about 8 s on a busy two-core machine.
_MAX_SDIST_UNPACKED = 4 * 1024**3
_MAX_SDIST_MEMBERS = 500_000


@dataclass(frozen=True, slots=True)
class CoreMetadata:
    """The few core-metadata fields wheelhouse needs."""

    #: The ``Name`` field, normalised.
    name: NormalizedName
    #: The ``Version`` field.
    version: Version
    #: The ``Requires-Python`` field, if any.
    requires_python: str | None


@dataclass(frozen=True, slots=True)
class DistInfo:
    """What wheelhouse learned from one distribution file."""

    #: The validated file name.
    filename: DistFilename
    #: The raw core metadata (wheel METADATA or sdist PKG-INFO), if the file has one.
    metadata: bytes | None
    #: ``Requires-Python`` from the metadata, if any.
    requires_python: str | None

    @property
    def kind(self) -> Kind:
        """``"wheel"`` or ``"sdist"``."""
        return self.filename.kind

    @property
    def metadata_sha256(self) -> str | None:
        """The sha256 of the raw metadata bytes (what PEP 658 advertises)."""
        if self.metadata is None:
            return None
        return hashlib.sha256(self.metadata).hexdigest()


def parse_core_metadata(data: bytes, *, source: str) -> CoreMetadata:
    r"""Read Name, Version and Requires-Python from core metadata bytes.

    >>> m = parse_core_metadata(b"Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.0\n",
    ...                         source="x")
    >>> (m.name, str(m.version), m.requires_python)
    ('demo-pkg', '1.0', None)
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidDistributionError(source, f"metadata is not UTF-8: {e}") from e
    fast = _scan_headers(text)
    if fast is not None:
        name, version, requires_python_raw = fast
    else:
        raw, _unparsed = parse_email(text)
        name, version = raw.get("name"), raw.get("version")
        requires_python_raw = raw.get("requires_python")
    if not name or not version:
        raise InvalidDistributionError(source, "metadata lacks a Name or Version field")
    if requires_python_raw and "\x00" in requires_python_raw:
        # (An index page cannot carry it: HTML reads NUL as U+FFFD.)
        raise InvalidDistributionError(source, "metadata's Requires-Python holds a NUL character")
    try:
        parsed_version = Version(version)
    except InvalidVersion as e:
        raise InvalidDistributionError(source, f"metadata has an invalid Version {version!r}") from e
    return CoreMetadata(canonicalize_name(name), parsed_version, requires_python_raw or None)


def parse_email(data: bytes | str) -> tuple[RawMetadata, dict[str, list[str]]]:
    """``packaging.metadata.parse_email``, imported when first needed.

    (With the ``email`` package it pulls in, it costs every command that
    imports this module 10 ms at start-up; most metadata never needs it, see
    :func:`scan_headers`.)
    """
    from packaging.metadata import parse_email as parse

    return parse(data)


#: A header's name, as the email parser takes it (RFC 5322: printable ASCII but ':').
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")


def scan_headers(text: str, fields: Collection[str]) -> dict[str, list[str]] | None:
    r"""The values of *fields* (lower-case header names) in core metadata, read quickly.

    Each field maps to its values in order (none if absent). Returns None for
    anything unusual -- a wanted field folded over lines or RFC 2047-encoded, a
    line in the headers that is not a header -- and the caller falls back to packaging's full
    parser: this is a fast path for the common case, not a second parser.

    >>> scan_headers("Name: a\nRequires-Dist: b\nRequires-Dist: c; extra == 'x'\n\nbody",
    ...              ("name", "requires-dist"))
    {'name': ['a'], 'requires-dist': ['b', "c; extra == 'x'"]}
    """
    found: dict[str, list[str]] = {f: [] for f in fields}
    last_wanted = False
    # Only the header block is cut into lines, not the description after it
    # (often most of the bytes): it ends at the first empty line, "\n\n" or
    # "\n\r\n" (a line that is a lone "\r" reads as empty below).
    end = len(text)
    for blank in ("\n\n", "\n\r\n"):
        at = text.find(blank, 0, end)
        if at >= 0:
            end = at
    for line in text[:end].split("\n"):
        if line[-1:] == "\r":
            line = line[:-1]
        if not line:
            break  # end of the header block
        if "\r" in line:
            return None  # a CR alone ends a line for the email parser
        if line[0] in " \t":
            if last_wanted:
                return None
            continue
        key, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME.match(key):
            return None  # where the email parser would end the headers
        values = found.get(key.lower())
        last_wanted = values is not None
        if values is None:
            continue
        if "=?" in value:
            return None
        values.append(value.lstrip(" \t"))  # as the email parser: trailing blanks stay
    return found


_WANTED = ("name", "version", "requires-python")


def _scan_headers(text: str) -> tuple[str | None, str | None, str | None] | None:
    """Name, Version and Requires-Python from :func:`scan_headers` (None: unusual)."""
    found = scan_headers(text, _WANTED)
    if found is None or any(len(v) > 1 for v in found.values()):
        return None
    name, version, requires_python = (found[f] for f in _WANTED)
    # As packaging's parser gives them (the email parser's values): not
    # stripped. "Name: demo " is not project demo to pip, nor to us.
    return (name[0] if name else None, version[0] if version else None,
            requires_python[0] if requires_python else None)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > _MAX_METADATA:
        raise ValueError(f"{info.filename} is {info.file_size} bytes")
    return archive.read(info)


#: What reading a damaged archive raises: zipfile and tarfile let zlib's errors
#: through, zipfile asks for a password (RuntimeError) when a member's
#: "encrypted" flag is set, and seeking in memory to an offset past 2**63 (a
#: zip64 field says where a member is) is an OverflowError.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile, tarfile.TarError, zlib.error, ValueError, OSError, EOFError,
    NotImplementedError, RuntimeError, OverflowError,
)


def _in_top_dir(member: str, suffix: str) -> bool:
    """Whether archive member *member* is a file one directory deep whose name ends *suffix*."""
    return member.count("/") == 1 and member.endswith(suffix)


def _is_own_metadata(member: str, fn: DistFilename) -> bool:
    """Whether *member* is ``<dist-info>/METADATA`` for *fn*'s project.

    The .dist-info directory's name may be spelled differently from the file
    name (older wheels); it is matched by normalised project name.
    """
    return (_in_top_dir(member, ".dist-info/METADATA")
            and canonicalize_name(member.split("/")[0][: -len(".dist-info")]
                                  .rsplit("-", 1)[0]) == fn.name)


def _wheel_metadata_fast(data: bytes, fn: DistFilename) -> bytes | None:
    """METADATA from a wheel's bytes, read with :mod:`wheelhouse._zipread`, or None.

    None for anything unusual, including every error: :func:`_wheel_metadata`
    then reads the same bytes with zipfile, which answers or names the problem.
    """
    found = _zipread.members(data)
    if found is None:
        return None
    if layout_problem([m[0] for m in found], [m[1] for m in found]) is not None:
        return None  # (zipfile's reader below names it)
    own = [m for m in found if _is_own_metadata(m[0], fn)]
    if len(own) != 1:
        return None
    wheel_file = own[0][0].rsplit("/", 1)[0] + "/WHEEL"
    if not any(m[0] == wheel_file for m in found):
        return None
    return _zipread.read_member(data, own[0], limit=_MAX_METADATA)


def _wheel_metadata(fileobj: IO[bytes], fn: DistFilename, source: str) -> bytes:
    try:
        with zipfile.ZipFile(fileobj) as zf:
            infos = zf.infolist()
            if (problem := layout_problem([i.filename for i in infos],
                                          [i.flag_bits for i in infos])) is not None:
                raise InvalidDistributionError(source, problem)
            own = [info for info in infos if _is_own_metadata(info.filename, fn)]
            if len(own) != 1:
                found = ", ".join(
                    i.filename for i in infos
                    if _in_top_dir(i.filename, ".dist-info/METADATA")
                ) or "none"
                raise InvalidDistributionError(
                    source, f"expected one {fn.name}-*.dist-info/METADATA, found: {found}"
                )
            wheel_file = own[0].filename.rsplit("/", 1)[0] + "/WHEEL"
            if wheel_file not in zf.NameToInfo:
                raise InvalidDistributionError(source, f"{wheel_file} is missing")
            return _read_member(zf, own[0])
    except InvalidDistributionError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise InvalidDistributionError(
            source, f"not a readable zip archive: {str(e) or type(e).__name__}") from e


class _SdistTooLargeError(Exception):
    """Reading on would pass :data:`_MAX_SDIST_UNPACKED` or :data:`_MAX_SDIST_MEMBERS`."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        #: Which limit, and how large it is.
        self.what = what


class _BoundedStream:
    """A decompressed stream for :mod:`tarfile` that refuses to go past *limit* bytes.

    tarfile skips a member's data with a seek (which inflates everything up to
    the new position) and reads a header (pax, GNU long name) in one read: a
    seek past the limit, or a single read larger than any real header or
    metadata file, is refused before it inflates anything.
    """

    def __init__(self, raw: gzip.GzipFile, limit: int) -> None:
        self._raw = raw
        self._limit = limit

    def _refuse(self, end: int, size: int = 0) -> None:
        if end > self._limit:
            raise _SdistTooLargeError(f"in its first {_size(self._limit)} unpacked")
        if size > _MAX_METADATA:
            raise _SdistTooLargeError(f"before a tar header or member of {size} bytes "
                                      f"(at most {_size(_MAX_METADATA)} are read at once)")

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise io.UnsupportedOperation("unbounded read")  # (tarfile always says how much)
        self._refuse(self._raw.tell() + size, size)
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("seek relative to the current position or the end")
        self._refuse(offset)
        return self._raw.seek(offset)

    def tell(self) -> int:
        return self._raw.tell()


@contextlib.contextmanager
def _open_tgz(
    fileobj: IO[bytes], *, limit: int | None = None,
) -> Iterator[tuple[tarfile.TarFile, Iterator[tarfile.TarInfo]]]:
    """A .tar.gz and its members, read within the sdist limits (*limit* bytes inflated).

    *limit* defaults to :data:`_MAX_SDIST_UNPACKED` (read when called).

    Iterating the members raises :class:`_SdistTooLargeError` where reading
    on would pass a limit.
    """
    with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz, tarfile.open(
        fileobj=cast("IO[bytes]", _BoundedStream(
            gz, _MAX_SDIST_UNPACKED if limit is None else limit)), mode="r:"
    ) as tf:

        def members() -> Iterator[tarfile.TarInfo]:
            count = 0
            while (member := tf.next()) is not None:
                # tarfile keeps every member it reads (the list getmembers()
                # returns; typeshed leaves it out); none is looked up again here
                # (only a regular file is extracted), so none is kept: memory
                # stays flat however many there are.
                tf.members.clear()  # type: ignore[attr-defined]
                yield member
                count += 1
                if count >= _MAX_SDIST_MEMBERS:
                    raise _SdistTooLargeError(f"in its first {_MAX_SDIST_MEMBERS} members")

        yield tf, members()


def _size(n: int) -> str:
    """*n* bytes as a person reads it: ``4 GiB``, ``16 MiB``, ``1000 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _too_large(source: str, looking_for: str, e: _SdistTooLargeError) -> InvalidDistributionError:
    import shlex

    return InvalidDistributionError(
        source, f"{looking_for} not found {e.what}, the most wheelhouse reads of an sdist "
        "(a real one is far smaller, a decompression bomb is not); if this one is real, "
        f"build a wheel from it (pip wheel --no-deps {shlex.quote(source)}) and add the wheel")


def _sdist_metadata(fileobj: IO[bytes], fn: DistFilename, source: str) -> bytes | None:
    # PEP 625/643: the sdist holds <name>-<version>/PKG-INFO (the file's own
    # stem), which is taken when it is there. Older sdists may name the top
    # directory differently: then the first top-level PKG-INFO. A member
    # written "./demo-1.0/PKG-INFO" (tar czf x ./dir) is the same one.
    stem = fn.filename.removesuffix(".zip").removesuffix(".tar.gz")
    first: bytes | None = None
    try:
        if fn.filename.endswith(".zip"):
            # (A zip's member list is its central directory, read as stored:
            # nothing is inflated but PKG-INFO, no more than its declared size,
            # which _read_member holds to _MAX_METADATA.)
            with zipfile.ZipFile(fileobj) as zf:
                for info in zf.infolist():
                    name = info.filename.removeprefix("./")
                    if _in_top_dir(name, "/PKG-INFO"):
                        if name == f"{stem}/PKG-INFO":
                            return _read_member(zf, info)
                        first = first if first is not None else _read_member(zf, info)
                return first
        with _open_tgz(fileobj) as (tf, members):
            for member in members:
                name = member.name.removeprefix("./")
                if _in_top_dir(name, "/PKG-INFO"):
                    if not member.isfile():
                        raise InvalidDistributionError(source, "PKG-INFO is not a regular file")
                    if member.size > _MAX_METADATA:
                        raise InvalidDistributionError(
                            source, f"PKG-INFO is {member.size} bytes (at most {_MAX_METADATA})")
                    extracted = tf.extractfile(member)
                    assert extracted is not None
                    if name == f"{stem}/PKG-INFO":
                        return extracted.read()
                    data = extracted.read()
                    first = first if first is not None else data
            return first
    except InvalidDistributionError:
        raise
    except _SdistTooLargeError as e:
        raise _too_large(source, f"{stem}/PKG-INFO", e) from None
    except _ARCHIVE_ERRORS as e:
        raise InvalidDistributionError(
            source, f"not a readable archive: {str(e) or type(e).__name__}") from e


#: The install schemes a wheel's ``NAME.data/`` directory may hold.
SCHEMES = ("purelib", "platlib", "headers", "scripts", "data")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a wheel member must not be installed (its name or kind), or None."""
    kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "not a regular file (a link or device)"
    return name_problem(info.filename)


def name_problem(name: str) -> str | None:
    """Why a wheel member's name must not be installed (it leaves the install directory), or None."""
    if _BAD_CHARS.search(name):
        return "a backslash or control character in the name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in the path"
    if len(parts) > 2 and parts[0].endswith(".data") and parts[1] not in SCHEMES:
        return f"unknown install scheme {parts[1]!r}"
    return None


_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def _escape_problem(name: str) -> str | None:
    r"""Why a member's name would be written outside the install directory, or None.

    Under either separator ("/", and "\" where Windows reads it so): an
    absolute path, a drive, a ".." part. (Names pip installs all the same, a
    backslash or a control character in a file name, are for the installer
    to judge: ``wheelhouse install`` refuses them.)
    """
    if name[:1] in ("/", "\\") or (name[1:2] == ":" and _DRIVE.match(name)):
        return "absolute path"
    if ".." in name and ".." in re.split(r"[\\/]", name):
        return "'..' in the path"
    return None


def layout_problem(names: Sequence[str], flags: Sequence[int]) -> str | None:
    """Why a wheel with these members must not be served, from the list alone; or None.

    A member name that leaves the install directory, a name twice, more than
    one top-level ``.dist-info`` directory (pip: "multiple .dist-info
    directories"), an encrypted member. (The members' bytes are checked by
    the installer, against RECORD.)
    """
    # The common case, in a few scans done in C: nothing that could escape
    # (no "..", ":", "\\" nor a leading "/"), nothing encrypted, no name twice,
    # one .dist-info directory at the top.
    joined = "\n".join(names)
    if (not (".." in joined or ":" in joined or "\\" in joined or "\n/" in joined
             or joined[:1] == "/" or any(f & 0x1 for f in flags))
            and len(set(names)) == len(names)
            and len({n[:i] for n in names
                     if (i := n.find("/")) > 0 and n.endswith(".dist-info", 0, i)}) <= 1):
        return None
    seen: set[str] = set()
    dist_infos: set[str] = set()
    for name, flag in zip(names, flags, strict=True):
        problem = _escape_problem(name)
        if problem is not None:
            problem += " (an installer would write outside its directory)"
        elif name in seen:
            # (pip takes one of the two; which one, zip readers disagree on:
            # what a scanner saw need not be what is installed.)
            problem = ("the name appears twice in the archive (which one is installed depends "
                       "on the zip reader)")
        elif flag & 0x1:
            problem = "it is encrypted (no installer can read it)"
        if problem is not None:
            return f"member {name!r}: {problem}"
        seen.add(name)
        slash = name.find("/")
        if slash > 0 and name.endswith(".dist-info", 0, slash):
            dist_infos.add(name[:slash])
    if len(dist_infos) > 1:
        return (f"more than one .dist-info directory: {', '.join(sorted(dist_infos))} "
                "(pip refuses such a wheel)")
    return None


def check_wheel_contents(path: str | os.PathLike[str], fn: DistFilename) -> None:
    """Check a wheel whole: every member's name, and its hash and size against RECORD.

    For wheels built here (promise 13: a build's output is checked before it
    enters the store): every member but RECORD (and its signatures) must be
    listed in RECORD with a sha256 (or stronger) and size that match, every
    listed file must be there, and no name may leave the install directory.
    Raises InvalidDistributionError naming the wheel and the member.
    """
    import base64
    import csv

    source = f"{os.fspath(path)} (built from {fn.name} {fn.version})"
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            seen: set[str] = set()
            for info in infos:
                problem = member_problem(info)
                if problem is None and info.filename in seen:
                    problem = "the name appears twice in the archive"
                if problem:
                    raise InvalidDistributionError(source, f"member {info.filename!r}: {problem}")
                seen.add(info.filename)
            records = [i.filename for i in infos if i.filename.endswith(".dist-info/RECORD")
                       and i.filename.count("/") == 1]
            if len(records) != 1:
                raise InvalidDistributionError(source, f"{len(records)} RECORD files")
            record_name = records[0]
            text = zf.read(record_name).decode("utf-8")
            listed: dict[str, tuple[str, str]] = {}
            for row in csv.reader(io.StringIO(text)):
                if not row:
                    continue
                if len(row) != 3:
                    raise InvalidDistributionError(source, f"RECORD row {row!r}: not 3 fields")
                listed[row[0]] = (row[1], row[2])
            unsigned = {record_name, record_name[: -len("RECORD")] + "RECORD.jws",
                        record_name[: -len("RECORD")] + "RECORD.p7s"}
            for info in infos:
                name = info.filename
                if name.endswith("/") or name in unsigned:
                    continue
                if name not in listed:
                    raise InvalidDistributionError(source, f"member {name!r} is not in RECORD")
                digest, size = listed.pop(name)
                algorithm, _, expected = digest.partition("=")
                if algorithm not in ("sha256", "sha384", "sha512"):
                    raise InvalidDistributionError(
                        source, f"member {name!r}: RECORD gives no sha256 (or stronger) hash")
                h = hashlib.new(algorithm)
                length = 0
                with zf.open(info) as member:
                    while chunk := member.read(1 << 20):
                        h.update(chunk)
                        length += len(chunk)
                actual = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
                if actual != expected:
                    raise InvalidDistributionError(
                        source, f"member {name!r}: {algorithm}={actual}, RECORD says "
                        f"{algorithm}={expected}")
                if size and size != str(length):
                    raise InvalidDistributionError(
                        source, f"member {name!r}: {length} bytes, RECORD says {size}")
            missing = [n for n in listed if n not in unsigned and not n.endswith("/")]
            if missing:
                raise InvalidDistributionError(
                    source, f"RECORD lists {missing[0]!r}, which the wheel does not hold")
    except (zipfile.BadZipFile, UnicodeDecodeError, csv.Error, OSError, zlib.error,
            NotImplementedError, RuntimeError, EOFError) as e:
        # (zipfile's ways of saying a member cannot be read: damaged deflate
        # data, a compression it lacks, an encrypted member.)
        raise InvalidDistributionError(source, f"not a readable wheel: {e}") from e


def read_dist_info(
    fileobj: IO[bytes] | bytes, fn: DistFilename, *, source: str
) -> DistInfo:
    """Read a distribution's metadata from an open file (or its bytes) and check it matches its name.

    *source* names the file in error messages. A wheel must carry exactly one
    ``.dist-info/METADATA`` whose Name and Version agree with the file name; an
    sdist's PKG-INFO is optional (old sdists lack it) but must agree when present.
    """
    metadata: bytes | None
    if isinstance(fileobj, bytes):
        fast = _wheel_metadata_fast(fileobj, fn) if fn.kind == "wheel" else None
        metadata = fast if fast is not None else _metadata(io.BytesIO(fileobj), fn, source)
    else:
        metadata = _metadata(fileobj, fn, source)
    requires_python = None
    if metadata is not None:
        core = parse_core_metadata(metadata, source=source)
        if core.name != fn.name:
            raise InvalidDistributionError(
                source, f"file name says project {fn.name!r} but its metadata says {core.name!r}"
            )
        if core.version != fn.version:
            raise InvalidDistributionError(
                source,
                f"file name says version {fn.version} but its metadata says {core.version}",
            )
        requires_python = core.requires_python
    return DistInfo(fn, metadata, requires_python)


#: How much of a gzip'd tar :func:`describe_blob` inflates, at most, to find its
#: first member's name (a pax or GNU long-name header before it, whatever size
#: that header claims, counts against it).
_DESCRIBE_TAR_BYTES = 1024 * 1024


def describe_blob(path: str | os.PathLike[str]) -> tuple[str, str, Kind] | None:
    """(project, version, kind) of a stored wheel or sdist known only by its bytes; None if unsure.

    For showing a person which blob a line names (``gc --dry-run``), not for
    trusting: a wheel is named by its ``.dist-info`` directory, an sdist by
    its top directory (``name-version/``: a PKG-INFO in it in a zip, the
    first member of a gzip'd tar), both as written in the archive's member
    names. No zip member is read; of a tar, no more than its first header
    (at most ``_DESCRIBE_TAR_BYTES`` inflated). Only a regular file is opened
    (no link followed, no FIFO waited on), and only a valid project name and
    version are given (normalised), so what is shown is never more than a
    name: no line break, no escape sequence from the archive.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return _describe(f)
        except _ARCHIVE_ERRORS:
            return None


def _describe(f: IO[bytes]) -> tuple[str, str, Kind] | None:
    def split(stem: str) -> tuple[str, str] | None:
        name, sep, version = stem.rpartition("-")
        if not sep:
            return None
        try:
            return canonicalize_name(name, validate=True), str(Version(version))
        except (InvalidName, InvalidVersion):
            return None

    try:
        with zipfile.ZipFile(f) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        f.seek(0)
        # Not zipfile's "r:*": an sdist is a gzip'd tar (PEP 625), and tarfile
        # would read a header's whole claimed size (a long name of 8 GiB).
        try:
            with _open_tgz(f, limit=_DESCRIBE_TAR_BYTES) as (_, members):
                first = next(members, None)
        except _SdistTooLargeError:
            return None
        if first is None:
            return None
        tops = {first.name.removeprefix("./").split("/", 1)[0]}
    else:
        dist_info = {n.split("/", 1)[0] for n in names
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")}
        if len(dist_info) == 1:
            found = split(dist_info.pop().removesuffix(".dist-info"))
            return None if found is None else (*found, "wheel")
        tops = {n.split("/", 1)[0] for n in names if n.count("/") == 1
                and n.endswith("/PKG-INFO")}
    if len(tops) != 1:
        return None
    found = split(tops.pop())
    return None if found is None else (*found, "sdist")


def _metadata(fileobj: IO[bytes], fn: DistFilename, source: str) -> bytes | None:
    if fn.kind == "wheel":
        return _wheel_metadata(fileobj, fn, source)
    return _sdist_metadata(fileobj, fn, source)


#: What pip assumes when an sdist has no ``[build-system]`` (PEP 517/518).
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)


def read_build_requires(fileobj: IO[bytes], fn: DistFilename, *, source: str) -> list[str]:
    """The ``build-system.requires`` of an sdist (pip's default when it declares none)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data: bytes | None = None
    try:
        if fn.filename.endswith(".zip"):
            with zipfile.ZipFile(fileobj) as zf:
                for info in zf.infolist():
                    if _in_top_dir(info.filename, "/pyproject.toml"):
                        data = _read_member(zf, info)
                        break
        else:
            with _open_tgz(fileobj) as (tf, members):
                for member in members:
                    if _in_top_dir(member.name, "/pyproject.toml"):
                        if member.isfile() and member.size <= _MAX_METADATA:
                            extracted = tf.extractfile(member)
                            assert extracted is not None
                            data = extracted.read()
                        break
    except _SdistTooLargeError as e:
        raise _too_large(source, "pyproject.toml", e) from None
    except _ARCHIVE_ERRORS as e:
        raise InvalidDistributionError(
            source, f"not a readable archive: {str(e) or type(e).__name__}") from e
    if data is None:
        return list(DEFAULT_BUILD_REQUIRES)
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InvalidDistributionError(source, f"pyproject.toml is not valid TOML: {e}") from e
    system = parsed.get("build-system")
    if not isinstance(system, dict) or "requires" not in system:
        return list(DEFAULT_BUILD_REQUIRES)
    requires = system["requires"]
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise InvalidDistributionError(source, "build-system.requires is not a list of strings")
    return list(requires)
