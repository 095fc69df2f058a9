"""A house and its manifest: a self-contained directory of distribution files."""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import itertools
import json
import json.encoder
import logging
import operator
import os
import re
import stat
import tempfile
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelhouse._forked import Chunks, Forked, can_fork, shared, take_all
from wheelhouse._fs import (
    can_exchange,
    exchange,
    flushing,
    fsync_dir,
    gc_paused,
    interrupts_deferred,
    sync_files,
    write_atomic,
    write_many_atomic,
    write_new,
)
from wheelhouse.errors import (
    FormatVersionError,
    HashMismatchError,
    HelperProcessError,
    HouseError,
    InvalidFilenameError,
    InvalidInputError,
    InvalidManifestError,
    LockTimeoutError,
    StoreError,
    WheelhouseError,
    is_format,
)
from wheelhouse.filenames import parse_filename, validate_component
from wheelhouse.index import (
    FIND_LINKS_PAGE,
    RENDERING,
    SIMPLE_DIR,
    html_carryable,
    iter_index_pages,
    render_find_links,
    render_project_html,
    render_project_json,
    render_project_pages,
    render_root_html,
    render_root_json,
    splice_find_links,
)
from wheelhouse.store import Sha256, Store, parse_sha256, sha256_file

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "FILES_DIR",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "FileEntry",
    "House",
    "HouseProblem",
    "Manifest",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The manifest format version this wheelhouse writes and reads.
MANIFEST_FORMAT = 1
#: The manifest's file name inside a house.
MANIFEST_NAME = "wheelhouse.json"
#: The directory inside a house holding the distribution files.
FILES_DIR = "files"
#: Suffix of PEP 658 metadata files next to each wheel.
METADATA_SUFFIX = ".metadata"
_LOCK_NAME = ".wheelhouse.lock"
#: Present while a writer holds the lock: found on entry, the last one died (see House.lock).
_WRITING_NAME = ".wheelhouse.writing"
_PAGE_BATCH = 2000
# An index of at least this many projects, where simple/ holds at most
# _FRESH_MAX_EXISTING entries, is built aside and swapped in (see
# House._write_index_fresh); from _FORK_MIN_PROJECTS, by two processes.
_FRESH_MIN_PROJECTS = 500
_FRESH_MAX_EXISTING = 16
_FORK_MIN_PROJECTS = 2000
# Two page writers take runs of whole projects of about this many files each.
_CHUNK_FILES = 128
# Linking files into a house: from this many, a helper links some while the
# command renders the manifest; in chunks of this many files.
_FORK_MIN_LINKS = 4000
_LINK_CHUNK = 1000
# From this size, `wheelhouse index` of a house without an index has a helper
# write pages while the manifest is parsed (see _HeadStart).
_HEAD_START_MIN_BYTES = 1 << 20
# Below this size, rendering the manifest again costs next to nothing.
_LINES_MIN_BYTES = 256 * 1024
_quote = json.encoder.encode_basestring_ascii
# PEP 503 normalised names: what a project directory under simple/ may be called.
_CANONICAL = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_MANIFEST_ORDER = operator.attrgetter("project", "filename")
_MAX_NAME = 255  # as validate_component
# Up to this many new entries, with_files puts each in place instead of sorting.
_FEW = 256
#: File in ``simple/`` recording the sha256 of the manifest the index shows.
INDEX_STATE = ".manifest-sha256"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One distribution file in a house, as the manifest records it."""

    #: The file's real name (also its name under ``files/``).
    filename: str
    #: Its sha256.
    sha256: Sha256
    #: Its size in bytes.
    size: int
    #: ``"wheel"`` or ``"sdist"``.
    kind: str
    #: Normalised project name.
    project: str
    #: Version string.
    version: str
    #: ``Requires-Python`` from its metadata, if any.
    requires_python: str | None = None
    #: sha256 of its core metadata (served as ``<filename>.metadata``), wheels only.
    metadata_sha256: Sha256 | None = None
    #: Where it came from: a URL, or ``local:<path>`` for ``add``.
    origin: str | None = None
    #: Upstream upload time (ISO 8601, UTC), when known (PEP 700).
    upload_time: str | None = None
    #: ``None`` if not yanked, else the reason (possibly empty) (PEP 592).
    yanked: str | None = None
    #: Targets this file serves (empty: not recorded).
    targets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The manifest's JSON object for this file (``None`` fields omitted)."""
        out: dict[str, Any] = {
            "filename": self.filename,
            "sha256": self.sha256,
            "size": self.size,
            "kind": self.kind,
            "project": self.project,
            "version": self.version,
        }
        for key in ("requires_python", "metadata_sha256", "origin", "upload_time", "yanked"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.targets:
            out["targets"] = list(self.targets)
        return out

    def to_json_line(self) -> str:
        """One line of compact JSON for this entry, keys sorted (the manifest's format).

        Equal to ``json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))``,
        assembled directly because a manifest may hold 50,000 entries.
        """
        q = _quote
        # Keys in sorted order.
        parts = ['"filename":' + q(self.filename)]
        parts.append('"kind":' + q(self.kind))
        if self.metadata_sha256 is not None:
            parts.append('"metadata_sha256":' + q(self.metadata_sha256))
        if self.origin is not None:
            parts.append('"origin":' + q(self.origin))
        parts.append('"project":' + q(self.project))
        if self.requires_python is not None:
            parts.append('"requires_python":' + q(self.requires_python))
        parts.append('"sha256":' + q(self.sha256))
        parts.append(f'"size":{int(self.size)}')
        if self.targets:
            parts.append('"targets":[' + ",".join(q(t) for t in self.targets) + "]")
        if self.upload_time is not None:
            parts.append('"upload_time":' + q(self.upload_time))
        parts.append('"version":' + q(self.version))
        if self.yanked is not None:
            parts.append('"yanked":' + q(self.yanked))
        return "{" + ",".join(parts) + "}"

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], *, names: dict[str, str] | None = None,
        versions: dict[str, Version] | None = None,
    ) -> FileEntry:
        """Validate and build an entry from its manifest JSON object.

        *names* and *versions*, shared across the entries of one manifest,
        remember the normalised form of each name and version part of a wheel's
        file name (a manifest holds few projects per file, and few versions).
        A problem raises ValueError or TypeError (InvalidFilenameError for the
        file name), saying which key and value are wrong.
        """
        if not isinstance(raw, dict):
            raise TypeError(f"not a JSON object: {_short(raw)}")
        try:
            filename, sha256, size = raw["filename"], raw["sha256"], raw["size"]
            kind, project, version = raw["kind"], raw["project"], raw["version"]
        except KeyError:
            missing = [k for k in _REQUIRED_KEYS if k not in raw]
            raise ValueError(f"missing key{'s' if len(missing) > 1 else ''} "
                             + ", ".join(map(repr, missing))) from None
        unknown = raw.keys() - _KNOWN_KEYS
        if unknown:
            # A typo ("yankd") would be dropped without a word when the manifest
            # is written again: refused, as an unknown format is.
            raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                             + ", ".join(_short(k) for k in sorted(unknown)))
        for key, value in (("filename", filename), ("kind", kind), ("project", project),
                           ("version", version)):
            if type(value) is not str:
                raise TypeError(f"{key!r} must be a string, not {_short(value)}")
        validate_component(filename)
        # The project names a directory under simple/.
        if not _CANONICAL.match(project):
            raise ValueError(f"'project' is not a normalised project name (PEP 503): "
                             f"{_short(project)}")
        if type(size) is not int:
            raise TypeError(f"'size' must be a whole number of bytes, not {_short(size)}")
        get = raw.get
        metadata_sha256 = get("metadata_sha256")
        targets = get("targets")
        if targets is not None and (type(targets) is not list
                                    or not all(type(t) is str for t in targets)):
            raise TypeError(f"'targets' must be a list of strings, not {_short(targets)}")
        return cls(
            filename,
            _digest(sha256, "sha256"),
            size,
            kind,
            project,
            version,
            _opt_str(get("requires_python"), "requires_python"),
            None if metadata_sha256 is None else _digest(metadata_sha256, "metadata_sha256"),
            _opt_str(get("origin"), "origin"),
            _opt_str(get("upload_time"), "upload_time"),
            _opt_str(get("yanked"), "yanked", "a string (the reason, possibly empty)"),
            tuple(targets) if targets else (),
        )._checked({} if names is None else names, {} if versions is None else versions)

    @classmethod
    def _from_line(cls, match: re.Match[str], names: dict[str, str],
                   versions: dict[str, Version]) -> FileEntry:
        """Build an entry from a manifest line matched by ``_LINE`` (see Manifest.parse)."""
        (filename, kind, metadata_sha256, origin, project, requires_python, sha256, size,
         targets, upload_time, version, yanked) = match.groups()
        # _LINE allows only safe characters in a file name and a canonical
        # project name: what validate_component and from_dict would test by
        # regex again is known already.
        if len(filename) > _MAX_NAME or ".." in filename:
            validate_component(filename)  # raises, saying why
        # _LINE matched the digests: they go in as they are (a call of the
        # Sha256 NewType costs, for every line, as much as checking its version).
        return cls(
            filename, sha256, int(size), kind, project, version,  # type: ignore[arg-type]
            requires_python, metadata_sha256, origin,  # type: ignore[arg-type]
            upload_time, yanked, tuple(targets[1:-1].split('","')) if targets else (),
        )._checked(names, versions)

    def _checked(self, names: dict[str, str], versions: dict[str, Version]) -> FileEntry:
        """Return the entry if it agrees with its file name (else ValueError, saying how).

        Its project (known to be normalised) must be the file's, as its kind;
        its version must be the file's, equal as PEP 440 compares (``add``
        writes the normalised form: ``2013b0`` for a file named ``2013b``). A
        wheel named in the usual five parts is checked cheaply, its name,
        version and tag parts parsed once per manifest (remembered in *names*
        and *versions*); any other file name is parsed in full.
        """
        filename, version = self.filename, self.version
        parts = filename.split("-") if self.kind == "wheel" else ()
        if len(parts) == 5 and filename.endswith(".whl"):
            name_part, version_part = parts[0], parts[1]
            # The tags as parse_filename checks them (an empty part, an
            # interpreter that is not an identifier), once per tag string:
            # remembered among the name parts (a tag string holds "-", a name
            # part never).
            tag_part = filename[len(name_part) + len(version_part) + 2 : -len(".whl")]
            if tag_part not in names:
                parse_filename(filename)  # raises, saying why
                names[tag_part] = tag_part
            file_project = names.get(name_part)
            if file_project is None:
                file_project = names[name_part] = canonicalize_name(name_part)
            file_version = versions.get(version_part)
            if file_version is None:
                file_version = versions[version_part] = _file_version(version_part, filename)
            # Usually the version is spelt as in the file name.
            same_version = version == version_part
        else:
            parsed = parse_filename(filename)
            if parsed.kind != self.kind:
                if self.kind not in ("wheel", "sdist"):
                    raise ValueError(f"'kind' must be 'wheel' or 'sdist', not {_short(self.kind)}")
                whose = "an sdist's" if parsed.kind == "sdist" else "a wheel's"
                raise ValueError(f"'kind' {self.kind!r} disagrees with its file name ({whose})")
            file_project, file_version = parsed.name, parsed.version
            # Usually the version is spelt as in the file name (for an sdist,
            # what follows the last "-", then the extension).
            tail = filename.rpartition("-")[2]
            same_version = (parsed.kind == "sdist" and tail.startswith(version)
                            and tail[len(version):] in (".tar.gz", ".zip"))
        if file_project != self.project:
            raise ValueError(f"'project' {self.project!r} disagrees with its file name "
                             f"(project {file_project!r})")
        if not same_version and _version(version, versions) != file_version:
            raise ValueError(f"'version' {_short(version)} disagrees with its file name "
                             f"(version {file_version})")
        if self.size < 0:
            raise ValueError(f"'size' must not be negative: {self.size}")
        return self


