"""Install from a house into an environment with ``installer``: no pip, no network.

The order of work is what makes it safe:

1. ask the target interpreter for its tags, markers and install scheme;
2. resolve the whole closure from the house alone (:mod:`wheelhouse.resolver`) —
   a conflict or a missing dependency stops here, before anything is written;
3. check what can be checked without reading the wheels (a replaced version
   has a RECORD, the environment is writable);
4. write a journal naming what is about to change, remove replaced versions
   (through their RECORD, never outside the environment), install the wheels in
   parallel workers, each wheel verified as it is read: its sha256 against the
   manifest before any of its members is written, every member name (no
   absolute paths, no ``..``, no links, known schemes) and every member's hash
   and size against the wheel's RECORD before or as it is written. Bytecode is
   compiled with the *target* interpreter as each wheel is written. Any failure
   (a bad wheel, Ctrl-C, SIGTERM) stops the compilers and rolls everything back
   from the workers' logs and the moves of replaced files. A run killed
   outright leaves its stash (those logs and moves, on disk): the next run
   into the environment undoes it the same way before anything else.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import struct
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

from packaging.utils import NormalizedName, canonicalize_name

from wheelhouse._fs import die_with_parent, interrupts_deferred, write_all
from wheelhouse.dists import SCHEMES, member_problem, parse_core_metadata
from wheelhouse.errors import (
    HashMismatchError,
    IntegrityError,
    InvalidDistributionError,
    InvalidInputError,
    LockTimeoutError,
    Terminated,
    WheelhouseError,
)
from wheelhouse.house import METADATA_SUFFIX, FileEntry, House
from wheelhouse.interpreter import InterpreterInfo, default_interpreter, query_interpreter
from wheelhouse.resolver import Environment, Resolution, WantedSet, resolve_in_house

if TYPE_CHECKING:
    import zlib as _inflater
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from installer.records import RecordEntry

    from wheelhouse.resolver import FileDigest
else:
    try:  # the 'fast' extra: zlib-ng inflates wheels about twice as fast as zlib
        from zlib_ng import zlib_ng as _inflater
    except ImportError:
        import zlib as _inflater

__all__ = [
    "InstallError",
    "InstallReport",
    "InstalledDist",
    "install",
    "read_house_digest",
    "read_house_metadata",
]

log = logging.getLogger(__name__)

JOURNAL_NAME = ".wheelhouse-install.json"
#: The lock file one install holds on the environment where flock is not available.
_LOCK_NAME = ".wheelhouse-install.lock"
#: How long an install waits for another one into the same environment, in seconds.
_LOCK_TIMEOUT = 600.0
_STASH_PREFIX = ".wheelhouse-stash-"
# A stash whose run is over (done, or rolled back): only to be deleted.
_DONE_PREFIX = ".wheelhouse-done-"


class InstallError(WheelhouseError):
    """The environment cannot be installed into as asked."""


@dataclass(frozen=True, slots=True)
class InstalledDist:
    """A distribution found installed in the environment."""

    name: NormalizedName
    version: str
    #: Its ``.dist-info`` directory.
    path: Path
    #: The ``INSTALLER`` it records (``pip``, ``uv``, ``wheelhouse``), if any.
    installer: str | None = None


@dataclass(slots=True)
class InstallReport:
    """What an install did (or, with ``dry_run``, would do)."""

    #: The interpreter installed for.
    interpreter: str
    #: Distributions installed: ``(name, version, filename)``.
    installed: list[tuple[str, str, str]] = field(default_factory=list)
    #: Distributions replaced: ``(name, old version, new version)``.
    replaced: list[tuple[str, str, str]] = field(default_factory=list)
    #: Distributions already at the chosen version: ``(name, version)``.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Distributions an earlier, interrupted run left half-installed.
    completed: list[str] = field(default_factory=list)
    #: Bytecode files written.
    compiled: int = 0
    #: Wall time, seconds.
    seconds: float = 0.0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "interpreter": self.interpreter,
            "installed": [{"name": n, "version": v, "filename": f} for n, v, f in self.installed],
            "replaced": [{"name": n, "old": o, "new": v} for n, o, v in self.replaced],
            "skipped": [{"name": n, "version": v} for n, v in self.skipped],
            "completed_interrupted": self.completed,
            "compiled": self.compiled,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


# ---------------------------------------------------------------------------
# Reading the house


def read_house_metadata(house: House) -> Callable[[FileEntry], bytes]:
    """A reader of each wheel's core metadata: the ``.metadata`` file, checked by sha256."""

    def read(entry: FileEntry) -> bytes:
        path = house.file_path(entry.filename + METADATA_SUFFIX)
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        if entry.metadata_sha256 and data:
            actual = hashlib.sha256(data).hexdigest()
            if actual != entry.metadata_sha256:
                raise HashMismatchError(str(path), entry.metadata_sha256, actual)
            return data
        # No .metadata next to it: read METADATA from the wheel itself.
        from wheelhouse.dists import read_dist_info
        from wheelhouse.filenames import parse_filename

        wheel = house.file_path(entry.filename)
        try:
            with wheel.open("rb") as f:
                info = read_dist_info(f, parse_filename(entry.filename), source=str(wheel))
        except OSError as e:
            raise IntegrityError(f"cannot read {wheel}: {e.strerror or e}",
                                 hint="run 'wheelhouse verify' on the house") from e
        if info.metadata is None:
            raise InvalidDistributionError(str(wheel), "the wheel has no METADATA")
        return info.metadata

    return read


def read_house_digest(house: House) -> FileDigest:
    """A reader of a house file's digest in any ``hashlib`` algorithm (for ``--hash`` pins).

    The manifest records sha256 only; sha384 and sha512 are computed from the
    file, whose sha256 is checked against the manifest in the same pass, so the
    digest is that of the bytes the house vouches for.
    """

    def digest(entry: FileEntry, algorithm: str) -> str:
        path = house.file_path(entry.filename)
        wanted, sha256 = hashlib.new(algorithm), hashlib.sha256()
        try:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    wanted.update(chunk)
                    sha256.update(chunk)
        except OSError as e:
            raise IntegrityError(f"cannot read {path}: {e.strerror or e}",
                                 hint="run 'wheelhouse verify' on the house") from e
        if sha256.hexdigest() != entry.sha256:
            raise HashMismatchError(str(path), entry.sha256, sha256.hexdigest())
        return wanted.hexdigest()

    return digest


# ---------------------------------------------------------------------------
# The environment


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where files go, and the directory nothing may be written or removed outside of."""

    scheme: dict[str, str]
    root: Path
    #: Directories searched for installed distributions.
    site_dirs: tuple[Path, ...]
    #: The interpreter console scripts run with.
    script_interpreter: str
    #: Directories known to exist (shared by the install threads).
    made_dirs: set[str] = field(default_factory=set)


def _layout(info: InterpreterInfo, prefix: Path | None, target: Path | None) -> _Layout:
    if target is not None:
        root = target.absolute()
        scheme = {"purelib": str(root), "platlib": str(root), "scripts": str(root / "bin"),
                  "data": str(root), "headers": str(root / "include")}
        return _Layout(scheme, root, (root,), info.executable)
    scheme = {k: info.paths[k] for k in ("purelib", "platlib", "scripts", "data")}
    root = (prefix.absolute() if prefix is not None else Path(info.prefix))
    if info.is_venv and prefix is None:
        # As pip: a venv's headers stay inside it ({venv}/include/site/pythonX.Y/<dist>),
        # never in the base interpreter's include directory.
        major, minor = info.version[:2]
        scheme["headers"] = str(root / "include" / "site" / f"python{major}.{minor}")
    else:
        scheme["headers"] = info.paths.get("include", str(Path(info.paths["data"]) / "include"))
    sites = tuple(dict.fromkeys((Path(scheme["purelib"]), Path(scheme["platlib"]))))
    return _Layout(scheme, root, sites, info.executable)


_BAD_SCRIPT_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def _check_scheme_roots(layout: _Layout) -> None:
    """Refuse an environment whose site-packages, bin, ... lead outside it (a symbolic link).

    Each directory under them is checked as it is written to; this is the
    check of the directories themselves. Writing there would put files outside
    the environment, and the roll-back (which never reaches outside) could not
    take them back.
    """
    real_root = os.path.realpath(layout.root)
    for key, path in sorted(layout.scheme.items()):
        real = os.path.realpath(path)
        if not _within(real, real_root):
            raise IntegrityError(
                f"refusing to install into {path} ({key}): it leads outside {layout.root} "
                f"(to {real}, through a symbolic link)",
                hint="make it a real directory inside the environment, or install elsewhere",
            )


def find_installed(site_dirs: Iterable[Path]) -> dict[NormalizedName, InstalledDist]:
    """Every ``*.dist-info`` in *site_dirs*, by normalised project name."""
    found: dict[NormalizedName, InstalledDist] = {}
    for site in site_dirs:
        try:
            children = list(os.scandir(site))
        except OSError:
            continue
        for child in children:
            if not child.name.endswith(".dist-info") or not child.is_dir(follow_symlinks=False):
                continue
            path = Path(child.path)
            try:
                meta = parse_core_metadata((path / "METADATA").read_bytes(), source=str(path))
            except (OSError, InvalidDistributionError):
                continue
            try:
                installer: str | None = (path / "INSTALLER").read_text().strip() or None
            except (OSError, UnicodeDecodeError):
                installer = None
            found[meta.name] = InstalledDist(meta.name, str(meta.version), path, installer)
    return found


# ---------------------------------------------------------------------------
# Checking wheels before anything is written


def _check_members(zf: zipfile.ZipFile) -> None:
    """Verify a wheel's member names; raise IntegrityError naming the member.

    (The caller's error names the wheel.)

    The wheel's sha256 was checked against the manifest as it was read
    (:class:`_WheelBytes`). Each member's hash and size are checked against
    RECORD before or while it is written, a member RECORD does not list is
    refused, and any failure rolls the whole install back.
    """
    seen: set[str] = set()
    for info in zf.infolist():
        problem = member_problem(info)
        if problem is None and info.filename in seen:
            problem = "the name appears twice in the archive"
        if problem:
            raise IntegrityError(
                f"refusing member {info.filename!r}: {problem}",
                hint="the wheel is malformed or malicious; remove it from the house",
            )
        seen.add(info.filename)




# ---------------------------------------------------------------------------
# Removing a replaced version


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _record_paths(dist: InstalledDist, root: Path) -> list[str]:
    site = str(dist.path.parent)
    out: list[str] = []
    record = dist.path / "RECORD"
    try:
        rows = list(csv.reader(io.StringIO(record.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = []
    root_real = os.path.realpath(root)
    real_dirs: dict[str, str] = {}
    for row in rows:
        if not row or not row[0]:
            continue
        full = os.path.abspath(os.path.join(site, row[0]))
        # Never remove outside the environment, also not through a symlinked
        # directory: judge where the file really is (the file itself may be a
        # link; removing a link removes only the link).
        parent = os.path.dirname(full)
        real_parent = real_dirs.get(parent)
        if real_parent is None:
            real_parent = real_dirs[parent] = os.path.realpath(parent)
        real = os.path.join(real_parent, os.path.basename(full))
        if _within(real, root_real):
            out.append(real)
    return out


def _pycs_of(py_file: str) -> list[str]:
    """The bytecode files compiled from *py_file* that exist (any interpreter, any -O)."""
    cache = os.path.join(os.path.dirname(py_file), "__pycache__")
    stem = os.path.basename(py_file)[:-3]
    try:
        names = os.listdir(cache)
    except OSError:
        return []
    out = []
    for n in names:
        rest = n[len(stem) + 1:] if n.startswith(stem + ".") else ""
        # <stem>.<cache_tag>.pyc or <stem>.<cache_tag>.opt-N.pyc, or the temp file
        # <...>.pyc.<id> a compiler killed mid-write leaves (importlib writes atomically).
        head, dot, tail = rest.rpartition(".")
        if dot and tail.isdigit() and head.endswith(".pyc"):
            rest = head
        if rest.endswith(".pyc") and rest.count(".") in (1, 2):
            out.append(os.path.join(cache, n))
    return out


def _remove_pycs(py_file: str) -> None:
    for pyc in _pycs_of(py_file):
        with _SuppressOSError():
            os.unlink(pyc)


class _SuppressOSError:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return isinstance(exc[1], OSError)


def _prune_dirs(dirs: Iterable[str], root: Path) -> None:
    root_s = os.path.realpath(root)
    for d in sorted(set(dirs), key=len, reverse=True):
        while _within(d, root_s) and d != root_s:
            try:
                os.rmdir(d)
            except OSError:
                break
            d = os.path.dirname(d)


def _stash(dist: InstalledDist, root: Path, stash: Path,
           moves: list[tuple[str, str]]) -> None:
    """Move *dist*'s files (its RECORD, never outside *root*) into *stash*.

    Each move is appended to *moves* as soon as it is done, so that a failure
    or an interrupt half-way leaves a list a rollback can put back whole. The
    bytecode of its modules goes too, RECORD listing it or not (Python writes
    some on import): stale, it would shadow nothing, but a rollback puts it
    back as it was.
    """
    stash.mkdir(parents=True, exist_ok=True)
    dirs: list[str] = []
    dist_info = os.path.realpath(dist.path)
    for full in [*_record_paths(dist, root), dist_info]:
        if not os.path.lexists(full) or (os.path.isdir(full) and full != dist_info):
            continue
        # Listed before it moves: a rollback skips what is not in the stash.
        dest = os.path.join(stash, str(len(moves)))
        moves.append((full, dest))
        _move(full, dest)
        dirs.append(os.path.dirname(full))
        if full.endswith(".py"):
            for pyc in _pycs_of(full):
                dest = os.path.join(stash, str(len(moves)))
                moves.append((pyc, dest))
                _move(pyc, dest)
            dirs.append(os.path.join(os.path.dirname(full), "__pycache__"))
    _prune_dirs(dirs, root)


def _move(src: str, dest: str) -> None:
    """Rename *src* to *dest*; across file systems, copy then remove."""
    try:
        os.rename(src, dest)
    except OSError as e:
        import errno

        if e.errno != errno.EXDEV:
            raise
        # Copied under a temp name and renamed when whole: a copy cut short
        # (a full disk) never stands at *dest*, where a rollback would take it
        # for the original.
        part = dest + ".part"
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, part, symlinks=True)
            os.rename(part, dest)
            shutil.rmtree(src)
        else:
            shutil.copy2(src, part, follow_symlinks=False)
            os.rename(part, dest)
            os.unlink(src)


def _stash_dir(path: Path, root: Path, stash: Path, moves: list[tuple[str, str]]) -> None:
    """Move the directory *path* (inside *root*) into *stash*, listed in *moves* first."""
    real = os.path.realpath(path)
    if not _within(real, os.path.realpath(root)):
        return
    stash.mkdir(parents=True, exist_ok=True)
    dest = os.path.join(stash, "dir")
    moves.append((real, dest))
    _move(real, dest)


class _Moves(list[tuple[str, str]]):
    """The moves of replaced files into the stash, each written to its file before it is made.

    In memory for this run's rollback; on disk (``moves.txt`` in the stash)
    for the next run's, when this one is killed: then the replaced version is
    put back whole.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                           | getattr(os, "O_CLOEXEC", 0), 0o600)

    def append(self, move: tuple[str, str]) -> None:
        """Write *move* down (one write: a SIGKILL cannot half it), then keep it."""
        line = json.dumps(list(move)) + "\n"
        view = memoryview(line.encode("utf-8"))
        while view:
            view = view[os.write(self._fd, view):]
        super().append(move)

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_MOVES_NAME = "moves.txt"


def _read_moves(stash: Path) -> list[tuple[str, str]]:
    """The moves a (dead) run wrote down; a last line cut short was not made."""
    try:
        lines = (stash / _MOVES_NAME).read_bytes().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return []
    moves = []
    for line in lines[:-1]:
        try:
            original, stashed = json.loads(line)
        except (ValueError, TypeError):
            continue
        moves.append((str(original), str(stashed)))
    return moves


def _unstash(moves: Sequence[tuple[str, str]]) -> None:
    for original, stashed in reversed(moves):
        if not os.path.lexists(stashed):
            continue
        os.makedirs(os.path.dirname(original), exist_ok=True)
        if os.path.lexists(original) and not os.path.isdir(original):
            os.unlink(original)
        _move(stashed, original)