# The keys every entry has (FileEntry.to_dict), in the manifest's order.
_REQUIRED_KEYS = ("filename", "kind", "project", "sha256", "size", "version")
_KNOWN_KEYS = frozenset({*_REQUIRED_KEYS, "requires_python", "metadata_sha256", "origin",
                         "upload_time", "yanked", "targets"})


def _short(value: object) -> str:
    """repr(value), cut short: a message quotes a hand-edited value, not a whole line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _opt_str(value: object, key: str, what: str = "a string") -> str | None:
    if value is None or type(value) is str:
        return value
    raise TypeError(f"{key!r} must be {what}, not {_short(value)}")


def _digest(value: object, key: str) -> Sha256:
    if type(value) is str:
        with contextlib.suppress(StoreError):
            return parse_sha256(value)
    raise ValueError(f"{key!r} is not a sha256 digest (64 lowercase hex digits): "
                     f"{_short(value)}")


def _version(text: str, versions: dict[str, Version]) -> Version:
    """*text* as a PEP 440 version (remembered in *versions*); ValueError if it is not one."""
    found = versions.get(text)
    if found is None:
        try:
            found = versions[text] = Version(text)
        except InvalidVersion:
            raise ValueError(f"'version' is not a valid version (PEP 440): "
                             f"{_short(text)}") from None
    return found


def _file_version(part: str, filename: str) -> Version:
    """The version part of a wheel's *filename*, parsed (InvalidFilenameError if invalid)."""
    try:
        return Version(part)
    except InvalidVersion:
        parse_filename(filename)  # raises, saying why
        raise InvalidFilenameError(filename, "invalid version") from None


# What reading one manifest entry may raise, each saying what is wrong.
_ENTRY_ERRORS = (TypeError, ValueError, OverflowError, WheelhouseError)


def _reason(error: Exception) -> str:
    """What an entry's error says (without the hint of an error meant for elsewhere)."""
    return error.message if isinstance(error, WheelhouseError) else str(error)


def _json_problem(error: json.JSONDecodeError) -> str:
    return f"not valid JSON ({error.msg}, column {error.colno})"


def _parse_line(line: str, names: dict[str, str], versions: dict[str, Version]) -> FileEntry:
    """The entry of one manifest line (ValueError or TypeError, saying why, if invalid)."""
    found = _LINE.match(line)
    if found is not None:
        return FileEntry._from_line(found, names, versions)
    try:
        item, end = json.decoder.JSONDecoder().scan_once(line, 0)  # type: ignore[attr-defined]
    except (StopIteration, ValueError):
        item, end = None, -1
    if end != len(line):
        try:  # again, for the decoder's own words
            json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(_json_problem(e)) from None
        raise ValueError("not one JSON object alone on its line")
    return FileEntry.from_dict(item, names=names, versions=versions)


class _Lines:
    """What the rows of manifests derived from one manifest file share.

    A row that is still the file's line is parsed when first needed, once for
    all those manifests (the cache is keyed by the line object), so an entry
    read twice is the same object: identity tells unchanged entries apart.
    """

    __slots__ = ("lines", "names", "parsed", "source", "versions")

    def __init__(self, source: str, lines: Sequence[str]) -> None:
        self.source = source
        # The file's entry lines as read (its second line on): a line refused
        # is named by its number, found here by identity (only then).
        self.lines = lines
        # By the line object's id, with the line itself: an id is only ever
        # taken for that line.
        self.parsed: dict[int, tuple[str, FileEntry]] = {}
        self.names: dict[str, str] = {}
        self.versions: dict[str, Version] = {}

    def entry(self, line: str) -> FileEntry:
        """The entry of *line* (parsed and checked the first time).

        InvalidManifestError, naming the file and line, if it is invalid.
        """
        hit = self.parsed.get(id(line))
        if hit is not None and hit[0] is line:
            return hit[1]
        try:
            entry = _parse_line(line, self.names, self.versions)
        except _ENTRY_ERRORS as e:
            raise InvalidManifestError(self.source, [(self.line_number(line), _reason(e))]
                                       ) from None
        self.parsed[id(line)] = (line, entry)
        return entry

    def line_number(self, line: str) -> int:
        """The 1-based number of *line* in the file (a linear search: for errors only)."""
        for i, known in enumerate(self.lines):
            if known is line:
                return _entry_line_number(i)
        raise AssertionError("not one of the file's lines")

    def entries(self, rows: Sequence[str | FileEntry], unmatched: list[int] | None = None,
                *, remember: bool = True) -> tuple[FileEntry, ...]:
        """:meth:`entry` of every row, in one pass (rows already entries stay as they are).

        The positions of lines parsed as JSON (not matched by ``_LINE``) are
        appended to *unmatched*, if given. Without *remember* (rows read once,
        by a reader that keeps no lines), the entries are not kept for later.
        """
        parsed = self.parsed
        names = self.names
        versions = self.versions
        match = _LINE.match
        from_line = FileEntry._from_line
        out: list[FileEntry] = []
        append = out.append
        for i, r in enumerate(rows):
            if type(r) is not str:
                append(r)  # type: ignore[arg-type]
                continue
            if remember:
                key = id(r)
                hit = parsed.get(key)
                if hit is not None and hit[0] is r:
                    append(hit[1])
                    continue
            m = match(r)
            if m is None:
                if unmatched is not None:
                    unmatched.append(i)
                found = self.entry(r)
            else:
                try:
                    found = from_line(m, names, versions)
                except _ENTRY_ERRORS:
                    found = self.entry(r)  # raises, saying why
                if remember:
                    parsed[key] = (r, found)
            append(found)
        return tuple(out)


def _entry_line_number(index: int) -> int:
    """The 1-based line number of a manifest's entry *index* in render()'s shape."""
    return index + 2  # line 1 opens the manifest: '{"format":1,"files":['