class _Log:
    """What one install worker changed, appended to a file as it happens.

    Every file is logged *before* it is created, and every existing file before
    it is moved aside into the stash, with a system-wide monotonic stamp. The
    rollback reads the logs of all workers, so it works whatever happened to a
    worker (an exception, Ctrl-C, a killed process), and undoes the changes in
    the reverse of the order they were made in.
    """

    def __init__(self, stash: Path, name: str) -> None:
        self._stash = stash
        self._name = name
        self._count = 0
        self.pid = os.getpid()
        self._fd = os.open(stash / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    @staticmethod
    def _line(stamp: int, entry: tuple[str, ...]) -> str:
        line = "\t".join((str(stamp), *entry))
        if "\n" in line or line.count("\t") != len(entry):  # a name that needs quoting
            line = json.dumps([stamp, *entry])
        return line + "\n"

    def _write(self, text: str) -> None:
        # One write per call: the parent reads the log after the worker is gone,
        # so a line is "logged" once the kernel has it (a SIGKILL cannot lose it).
        view = memoryview(text.encode("utf-8", "surrogateescape"))
        while view:
            view = view[os.write(self._fd, view):]

    def _add(self, *entry: str) -> int:
        stamp = time.monotonic_ns()
        self._write(self._line(stamp, entry))
        return stamp

    def creating(self, path: str) -> int:
        """Log that *path* is about to be created; return the entry's stamp."""
        return self._add("W", path)

    def creating_all(self, paths: Sequence[str]) -> int:
        """Log, in one write, that each of *paths* is about to be created.

        Only for paths that did not exist when this is called: a rollback
        removes every one of them that exists (see :meth:`Destination.plan`).
        """
        stamp = time.monotonic_ns()
        if paths:
            self._write("".join([self._line(stamp, ("W", p)) for p in paths]))
        return stamp

    def not_created(self, stamp: int, path: str) -> None:
        """Log that the creation of *path* logged at *stamp* did not happen (it existed)."""
        self._add("X", str(stamp), path)

    def set_aside(self, path: str) -> None:
        """Move the existing *path* into the stash, logged first.

        A rollback puts it back: it may be another distribution's file. A
        module's bytecode goes with it (its owner's RECORD may list it): the
        rollback removes the bytecode of each module it removes, and so would
        take that too.
        """
        if stat.S_ISDIR(os.lstat(path).st_mode):
            # Another distribution's package, perhaps: set aside, it would go, every
            # file of it, with the stash of an install that succeeds.
            raise IntegrityError(f"refusing to replace the directory {path} with a file")
        if path.endswith(".py"):
            for pyc in _pycs_of(path):
                self._set_aside_one(pyc)
        self._set_aside_one(path)

    def _set_aside_one(self, path: str) -> None:
        self._count += 1
        stashed = str(self._stash / f"{self._name}-{self._count}")
        self._add("M", path, stashed)
        _move(path, stashed)

    def close(self) -> None:
        """Close the log file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        """Whether the log was closed."""
        return self._fd < 0

    @property
    def stash(self) -> Path:
        """The directory the log is in."""
        return self._stash


def _log_entries(stash: Path) -> Iterator[tuple[str, list[Any]]]:
    """Each entry the workers logged in *stash*: (the log's name, [stamp, kind, ...]).

    A last line cut short by a crash was not done, and is left out.
    """
    for log in stash.glob("*.log"):
        try:
            text = log.read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            continue
        for line in text.split("\n")[:-1]:
            try:
                entry: list[Any] = (json.loads(line) if line.startswith("[")
                                    else line.split("\t"))
                entry[0] = int(entry[0])
            except (ValueError, IndexError, TypeError):
                continue
            if len(entry) >= 2:
                yield log.name, entry


def _rollback(stash: Path, root: Path) -> None:
    """Undo, newest first, every change the workers logged in *stash*.

    Run again (a rollback that was itself killed, finished by the next run),
    it leaves alone a path whose original was already put back: from the
    workers' own set-aside files or from the replaced version's (its stashed
    copy is gone, moved back).
    """
    entries: list[list[Any]] = []
    cancelled: set[tuple[str, int, str]] = set()
    for log_name, entry in _log_entries(stash):
        if entry[1] == "X" and len(entry) == 4:
            with contextlib.suppress(ValueError):
                cancelled.add((log_name, int(entry[2]), str(entry[3])))
        elif len(entry) >= 3:
            entries.append([*entry, log_name])
    root_real = os.path.realpath(root)
    put_back = {os.path.abspath(original) for original, stashed in _read_moves(stash)
                if not os.path.lexists(stashed)}
    put_back.update(os.path.abspath(str(e[2])) for e in entries
                    if e[1] == "M" and len(e) == 5 and not os.path.lexists(str(e[3])))
    real_dirs: dict[str, str] = {}
    dirs: list[str] = []
    for entry in sorted(entries, key=lambda e: e[0], reverse=True):
        if entry[1] == "W" and (entry[-1], entry[0], entry[2]) in cancelled:
            continue
        if entry[1] == "W" and os.path.abspath(str(entry[2])) in put_back:
            continue
        # Judged where it really is: a directory on its way may have been made a
        # link leading out of the environment since (never removed or written through).
        path = os.path.abspath(str(entry[2]))
        parent = os.path.dirname(path)
        real_parent = real_dirs.get(parent)
        if real_parent is None:
            real_parent = real_dirs[parent] = os.path.realpath(parent)
        if not _within(os.path.join(real_parent, os.path.basename(path)), root_real):
            continue
        with _SuppressOSError():
            if entry[1] == "W":
                if path.endswith(".py"):  # and the bytecode compiled from it
                    _remove_pycs(path)
                    dirs.append(os.path.join(os.path.dirname(path), "__pycache__"))
                dirs.append(os.path.dirname(path))
                os.unlink(path)
            elif entry[1] == "M" and len(entry) == 5 and os.path.lexists(str(entry[3])):
                if os.path.lexists(path):
                    os.unlink(path)
                _move(str(entry[3]), path)
    _prune_dirs(dirs, root)


# ---------------------------------------------------------------------------
# Writing


class _RecordMismatchError(Exception):
    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"{member}: {reason}")
        self.member = member
        self.reason = reason


class _VerifyingStream:
    """A member's stream that checks its sha256 and size against RECORD at the end."""

    def __init__(self, inner: BinaryIO, member: str, expected: str, size: int | None) -> None:
        self._inner = inner
        self._member = member
        algorithm, _, value = expected.partition("=")
        self._expected = value
        self._size = size
        self._read = 0
        try:
            self._hash = hashlib.new(algorithm)
        except ValueError:
            raise _RecordMismatchError(member, f"unknown hash algorithm {algorithm!r}") from None
        self.algorithm = algorithm
        #: The verified digest, urlsafe base64 without padding (RECORD's form), after EOF.
        self.digest: str | None = None

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data:
            self._hash.update(data)
            self._read += len(data)
            if self._size is not None and self._read > self._size:
                # Now, not at the end: the zip may declare far more than RECORD.
                raise _RecordMismatchError(self._member, "its size does not match RECORD")
            return data
        if self.digest is None:
            value = base64.urlsafe_b64encode(self._hash.digest()).decode("ascii").rstrip("=")
            if value != self._expected:
                raise _RecordMismatchError(self._member, "its hash does not match RECORD")
            if self._size is not None and self._read != self._size:
                raise _RecordMismatchError(self._member, "its size does not match RECORD")
            self.digest = value
        return data

    def read_verified(self) -> io.BytesIO:
        """The whole member, checked, as a seekable stream.

        installer rewrites scripts' ``#!python`` lines by seeking.
        """
        chunks = []
        while data := self.read(_BUFSIZE):
            chunks.append(data)
        self.read()  # the check at the end
        return io.BytesIO(b"".join(chunks))


#: A wheel up to this size is read into memory once: its sha256 is checked on
#: the very bytes its members are then taken from. Larger ones are hashed, then
#: read member by member from the open file.
_IN_MEMORY_MAX = 256 << 20
#: A member up to this size (sha256 in RECORD, stored or deflated) is inflated in
#: one call and checked against RECORD before anything is written; larger ones
#: are streamed and checked as they are written.
_WHOLE_MEMBER_MAX = 16 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


class _WheelBytes:
    """A wheel's bytes, checked against the manifest's sha256 as they are read."""

    def __init__(self, path: Path, sha256: str) -> None:
        self.path = path
        h = hashlib.sha256()
        try:
            f = path.open("rb")
        except OSError as e:
            raise IntegrityError(f"cannot read {path}: {e.strerror or e}",
                                 hint="run 'wheelhouse verify' on the house") from e
        self._file: BinaryIO | None = None
        self._data: memoryview | None = None
        try:
            if os.fstat(f.fileno()).st_size <= _IN_MEMORY_MAX:
                data = f.read()
                h.update(data)
                self._data = memoryview(data)
                source: BinaryIO = io.BytesIO(data)
                f.close()
            else:
                while chunk := f.read(_BUFSIZE):
                    h.update(chunk)
                self._file = source = f
        except OSError as e:
            f.close()
            raise IntegrityError(f"cannot read {path}: {e.strerror or e}",
                                 hint="run 'wheelhouse verify' on the house") from e
        except BaseException:
            f.close()
            raise
        if h.hexdigest() != sha256:
            self.close()
            raise HashMismatchError(str(path), sha256, h.hexdigest())
        try:
            self.zipfile = zipfile.ZipFile(source)
            self.zipfile.filename = str(path)  # installer names the wheel from it
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let go of the bytes and the file."""
        if self._file is not None:
            self._file.close()
        self._data = None

    def _read_at(self, offset: int, n: int) -> bytes | memoryview:
        if self._data is not None:
            return self._data[offset:offset + n]
        assert self._file is not None
        return os.pread(self._file.fileno(), n, offset)

    def _member_start(self, info: zipfile.ZipInfo) -> int:
        """Where the member's bytes start, after its local header (checked against *info*)."""
        offset = info.header_offset
        head = self._read_at(offset, _LOCAL_HEADER.size)
        if len(head) != _LOCAL_HEADER.size:
            raise zipfile.BadZipFile(f"{info.filename!r}: truncated local header")
        fields = _LOCAL_HEADER.unpack(head)
        if fields[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"{info.filename!r}: bad local header")
        name_len, extra_len = int(fields[10]), int(fields[11])
        raw_name = bytes(self._read_at(offset + _LOCAL_HEADER.size, name_len))
        try:
            name = raw_name.decode("utf-8" if fields[3] & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise zipfile.BadZipFile(
                f"{info.filename!r}: the local header's name is not UTF-8") from None
        if name != info.orig_filename:
            raise zipfile.BadZipFile(f"{info.filename!r}: the local header names {name!r}")
        return offset + _LOCAL_HEADER.size + name_len + extra_len

    def whole_member(self, info: zipfile.ZipInfo) -> bytes | None:
        """The member's bytes, inflated in one call; None if it is to be streamed.

        Streamed (and checked as it is written): a member too big, encrypted, or
        neither stored nor deflated. Not checked here beyond the archive's own structure: the caller checks
        them against RECORD. At most ``file_size + 1`` bytes are inflated (a
        longer member fails that check), so a zip bomb costs no memory.
        """
        if (info.file_size > _WHOLE_MEMBER_MAX or info.flag_bits & 0x1
                or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)):
            return None
        start = self._member_start(info)
        raw = self._read_at(start, info.compress_size)
        if len(raw) != info.compress_size:
            raise zipfile.BadZipFile(f"{info.filename!r}: truncated")
        if info.compress_type == zipfile.ZIP_STORED:
            return bytes(raw)
        try:
            return _inflater.decompressobj(-15).decompress(raw, info.file_size + 1)
        except _inflater.error as e:
            raise zipfile.BadZipFile(f"{info.filename!r}: {e}") from None

    def member_stream(self, info: zipfile.ZipInfo) -> _Inflating | None:
        """A deflated member too big to inflate at once, as a stream; None: use zipfile's."""
        if info.flag_bits & 0x1 or info.compress_type != zipfile.ZIP_DEFLATED:
            return None
        return _Inflating(self, info, self._member_start(info))


class _Inflating:
    """A deflated member of a :class:`_WheelBytes`, inflated as it is read.

    What ``zipfile`` streams, with the inflater install uses (zlib-ng when
    there): the largest members (shared libraries) are a good part of the
    inflating. At most ``file_size + 1`` bytes come out (a longer member fails
    the RECORD check). No CRC check: the caller checks the sha256 RECORD gives.
    """

    __slots__ = ("_end", "_inflate", "_left", "_name", "_pos", "_wheel")

    def __init__(self, wheel: _WheelBytes, info: zipfile.ZipInfo, start: int) -> None:
        self._wheel = wheel
        self._name = info.filename
        self._pos = start
        self._end = start + info.compress_size
        self._left = info.file_size + 1
        self._inflate = _inflater.decompressobj(-15)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        inflate = self._inflate
        while n > 0 and not inflate.eof:
            raw: bytes | memoryview = inflate.unconsumed_tail
            if not raw:
                if self._pos >= self._end:
                    raise zipfile.BadZipFile(f"{self._name!r}: truncated")
                raw = self._wheel._read_at(self._pos, min(_BUFSIZE, self._end - self._pos))
                if not raw:
                    raise zipfile.BadZipFile(f"{self._name!r}: truncated")
                self._pos += len(raw)
            try:
                data = inflate.decompress(raw, n)
            except _inflater.error as e:
                raise zipfile.BadZipFile(f"{self._name!r}: {e}") from None
            if data:
                self._left -= len(data)
                return data
        return b""


class _Verified:
    """A member's whole content, already checked against RECORD (hash and size)."""

    __slots__ = ("_pos", "data", "digest")

    def __init__(self, data: bytes, digest: str) -> None:
        self.data = data
        #: The sha256, urlsafe base64 without padding (RECORD's form).
        self.digest = digest
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self._pos + n
        out = self.data[self._pos:end]
        self._pos += len(out)
        return out


#: The hashes a RECORD may check a member with: sha256 or stronger, as the wheel
#: format says (never md5 or sha1).
_RECORD_HASHES = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512",
                            "blake2b", "blake2s"})


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode("ascii").rstrip("=")


def _verifying_source(wheel: _WheelBytes) -> Any:
    from installer.records import parse_record_file
    from installer.sources import WheelFile

    zf = wheel.zipfile

    class Source(WheelFile):
        @property
        def dist_info_filenames(self) -> list[str]:
            # installer's, without a posixpath.commonpath per member.
            base = self.dist_info_dir + "/"
            return [name[len(base):] for name in self._zipfile.namelist()
                    if name.startswith(base) and not name.endswith("/")]

        def member_names(self) -> list[str]:
            """The names of the files (not directories) in the wheel, in archive order."""
            return [n for n in self._zipfile.namelist() if not n.endswith("/")]

        def get_contents(self) -> Any:
            rows = parse_record_file(self.read_dist_info("RECORD").splitlines())
            records = {r[0]: r for r in rows}
            record_name = f"{self.dist_info_dir}/RECORD"
            # RECORD's signatures cannot list themselves (the wheel spec): pip
            # installs them unlisted, and so does this.
            signatures = {f"{record_name}.jws", f"{record_name}.p7s"}
            for item in self._zipfile.infolist():
                if item.filename.endswith("/"):
                    continue
                row = records.get(item.filename)
                if row is None and item.filename in signatures:
                    with self._zipfile.open(item) as signature:  # (CRC-checked)
                        yield (item.filename, "", ""), io.BytesIO(signature.read()), False
                    continue
                if row is None:
                    raise _RecordMismatchError(item.filename, "not listed in RECORD")
                kind = stat.S_IFMT(item.external_attr >> 16)
                mode = item.external_attr >> 16
                executable = bool(mode and kind == stat.S_IFREG and mode & 0o111)
                if item.filename == record_name:
                    yield row, io.BytesIO(b""), executable  # installer writes its own
                    continue
                if not row[1]:
                    raise _RecordMismatchError(item.filename, "RECORD gives no hash")
                size = int(row[2]) if row[2] else None
                parts = item.filename.split("/", 2)
                script = len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts"
                algorithm, _, expected = row[1].partition("=")
                if algorithm not in _RECORD_HASHES:
                    raise _RecordMismatchError(
                        item.filename, f"RECORD gives a {algorithm} hash, not sha256 or stronger")
                data = wheel.whole_member(item) if algorithm == "sha256" else None
                if data is not None:
                    digest = _b64_sha256(data)
                    if digest != expected:
                        raise _RecordMismatchError(item.filename, "its hash does not match RECORD")
                    if size is not None and len(data) != size:
                        raise _RecordMismatchError(item.filename, "its size does not match RECORD")
                    # installer rewrites scripts' "#!python" lines by seeking.
                    yield row, io.BytesIO(data) if script else _Verified(data, digest), executable
                    continue
                with contextlib.ExitStack() as opened:
                    stream = (wheel.member_stream(item)
                              or opened.enter_context(self._zipfile.open(item)))
                    verifying = _VerifyingStream(cast("BinaryIO", stream), item.filename, row[1],
                                                 size)
                    if script:
                        yield row, verifying.read_verified(), executable
                    else:
                        yield row, verifying, executable

    return Source(zf)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_BUFSIZE = 1 << 20

#: Mode of executable files written (read once: os.umask is process-wide, not thread-safe).
_EXEC_MODE = (0o777 & ~_umask()) | 0o111


class _Written:
    """What one wheel's install wrote (filled by the destination).

    The log of every change, for a rollback, is the worker's :class:`_Log`.
    """

    __slots__ = ("py_bytes", "py_files", "record_base", "record_path")

    def __init__(self) -> None:
        #: Modules written, to compile, and their sizes.
        self.py_files: list[str] = []
        self.py_bytes: list[int] = []
        self.record_path: str | None = None
        self.record_base: str | None = None


def _check_no_escape(directory: str, base: str, checked: set[str],
                     real_roots: dict[str, str]) -> bool | None:
    """Refuse *directory* if a symbolic link on its way from *base* leads outside *base*.

    *directory* is inside *base*; it and the directories between are added to
    *checked*. Return whether *directory* exists, or None if it was not looked at
    (checked before, or *base* itself).

    One ``lstat`` per directory not seen before: a link is rare, and only then is
    its real path worked out.
    """
    chain: list[str] = []
    d = directory
    while d not in checked and d != base and len(d) > len(base):
        chain.append(d)
        d = os.path.dirname(d)
    found: bool | None = None
    for d in chain:
        try:
            mode = os.lstat(d).st_mode
        except OSError:
            if d == directory:
                found = False
            continue
        if d == directory:
            found = True
        if stat.S_ISLNK(mode):
            real_root = real_roots.get(base)
            if real_root is None:
                real_root = real_roots[base] = os.path.realpath(base)
            if not _within(os.path.realpath(d), real_root):
                raise IntegrityError(
                    f"refusing to write under {d}: it is a symbolic link leading outside {base}")
    checked.update(chain)
    return found