class Manifest:
    """The list of files a house holds; the single source of truth for its index.

    Immutable. A manifest read from a file the house wrote itself (see
    :meth:`House.read_manifest`) keeps the file's lines as its rows and parses
    a line only when its entry is needed: adding one file to a house of
    50,000 looks at a few dozen lines, and :meth:`render` writes the others
    back as they were. :attr:`files` parses (and checks) them all.
    """

    __slots__ = ("__weakref__", "_canonical", "_files", "_lines", "_origin", "_rows", "format")

    def __init__(self, files: Iterable[FileEntry] = (), format: int = MANIFEST_FORMAT) -> None:
        #: Format version.
        self.format = format
        ordered = tuple(files)
        keys = list(map(_MANIFEST_ORDER, ordered))
        if not all(map(operator.le, keys, keys[1:])):  # a manifest read is in order already
            ordered = tuple(sorted(ordered, key=_MANIFEST_ORDER))
        self._files: tuple[FileEntry, ...] | None = ordered
        # In order: a file's line (str, an entry from _lines) or an entry (new since).
        self._rows: list[str | FileEntry] | None = None
        self._lines: _Lines | None = None
        # (the manifest this one was made from, entries gone, entries new): see
        # changes_since. Weak: a chain of manifests does not keep them all alive.
        self._origin: tuple[weakref.ref[Manifest], list[FileEntry], list[FileEntry]] | None = None
        # Set by parse(): whether the bytes read were render()'s exact output.
        self._canonical: bool | None = None

    @property
    def files(self) -> tuple[FileEntry, ...]:
        """The files, sorted by project then file name."""
        files = self._files
        if files is None:
            assert self._rows is not None and self._lines is not None
            with gc_paused():
                files = self._files = self._lines.entries(self._rows)
        return files

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._rows or ())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return self.format == other.format and self.files == other.files

    def __hash__(self) -> int:
        return hash((self.format, self.files))

    def __repr__(self) -> str:
        return f"Manifest(<{len(self)} files>, format={self.format})"

    def _derived(self, rows: list[str | FileEntry] | None, files: tuple[FileEntry, ...] | None,
                 removed: list[FileEntry], added: list[FileEntry]) -> Manifest:
        new = object.__new__(Manifest)
        new.format = self.format
        new._files = files
        new._rows = rows
        new._lines = self._lines if rows is not None else None
        new._origin = (weakref.ref(self), removed, added)
        new._canonical = None
        return new

    def _entry(self, row: str | FileEntry) -> FileEntry:
        if type(row) is FileEntry:
            return row
        assert self._lines is not None
        return self._lines.entry(row)  # type: ignore[arg-type]

    def _sequence(self) -> list[str | FileEntry] | tuple[FileEntry, ...]:
        """The rows, when the manifest keeps its file's lines, else the files."""
        return self._rows if self._rows is not None else self.files

    def find(self, entry: FileEntry) -> FileEntry | None:
        """The house's entry for *entry*'s file name, if any (a bisection: no full parse).

        A file's name determines its project, so (project, name) orders both.
        """
        rows = self._sequence()
        i = bisect.bisect_left(rows, (entry.project, entry.filename), key=self._order_key)
        if i < len(rows):
            found = self._entry(rows[i])
            if found.filename == entry.filename:
                return found
        return None

    def by_filename(self) -> dict[str, FileEntry]:
        """Map file name to entry."""
        return {e.filename: e for e in self.files}

    def projects(self) -> dict[str, list[FileEntry]]:
        """Map normalised project name to its entries (sorted)."""
        out: dict[str, list[FileEntry]] = {}
        for e in self.files:
            out.setdefault(e.project, []).append(e)
        return out

    def project_names(self) -> list[str]:
        """The normalised project names, sorted."""
        if self._files is not None or self._rows is None:
            return sorted({e.project for e in self.files})
        # Our own lines: the project is read from each line without parsing it
        # (its key is there once, its value canonical: no escapes).
        names: dict[str, None] = {}
        for r in self._rows:
            at = r.find('"project":"') if type(r) is str else -1
            if at >= 0:
                start = at + 11
                names[r[start:r.index('"', start)]] = None  # type: ignore[index,union-attr]
            else:
                names[self._entry(r).project] = None
        return sorted(names)

    def project_files(self, project: str) -> list[FileEntry]:
        """The entries of one project, in order (two bisections: no full parse)."""
        rows = self._sequence()
        key = self._project_key
        lo = bisect.bisect_left(rows, project, key=key)
        hi = bisect.bisect_right(rows, project, lo=lo, key=key)
        return [self._entry(r) for r in rows[lo:hi]]

    def _project_key(self, row: str | FileEntry) -> str:
        return self._entry(row).project

    def _order_key(self, row: str | FileEntry) -> tuple[str, str]:
        entry = self._entry(row)
        return (entry.project, entry.filename)

    def with_files(self, entries: Iterable[FileEntry]) -> Manifest:
        """A new manifest with *entries* added or replacing those of the same name."""
        incoming = list({e.filename: e for e in entries}.values())  # the last of a name wins
        removed: list[FileEntry] = []
        added: list[FileEntry] = []
        if len(incoming) > _FEW:
            current = self.by_filename()
            merged = dict(current)
            for e in incoming:
                old = current.get(e.filename)
                if old is not e:
                    if old is not None:
                        removed.append(old)
                    added.append(e)
                merged[e.filename] = e
            files = tuple(sorted(merged.values(), key=_MANIFEST_ORDER))
            rows: list[str | FileEntry] | None = None
            if self._rows is not None:
                # Entries still as read keep their line, for render().
                lines = {id(self._entry(r)): r for r in self._rows if type(r) is str}
                rows = [lines.get(id(e), e) for e in files]
            return self._derived(rows, files, removed, added)
        # A few: each goes in its place (a file's name determines its project).
        new_rows: list[Any] = list(self._sequence())
        for e in incoming:
            i = bisect.bisect_left(new_rows, (e.project, e.filename), key=self._order_key)
            old = self._entry(new_rows[i]) if i < len(new_rows) else None
            if old is not None and old.filename == e.filename:
                if old is e:
                    continue
                removed.append(old)
                new_rows[i] = e
            else:
                new_rows.insert(i, e)
            added.append(e)
        if self._rows is not None:
            return self._derived(new_rows, None, removed, added)
        return self._derived(None, tuple(new_rows), removed, added)

    def without(self, filenames: Iterable[str]) -> Manifest:
        """A new manifest without the named files."""
        drop = set(filenames)
        files = self.files
        keep = [e.filename not in drop for e in files]
        removed = [e for e, k in zip(files, keep, strict=True) if not k]
        rows = None
        if self._rows is not None:
            rows = [r for r, k in zip(self._rows, keep, strict=True) if k]
        return self._derived(rows, tuple(e for e, k in zip(files, keep, strict=True) if k),
                             removed, [])

    def changes_since(self, previous: Manifest) -> tuple[list[FileEntry], list[FileEntry]] | None:
        """``(gone, new)`` entries from *previous* to this manifest, when it derives from it.

        Known without comparing every file when this manifest was made from
        *previous* by :meth:`with_files` and :meth:`without` (at most a few
        steps); None otherwise.
        """
        steps: list[tuple[weakref.ref[Manifest], list[FileEntry], list[FileEntry]]] = []
        m: Manifest | None = self
        while m is not previous:
            if m is None or m._origin is None or len(steps) > 16:
                return None
            steps.append(m._origin)
            m = m._origin[0]()
        gone: list[FileEntry] = []
        new: dict[int, FileEntry] = {}
        for _, removed, added in reversed(steps):
            for e in removed:
                if new.pop(id(e), None) is None:
                    gone.append(e)
            for e in added:
                new[id(e)] = e
        return gone, list(new.values())

    def render(self) -> bytes:
        """Serialise to stable JSON bytes (same manifest, same bytes)."""
        # One file per line: readable, diff-friendly; a line read from the
        # house's own file is written back as it was.
        if self._rows is not None:
            lines = [r if type(r) is str else r.to_json_line()  # type: ignore[union-attr]
                     for r in self._rows]
        else:
            lines = [e.to_json_line() for e in self.files]
        body = ",\n".join(lines)
        text = f'{{"format":{self.format},"files":[\n{body}\n]}}\n' if lines else (
            f'{{"format":{self.format},"files":[]}}\n'
        )
        return text.encode()

    @classmethod
    def parse(cls, data: bytes, *, source: str, keep_lines: bool = False) -> Manifest:
        """Parse manifest bytes; refuse an unknown format or any invalid entry.

        A manifest in the shape :meth:`render` gives (one entry per line) is
        read line by line, so the whole JSON tree never sits in memory at
        once. With *keep_lines* (the caller knows the bytes are this class's
        own rendering, checked when it was written), the lines are kept
        unparsed: each is parsed and checked when its entry is first needed,
        and :meth:`render` writes the unchanged ones back as they are.
        """
        lines = _entry_lines(data)
        if lines is not None:
            if keep_lines:
                new = cls()
                new._files = None
                new._rows = list(lines)
                # The lines as read, for the number of a line refused later.
                new._lines = _Lines(source, lines)
                new._canonical = True  # render()'s own output, as the caller knows
                return new
            unmatched: list[int] = []
            try:
                files = _Lines(source, lines).entries(lines, unmatched, remember=False)
            except HouseError:
                pass  # below, every problem is listed
            else:
                if len({e.filename for e in files}) == len(files):
                    new = cls(files)
                    # A line _LINE matched is its entry's rendering; the others
                    # are compared with theirs.
                    new._canonical = new._files is files and all(
                        lines[i] == files[i].to_json_line() for i in unmatched)
                    return new
            try:
                return cls._from_items(_scan_lines(lines), source=source,
                                       line_of=_entry_line_number)
            except _NotLinesError:
                pass  # valid JSON, perhaps, but not one entry per line
        try:
            raw = json.loads(data)
        except json.JSONDecodeError as e:
            raise InvalidManifestError(source, [(e.lineno, _json_problem(e))]) from e
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise InvalidManifestError(source, [(line, f"not valid UTF-8 ({e.reason})")]) from e
        if not isinstance(raw, dict):
            raise HouseError(f"{source}: manifest is not a JSON object")
        if not is_format(raw.get("format"), MANIFEST_FORMAT):
            raise FormatVersionError("manifest", source, raw.get("format"), MANIFEST_FORMAT)
        items = raw.get("files", [])
        if not isinstance(items, list):
            raise HouseError(f"{source}: invalid manifest: 'files' is not a list")
        starts: list[int] = []

        def line_of(index: int) -> int:
            if not starts:  # only for an error: found by reading the JSON again
                starts.extend(_item_line_numbers(data))
            return starts[index]

        return cls._from_items(items, source=source, line_of=line_of)

    @classmethod
    def _from_items(cls, items: Iterable[Any], *, source: str,
                    line_of: Callable[[int], int]) -> Manifest:
        """A manifest of *items* (``_LINE`` matches or JSON values), every problem listed.

        *line_of* gives the 1-based line number of an item, for the message.
        """
        entries = []
        problems: list[tuple[int, str]] = []
        seen: dict[str, int] = {}
        names: dict[str, str] = {}
        versions: dict[str, Version] = {}
        for i, item in enumerate(items):
            try:
                if type(item) is re.Match:
                    entry = FileEntry._from_line(item, names, versions)
                else:
                    entry = FileEntry.from_dict(item, names=names, versions=versions)
            except _ENTRY_ERRORS as e:
                problems.append((line_of(i), _reason(e)))
                continue
            first = seen.setdefault(entry.filename, i)
            if first != i:
                duplicate = (f"duplicate file name {entry.filename!r} "
                             f"(first on line {line_of(first)})")
                problems.append((line_of(i), duplicate))
            entries.append(entry)
        if problems:
            raise InvalidManifestError(source, problems)
        return cls(entries)


def _project_groups(files: tuple[FileEntry, ...]) -> list[tuple[str, int, int]]:
    """``(project, start, stop)`` of each project's run in the (sorted) files."""
    groups: list[tuple[str, int, int]] = []
    start = 0
    current = None
    for i, e in enumerate(files):
        if e.project != current:
            if current is not None:
                groups.append((current, start, i))
            current, start = e.project, i
    if current is not None:
        groups.append((current, start, len(files)))
    return groups


def _write_groups(
    directory: str, files: tuple[FileEntry, ...], groups: list[tuple[str, int, int]],
    *, redo: bool = False,
) -> None:
    """Write each project's two pages into *directory* (new and private).

    With *redo*, whatever a project already has there is removed first.
    """
    for project, start, stop in groups:
        entries = files[start:stop]
        # The manifest's project names are checked canonical: one component.
        if redo:
            _remove_tree(Path(directory, project))
        os.mkdir(f"{directory}/{project}")  # noqa: PTH102
        write_new(f"{directory}/{project}/index.html", render_project_html(project, entries))
        write_new(f"{directory}/{project}/index.json", render_project_json(project, entries))


def _write_range(directory: str, files: tuple[FileEntry, ...], start: int, stop: int,
                 *, redo: bool = False) -> None:
    """Write the pages of the projects of ``files[start:stop]`` (whole projects) into *directory*."""
    part = files[start:stop]
    _write_groups(directory, part, _project_groups(part), redo=redo)