_OPEN_NEW = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0))
#: Whether the umask takes execute bits away, so an executable needs a chmod after all.
_CHMOD_EXECUTABLES = bool(_umask() & 0o111)


def _make_destination(layout: _Layout, info: InterpreterInfo, project: str, written: _Written,
                      log: _Log) -> Any:
    from installer.destinations import SchemeDictionaryDestination
    from installer.records import Hash
    from installer.records import RecordEntry as _RecordEntry
    from installer.scripts import Script
    from installer.utils import Scheme, copyfileobj_with_hashing

    script_kind: Literal["posix", "win-amd64"] = "posix" if info.os_name != "nt" else "win-amd64"
    scheme = dict(layout.scheme)
    # As pip: each distribution's headers in a directory of its own.
    scheme["headers"] = os.path.join(scheme["headers"], project)
    scheme_roots = {k: os.path.abspath(v) for k, v in scheme.items()}
    real_roots: dict[str, str] = {}
    made_dirs = layout.made_dirs
    #: Directories checked by :meth:`Destination.plan`, before this wheel writes to
    #: them, not to be (under) a link leading out of their scheme. Checked again for
    #: each wheel: a directory an earlier wheel made or checked may be a link now.
    safe_dirs: set[str] = set()
    #: Paths logged as about to be created by :meth:`Destination.plan`, not yet written.
    planned: set[str] = set()
    planned_stamp = 0
    fast_paths = os.sep == "/" and os.altsep is None

    def target_of(scheme: str, path: str) -> str:
        base = scheme_roots[scheme]
        if fast_paths and path and path[0] != "/" and "//" not in path and "/." not in path \
                and path[0] != ".":
            # Already normal (no empty, "." or ".." part): no normpath needed.
            return f"{base}/{path}" if base != "/" else f"/{path}"
        target = os.path.abspath(os.path.join(base, path))
        if not _within(target, base) or target == base:
            raise IntegrityError(f"refusing to write {path!r} outside {base}")
        return target

    def create(target: str, executable: bool) -> int:
        """Create *target* (never through an existing file); return its descriptor.

        An existing file may be a hard link (uv links from its cache) or another
        distribution's: it is set aside, so a rollback can put it back.
        """
        mode = 0o777 if executable else 0o666
        if target in planned:
            planned.discard(target)
            stamp = planned_stamp
        else:
            # There when the wheel was planned (or not planned: a script, a metadata
            # file). Set aside before its replacement is logged as created: the other
            # way round, a failed log write in between (a full disk) would leave a
            # rollback that removes it with nothing set aside to put back.
            if os.path.lexists(target):
                log.set_aside(target)
            stamp = log.creating(target)
        try:
            return os.open(target, _OPEN_NEW, mode)
        except FileExistsError:
            log.not_created(stamp, target)
            log.set_aside(target)
            log.creating(target)
            return os.open(target, _OPEN_NEW, mode)

    class Destination(SchemeDictionaryDestination):
        def plan(self, places: Iterable[tuple[str, str]]) -> None:
            """Log, in one write, the targets of *places* ``(scheme, path)`` not there yet.

            Called before the first member is written. A target that exists
            now is left out (it is logged on its own when it is written, and set
            aside then), so a rollback after a SIGKILL at any point removes only
            files created after this: by this install. A directory on a target's
            way that is a link leading out of its scheme is refused here, before
            anything is logged or written.
            """
            nonlocal planned_stamp
            dirs: dict[str, bool] = {}
            targets: list[str] = []
            for scheme_name, path in places:
                target = target_of(scheme_name, path)
                parent = os.path.dirname(target)
                exists = dirs.get(parent)
                if exists is None:
                    exists = _check_no_escape(parent, scheme_roots[scheme_name], safe_dirs,
                                              real_roots)
                    if exists is None:
                        exists = os.path.lexists(parent)
                    dirs[parent] = exists
                if exists and os.path.lexists(target):
                    continue
                targets.append(target)
            planned.update(targets)
            planned_stamp = log.creating_all(targets)

        def write_to_fs(
            self, scheme: str, path: str, stream: BinaryIO, is_executable: bool
        ) -> RecordEntry:
            base = scheme_roots[scheme]
            target = target_of(scheme, path)
            parent = os.path.dirname(target)
            if parent not in made_dirs:
                os.makedirs(parent, exist_ok=True)
                # Again now it exists: a link may have been put there since plan().
                _check_no_escape(parent, base, made_dirs, real_roots)
            fd = create(target, is_executable)
            if isinstance(stream, _Verified):
                try:
                    write_all(fd, stream.data)
                finally:
                    os.close(fd)
                digest, size = stream.digest, len(stream.data)
            else:
                with os.fdopen(fd, "wb") as f:
                    if isinstance(stream, _VerifyingStream) and stream.algorithm == "sha256":
                        size = 0
                        while data := stream.read(_BUFSIZE):
                            f.write(data)
                            size += len(data)
                        assert stream.digest is not None
                        digest = stream.digest
                    else:
                        digest, size = copyfileobj_with_hashing(stream, f, self.hash_algorithm)
            if is_executable and _CHMOD_EXECUTABLES:
                os.chmod(target, _EXEC_MODE)
            if scheme in ("purelib", "platlib") and target.endswith(".py"):
                written.py_files.append(target)
                written.py_bytes.append(size)
            return _RecordEntry(path, Hash(self.hash_algorithm, digest), size)

        def write_script(self, name: str, module: str, attr: str,
                         section: Literal["console", "gui"]) -> RecordEntry:
            if _BAD_SCRIPT_NAME.search(name) or name in (".", ".."):
                # One plain file name in bin/ (pip refuses control characters;
                # a "/" would make a path of two parts).
                raise IntegrityError(
                    f"refusing the {section} script {name!r}: a script's name is one file "
                    "name, without '/', '\\' or control characters")
            script_name, data = Script(name, module, attr, section).generate(
                self.interpreter, self.script_kind)
            with io.BytesIO(data) as stream:
                return self.write_to_fs(Scheme("scripts"), script_name, stream, True)

        def finalize_installation(self, scheme: Scheme, record_file_path: str,
                                  records: Iterable[tuple[Scheme, RecordEntry]]) -> None:
            written.record_path = os.path.join(scheme_roots[scheme], record_file_path)
            written.record_base = scheme_roots[scheme]
            super().finalize_installation(scheme, record_file_path, records)

    return Destination(
        scheme_dict=scheme,
        interpreter=layout.script_interpreter,
        script_kind=script_kind,
        bytecode_optimization_levels=(),
    )


def _scheme_of(name: str, data_dir: str, root: str) -> tuple[str, str] | None:
    """Where a member goes: ``(scheme, path in it)``; None if in no valid ``.data`` scheme.

    installer's rule (``_determine_scheme``), without a ``posixpath.commonpath``
    per member; a name in ``.data`` with empty or ``.`` parts is refused.
    """
    parts = name.split("/")
    if "" in parts or "." in parts:
        if posixpath.commonpath([data_dir, name]) != data_dir:
            return root, name
        return None
    if parts[0] != data_dir:
        return root, name
    if len(parts) < 3 or parts[1] not in SCHEMES:
        return None
    return parts[1], "/".join(parts[2:])


def _install_wheel(source: Any, destination: Any, metadata: dict[str, bytes]) -> None:
    """Do what ``installer.install`` does, step for step and in its order.

    For our source and destination, without installer's layers per member, and
    with the members' targets planned (logged) before any is written.
    """
    from installer.exceptions import InvalidWheelSource
    from installer.records import RecordEntry
    from installer.utils import parse_entrypoints, parse_metadata_file

    wheel_meta = parse_metadata_file(source.read_dist_info("WHEEL"))
    version = wheel_meta["Wheel-Version"]
    if not (version and version.startswith("1.")):
        raise InvalidWheelSource(
            source, f"Incompatible Wheel-Version {version}, only support version 1.x wheels.")
    root = "purelib" if wheel_meta["Root-Is-Purelib"] == "true" else "platlib"
    record_file_path = f"{source.dist_info_dir}/RECORD"
    data_dir = source.data_dir
    places: dict[str, tuple[str, str]] = {}
    for name in source.member_names():
        if name == record_file_path or "__pycache__" in name.split("/")[:-1]:
            continue
        place = _scheme_of(name, data_dir, root)
        if place is None:
            raise IntegrityError(f"refusing member {name!r}: not in a valid install scheme "
                                 f"of {data_dir}/")
        places[name] = place
    destination.plan(places.values())

    written_records = []
    if "entry_points.txt" in source.dist_info_filenames:
        entrypoints_text = source.read_dist_info("entry_points.txt")
        for name, module, attr, section in parse_entrypoints(entrypoints_text):
            record = destination.write_script(name=name, module=module, attr=attr,
                                              section=section)
            written_records.append(("scripts", record))
    for record_elements, stream, is_executable in source.get_contents():
        path = record_elements[0]
        if path == record_file_path:
            continue
        if path not in places:  # in __pycache__
            # As installer: bytecode shipped in a wheel is never installed (it
            # could run in place of the checked source). Said once per file.
            log.warning("%s: not installing %s: bytecode inside a wheel is skipped "
                        "(the wheel's build put it there)", source.distribution, path)
            continue
        scheme, destination_path = places[path]
        record = destination.write_file(scheme=scheme, path=destination_path, stream=stream,
                                        is_executable=is_executable)
        written_records.append((scheme, record))
    for filename, contents in metadata.items():
        with io.BytesIO(contents) as other_stream:
            record = destination.write_file(scheme=root, path=f"{source.dist_info_dir}/{filename}",
                                            stream=other_stream, is_executable=False)
        written_records.append((root, record))
    written_records.append((root, RecordEntry(record_file_path, None, None)))
    destination.finalize_installation(scheme=root, record_file_path=record_file_path,
                                      records=written_records)


def _install_one(path: Path, sha256: str, project: str, layout: _Layout, info: InterpreterInfo,
                 requested: bool, written: _Written, log: _Log) -> None:
    destination = _make_destination(layout, info, project, written, log)
    metadata = {"INSTALLER": b"wheelhouse\n"}
    if requested:
        metadata["REQUESTED"] = b""
    try:
        wheel = _WheelBytes(path, sha256)
        try:
            _check_members(wheel.zipfile)
            _install_wheel(_verifying_source(wheel), destination, metadata)
        finally:
            wheel.close()
    except zipfile.BadZipFile as e:
        raise IntegrityError(f"{path.name} is not a valid wheel (zip): {e}") from None


#: Compiles the modules named on stdin (NUL-terminated, read as they come) with
#: py_compile's defaults -- what pip's compileall.compile_file(force=True) does,
#: without its per-file checks: timestamp-based (hash-based if SOURCE_DATE_EPOCH
#: is set) bytecode at the interpreter's optimization level, written atomically.
_COMPILE = r"""
import os, py_compile
failed = 0
rest = b""
while True:
    chunk = os.read(0, 1 << 20)
    if not chunk:
        break
    *names, rest = (rest + chunk).split(b"\0")
    for name in names:
        try:
            py_compile.compile(os.fsdecode(name), doraise=True)
        except Exception:
            failed += 1
print(failed)
"""


class _Compilers:
    """Bytecode compilers in the *target* interpreter, fed modules as wheels are written.

    Up to *jobs* processes (no more than modules), started when the first modules
    come; each module goes to the one given the fewest bytes of source so far. :meth:`kill` stops them all
    (a rollback must not run while one still writes); :meth:`finish` waits for them.
    """

    def __init__(self, info: InterpreterInfo, jobs: int) -> None:
        self._info = info
        self._jobs = max(1, jobs)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._loads: list[int] = []
        #: The modules given to each compiler.
        self._given: list[list[str]] = []
        #: Every module given to a compiler.
        self.files: set[str] = set()
        #: After :meth:`finish`: the modules given to a compiler that died (killed,
        #: or gone before it said it was done).
        self.lost: list[str] = []

    def add(self, files: Sequence[str], sizes: Sequence[int]) -> None:
        """Compile *files* (of *sizes* bytes)."""
        if not files:
            return
        wanted = min(self._jobs, len(self.files) + len(files))
        if len(self._procs) < wanted:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
            for _ in range(wanted - len(self._procs)):
                self._procs.append(subprocess.Popen(
                    [self._info.executable, "-I", "-c", _COMPILE], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env))
                self._loads.append(0)
                self._given.append([])
        batches: list[list[bytes]] = [[] for _ in self._procs]
        for name, size in sorted(zip(files, sizes, strict=True), key=lambda f: -f[1]):
            k = self._loads.index(min(self._loads))
            self._loads[k] += size + 2000  # a module costs something however small
            batches[k].append(os.fsencode(name) + b"\0")
            self._given[k].append(name)
        for k, (proc, batch) in enumerate(zip(self._procs, batches, strict=True)):
            if batch and proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.write(b"".join(batch))
                    proc.stdin.flush()
                except OSError:
                    # It died (its modules get no bytecode, and are not listed as
                    # having any): the others go on.
                    self._loads[k] = 1 << 62
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
        self.files.update(files)

    def finish(self) -> set[str]:
        """Wait for every module given to be compiled; return them."""
        for proc in self._procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for proc, given in zip(self._procs, self._given, strict=True):
            # The compiler's last word is the number of modules that did not compile
            # (as pip, not said: a module that is not valid Python); none, it died.
            out = b""
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    out = proc.stdout.read()
                proc.stdout.close()
            proc.wait()
            if proc.returncode != 0 or not out.strip().isdigit():
                self.lost += given
        return self.files

    def kill(self) -> None:
        """Stop every compiler now, and wait until it has."""
        for proc in self._procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for proc in self._procs:
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()


def _pyc_path(py: str, cache_tag: str) -> str:
    d, name = os.path.split(py)
    return os.path.join(d, "__pycache__", f"{name[:-3]}.{cache_tag}.pyc")