def _wait_for_helper(helper: Forked[None], chunks: Chunks, directory: str,
                     files: tuple[FileEntry, ...], bounds: list[tuple[int, int]]) -> None:
    """Wait for the helper writing chunks from the back; if it died, write its chunks here.

    (Killed, say, by the kernel short of memory: whatever it took, done or
    half done, is written again.) An error it raised is raised here.
    """
    try:
        helper.result()
    except HelperProcessError as e:
        log.debug("%s: writing its pages here", e)
        for start, stop in bounds[chunks.split():]:
            _write_range(directory, files, start, stop, redo=True)


def _chunks_of_groups(groups: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of files, whole projects of about _CHUNK_FILES files each."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for _, _, stop in groups:
        if stop - start >= _CHUNK_FILES:
            bounds.append((start, stop))
            start = stop
    if groups and start < groups[-1][2]:
        bounds.append((start, groups[-1][2]))
    return bounds


def _take_from_back(chunks: Chunks, directory: str | Path, work: Callable[[int], None]) -> None:
    """A helper's part: chunks from the back, written in *directory* and flushed as they come.

    *directory* becomes its working directory (short paths for *work*).
    """
    os.chdir(directory)
    with flushing(directory):  # named in an error
        take_all(chunks, front=False, work=work)


def _holds_few_entries(directory: Path) -> bool:
    """Whether *directory* has at most _FRESH_MAX_EXISTING entries, or none at all.

    Counted no further than needed; False if it cannot be listed.
    """
    try:
        with os.scandir(directory) as entries:
            return sum(1 for _ in itertools.islice(entries, _FRESH_MAX_EXISTING + 1)) \
                <= _FRESH_MAX_EXISTING
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _write_groups_parallel(
    directory: str, files: tuple[FileEntry, ...], groups: list[tuple[str, int, int]],
    also: Callable[[], bytes],
) -> bytes:
    """:func:`_write_groups`, shared with a forked helper process when it pays.

    *also* (more work for this process) runs first; its result is returned.
    The helper takes runs of projects from the end, this process from the
    start once *also* is done: neither waits for the other but at the end.
    """
    if len(groups) < _FORK_MIN_PROJECTS:
        _write_groups(directory, files, groups)
        return also()
    bounds = _chunks_of_groups(groups)
    return shared(
        len(bounds), directory, lambda i: _write_range(directory, files, *bounds[i]),
        meanwhile=also,
        helper=lambda chunks: _take_from_back(
            chunks, directory, lambda i: _write_range(".", files, *bounds[i])),
        redo=lambda i: _write_range(directory, files, *bounds[i], redo=True),
    )


def _line_project(data: bytes, start: int, stop: int) -> bytes | None:
    """The project named in the manifest line ``data[start:stop]`` (None: not found)."""
    at = data.find(b'"project":"', start, stop)
    if at < 0:
        return None
    at += 11
    end = data.find(b'"', at, stop)
    return data[at:end] if end > 0 else None


class _HeadStart:
    """A manifest's project pages, written from its lines by a forked helper meanwhile.

    For a full index of a large house (``wheelhouse index``): parsing the
    manifest is a third of the work, and the pages of the last projects need
    only their own lines. So as soon as the bytes are read, a helper takes
    runs of lines from the end (whole projects each), parses them and writes
    their pages into a new private directory, while this process parses the
    whole manifest -- which it must, to check every line and to render the
    find-links page -- and then takes runs from the start. The result is used
    only if this process's parse found the lines in render()'s exact shape
    and order, as many as the helper counted, and cut between projects where
    the helper cut them: the helper then rendered the very entries this
    process would have. Otherwise it is thrown away.
    """

    def __init__(self, directory: Path, data: bytes, spans: list[tuple[int, int]],
                 bounds: list[tuple[int, int]], source: str) -> None:
        self.directory = directory
        #: Each run's lines, as (start, stop) indexes of the manifest's entries
        #: (*spans*: the same runs, as (start, stop) in *data*, without the ",\n" after).
        self.bounds = bounds
        self.chunks = Chunks(len(bounds), str(directory))

        def write(i: int) -> None:
            start, stop = spans[i]
            lines = data[start:stop].decode("ascii").split(",\n")
            with gc_paused():
                files = _Lines(source, lines).entries(lines, remember=False)
            _write_groups(".", files, _project_groups(files))

        try:
            self.helper: Forked[None] = Forked(
                lambda: _take_from_back(self.chunks, directory, write))
        except BaseException:
            self.chunks.close()
            raise

    @classmethod
    def begin(cls, root: Path, data: bytes, source: str) -> _HeadStart | None:
        """Start a helper on the manifest bytes *data*, if a fresh index of them will pay."""
        if (len(data) < _HEAD_START_MIN_BYTES or not can_fork() or not can_exchange()
                or not _holds_few_entries(root / SIMPLE_DIR)):  # else updated in place
            return None
        if not data.startswith(_LINES_HEAD) or not data.endswith(_LINES_TAIL):
            return None
        body, end = len(_LINES_HEAD), len(data) - len(_LINES_TAIL)
        count = data.count(b"\n", body, end) + 1
        if count < _FORK_MIN_PROJECTS:
            return None
        # Cut about every _CHUNK_FILES lines, where the project changes (the
        # bytes are not split into lines here: the helper starts sooner).
        step = (end - body) * _CHUNK_FILES // count
        spans: list[tuple[int, int]] = []
        bounds: list[tuple[int, int]] = []
        start = line = body
        first = 0
        while (cut := data.find(b",\n", line + step if line == start else line, end)) >= 0:
            line = cut + 2  # the next line's start
            before = _line_project(data, max(start, data.rfind(b"\n", start, cut) + 1), cut)
            after_end = data.find(b"\n", line, end)
            after = _line_project(data, line, end if after_end < 0 else after_end)
            if before is not None and after is not None and before != after:
                stop = first + data.count(b"\n", start, cut) + 1
                spans.append((start, cut))
                bounds.append((first, stop))
                start, first = line, stop
        spans.append((start, end))
        bounds.append((first, count))
        if len(bounds) < 2:
            return None
        directory = root / f".tmp-simple.{os.getpid()}.{os.urandom(4).hex()}"
        directory.mkdir()
        try:
            return cls(directory, data, spans, bounds, source)
        except OSError as e:  # no fork now (EAGAIN, ENOMEM): all of it here, as before
            log.debug("no helper process: %s", e)
            _remove_tree(directory)
            return None
        except BaseException:
            _remove_tree(directory)
            raise

    def fits(self, manifest: Manifest) -> bool:
        """Whether *manifest* was parsed from these lines, in their order, cut between projects."""
        if manifest._canonical is not True or len(manifest) != self.bounds[-1][1]:
            return False
        files = manifest.files
        return all(files[start - 1].project != files[start].project
                   for start, _ in self.bounds[1:])

    def finish(self, files: tuple[FileEntry, ...]) -> None:
        """Write the pages the helper has not taken, then wait for it (its errors raised)."""
        directory = str(self.directory)
        bounds = self.bounds

        def write(i: int) -> None:
            _write_range(directory, files, *bounds[i])

        take_all(self.chunks, front=True, work=write)
        _wait_for_helper(self.helper, self.chunks, directory, files, bounds)

    def discard(self) -> None:
        """Stop the helper if it still runs, and remove its directory if still there."""
        self.helper.stop()
        self.chunks.close()
        if self.directory.exists():
            _remove_tree(self.directory)


class _NotLinesError(Exception):
    """A manifest line is not one JSON object."""


_MANIFEST_HEAD = f'{{"format":{MANIFEST_FORMAT},"files":['
# What comes before the first entry line of a manifest render() wrote, and after the last.
_LINES_HEAD = _MANIFEST_HEAD.encode() + b"\n"
_LINES_TAIL = b"\n]}\n"


def _entry_lines(data: bytes) -> list[str] | None:
    """The entry lines of a manifest in render()'s exact shape, else None."""
    head, tail = _LINES_HEAD, _LINES_TAIL
    if not data.startswith(head) or not data.endswith(tail) or len(data) <= len(head) + 3:
        return None
    try:
        # Decoded from a view: no 20 MB copy of the bytes first.
        body = str(memoryview(data)[len(head):-len(tail)], "ascii")
    except UnicodeDecodeError:
        return None
    lines = body.split(",\n")
    if body.count("\n") != len(lines) - 1:
        return None  # a line break inside an entry, or a line without its comma
    return lines


# A manifest line as FileEntry.to_json_line writes it, when no string in it
# needs an escape: matched in one go, it needs no JSON decoding. Anything
# else (escapes, another key order, empty lists) goes to the JSON decoder.
_STR = r'[^"\\\x00-\x1f]*'
_LINE = re.compile(
    r'\{"filename":"([A-Za-z0-9][A-Za-z0-9._+!-]*)"'
    r',"kind":"(' + _STR + ')"'
    r'(?:,"metadata_sha256":"([0-9a-f]{64})")?'
    r'(?:,"origin":"(' + _STR + ')")?'
    r',"project":"([a-z0-9]+(?:-[a-z0-9]+)*)"'
    r'(?:,"requires_python":"(' + _STR + ')")?'
    r',"sha256":"([0-9a-f]{64})"'
    r',"size":(0|[1-9][0-9]*)'
    r'(?:,"targets":\[("' + _STR + '"(?:,"' + _STR + r'")*)\])?'
    r'(?:,"upload_time":"(' + _STR + ')")?'
    r',"version":"(' + _STR + ')"'
    r'(?:,"yanked":"(' + _STR + r')")?\}\Z'
)


def _scan_lines(lines: list[str]) -> Iterator[Any]:
    scan = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]
    match = _LINE.match
    for line in lines:
        found = match(line)
        if found is not None:
            yield found
            continue
        try:
            item, end = scan(line, 0)
        except (StopIteration, ValueError):
            raise _NotLinesError from None
        if end != len(line) or not isinstance(item, dict):
            raise _NotLinesError
        yield item


_SPACE = re.compile(r"[ \t\n\r]*")