def _add_pyc_to_record(written: _Written, compiled: set[str], cache_tag: str) -> int:
    if written.record_path is None or written.record_base is None:
        return 0
    rows: list[list[str]] = []
    for py in written.py_files:
        if py not in compiled:
            continue
        pyc = _pyc_path(py, cache_tag)
        if os.path.exists(pyc):
            rel = os.path.relpath(pyc, written.record_base).replace(os.sep, "/")
            rows.append([rel, "", ""])
    if rows:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        with open(written.record_path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
    return len(rows)


@dataclass(frozen=True, slots=True)
class _Work:
    """What every install worker needs, the same for every wheel."""

    layout: _Layout
    info: InterpreterInfo
    #: Where the workers' logs go; a file ``stop`` in it tells them to take no more wheels.
    stash: Path


@dataclass(slots=True)
class _JobResult:
    """What installing one wheel wrote, and how it failed: (kind, detail, reason)."""

    index: int
    #: None: not started (the install was stopping).
    written: _Written | None
    error: tuple[str, str, str] | None = None


_Job = tuple[int, str, str, str, bool]  # index, wheel path, its sha256, project, requested

#: A forked worker's work (set when it starts).
_WORKER_WORK: _Work | None = None
#: Each worker's log, opened with its first wheel: one per process or thread.
_worker_logs = threading.local()
_open_logs: list[_Log] = []


def _use_processes() -> bool:
    # Forking is cheap and safe on Linux; elsewhere threads (fork is unsafe on macOS).
    return sys.platform.startswith("linux") and (os.cpu_count() or 1) > 1


def _stop_path(stash: Path) -> Path:
    return stash / "stop"


def _worker_log(stash: Path) -> _Log:
    log: _Log | None = getattr(_worker_logs, "log", None)
    if log is None or log.closed or log.pid != os.getpid() or log.stash != stash:
        log = _Log(stash, f"w{os.getpid()}-{threading.get_ident()}")
        _worker_logs.log = log
        _open_logs.append(log)
    return log


def _close_logs() -> None:
    """Close the logs this process opened (thread workers': forked ones die with theirs)."""
    while _open_logs:
        log = _open_logs.pop()
        if log.pid == os.getpid():
            log.close()


def _install_job(job: _Job, work: _Work | None = None) -> _JobResult:
    """Install one wheel (in a worker), unless the install is stopping.

    Nothing escapes: any failure is returned as data (the parent rolls back from
    the log), so a worker never dies with its changes unaccounted for.
    """
    work = work or _WORKER_WORK
    assert work is not None
    index, path, sha256, project, requested = job
    if os.path.exists(_stop_path(work.stash)):
        return _JobResult(index, None)
    try:
        log = _worker_log(work.stash)
    except OSError as e:
        return _JobResult(index, None, ("os", str(e), ""))
    written = _Written()
    error: tuple[str, str, str] | None = None
    try:
        _install_one(Path(path), sha256, project, work.layout, work.info, requested, written,
                     log)
    except _RecordMismatchError as e:
        error = ("record", e.member, e.reason)
    except OSError as e:
        error = ("os", str(e), "")
    except IntegrityError as e:
        error = ("integrity", e.message, "")
    except KeyboardInterrupt:
        error = ("interrupted", "", "")
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which rolls back
        error = ("other", f"{type(e).__name__}: {e}", "")
    return _JobResult(index, written, error)


def _start_worker(work: _Work, parent: int) -> None:
    # Workers finish their wheel on Ctrl-C; the parent waits for them, then rolls
    # everything back from their logs.
    import signal

    global _WORKER_WORK
    _WORKER_WORK = work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (to the whole group) ends a worker at once: its log is on disk,
    # and the parent rolls back from it (see _sigterm_rolls_back).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A killed install's workers would otherwise hold the environment's lock
    # and could take wheels already handed to them while the next run writes.
    die_with_parent(parent)


def _run_jobs(jobs: Sequence[_Job], work: _Work, workers: int,
              done: Callable[[_JobResult], None]) -> list[_JobResult]:
    """Install *jobs* in forked processes (Linux) or threads; every change is logged.

    Each worker takes the next wheel (in the order given) when it is done with
    one. *done* is called here with each wheel's result as soon as it is in; the
    first failure (or an exception, Ctrl-C included) tells the workers to take
    no more, and this returns (or raises) only when every worker has stopped.
    """
    import concurrent.futures as cf

    workers = max(1, min(workers, len(jobs)))
    pool: cf.Executor | None = None
    futures: list[cf.Future[_JobResult]] = []
    if _use_processes() and workers > 1:
        import multiprocessing

        try:
            pool = cf.ProcessPoolExecutor(max_workers=workers,
                                          mp_context=multiprocessing.get_context("fork"),
                                          initializer=_start_worker,
                                          initargs=(work, os.getpid()))
            futures.append(pool.submit(_install_job, jobs[0]))
        except OSError:
            # No semaphores (a full /dev/shm) or no processes to be had: before any
            # work started, so threads do it instead.
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            pool, futures = None, []
    threads = pool is None
    if pool is None:
        pool = ThreadPoolExecutor(max_workers=workers)
    results: dict[int, _JobResult] = {}
    finished = False
    try:
        futures += [pool.submit(_install_job, job, work) if threads
                    else pool.submit(_install_job, job) for job in jobs[len(futures):]]
        for future in cf.as_completed(futures):
            result = future.result()
            results[result.index] = result
            if result.error is not None:
                break
            done(result)
        else:
            finished = True
    finally:
        # Held: the rollback that may follow must not start while a worker writes.
        with _interrupts_held():
            if not finished:
                with contextlib.suppress(OSError):
                    _stop_path(work.stash).touch()
            pool.shutdown(wait=True, cancel_futures=True)
            _close_logs()
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            result = future.result()
            results.setdefault(result.index, result)
    return list(results.values())


def _error_from(entry: FileEntry, error: tuple[str, str, str]) -> WheelhouseError:
    kind, detail, reason = error
    if kind == "record":
        return IntegrityError(
            f"{entry.filename}: member {detail!r}: {reason}; nothing was installed",
            hint="the wheel is corrupt or was altered after it was built; "
            "rebuild it and replace it in the house",
        )
    if kind == "integrity":
        return IntegrityError(f"{entry.filename}: {detail}; nothing was installed")
    if kind == "interrupted":
        return InstallError("interrupted; nothing was installed")
    return InstallError(f"installing {entry.filename} failed: {detail}; nothing was installed")


# ---------------------------------------------------------------------------
# The journal of an install in progress


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM in the block (from the main thread; elsewhere, do nothing)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                      signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def _environment_lock(layout: _Layout, *, dry_run: bool) -> Iterator[bool]:
    """Hold the target environment's install lock (nothing for a dry run); yield if held.

    Two installs into one environment at once would each take the other's
    files for a half-finished install of their own. On POSIX the lock is an
    ``flock`` on the site-packages directory itself, so it leaves no file
    behind; elsewhere a lock file beside the journal.
    """
    if dry_run:
        yield False
        return
    timeout = _LOCK_TIMEOUT
    where = Path(layout.scheme["purelib"])
    if not where.is_dir():  # a new --target or --prefix: made here (a lock needs it)
        _check_writable(layout)
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InstallError(
                f"the environment is read-only: cannot write to {where} ({e.strerror or e})",
                hint="install into an environment you can write to, or fix its permissions",
            ) from e
    if os.name != "posix":
        import filelock

        lock = filelock.FileLock(str(where / _LOCK_NAME), timeout=timeout)
        try:
            lock.acquire()
        except filelock.Timeout as e:
            raise LockTimeoutError(str(where / _LOCK_NAME), timeout) from e
        try:
            yield True
        finally:
            lock.release()
        return
    import errno
    import fcntl

    fd = os.open(where, os.O_RDONLY)  # read-only: a read-only environment locks too
    held = True
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(str(where), timeout) from None
                time.sleep(0.05)
            except OSError as e:
                if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS,
                                   errno.EINVAL):
                    raise
                # A file system without flock on directories (NFS takes it as a
                # byte-range lock, which needs a file open for writing).
                log.warning("cannot lock %s (%s): two installs into it at once would "
                            "collide", where, e.strerror or e)
                held = False
                break
        yield held
    finally:
        os.close(fd)  # and with it the lock


@contextlib.contextmanager
def _sigterm_rolls_back() -> Iterator[None]:
    """SIGTERM (``docker stop``, systemd, a CI timeout) taken as Ctrl-C: rolled back.

    Its default would end the process at once, the environment half-changed
    until the next run undid it. Only where SIGTERM has its default handler
    and this is the main thread (signals are delivered there).
    """
    import signal

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminated(_signum: int, _frame: object) -> None:
        raise Terminated("SIGTERM")

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _journal_path(layout: _Layout) -> Path:
    return Path(layout.scheme["purelib"]) / JOURNAL_NAME


def _read_journal(layout: _Layout) -> dict[str, str]:
    try:
        raw = json.loads(_journal_path(layout).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in raw.get("installing", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _journal_pid(layout: _Layout) -> int | None:
    """The process that wrote the journal (None: not said, as older runs did not)."""
    try:
        pid = json.loads(_journal_path(layout).read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if type(pid) is int else None


def _write_journal(layout: _Layout, installing: dict[str, str]) -> None:
    path = _journal_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": 1, "installing": installing, "pid": os.getpid()},
                              sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _discard_stash(stash: Path) -> None:
    """Delete a stash whose run is over.

    It is renamed first: a kill half-way through the deletion never leaves a
    stash the next run would take for a run to undo.
    """
    done = stash.with_name(_DONE_PREFIX + stash.name[len(_STASH_PREFIX):])
    shutil.rmtree(done, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.rename(stash, done)
    shutil.rmtree(done, ignore_errors=True)


def _is_dead(pid: str) -> bool:
    """Whether the run of process *pid* is over (this process's own pid counts: not begun)."""
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, someone else's
    return False


def _stashes(layout: _Layout) -> list[Path]:
    """The stashes in the environment (of runs in progress, or killed)."""
    site = Path(layout.scheme["purelib"])
    return [p for p in sorted(site.glob(f"{_STASH_PREFIX}*"))
            if p.name[len(_STASH_PREFIX):].isdigit() and p.is_dir() and not p.is_symlink()]


def _logged_paths(stash: Path) -> Iterator[tuple[str, bool]]:
    """Every path a stash's logs and moves name, and whether it is in the stash itself."""
    for original, stashed in _read_moves(stash):
        yield original, False
        yield stashed, True
    for _log_name, entry in _log_entries(stash):
        if len(entry) >= 3 and entry[1] in ("W", "M"):
            yield str(entry[2]), False
        if len(entry) >= 4 and entry[1] == "M":
            yield str(entry[3]), True


def _stash_belongs_to(stash: Path, root: Path) -> bool:
    """Whether every path the stash names is in this environment, and every copy in it.

    The logs hold absolute paths: in an environment copied or moved since,
    they name the other one, which must never be written to.
    """
    real_root = os.path.realpath(root)
    real_stash = os.path.realpath(stash)
    for path, stashed in _logged_paths(stash):
        parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if not _within(parent, real_stash if stashed else real_root):
            return False
    return True


def _undo_dead_runs(layout: _Layout, *, locked: bool) -> list[int]:
    """Undo every install that was killed midway; return their process ids.

    Its workers' logs (every file created, every file set aside) and its
    moves (the replaced versions' files) are in its stash: what it wrote goes,
    half-written files too, and what it moved aside comes back. The
    environment is then as it was before that run. With the environment's
    lock *locked*, no other install runs: every stash is a dead run's, whatever
    process now has its id. A stash whose logs name another environment (this
    one was copied or moved since) is left alone, and said.
    """
    site = Path(layout.scheme["purelib"])
    for done in site.glob(f"{_DONE_PREFIX}*"):
        if locked or _is_dead(done.name[len(_DONE_PREFIX):]):
            shutil.rmtree(done, ignore_errors=True)
    undone = []
    for stash in _stashes(layout):
        pid = stash.name[len(_STASH_PREFIX):]
        if not (locked or _is_dead(pid)):
            continue
        if not _stash_belongs_to(stash, layout.root):
            log.warning("%s holds an install killed midway elsewhere (its files name "
                        "another environment: this one was copied or moved since): left "
                        "alone; remove it once you know that environment is right", stash)
            continue
        _rollback(stash, layout.root)
        _unstash(_read_moves(stash))
        _discard_stash(stash)
        undone.append(int(pid))
    return undone


# ---------------------------------------------------------------------------
# The entry point


def install(
    house_path: Path | str,
    wanted: WantedSet,
    *,
    python: Path | str | None = None,
    prefix: Path | None = None,
    target: Path | None = None,
    compile_bytecode: bool = True,
    break_system_packages: bool = False,
    dry_run: bool = False,
    jobs: int | None = None,
) -> InstallReport:
    """Install *wanted* from the house at *house_path*; see the module docstring."""
    started = time.monotonic()
    if prefix is not None and target is not None:
        raise InvalidInputError("--prefix and --target cannot be used together")
    house = House.open(house_path)
    exe: Path | str
    if python is not None:
        # A string stays as typed: Path("./python") would lose the "./" and send a
        # name in the current directory to a PATH lookup. A Path is a path.
        exe = python.absolute() if isinstance(python, Path) else python
    elif (prefix or target) and not os.environ.get("VIRTUAL_ENV"):
        exe = Path(sys.executable)  # as pip does: files for the interpreter running us
    else:
        exe = default_interpreter()
    info = query_interpreter(exe, prefix=prefix)
    if prefix is None and target is None and not info.is_venv and not break_system_packages:
        managed = " (marked EXTERNALLY-MANAGED)" if info.externally_managed else ""
        raise InstallError(
            f"{info.executable} is a system interpreter{managed}, not a virtual environment",
            hint="install into a virtual environment (python -m venv .venv), use --prefix or "
            "--target, or pass --break-system-packages if you mean it",
        )
    layout = _layout(info, prefix, target)
    _check_scheme_roots(layout)
    if (prefix is None and target is None
            and os.path.realpath(info.prefix) == os.path.realpath(sys.prefix)):
        log.warning("installing into the environment wheelhouse itself runs from (%s); "
                    "replacing its dependencies can break wheelhouse — use --python to name "
                    "another environment", info.prefix)
    env = Environment(info.name, info.tags, info.markers, info.python_version)
    resolution: Resolution = resolve_in_house(
        house.read_manifest().files, wanted, env, read_house_metadata(house),
        file_digest=read_house_digest(house))

    # One install into an environment at a time: a second waits for the first.
    with _sigterm_rolls_back(), _environment_lock(layout, dry_run=dry_run) as locked:
        report = InstallReport(info.executable, dry_run=dry_run)
        if dry_run:
            if _stashes(layout):
                log.warning("an install into %s was killed midway: the install itself "
                            "will undo it first", layout.root)
        else:
            journal_pid = _journal_pid(layout)
            # (Held an interrupt waits: an undo cut short would be run again, but
            # the install that follows must not start at all.)
            with interrupts_deferred():
                undone = _undo_dead_runs(layout, locked=locked)
            if undone:
                log.warning("an install into %s was killed midway (process %s): undone, the "
                            "environment is as it was before it", layout.root,
                            ", ".join(map(str, undone)))
            if journal_pid is not None and journal_pid in undone:
                _journal_path(layout).unlink(missing_ok=True)
        installed = find_installed(layout.site_dirs)
        interrupted = _read_journal(layout)
        requested = {canonicalize_name(r.name) for r, _ in wanted.requirements}
        todo: list[tuple[FileEntry, InstalledDist | None]] = []
        for cand in resolution.chosen:
            have = installed.get(cand.name)
            half = cand.name in interrupted
            if have is not None and have.version == str(cand.version) and not half:
                report.skipped.append((cand.name, have.version))
                continue
            if half:
                report.completed.append(cand.name)
            todo.append((cand.entry, have))
        if dry_run or not todo:
            for entry, have in todo:
                report.installed.append((entry.project, entry.version, entry.filename))
                if have is not None and have.version != entry.version:
                    report.replaced.append((entry.project, have.version, entry.version))
            report.seconds = time.monotonic() - started
            return report

        workers = max(1, jobs or min(8, os.cpu_count() or 2))
        # 3. What can be checked without reading the wheels (they are checked as they are
        #    read: a bad one rolls everything back).
        for _entry, have in todo:
            if have is not None and not (have.path / "RECORD").is_file() and not (
                    have.name in interrupted and interrupted[have.name] == have.version):
                raise InstallError(
                    f"cannot replace {have.name} {have.version}: it has no RECORD "
                    f"({have.path}), so its files are unknown",
                    hint="remove it by hand, or install into a fresh environment")
        _check_writable(layout)

        # 4. Journal, stash replaced versions, install (verifying every member against
        #    RECORD as it is written); on any failure put everything back as it was.
        pending = dict(interrupted)
        pending.update({e.project: e.version for e, _ in todo})
        _write_journal(layout, pending)
        stash = Path(layout.scheme["purelib"]) / f"{_STASH_PREFIX}{os.getpid()}"
        stash.mkdir(parents=True)  # (a dead run's with our pid was undone above)
        moves = _Moves(stash / _MOVES_NAME)
        results = [_Written() for _ in todo]
        compilers = (_Compilers(info, os.cpu_count() or 2)
                     if compile_bytecode and info.cache_tag else None)
        try:
            for entry, have in todo:
                if have is None:
                    continue
                if (have.path / "RECORD").is_file():
                    try:
                        _stash(have, layout.root, stash / "replaced" / have.path.name, moves)
                    except OSError as e:
                        raise InstallError(
                            f"cannot move {have.name} {have.version} aside to replace it: "
                            f"{e.strerror or e} ({e.filename}); nothing was changed",
                            hint="the environment must be writable by you, every file of it",
                        ) from e
                else:
                    # Half-written by an interrupted run of ours (the journal says so):
                    # its files are rewritten below; its metadata goes now.
                    _stash_dir(have.path, layout.root, stash / "half" / have.path.name, moves)
                if have.version != entry.version:
                    report.replaced.append((entry.project, have.version, entry.version))

            jobs_list = [(i, str(house.file_path(e.filename)), e.sha256, e.project,
                          e.project in requested) for i, (e, _have) in enumerate(todo)]
            # Largest first: the small ones fill in at the end.
            jobs_list.sort(key=lambda job: todo[job[0]][0].size, reverse=True)

            def wheel_done(result: _JobResult) -> None:
                # 5. Bytecode, as soon as a wheel is written (still undone on Ctrl-C:
                #    the install is not over until it is).
                if compilers is not None and result.written is not None:
                    compilers.add(result.written.py_files, result.written.py_bytes)

            outcomes = _run_jobs(jobs_list, _Work(layout, info, stash), workers, wheel_done)
            failure: WheelhouseError | None = None
            for outcome in sorted(outcomes, key=lambda o: o.index):
                if outcome.written is not None:
                    results[outcome.index] = outcome.written
                if outcome.error is not None and failure is None:
                    failure = _error_from(todo[outcome.index][0], outcome.error)
            if failure is not None:
                raise failure
            if compilers is not None:
                assert info.cache_tag is not None
                compiled = compilers.finish()
                for w in results:
                    report.compiled += _add_pyc_to_record(w, compiled, info.cache_tag)
                lost = [f for f in compilers.lost
                        if not os.path.exists(_pyc_path(f, info.cache_tag))]
                if lost:
                    log.warning("a bytecode compiler (%s) died: %d module(s) have no bytecode "
                                "(they import all the same, compiled on first use where "
                                "the environment is writable)", info.executable, len(lost))
        except BaseException:
            report.compiled = 0
            with _interrupts_held():  # a second Ctrl-C must not cut the rollback short
                if compilers is not None:
                    compilers.kill()  # no compiler may still write while it is undone
                try:
                    _rollback(stash, layout.root)
                    _unstash(moves)
                finally:
                    moves.close()
                # The journal before the stash: killed in between, the next run
                # finds the stash (and undoes nothing twice), never a journal
                # naming wheels this run took back.
                if not interrupted:
                    _journal_path(layout).unlink(missing_ok=True)
                else:
                    _write_journal(layout, interrupted)
                _discard_stash(stash)
            raise
        moves.close()
        # Done: the stash goes first (killed after it, the next run finds a
        # journal naming wheels that are all there, and installs them again;
        # killed before, it would undo a finished install).
        _discard_stash(stash)
        for entry, _have in todo:
            report.installed.append((entry.project, entry.version, entry.filename))
            pending.pop(entry.project, None)
        if pending:
            _write_journal(layout, pending)
        else:
            _journal_path(layout).unlink(missing_ok=True)
        report.seconds = time.monotonic() - started
        return report


def _check_writable(layout: _Layout) -> None:
    for key in ("purelib", "platlib", "scripts"):
        d = Path(layout.scheme[key])
        probe = d
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            raise InstallError(
                f"the environment is read-only: cannot write to {d}",
                hint="install into an environment you can write to, or fix its permissions",
            )