def _item_line_numbers(data: bytes) -> list[int]:
    """The 1-based line on which each item of a manifest's ``"files"`` list starts.

    For messages about a manifest in any JSON layout (a valid one: json.loads
    read it): the top-level object is walked again, its values skipped whole.
    """
    text = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    decode = json.JSONDecoder().raw_decode
    space = _SPACE.match

    def skip(at: int) -> int:
        return space(text, at).end()  # type: ignore[union-attr]

    starts: list[int] = []
    at = skip(skip(0) + 1)  # past the opening "{"
    while text[at] != "}":
        key, at = decode(text, at)
        at = skip(skip(at) + 1)  # past the ":"
        if key == "files" and text[at] == "[":
            starts = []  # as json.loads, the last "files" counts
            at = skip(at + 1)
            while text[at] != "]":
                starts.append(at)
                at = skip(decode(text, at)[1])
                if text[at] == ",":
                    at = skip(at + 1)
            at += 1
        else:
            at = decode(text, at)[1]
        at = skip(at)
        if text[at] == ",":
            at = skip(at + 1)
    numbers = []
    line, counted = 1, 0
    for start in starts:
        line += text.count("\n", counted, start)
        counted = start
        numbers.append(line)
    return numbers


@dataclass(frozen=True, slots=True)
class HouseProblem:
    """Something ``verify`` found wrong in a house."""

    #: The file concerned (relative to the house).
    path: str
    #: What is wrong.
    problem: str


class House:
    """A house directory: ``wheelhouse.json`` plus ``files/`` (and, later, ``simple/``).

    A house is self-contained: its files are hard links to (or copies of) store
    blobs, so it keeps working when copied elsewhere, without the store.
    """

    def __init__(self, root: Path) -> None:
        #: The house directory.
        self.root = root
        self._cache: tuple[tuple[int, int, int], Manifest] | None = None
        self._digests: dict[int, tuple[Manifest, str]] = {}
        # The last manifest read from a file not in render()'s exact shape.
        self._not_canonical: Manifest | None = None
        self._registered: Path | None = None  # the store this house is known to

    def __repr__(self) -> str:
        return f"House({str(self.root)!r})"

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False, validate: bool = True) -> House:
        """Open the house at *path*; create an empty one if asked and it does not exist.

        The manifest is read and checked at once, unless *validate* is false
        (for a caller that reads it first thing anyway, as :meth:`reindex` does).
        """
        root = Path(path).expanduser().absolute()
        house = cls(root)
        if root.exists() and not root.is_dir():
            raise HouseError(
                f"house path {root} exists and is not a directory",
                hint="name a new or existing directory with -o" if create
                else "name the house's directory (the one holding wheelhouse.json)",
            )
        manifest = root / MANIFEST_NAME
        if manifest.is_file():
            if validate:
                house.read_manifest()  # validates the format early
            return house
        if not create:
            raise HouseError(
                f"no house at {root} (no {MANIFEST_NAME})",
                hint="build one with 'wheelhouse build -r requirements.txt -o DIR', or "
                "make one from files you have with 'wheelhouse add FILES -o DIR'",
            )
        house._refuse_if_not_empty()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HouseError(f"cannot create a house at {root}: {e.strerror or e}") from e
        # Under the house's lock: two commands creating the same house at once
        # would each clean up the other's temp files.
        with house.lock():
            if manifest.is_file():  # another command created it meanwhile
                if validate:
                    house.read_manifest()
                return house
            house._refuse_if_not_empty()
            try:
                (root / FILES_DIR).mkdir(exist_ok=True)
                house.write_manifest(Manifest())
                house.write_index(Manifest())
            except OSError as e:
                raise HouseError(f"cannot create a house at {root}: {e.strerror or e}") from e
        return house

    def _refuse_if_not_empty(self) -> None:
        # (What a creation killed before its manifest leaves counts as empty.)
        if self.root.exists() and any(not left_by_creation(p) for p in self.root.iterdir()):
            raise HouseError(
                f"{self.root} is not empty and is not a house",
                hint="name a new or empty directory with -o",
            )

    # -- paths and manifest ----------------------------------------------

    @property
    def files_dir(self) -> Path:
        """The directory holding the distribution files."""
        return self.root / FILES_DIR

    @property
    def manifest_path(self) -> Path:
        """The manifest file."""
        return self.root / MANIFEST_NAME

    def file_path(self, filename: str) -> Path:
        """The path of a file in the house (the name is validated as one component)."""
        return self.files_dir / validate_component(filename)

    def read_manifest(self) -> Manifest:
        """Read and validate the manifest (parsed again only when the file changed)."""
        return self._read_manifest()

    def _read_manifest(self, early: Callable[[bytes], object] | None = None) -> Manifest:
        """:meth:`read_manifest`, calling *early* with the bytes read before they are parsed.

        (Not with a manifest remembered from before: then *early* is not called.)
        """
        try:
            with self.manifest_path.open("rb") as f:
                st = os.fstat(f.fileno())
                signature = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._cache is not None and self._cache[0] == signature:
                    return self._cache[1]
                data = f.read()
        except OSError as e:
            raise HouseError(f"cannot read {self.manifest_path}: {e.strerror or e}") from e
        digest = hashlib.sha256(data).hexdigest()
        recorded = self._index_state()
        # Bytes this house wrote (the index state records their digest, after
        # the rendering version of the pages: "r3-<sha256>"): each line is the
        # canonical rendering of its entry, so render() may reuse it.
        ours = (bool(recorded) and recorded[0].rsplit("-", 1)[-1] == digest
                and len(data) >= _LINES_MIN_BYTES)
        if early is not None:
            early(data)
        with gc_paused():
            manifest = Manifest.parse(data, source=str(self.manifest_path), keep_lines=ours)
        if not ours and not manifest._canonical:
            # The index state names only a digest of this class's own rendering:
            # a file in another shape (edited by hand, unsorted, reformatted)
            # must never pass for one, or its lines would be trusted as sorted
            # and canonical when read lazily.
            rendered = manifest.render()
            if rendered != data:
                digest = hashlib.sha256(rendered).hexdigest()
                self._not_canonical = manifest
        self._cache = (signature, manifest)
        self._digests[id(manifest)] = (manifest, digest)
        return manifest

    def write_manifest(self, manifest: Manifest, *, rendered: bytes | None = None) -> None:
        """Write the manifest atomically (*rendered*: its :meth:`Manifest.render`, if known)."""
        data = manifest.render() if rendered is None else rendered
        write_atomic(self.manifest_path, data)
        self._cache = None
        self._digests[id(manifest)] = (manifest, hashlib.sha256(data).hexdigest())

    def commit(self, manifest: Manifest, *, previous: Manifest,
               manifest_first: bool = True, manifest_written: bool = False) -> IndexStats:
        """Write *manifest* and bring the index in line with it, as one step.

        Ctrl-C or SIGTERM waits until both are written (an interrupt between
        them would leave an index that shows another house). The manifest goes
        first when files are added (the index never links a file the manifest
        lacks), the index first when files go (*manifest_first* False); a
        caller that wrote the manifest itself, in its own
        :func:`interrupts_deferred` block, says *manifest_written*. An index
        that cannot be written is said plainly, with the way out.
        """
        write = not manifest_written and manifest is not previous
        with interrupts_deferred():
            if manifest_first and write:
                self.write_manifest(manifest)
            try:
                stats = self.write_index(manifest, previous=previous)
            except OSError as e:
                raise HouseError(
                    f"cannot write the index of {self.root}: {e.strerror or e}"
                    + (f" ({e.filename})" if e.filename else "")
                    + ("; the manifest was updated" if manifest_first or manifest_written
                       else ""),
                    hint=f"fix the problem, then run 'wheelhouse index {self.root}'",
                ) from e
            if not manifest_first and write:
                self.write_manifest(manifest)
        return stats

    def index_is_current(self) -> bool:
        """True when the index was written from the manifest as it is now."""
        return self._index_state()[:1] == [self._state_of(self.read_manifest())]

    def index_rendered_before(self) -> bool:
        """True when the index was rendered by an older wheelhouse (its pages differ)."""
        state = self._index_state()[:1]
        return bool(state) and not state[0].startswith(f"r{RENDERING}-")

    def _digest(self, manifest: Manifest) -> str:
        # The sha256 of a manifest's rendering, remembered from when it was read
        # or written (rendering 50,000 entries again costs more than the index work).
        known = self._digests.get(id(manifest))
        if known is not None and known[0] is manifest:
            return known[1]
        return hashlib.sha256(manifest.render()).hexdigest()

    @contextlib.contextmanager
    def lock(self, *, timeout: float = 600.0) -> Iterator[None]:
        """Hold the house's exclusive lock while changing it.

        Temp files are debris of a writer that died (only the lock holder
        writes). The holder marks the house (``.wheelhouse.writing``) until it
        lets go: the mark found on entry means the last writer died, and then
        ``files/`` and ``simple/`` are searched for its temp files, and
        ``files/`` for files the manifest does not name (listing the ``files/``
        of a 50,000-file house takes 50 ms, so only then). The house's top
        directory is cleaned every time.
        """
        import filelock  # only commands that change a house need it

        path = self.root / _LOCK_NAME
        flock = filelock.FileLock(str(path), timeout=timeout)
        try:
            flock.acquire()
        except filelock.Timeout as e:
            raise LockTimeoutError(str(path), timeout) from e
        mark = self.root / _WRITING_NAME
        finished = True  # (False while the caller's change runs)
        # (A little early: file times come from the kernel's coarse clock,
        # a tick behind time.time().)
        held_since = time.time() - 0.05
        try:
            if os.path.lexists(mark):
                # The last writer died: its temp files, and the files it linked
                # before its manifest (add), or was to remove after it (remove,
                # import), go: files/ holds what the manifest names.
                self._undo_strays(None, left_by="a change that was killed")
            else:
                self._clean_debris(everywhere=False)
            with contextlib.suppress(OSError):  # a house we cannot write fails later, clearly
                os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                                 0o644))
            finished = False
            yield
            finished = True
        finally:
            try:
                # A change that failed or was interrupted (Ctrl-C, a full disk)
                # may have linked files before its manifest (add), or not yet
                # removed those it dropped: files/ is made to hold what the
                # manifest names now, not left for the next writer (pip's
                # --find-links reads files/ meanwhile). If that fails too, the
                # mark stays and the next lock-holder does it.
                if finished or self._undo_strays(held_since,
                                                 left_by="the change that did not finish"):
                    with contextlib.suppress(OSError):
                        mark.unlink()
            finally:
                flock.release()

    def _undo_strays(self, since: float | None, *, left_by: str) -> bool:
        """After a change that did not finish: its debris and unnamed files out; True when done.

        With *since* (a change that failed in this process), only files it
        linked or made (changed since then): a file put in ``files/`` by hand,
        or one a ``remove`` dropped from the manifest but an index not yet
        rewritten still links, is not the failed change's to take. *left_by*
        says whose they were, in the warning.
        """
        try:
            self._clean_debris(everywhere=True)
            manifest = self.read_manifest() if self.manifest_path.exists() else None
        except (OSError, WheelhouseError) as e:
            # No manifest to go by (unreadable: the error the change failed
            # on, most likely): nothing can be told a stray, now or later.
            log.debug("%s: no readable manifest to clean files/ by: %s", self.root, e)
            return True
        try:
            if manifest is not None and (removed := self.remove_strays(manifest, since=since)):
                log.warning("%s: %d file(s) in files/ that its manifest does not name (left by "
                            "%s) removed", self.root, removed, left_by)
        except (OSError, WheelhouseError) as e:
            log.debug("left for the next change of %s: %s", self.root, e)
            return False
        return True

    def _clean_debris(self, *, everywhere: bool) -> None:
        places = [self.root]
        if everywhere:
            simple = self.root / SIMPLE_DIR
            places += [self.files_dir, simple]
            if not simple.is_symlink():
                with contextlib.suppress(OSError), os.scandir(simple) as found:
                    places += [Path(d.path) for d in found
                               if d.is_dir(follow_symlinks=False) and not d.name.startswith(".")]
        for directory in places:
            if directory.is_symlink():
                continue  # never reach through a link out of the house
            try:
                names = os.listdir(directory)  # noqa: PTH208
            except OSError:
                continue
            _remove_temp_entries(directory, names)

    # -- changing --------------------------------------------------------

    def link_from_store(self, store: Store, entry: FileEntry) -> None:
        """Put a store blob (and its metadata blob) into ``files/`` under its real name.

        The house registers itself with the store first, so ``gc`` keeps its blobs.
        """
        if self._registered != store.root:
            store.register_house(self.root)
            self._registered = store.root
        self._link_blob(store, entry.sha256, self.file_path(entry.filename))
        if entry.metadata_sha256 is not None:
            self._link_blob(
                store,
                entry.metadata_sha256,
                self.file_path(entry.filename + METADATA_SUFFIX),
            )

    @overload
    def link_many_from_store(self, store: Store, entries: Sequence[FileEntry]) -> None: ...

    @overload
    def link_many_from_store(self, store: Store, entries: Sequence[FileEntry], *,
                             meanwhile: Callable[[], _T]) -> _T: ...

    def link_many_from_store(self, store: Store, entries: Sequence[FileEntry], *,
                             meanwhile: Callable[[], _T] | None = None) -> _T | None:
        """:meth:`link_from_store` for many entries, with one ``link`` call per new name.

        A name that is already there (or a file system without hard links)
        takes :meth:`link_from_store`'s careful way. *meanwhile* (other work
        for this process, such as rendering the manifest) runs while a forked
        helper links entries from the end, when there are many; its result is
        returned.
        """
        self.check_files_dir()
        if self._registered != store.root:
            store.register_house(self.root)
            self._registered = store.root
        if meanwhile is None:
            self._link_entries(store, entries)
            return None
        if len(entries) < _FORK_MIN_LINKS:
            self._link_entries(store, entries)
            return meanwhile()
        bounds = [(i, min(i + _LINK_CHUNK, len(entries)))
                  for i in range(0, len(entries), _LINK_CHUNK)]
        # A killed helper's chunks are linked again (a name already there and
        # right is left as it is).
        return shared(
            len(bounds), str(self.files_dir),
            lambda i: self._link_entries(store, entries[bounds[i][0] : bounds[i][1]]),
            meanwhile=meanwhile,
        )

    def _link_entries(self, store: Store, entries: Iterable[FileEntry]) -> None:
        files = f"{self.files_dir}/"
        blobs = f"{store.root}/blobs/sha256/"
        link = os.link
        for entry in entries:
            dest = files + validate_component(entry.filename)
            sha = parse_sha256(entry.sha256)
            try:
                link(f"{blobs}{sha[:2]}/{sha}", dest)
                meta = entry.metadata_sha256
                if meta is not None:
                    meta = parse_sha256(meta)
                    link(f"{blobs}{meta[:2]}/{meta}", dest + METADATA_SUFFIX)
            except OSError:
                self.link_from_store(store, entry)

    def check_files_dir(self) -> None:
        """Refuse a ``files/`` that is a symbolic link (wheelhouse writes only inside the house)."""
        if self.files_dir.is_symlink():
            raise HouseError(
                f"{self.files_dir} is a symbolic link; wheelhouse writes only inside the house",
                hint="replace it with a real directory",
            )

    def own_subdir(self, name: str) -> Path:
        """A real directory *name* inside the house (a symlink in its place is removed)."""
        path = self.root / validate_component(name)
        _own_dir(path)
        return path

    def _link_blob(self, store: Store, sha256: Sha256, dest: Path) -> None:
        self.check_files_dir()
        blob = store.blob_path(sha256)
        try:
            # The common case: a new name. link() creates it whole or not at all.
            os.link(blob, dest)
            return
        except FileExistsError:
            # Already right? If the inode is the blob's, nothing to do.
            try:
                if not dest.is_symlink() and blob.samefile(dest):
                    return
            except OSError:
                pass
        except FileNotFoundError:
            if not blob.is_file():
                raise HouseError(
                    f"blob sha256={sha256} for {dest.name} is missing from {store.root}"
                ) from None
            # files/ itself is missing: made below.
        except OSError:
            pass  # no hard links here: copy below
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.unlink()
            try:
                os.link(blob, tmp)
            except OSError as e:
                if e.errno not in (
                    errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP
                ):
                    raise
                # Across file systems: copy, verify, fsync, then rename into place.
                import shutil

                shutil.copyfile(blob, tmp)
                actual, _ = sha256_file(tmp)
                if actual != sha256:
                    raise HashMismatchError(str(blob), sha256, actual) from None
                with tmp.open("rb+") as f:
                    os.fsync(f.fileno())
            tmp.replace(dest)
        except OSError as e:
            raise HouseError(f"cannot write {dest}: {e.strerror or e}") from e
        finally:
            tmp.unlink(missing_ok=True)

    def unlink_file(self, entry: FileEntry) -> None:
        """Remove a file (and its metadata file) from ``files/``."""
        self.check_files_dir()
        self.file_path(entry.filename).unlink(missing_ok=True)
        self.file_path(entry.filename + METADATA_SUFFIX).unlink(missing_ok=True)

    def remove_strays(self, manifest: Manifest, *, since: float | None = None) -> int:
        """Remove the files in ``files/`` that *manifest* does not name; return how many.

        What a change killed between writing its manifest and removing the
        files it dropped leaves behind (a ``kill -9``: no handler runs), and
        pip's ``--find-links files/`` would still see. Temp entries and
        directories are left to the lock's clean-up. With *since*, only files
        linked or made from then on (by their inode's change time) are removed.
        """
        self.check_files_dir()
        try:
            names = os.listdir(self.files_dir)  # noqa: PTH208
        except FileNotFoundError:
            return 0
        named = set()
        for e in manifest.files:
            named.add(e.filename)
            if e.metadata_sha256 is not None:
                named.add(e.filename + METADATA_SUFFIX)
        removed = 0
        for name in names:
            if name in named or name.startswith(".tmp-"):
                continue
            path = self.files_dir / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or (since is not None and st.st_ctime < since):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    # -- the index -------------------------------------------------------

    def _index_state_path(self) -> Path:
        return self.root / SIMPLE_DIR / INDEX_STATE

    def _index_state(self) -> list[str]:
        """The index state's words (see :meth:`write_index`).

        ``r<RENDERING>-<manifest sha256>``, then the sha256s of the find-links
        page and of the root JSON page (``-``: not known).
        """
        return (_read_text(self._index_state_path()) or "").split()

    def _state_of(self, manifest: Manifest) -> str:
        """The first word of the index state for pages rendered now from *manifest*."""
        return f"r{RENDERING}-{self._digest(manifest)}"

    def write_index(self, manifest: Manifest, *, previous: Manifest | None = None) -> IndexStats:
        """Bring ``simple/`` and the find-links page in line with *manifest*.

        With *previous* (the manifest the index was last written from), only
        the pages of projects whose files changed are rendered and written.
        Without it — or when the index on disk was not written from
        *previous* — every page is rendered and compared with what is on disk,
        and anything under ``simple/`` that does not belong is removed: a
        hand-edited index is rewritten, not trusted. Each page is replaced
        atomically; project pages go before the root page, so a reader never
        sees a link to a page that does not exist yet.
        """
        return self._write_index(manifest, previous=previous)

    def _write_index(self, manifest: Manifest, *, previous: Manifest | None = None,
                     head: _HeadStart | None = None) -> IndexStats:
        """:meth:`write_index`, using *head*'s pages if they fit a fresh index."""
        simple = self.root / SIMPLE_DIR
        _own_dir(simple)
        # The state names the manifest the pages came from and how they were
        # rendered (pages from an older rendering are all rewritten), then the
        # sha256 of the find-links page written from it.
        state = self._state_of(manifest)
        recorded = [None if word == "-" else word for word in self._index_state()]
        # No state until the new one is written: a writer killed between the
        # pages and the state (SIGKILL cannot wait) leaves an index the next
        # one rewrites in full, never one trusted to show a manifest it does not.
        self._index_state_path().unlink(missing_ok=True)
        links_digest: str | None
        root_digest: str | None
        fresh = self._write_index_fresh(manifest, head)
        if fresh is None and head is not None:
            head.discard()  # its pages will not be used: stopped before the work below
        if fresh is not None:
            stats, links_digest, root_digest = fresh
        elif previous is not None and recorded[:1] == [self._state_of(previous)]:
            known = recorded[1:3] + [None] * (3 - len(recorded))
            stats, links_digest, root_digest = self._write_index_incremental(
                manifest, previous, *known)
        else:
            stats, links_digest, root_digest = self._write_index_full(manifest)
        # The manifest the index shows, then the sha256 of the find-links page
        # and of the root JSON page written from it ("-": not known): an
        # incremental update edits the first and reads the project names from
        # the second, when they are still what was written. Each is the digest
        # of the bytes rendered, never of the file found on disk: a page edited
        # by hand since must not pass for ours.
        lines = [state, links_digest or "-", root_digest or "-"]
        write_atomic(self._index_state_path(), "\n".join(lines).encode() + b"\n")
        return stats

    def _write_index_incremental(
        self, manifest: Manifest, previous: Manifest, links_digest: str | None,
        root_digest: str | None,
    ) -> tuple[IndexStats, str | None, str | None]:
        changes = manifest.changes_since(previous)
        if changes is not None:
            removed, added = changes
        else:
            # What changed, by identity: an entry object carried over from the
            # previous manifest is unchanged (an equal copy only costs a page).
            kept = set(map(id, manifest.files))
            removed = [e for e in previous.files if id(e) not in kept]
            kept = set(map(id, previous.files))
            added = [e for e in manifest.files if id(e) not in kept]
            del kept
        if len(removed) + len(added) > _PAGE_BATCH:
            # Many new objects (a manifest read again, not derived): keep
            # only the entries whose content changed.
            before = {e.filename: e for e in removed}
            after = {e.filename: e for e in added}
            removed = [e for e in removed if after.get(e.filename) != e]
            added = [e for e in added if before.get(e.filename) != e]
            del before, after
        touched = sorted({e.project for e in removed} | {e.project for e in added})
        new = {p: manifest.project_files(p) for p in touched}
        changed = [p for p in touched if new[p]]
        gone = [p for p in touched if not new[p]]
        arrived = [p for p in changed if not previous.project_files(p)]
        projects_changed = bool(gone or arrived)
        new_links: list[bytes] = []
        new_root: list[bytes] = []

        def find_links() -> bytes:
            data = None
            if links_digest is not None:
                data = self._splice_find_links(previous, removed, added, links_digest)
            if data is None:
                data = render_find_links(manifest.files)
            new_links.append(data)
            return data

        def pages_in_order() -> Iterator[tuple[str, bytes]]:
            for project in changed:
                yield from render_project_pages(project, new[project]).items()
            if projects_changed:
                names = self._root_names(root_digest, gone, arrived)
                if names is None:
                    names = manifest.project_names()
                yield f"{SIMPLE_DIR}/index.html", render_root_html(names)
                root_json = render_root_json(names)
                new_root.append(root_json)
                yield f"{SIMPLE_DIR}/index.json", root_json
            if changed or gone:
                yield FIND_LINKS_PAGE, find_links()

        rendered = written = 0
        batch: dict[str, bytes] = {}
        for rel, data in pages_in_order():
            rendered += 1
            batch[rel] = data
            if len(batch) >= _PAGE_BATCH:
                written += self._write_pages(batch, compare=False)
                batch = {}
        written += self._write_pages(batch, compare=False)
        for project in gone:
            _remove_tree(self.root / SIMPLE_DIR / project)
        if new_links:
            links_digest = hashlib.sha256(new_links[0]).hexdigest()
        if new_root:
            root_digest = hashlib.sha256(new_root[0]).hexdigest()
        return (IndexStats(rendered=rendered, written=written, removed=len(gone)), links_digest,
                root_digest)

    def _root_names(self, root_digest: str | None, gone: list[str],
                    arrived: list[str]) -> list[str] | None:
        """The project names after a change, from the root JSON page on disk, if it is ours.

        Reading the names there (one small page, checked against the sha256
        recorded when it was written) saves a pass over every manifest line.
        """
        if root_digest is None:
            return None
        data = _read_regular(self.root / SIMPLE_DIR / "index.json")
        if data is None or hashlib.sha256(data).hexdigest() != root_digest:
            return None  # not the page we wrote
        try:
            names = {item["name"] for item in json.loads(data)["projects"]}
        except (ValueError, TypeError, KeyError):
            return None
        if not all(type(n) is str for n in names):
            return None
        return sorted(names.difference(gone).union(arrived))

    def _splice_find_links(
        self,
        previous: Manifest,
        removed: list[FileEntry],
        added: list[FileEntry],
        links_digest: str,
    ) -> bytes | None:
        """The new find-links page edited from the one on disk, if that one is ours."""
        if len(removed) + len(added) > max(64, len(previous) // 8):
            return None  # many changes: rendering the page is as cheap
        page = _read_regular(self.root / FIND_LINKS_PAGE)
        if page is None or hashlib.sha256(page).hexdigest() != links_digest:
            return None  # not the page we wrote: render it anew
        return splice_find_links(page, len(previous),
                                 [e.filename for e in removed], added)

    def _write_index_fresh(
        self, manifest: Manifest, head: _HeadStart | None = None,
    ) -> tuple[IndexStats, str | None, str | None] | None:
        """Build a large index whose ``simple/`` holds next to nothing yet aside, then swap it in.

        Every page is written straight into a new private directory (no temp
        file and rename per page), by two processes when there are many; the
        tree is flushed once and exchanged with ``simple/`` in one atomic
        rename: a reader sees the old index or the whole new one. Returns
        None where this does not apply (a small index, an index already
        there, no atomic exchange here); the caller then writes page by page.
        """
        simple = self.root / SIMPLE_DIR
        if (not can_exchange() or len(manifest) < _FRESH_MIN_PROJECTS
                or not _holds_few_entries(simple)):
            return None
        groups = _project_groups(manifest.files)
        if len(groups) < _FRESH_MIN_PROJECTS:
            return None
        if head is not None and head.fits(manifest):
            # Its helper has been writing pages since the manifest was read.
            tmp = head.directory
        else:
            if head is not None:
                head.discard()  # pages nobody will use: stopped now, not at the end
            head = None
            tmp = self.root / f".tmp-simple.{os.getpid()}.{os.urandom(4).hex()}"
            tmp.mkdir()
        try:
            if head is not None:
                links = render_find_links(manifest.files)
                head.finish(manifest.files)
            else:
                links = _write_groups_parallel(str(tmp), manifest.files, groups,
                                               lambda: render_find_links(manifest.files))
            names = [g[0] for g in groups]
            root_json = render_root_json(names)
            write_new(f"{tmp}/index.html", render_root_html(names))
            write_new(f"{tmp}/index.json", root_json)
            sync_files([tmp / "index.html"])  # the whole tree, before it gets its name
            if not exchange(str(tmp), str(simple)):
                return None
            # The old simple/ is now here: count what the new one has no place for.
            wanted = {*names, "index.html", "index.json", INDEX_STATE}
            removed = sum(1 for n in os.listdir(tmp) if n not in wanted)  # noqa: PTH208
        finally:
            if head is not None:
                head.helper.stop()  # not writing into what is removed (after an error)
            _remove_tree(tmp)
        fsync_dir(self.root)
        write_atomic(self.root / FIND_LINKS_PAGE, links)
        pages = 2 * len(groups) + 3
        return (IndexStats(rendered=pages, written=pages, removed=removed),
                hashlib.sha256(links).hexdigest(), hashlib.sha256(root_json).hexdigest())

    def _write_index_full(
        self, manifest: Manifest,
    ) -> tuple[IndexStats, str | None, str | None]:
        # Pages are rendered and written in batches: memory stays flat however
        # many projects there are. Project pages come before the root pages.
        pages: set[str] = set()
        written = 0
        batch: dict[str, bytes] = {}
        links_digest = root_digest = None
        for rel, data in iter_index_pages(manifest):
            pages.add(rel)
            batch[rel] = data
            if rel == FIND_LINKS_PAGE:
                links_digest = hashlib.sha256(data).hexdigest()
            elif rel == f"{SIMPLE_DIR}/index.json":
                root_digest = hashlib.sha256(data).hexdigest()
            if len(batch) >= _PAGE_BATCH:
                written += self._write_pages(batch, compare=True)
                batch = {}
        written += self._write_pages(batch, compare=True)
        removed = 0
        simple = self.root / SIMPLE_DIR
        wanted_dirs = {path.split("/")[1] for path in pages if path.count("/") == 2}
        for child in sorted(simple.iterdir()):
            rel = f"{SIMPLE_DIR}/{child.name}"
            if child.name == INDEX_STATE or rel in pages:
                continue
            if child.name in wanted_dirs and child.is_dir() and not child.is_symlink():
                for grandchild in sorted(child.iterdir()):
                    if f"{rel}/{grandchild.name}" not in pages:
                        _remove_tree(grandchild)
                        removed += 1
                continue
            _remove_tree(child)
            removed += 1
        return (IndexStats(rendered=len(pages), written=written, removed=removed), links_digest,
                root_digest)

    def _write_pages(self, pages: dict[str, bytes], *, compare: bool) -> int:
        # Project pages first, then the root pages and the flat page. Each
        # directory is listed once (scandir) rather than stat-ing every page;
        # anything that is not a regular file where a page belongs (a
        # symlink, a directory) is removed, never followed.
        def order(path: str) -> tuple[int, str]:
            return (0 if path.count("/") == 2 else 1, path)

        listings: dict[str, dict[str, os.DirEntry[str]]] = {}

        def listing(rel_dir: str) -> dict[str, os.DirEntry[str]]:
            if rel_dir not in listings:
                directory = self.root / rel_dir
                if rel_dir != ".":
                    _own_dir(directory)
                with os.scandir(directory) as it:
                    listings[rel_dir] = {e.name: e for e in it}
            return listings[rel_dir]

        todo: dict[Path, bytes] = {}
        for rel in sorted(pages, key=order):
            rel_dir, _, name = rel.rpartition("/")
            path = self.root / rel
            found = listing(rel_dir or ".").get(name)
            if found is not None:
                if found.is_symlink() or not found.is_file(follow_symlinks=False):
                    _remove_tree(path)
                elif compare:
                    try:
                        with open(found.path, "rb") as f:  # noqa: PTH123
                            if f.read() == pages[rel]:
                                continue
                    except OSError:
                        pass
            todo[path] = pages[rel]
        write_many_atomic(todo)
        return len(todo)

    def reindex(self) -> IndexStats:
        """Rewrite the whole index from the manifest (``wheelhouse index``).

        Temp files a dead writer left anywhere in the house go too (the whole
        of ``simple/`` is rewritten, and stray entries in it removed).
        """
        with self.lock():
            head: _HeadStart | None = None

            def early(data: bytes) -> None:
                nonlocal head
                # An interrupt waits until the helper is in hand (stopped below).
                with interrupts_deferred():
                    head = _HeadStart.begin(self.root, data, str(self.manifest_path))

            try:
                return self._reindex(self._read_manifest(early), head)
            finally:
                if head is not None:
                    head.discard()

    def _reindex(self, manifest: Manifest, head: _HeadStart | None) -> IndexStats:
        # A metadata file found missing is written again into files/: never
        # through a symlink, out of the house.
        self.check_files_dir()
        if self._not_canonical is manifest:
            # Edited by hand (reordered, reformatted): written back in its
            # own shape first, the same entries.
            self.write_manifest(manifest)
        present = set(os.listdir(self.files_dir)) if self.files_dir.is_dir() else set()  # noqa: PTH208
        _remove_temp_entries(self.files_dir, present)
        for entry in [e for e in manifest.files if e.metadata_sha256 is not None
                      and e.filename + METADATA_SUFFIX not in present]:
            self._restore_metadata_file(entry)
        return self._write_index(manifest, head=head)

    def _restore_metadata_file(self, entry: FileEntry) -> None:
        # The .metadata file went missing: extract it again from the wheel,
        # and only if its hash is the one the manifest advertises.
        from wheelhouse.dists import read_dist_info

        with self.file_path(entry.filename).open("rb") as f:
            info = read_dist_info(f, parse_filename(entry.filename), source=entry.filename)
        if info.metadata is None or info.metadata_sha256 != entry.metadata_sha256:
            raise HashMismatchError(
                f"{entry.filename} (METADATA)", str(entry.metadata_sha256), str(info.metadata_sha256)
            )
        write_atomic(self.file_path(entry.filename + METADATA_SUFFIX), info.metadata)

    def yank(self, selector: str, *, reason: str = "", undo: bool = False) -> list[FileEntry]:
        """Mark the files *selector* names as yanked (PEP 592), or not with *undo*."""
        if not undo and html_carryable(reason) != reason:
            raise InvalidInputError(
                f"the yank reason {reason!r} holds a NUL character or bytes that are not "
                "text, which an index page cannot carry",
                hint="give the reason as plain text",
            )
        with self.lock():
            manifest = self.read_manifest()
            chosen = select_files(manifest, selector)
            changed = [replace(e, yanked=None if undo else reason) for e in chosen]
            new_manifest = manifest.with_files(changed)
            self.commit(new_manifest, previous=manifest)
            return changed

    def remove(self, selector: str) -> list[FileEntry]:
        """Take the files *selector* names out of the house and its index.

        Their blobs stay in the store (``gc`` reclaims them).
        """
        self.check_files_dir()
        with self.lock():
            manifest = self.read_manifest()
            chosen = select_files(manifest, selector)
            new_manifest = manifest.without(e.filename for e in chosen)
            # Index and manifest first, files last: nobody is sent to a missing file.
            with interrupts_deferred():  # and an interrupt leaves no stray file
                self.commit(new_manifest, previous=manifest, manifest_first=False)
                for entry in chosen:
                    self.unlink_file(entry)
            return chosen

    # -- checking --------------------------------------------------------

    def verify(self) -> list[HouseProblem]:
        """Re-hash every file against the manifest; list missing, changed and stray files."""
        manifest = self.read_manifest()
        problems: list[HouseProblem] = []
        expected: set[str] = set()
        for e in manifest.files:
            expected.add(e.filename)
            checks: list[tuple[str, Sha256, int | None]] = [(e.filename, e.sha256, e.size)]
            if e.metadata_sha256 is not None:
                expected.add(e.filename + METADATA_SUFFIX)
                checks.append((e.filename + METADATA_SUFFIX, e.metadata_sha256, None))
            for name, sha, size in checks:
                path = self.files_dir / name
                rel = f"{FILES_DIR}/{name}"
                if path.is_symlink() or not path.is_file():
                    problems.append(HouseProblem(rel, "missing"))
                    continue
                actual, actual_size = sha256_file(path)
                if actual != sha:
                    problems.append(
                        HouseProblem(rel, f"hash mismatch: expected sha256={sha}, got {actual}")
                    )
                elif size is not None and actual_size != size:
                    problems.append(HouseProblem(rel, f"size {actual_size}, expected {size}"))
        if self.files_dir.is_dir():
            for path in sorted(self.files_dir.iterdir()):
                if path.name not in expected and not path.name.startswith(".tmp-"):
                    problems.append(HouseProblem(f"{FILES_DIR}/{path.name}", "not in the manifest"))
        if not self.index_is_current():
            problems.append(HouseProblem(
                f"{SIMPLE_DIR}/", "the index was not written from this manifest (a change was "
                f"interrupted?): run 'wheelhouse index {self.root}'"))
        return problems


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What :meth:`House.write_index` did."""

    #: Pages rendered.
    rendered: int
    #: Pages written (the others were already right on disk).
    written: int
    #: Stray entries removed from ``simple/``.
    removed: int


@contextlib.contextmanager
def removed_if_new_and_failed(path: Path | str) -> Iterator[None]:
    """A command that fails leaves no empty house behind where there was none.

    Only a house this block created is removed (its directory did not exist,
    or was empty): an existing house is never touched by the cleanup.
    """
    root = Path(path).expanduser().absolute()
    existed = root.exists()
    try:
        fresh = not existed or (root.is_dir() and not any(root.iterdir()))
    except OSError:
        fresh = False
    try:
        yield
    except BaseException:
        if fresh and root.is_dir() and not root.is_symlink():
            _remove_if_still_empty(root, keep_dir=existed)
        raise


def _remove_if_still_empty(root: Path, *, keep_dir: bool) -> None:
    """Remove the house at *root* (or, with *keep_dir*, what is in it) if it holds no file.

    Another process may have created the same house and added to it while this
    one failed: that house is theirs, and stays. Checked and removed under the
    house lock.
    """
    import shutil

    def remove() -> None:
        if keep_dir:
            for child in root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        else:
            shutil.rmtree(root, ignore_errors=True)

    if not (root / MANIFEST_NAME).exists():
        remove()
        return
    try:
        house = House.open(root)
        with house.lock(timeout=10.0):
            if not house.read_manifest().files:
                remove()
    except (WheelhouseError, OSError):
        pass  # when in doubt, leave it


def refuse_other_bytes(have: Mapping[str, FileEntry], incoming: Iterable[FileEntry], *,
                       theirs: str, heading: str, hint: str,
                       also_named: Iterable[str] = ()) -> None:
    """Raise HouseError if an *incoming* entry gives a file name *have* holds other bytes.

    A house never reuses a file name for different bytes (promise 6). The
    message lists each conflict, *theirs* naming where the new bytes come
    from ("the new file", "the bundle's"), after *heading*. Nor does a house
    take a new name that differs from one it has only in case: *also_named*
    are more of the house's names to compare with (the incoming files'
    projects').
    """
    incoming = sorted(incoming, key=lambda e: e.filename)
    conflicts = [
        f"{e.filename}: the house has sha256={have[e.filename].sha256}, {theirs} sha256={e.sha256}"
        for e in incoming
        if e.filename in have and have[e.filename].sha256 != e.sha256
    ]
    if conflicts:
        raise HouseError(f"{heading}:\n  " + "\n  ".join(conflicts), hint=hint)
    # On a case-insensitive file system (macOS, Windows: where a house is
    # copied to) two such names are one file. (A name the house has already
    # is not new: a house an older wheelhouse filled keeps taking it.)
    names = {*have, *also_named}
    by_folded = {name.casefold(): name for name in names}
    arriving = {e.filename for e in incoming}
    for e in incoming:
        if e.filename in names:
            continue
        other = by_folded.setdefault(e.filename.casefold(), e.filename)
        if other != e.filename:
            conflicts.append(f"{e.filename}: the house {'gets' if other in arriving else 'has'} "
                             f"{other}")
    if conflicts:
        raise HouseError(
            "a house never holds two file names that differ only in case (one file on "
            "macOS or Windows):\n  " + "\n  ".join(conflicts),
            hint="rename the file to the spelling the house has, or use another house")


def left_by_creation(path: Path) -> bool:
    """True for what a creation of a house killed before its manifest may leave.

    Such a directory is taken as empty, so the next run creates the house.
    """
    name = path.name
    if name in (_LOCK_NAME, _WRITING_NAME) or (name.startswith(".tmp-")
                                               and name.endswith(".part")):
        return True
    if path.is_symlink():
        return False
    if name == FILES_DIR and path.is_dir():
        return not any(path.iterdir())
    if name == SIMPLE_DIR and path.is_dir():
        return all(left_by_creation(p) or p.name in ("index.html", "index.json",
                                                          INDEX_STATE)
                   for p in path.iterdir())
    return name == FIND_LINKS_PAGE and path.is_file()


def _remove_temp_entries(directory: Path, names: Iterable[str]) -> None:
    """Remove the ``.tmp-*`` entries among *names* in *directory* (a dead writer's)."""
    for name in names:
        if name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                _remove_tree(directory / name)  # a file, or an index built aside


def _read_regular(path: Path) -> bytes | None:
    """A regular file's bytes (never through a symlink); None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read()
    except OSError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_dir(path: Path) -> None:
    """Make *path* a real directory we own (a symlink or file in its place is removed)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)


def _remove_tree(path: Path) -> None:
    """Remove a file, a symlink (never its target) or a directory tree."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        import shutil

        shutil.rmtree(path)


def select_files(manifest: Manifest, selector: str) -> list[FileEntry]:
    """The entries a FILE_OR_SPEC selector names: a file name, or a requirement.

    ``demo-1.0-py3-none-any.whl`` selects that file; ``demo==1.0`` or
    ``demo<2`` every file of the matching versions; ``demo`` every file of
    the project. Nothing matching is an error naming the selector.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    if selector.endswith((".whl", ".tar.gz", ".zip")):
        entry = manifest.by_filename().get(selector)
        if entry is None:
            raise InvalidInputError(f"no file named {selector!r} in the house")
        return [entry]
    try:
        req = Requirement(selector)
    except InvalidRequirement as e:
        raise InvalidInputError(
            f"not a file name or a requirement: {selector!r} ({e})",
            hint="name a file in the house, or a requirement such as 'demo==1.0'",
        ) from e
    project = canonicalize_name(req.name)
    matches = [
        e
        for e in manifest.files
        if e.project == project and req.specifier.contains(e.version, prereleases=True)
    ]
    if not matches:
        raise InvalidInputError(f"no file in the house matches {selector!r}")
    return matches
