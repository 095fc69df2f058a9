"""The content-addressed store: immutable blobs named by their sha256, shared by every house."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import json.encoder
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, NewType, overload

from wheelhouse._fs import (
    fsync_dir,
    name_unnamed,
    open_regular,
    open_unnamed,
    read_small,
    remove_quietly,
    rename_noreplace,
    sync_files,
    write_all,
)
from wheelhouse._hashing import BackgroundHash
from wheelhouse.errors import (
    FormatVersionError,
    HashMismatchError,
    LockTimeoutError,
    StoreError,
    is_format,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "SMALL_BLOB",
    "STORE_FORMAT",
    "BadBlob",
    "Sha256",
    "Store",
    "StoreVerifyReport",
    "default_store_root",
    "parse_sha256",
    "sha256_file",
]

log = logging.getLogger(__name__)

#: The store layout version this wheelhouse writes and reads.
STORE_FORMAT = 1
#: Name of the marker file that makes a directory a store.
MARKER = "wheelhouse-store.json"

#: A validated lowercase hex sha256 digest.
Sha256 = NewType("Sha256", str)

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_TOKEN = os.urandom(4).hex()
_COUNTER = itertools.count()
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BLOB_MODE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
# "interpreters" is the interpreter-facts cache (interpreter.py): it lives in the
# same per-user directory as the default store and may be there first.
_LAYOUT = frozenset({"blobs", "meta", "tmp", "locks", "quarantine", "houses", "interpreters",
                     MARKER})
#: The lock writers hold shared, and gc exclusive (see Store.in_use).
USE_LOCK = "use"
# A helper process stages temp files on behalf of its parent: they carry the
# parent's pid, so clean_tmp keeps them while the parent lives.
_OWNER_PID: int | None = None


def adopt_temp_files_for(parent_pid: int) -> None:
    """In a helper process: name temp files after *parent_pid*, with a fresh token."""
    global _OWNER_PID, _TOKEN
    _OWNER_PID = parent_pid
    _TOKEN = os.urandom(4).hex()
_CHUNK = 1024 * 1024
#: A blob this small (a METADATA file) found where one is published is hashed then;
#: a larger one is taken as it is (its writer checks it first: see Store.intact).
SMALL_BLOB = 1024 * 1024
# A temp file whose writer is gone (or older than this) is debris from a crash.
_STALE_TMP_SECONDS = 24 * 3600


def parse_sha256(value: str) -> Sha256:
    """Validate a lowercase hex sha256 digest.

    >>> parse_sha256("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")[:8]
    'e3b0c442'
    """
    if not _HEX64.match(value):
        raise StoreError(f"not a sha256 hex digest: {value!r}")
    return Sha256(value)


# Files up to this size are hashed from one read; larger ones are streamed.
_READ_WHOLE = 8 * 1024 * 1024


def sha256_file(path: Path | str) -> tuple[Sha256, int]:
    """Hash a file in one pass; return its sha256 and size."""
    data = read_small(str(path), _READ_WHOLE)
    if data is not None:
        return Sha256(hashlib.sha256(data).hexdigest()), len(data)
    h = hashlib.sha256()
    size = 0
    with os.fdopen(open_regular(path), "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Sha256(h.hexdigest()), size


def default_store_root() -> Path:
    """The per-user default store directory (``WHEELHOUSE_STORE`` is read by the CLI)."""
    import platformdirs  # here: only the default path needs it (start-up time)

    return platformdirs.user_cache_path("wheelhouse")


def _describe_oserror(e: OSError) -> str:
    return e.strerror or str(e)




def _fill_temp(fd: int, path: str, data: bytes, *, durable: bool) -> str:
    """Write *data* to the new temp file *fd* at *path* (fsynced if *durable*), close it.

    Returns *path*; on any error the file is removed and the error raised.
    """
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        remove_quietly(path)
        raise
    return path


def discard_temp(tmp: Path | str | int) -> None:
    """Drop a temp file from :meth:`Store.stage`: remove it, or close an unnamed one."""
    if isinstance(tmp, int):
        os.close(tmp)
    else:
        remove_quietly(tmp)


@dataclass(frozen=True, slots=True)
class BadBlob:
    """A blob whose bytes do not match its name."""

    #: The sha256 the blob is named by.
    expected: str
    #: The sha256 of its bytes (``None`` if it could not be read).
    actual: str | None
    #: Where it is (or was, before quarantine).
    path: Path
    #: Where it was moved to, if quarantined.
    quarantined_to: Path | None = None


@dataclass(frozen=True, slots=True)
class StoreVerifyReport:
    """The result of re-hashing blobs."""

    #: How many blobs were checked.
    checked: int
    #: The ones that failed.
    bad: tuple[BadBlob, ...]

    @property
    def ok(self) -> bool:
        """True when every blob matched its name."""
        return not self.bad


class Store:
    """A content-addressed store rooted at a directory.

    Layout (format 1)::

        wheelhouse-store.json        {"format": 1}
        blobs/sha256/ab/abcdef…      immutable, read-only, named by sha256
        meta/sha256/ab/abcdef….json  records older versions kept (gc removes them)
        tmp/                         temp files of writers in flight
        quarantine/                  blobs verify found corrupt
        locks/                       filelock files for exclusive steps
        houses/<sha256 of path>.json the houses that link blobs (for gc)

    Writers need no lock: a blob is written into ``tmp/``, hashed while written,
    fsynced, then linked into place under its name. An existing blob is never
    rewritten.
    """

    def __init__(self, root: Path) -> None:
        #: The store directory.
        self.root = root
        self._root = str(root)  # for paths built many times over

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str | None = None, *, create: bool = True) -> Store:
        """Open the store at *root* (default: the per-user cache), creating it if asked.

        Refuses a directory that holds something else, or a store whose format
        version is unknown.
        """
        path = Path(root) if root is not None else default_store_root()
        path = path.expanduser().absolute()
        store = cls(path)
        marker = path / MARKER
        try:
            data = marker.read_bytes()
        except FileNotFoundError:
            if not create:
                raise StoreError(
                    f"no wheelhouse store at {path}",
                    hint="pass --store DIR (or set WHEELHOUSE_STORE) to an existing store",
                ) from None
            store._create()
        except NotADirectoryError:
            blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()),
                           path)
            raise StoreError(
                f"store path {path} is not a directory"
                + (f": {blocker} is a file" if blocker != path else ""),
                hint="pass --store DIR (or set WHEELHOUSE_STORE) to a directory") from None
        except OSError as e:
            raise StoreError(f"cannot read store at {path}: {_describe_oserror(e)}") from e
        else:
            store._check_marker(data)
        if create:
            store.clean_tmp()
        return store

    def _check_marker(self, data: bytes) -> None:
        marker = self.root / MARKER
        try:
            found = json.loads(data).get("format")
        except (ValueError, AttributeError) as e:
            raise StoreError(f"{marker} is not a store marker ({e})") from e
        if not is_format(found, STORE_FORMAT):
            raise FormatVersionError("store", str(marker), found, STORE_FORMAT)

    def _create(self) -> None:
        try:
            if self.root.exists():
                if not self.root.is_dir():
                    raise StoreError(f"store path {self.root} is not a directory")
                # Our own layout may be there already: another process is
                # creating the same store right now.
                if any(p.name not in _LAYOUT for p in self.root.iterdir()):
                    raise StoreError(
                        f"{self.root} is not empty and is not a wheelhouse store",
                        hint="choose an empty or new directory for --store",
                    )
            for sub in ("tmp", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            # All 256 fan-out directories up front: no mkdir on the hot path.
            for i in range(256):
                (self.root / "blobs/sha256" / f"{i:02x}").mkdir(parents=True, exist_ok=True)
            payload = json.dumps({"format": STORE_FORMAT}).encode() + b"\n"
            # Publish the marker atomically; a concurrent creator may win the race.
            tmp = self._write_tmp_bytes(payload)
            try:
                os.link(tmp, self.root / MARKER)
            except FileExistsError:
                self._check_marker((self.root / MARKER).read_bytes())
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create a store at {self.root}: {_describe_oserror(e)}",
                hint="pass --store DIR (or set WHEELHOUSE_STORE) to a writable directory",
            ) from e

    # -- paths -----------------------------------------------------------

    @property
    def tmp_dir(self) -> Path:
        """Where writers put files in flight (same file system as the blobs)."""
        return self.root / "tmp"

    def blob_path(self, sha256: str) -> Path:
        """The path a blob with this digest has (whether or not it exists)."""
        return Path(self._blob_file(sha256))

    def meta_path(self, sha256: str) -> Path:
        """The path of a blob's record, as earlier versions wrote one (gc removes them).

        What a blob holds is read from the blob itself whenever it is needed:
        nothing names a record by its hash, so it could not be trusted anyway.
        """
        return Path(self._meta_file(sha256))

    # As plain strings, for the paths built once or more per file of an add.
    def _blob_file(self, sha256: str) -> str:
        sha = parse_sha256(sha256)
        return f"{self._root}/blobs/sha256/{sha[:2]}/{sha}"

    def _meta_file(self, sha256: str) -> str:
        sha = parse_sha256(sha256)
        return f"{self._root}/meta/sha256/{sha[:2]}/{sha}.json"

    def forget_record(self, sha256: str) -> None:
        """Remove the record an earlier version kept of blob *sha256*, if there is one.

        Nothing reads these records any more: removing one is tidying, never a
        reason to fail (a directory there, say, is left as it is). The way
        down from the store's root is opened without following a symbolic
        link, so nothing outside the store is ever removed.
        """
        sha = parse_sha256(sha256)
        flags = os.O_RDONLY | _O_CLOEXEC | getattr(os, "O_DIRECTORY", 0) | getattr(
            os, "O_NOFOLLOW", 0)
        fd: int | None = None
        try:
            for part in ("meta", "sha256", sha[:2]):
                sub = os.open(part if fd is not None else f"{self._root}/{part}", flags,
                              dir_fd=fd)
                if fd is not None:
                    os.close(fd)
                fd = sub
            os.unlink(f"{sha}.json", dir_fd=fd)
        except OSError:
            pass  # none there (a store this version made has no meta/), or not ours to remove
        finally:
            if fd is not None:
                os.close(fd)

    def has(self, sha256: str) -> bool:
        """Is this blob in the store? (A stat, not a download; a symbolic link is no blob.)."""
        path = self._blob_file(sha256)
        try:
            st = os.lstat(path)
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(st.st_mode)

    def open_blob(self, sha256: str) -> IO[bytes]:
        """Open a blob for reading."""
        try:
            return self.blob_path(sha256).open("rb")
        except FileNotFoundError:
            raise StoreError(f"blob sha256={sha256} is not in the store {self.root}") from None

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(name, path)`` of every file under ``blobs/sha256/``, sorted."""
        base = self.root / "blobs" / "sha256"
        if not base.is_dir():
            return
        for fan in sorted(base.iterdir()):
            if fan.is_dir() and not fan.is_symlink():
                for blob in sorted(fan.iterdir()):
                    yield blob.name, blob

    # -- writing ---------------------------------------------------------

    def _mkstemp(self) -> tuple[int, Path]:
        fd, name = self._new_temp()
        return fd, Path(name)

    def _new_temp(self) -> tuple[int, str]:
        # <pid>.<random>.<n>.part: the pid lets clean_tmp tell live writers from
        # dead ones; O_EXCL makes a clash (another process, same pid) an error,
        # never a shared file. Cheaper than tempfile.mkstemp's retries.
        owner = _OWNER_PID or os.getpid()
        name = f"{self.root}/tmp/{owner}.{_TOKEN}.{next(_COUNTER)}.part"
        try:
            # Read-only from birth: the fd stays writable, the published blob is not.
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_CLOEXEC, _BLOB_MODE)
        except FileNotFoundError:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_CLOEXEC, _BLOB_MODE)
        except FileExistsError:
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=f"{owner}.", suffix=".part")
            os.fchmod(fd, _BLOB_MODE)
        return fd, name

    def _write_tmp_bytes(self, data: bytes) -> Path:
        fd, path = self._new_temp()
        return Path(_fill_temp(fd, path, data, durable=True))

    def write_temp(self, src: IO[bytes], *, durable: bool = True) -> tuple[Path, Sha256, int]:
        """Stream *src* into a new temp file, hashing as it goes; fsync it if *durable*.

        The caller owns the temp file: publish it with :meth:`publish` (or, for
        a batch written with ``durable=False``, :meth:`publish_many`, which
        flushes the whole batch at once) or delete it.
        """
        try:
            fd, path = self._mkstemp()
        except OSError as e:
            raise StoreError(
                f"cannot write to the store at {self.root}: {_describe_oserror(e)}",
                hint="pass --store DIR (or set WHEELHOUSE_STORE) to a writable directory",
            ) from e
        h = hashlib.sha256()
        background: BackgroundHash | None = None
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := src.read(_CHUNK):
                    if background is not None:
                        background.update(chunk)
                    elif size >= _CHUNK:
                        # A large file: hash on a second thread, alongside the writes.
                        background = BackgroundHash(h)
                        background.update(chunk)
                    else:
                        h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            digest = background.hexdigest() if background is not None else h.hexdigest()
        except OSError as e:
            path.unlink(missing_ok=True)
            raise StoreError(
                f"cannot write to the store at {self.root}: {_describe_oserror(e)}"
            ) from e
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            if background is not None:
                background.close()
        return path, Sha256(digest), size

    def write_temp_bytes(self, data: bytes, *, durable: bool = True) -> tuple[Path, Sha256]:
        """Write a byte string to a temp file; return it and its sha256."""
        return Path(self.stage(data, durable=durable)), Sha256(hashlib.sha256(data).hexdigest())

    @overload
    def stage(self, data: bytes, *, durable: bool = False) -> str: ...

    @overload
    def stage(self, data: bytes, *, durable: bool = False, unnamed: bool) -> str | int: ...

    def stage(self, data: bytes, *, durable: bool = False, unnamed: bool = False) -> str | int:
        """Write *data* to a new temp file, for :meth:`publish_many`; return its path.

        Not flushed unless *durable* (publish_many flushes a batch at once).
        The caller knows the digest (it hashed these very bytes) and owns the
        file: publish it or discard it (:func:`discard_temp`).

        With *unnamed*, where the file system allows it, the file gets no name
        in ``tmp/`` at all (``O_TMPFILE``) and its open descriptor is returned
        instead: publishing links it straight to its blob name (no rename, no
        entry in ``tmp/`` to create and remove; a crash leaves nothing). For a
        caller that publishes in batches of a few hundred: each holds a
        descriptor until then.
        """
        if unnamed:
            try:
                fd = open_unnamed(self._root + "/tmp", _BLOB_MODE)
                if fd is not None:
                    try:
                        write_all(fd, data)
                        if durable:
                            os.fsync(fd)
                    except BaseException:
                        os.close(fd)
                        raise
                    return fd
            except OSError as e:
                raise StoreError(
                    f"cannot write to the store at {self.root}: {_describe_oserror(e)}"
                ) from e
        try:
            fd, path = self._new_temp()
        except OSError as e:
            raise StoreError(
                f"cannot write to the store at {self.root}: {_describe_oserror(e)}",
                hint="pass --store DIR (or set WHEELHOUSE_STORE) to a writable directory",
            ) from e
        try:
            return _fill_temp(fd, path, data, durable=durable)
        except OSError as e:
            raise StoreError(
                f"cannot write to the store at {self.root}: {_describe_oserror(e)}"
            ) from e

    def publish_many(
        self, items: Sequence[tuple[Path | str | int, Sha256]], *, flush_names: bool = True
    ) -> None:
        """Publish a batch of temp files written with ``durable=False``.

        The batch's data is flushed to disk first (one ``syncfs`` on Linux), so
        every blob is durable before it gets its name; then each is linked into
        place; then the new directory entries are flushed -- unless
        *flush_names* is false, for a caller that flushes the store once
        itself after many batches (see :meth:`flush`) and before any house
        names the blobs.
        """
        try:
            # Unnamed temp files are all in tmp/: one file system.
            sync_files([t for t, _ in items if not isinstance(t, int)],
                       fds=[t for t, _ in items if isinstance(t, int)], fds_share_fs=True)
        except OSError as e:
            for tmp, _ in items:
                discard_temp(tmp)
            raise StoreError(f"cannot flush the store at {self.root}: {_describe_oserror(e)}") from e
        parents: dict[str, None] = {}
        for i, (tmp, sha) in enumerate(items):
            try:
                parents[self._publish(tmp if isinstance(tmp, int) else str(tmp), sha)] = None
            except BaseException:
                for later, _ in items[i + 1 :]:
                    if isinstance(later, int):
                        os.close(later)  # (a named one is left for clean_tmp)
                raise
        if flush_names:
            try:
                sync_files(parents)
            except OSError as e:
                raise StoreError(
                    f"cannot flush the store at {self.root}: {_describe_oserror(e)}"
                ) from e

    def flush(self) -> None:
        """Make everything written to the store so far durable (one ``syncfs`` on Linux)."""
        try:
            sync_files([self.root])
        except OSError as e:
            raise StoreError(f"cannot flush the store at {self.root}: {_describe_oserror(e)}") from e

    def publish(self, tmp: Path, sha256: Sha256, *, sync_dir: bool = True) -> Path:
        """Move a verified, fsynced temp file into place as blob *sha256*.

        Atomic: the blob appears whole or not at all. An existing blob is kept
        as it is (same name, same bytes) and the temp file is dropped.
        """
        fan = self._publish(str(tmp), sha256)
        if sync_dir:
            fsync_dir(Path(fan))
        return self.blob_path(sha256)

    def _publish(self, tmp: str | int, sha256: Sha256) -> str:
        """:meth:`publish` without the directory's flush; returns the fan-out directory.

        *tmp* is a temp file's path, or the descriptor of an unnamed one
        (:meth:`stage`), which is closed.
        """
        final = self._blob_file(sha256)
        fan = final.rpartition("/")[0]
        if isinstance(tmp, int):
            try:
                try:
                    named = name_unnamed(tmp, final)  # False: the blob is there already
                except FileNotFoundError:
                    os.makedirs(fan, exist_ok=True)  # noqa: PTH103
                    named = name_unnamed(tmp, final)
                if not named and self._set_aside_if_damaged(final, sha256):
                    name_unnamed(tmp, final)
            except OSError as e:
                raise StoreError(
                    f"cannot write to the store at {self.root}: {_describe_oserror(e)}"
                ) from e
            finally:
                os.close(tmp)
            return fan
        done = False
        try:
            # Temp files are created read-only (see _new_temp): no chmod here.
            # rename_noreplace never replaces an existing blob.
            try:
                done = rename_noreplace(tmp, final)
            except FileNotFoundError:
                if not os.path.exists(tmp):  # noqa: PTH110
                    raise
                os.makedirs(fan, exist_ok=True)  # noqa: PTH103
                done = rename_noreplace(tmp, final)
            if not done and self._set_aside_if_damaged(final, sha256):
                done = rename_noreplace(tmp, final)
        except OSError as e:
            raise StoreError(
                f"cannot write to the store at {self.root}: {_describe_oserror(e)}"
            ) from e
        finally:
            if not done:  # renamed: nothing left to remove
                remove_quietly(tmp)
        return fan

    def put_stream(
        self,
        src: IO[bytes],
        *,
        expected_sha256: str | None = None,
        check: Callable[[Path, Sha256], None] | None = None,
        source: str = "<stream>",
    ) -> tuple[Sha256, int]:
        """Store bytes read from *src*; return their sha256 and size.

        *expected_sha256*, when given, must match (else HashMismatchError naming
        *source* and nothing is stored). *check*, when given, is called with the
        temp file before it is published, so bad content never gets a real name.
        """
        tmp, sha, size = self.write_temp(src)
        try:
            if expected_sha256 is not None and sha != expected_sha256:
                raise HashMismatchError(source, expected_sha256, sha)
            if check is not None:
                check(tmp, sha)
            self.publish(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)
        return sha, size

    def put_file(self, path: Path, *, expected_sha256: str | None = None) -> tuple[Sha256, int]:
        """Copy a file into the store (always a copy: the user's file may change later)."""
        with path.open("rb") as f:
            return self.put_stream(f, expected_sha256=expected_sha256, source=str(path))

    def put_bytes(self, data: bytes) -> Sha256:
        """Store a small byte string (such as extracted core metadata)."""
        sha = Sha256(hashlib.sha256(data).hexdigest())
        if self.has(sha):
            return sha
        try:
            tmp = self._write_tmp_bytes(data)
        except OSError as e:
            raise StoreError(
                f"cannot write to the store at {self.root}: {_describe_oserror(e)}"
            ) from e
        self.publish(tmp, sha)
        return sha

    # -- upkeep ----------------------------------------------------------

    def clean_tmp(self) -> int:
        """Remove temp files left by writers that died; return how many went."""
        removed = 0
        try:
            entries = list(self.tmp_dir.iterdir())
        except OSError:
            return 0
        now = time.time()
        for entry in entries:
            pid_text = entry.name.split(".", 1)[0]
            try:
                age = now - entry.lstat().st_mtime
            except OSError:
                continue
            alive = pid_text.isdigit() and _pid_alive(int(pid_text))
            if alive and age < _STALE_TMP_SECONDS:
                continue
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
        if removed:
            log.info("removed %d stale temp file(s) from %s", removed, self.tmp_dir)
        return removed

    @contextlib.contextmanager
    def lock(self, name: str = "store", *, timeout: float = 600.0) -> Iterator[None]:
        """Hold an exclusive, cross-process lock named *name* (for gc and the like)."""
        import filelock  # only the few exclusive steps need it

        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        flock = filelock.FileLock(str(path), timeout=timeout)
        try:
            flock.acquire()
        except filelock.Timeout as e:
            raise LockTimeoutError(str(path), timeout) from e
        try:
            yield
        finally:
            flock.release()

    @contextlib.contextmanager
    def in_use(self, *, timeout: float = 600.0) -> Iterator[None]:
        """Hold the store's use lock *shared* while blobs are chosen and linked into a house.

        Any number of writers (add, build, import) hold it at once; ``gc``
        holds it exclusive (:meth:`exclusive_use`), so it never runs while a
        writer has decided to use a blob that no house manifest names yet.
        Re-entrant within a process.
        """
        with _USE_LOCKS.hold(self.root / "locks" / f"{USE_LOCK}.lock", shared=True,
                             timeout=timeout):
            yield

    @contextlib.contextmanager
    def exclusive_use(self, *, timeout: float = 600.0) -> Iterator[None]:
        """Hold the store's use lock exclusive: no writer is between choosing and linking."""
        with _USE_LOCKS.hold(self.root / "locks" / f"{USE_LOCK}.lock", shared=False,
                             timeout=timeout):
            yield

    # -- houses that use this store ----------------------------------------

    @property
    def houses_dir(self) -> Path:
        """Where houses register themselves (one small JSON file each)."""
        return self.root / "houses"

    def register_house(self, house_root: Path) -> None:
        """Record that the house at *house_root* links blobs from this store (for gc).

        Idempotent and cheap when already registered (one stat).
        """
        path = house_root.absolute()
        record = self.houses_dir / f"{hashlib.sha256(os.fsencode(path)).hexdigest()}.json"
        if record.is_file() and not record.is_symlink():
            try:
                raw = json.loads(record.read_bytes())
                if isinstance(raw, dict) and raw.get("path") == str(path):
                    return
            except (OSError, ValueError):
                pass
        # Missing, or unreadable (written again below: never left so, or gc
        # would not know the house).
        with contextlib.suppress(OSError):
            if record.is_dir() and not record.is_symlink():
                shutil.rmtree(record)
            else:
                record.unlink(missing_ok=True)
        data = json.dumps({"format": STORE_FORMAT, "path": str(path)}, sort_keys=True)
        try:
            self.houses_dir.mkdir(exist_ok=True)
            tmp = self._write_tmp_bytes(data.encode() + b"\n")
            try:
                tmp.chmod(0o644)
                rename_noreplace(str(tmp), str(record))
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot register the house {path} in {self.root}: {_describe_oserror(e)}"
            ) from e

    def registered_houses(self, *, strict: bool = False) -> list[tuple[Path, Path]]:
        """``(house path, record path)`` of every registered house, sorted by house path.

        A record that cannot be read is skipped with a warning; with *strict*
        (for gc, which must not guess which blobs a house needs), it is an error.
        """
        found = []
        try:
            records = sorted(self.houses_dir.glob("*.json"))
        except OSError:
            return []
        for record in records:
            try:
                raw = json.loads(record.read_bytes())
                if not is_format(raw.get("format"), STORE_FORMAT):
                    raise FormatVersionError("house record", str(record), raw.get("format"),
                                             STORE_FORMAT)
                found.append((Path(str(raw["path"])), record))
            except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
                if strict:
                    raise StoreError(
                        f"cannot read the house record {record} ({e}): which house it names, "
                        "and so which blobs that house uses, is unknown",
                        hint="the next add, build or import into that house writes it again; "
                        "or remove the record if the house is gone, and run gc again",
                    ) from e
                log.warning("ignoring unreadable house record %s (%s)", record, e)
        return sorted(found)

    def forget_house(self, record: Path) -> None:
        """Drop a house's registration record (the house itself is not touched)."""
        record.unlink(missing_ok=True)

    def verify(self, *, quarantine: bool = False, jobs: int | None = None,
               timeout: float = 600.0) -> StoreVerifyReport:
        """Re-hash every blob; report (and optionally quarantine) any that do not match.

        Under the store's use lock (shared): gc, which removes blobs, waits,
        and a blob it removed is not taken for a damaged one.
        """
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self.in_use(timeout=timeout))
            except OSError as e:  # a store on read-only media: nothing removes blobs there
                log.debug("verifying without the store's lock (%s)", e)
            return self._verify(quarantine=quarantine, jobs=jobs)

    def _verify(self, *, quarantine: bool, jobs: int | None) -> StoreVerifyReport:
        blobs = list(self.iter_blobs())

        def check(item: tuple[str, Path]) -> BadBlob | None:
            name, path = item
            if not os.path.lexists(path):
                return None  # gone meanwhile (another process quarantined it)
            if path.is_symlink() or not path.is_file():
                return BadBlob(name, None, path)
            try:
                actual, _ = sha256_file(path)
            except FileNotFoundError:
                return None
            except OSError:
                return BadBlob(name, None, path)
            return None if actual == name else BadBlob(name, actual, path)

        from concurrent.futures import ThreadPoolExecutor  # here: start-up time

        with ThreadPoolExecutor(max_workers=jobs or min(8, (os.cpu_count() or 1) + 2)) as pool:
            results = [r for r in pool.map(check, blobs) if r is not None]
        if quarantine:
            moved = []
            for bad in results:
                try:
                    moved.append(self._quarantine(bad))
                except FileNotFoundError:
                    continue  # set aside by another process meanwhile
            results = moved
        return StoreVerifyReport(len(blobs), tuple(results))

    def intact(self, sha256: str, *, known_good: Path | str | None = None) -> bool:
        """True if blob *sha256* exists and its bytes hash to its name.

        A damaged blob is moved to ``quarantine/`` (with a warning naming both
        hashes), so it is never linked; the caller stores good bytes again.
        *known_good* names a file the caller has just hashed, or a house's file
        it accepts as it is: when it is the blob itself (the same inode), the
        blob is not read again. (A house's file linked to the blob is no proof
        of its bytes: edited in place, both changed.)
        """
        path = self._blob_file(sha256)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                self._set_aside_if_no_blob(path, sha256)  # (a link, a directory: no blob)
                return False
        except FileNotFoundError:
            return False
        except OSError:
            pass  # judged by reading it, below
        if known_good is not None:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.stat(known_good), os.lstat(path)):  # noqa: PTH116
                    return True
        try:
            actual: str | None = sha256_file(path)[0]
        except FileNotFoundError:
            return False
        except OSError as e:
            # Unreadable now (too many open files, an I/O error): not proof of
            # damage, so not set aside; and not linked unchecked either.
            raise StoreError(f"cannot read the store's blob {path}: "
                             f"{_describe_oserror(e)}") from e
        if actual == sha256:
            return True
        try:
            bad = self._quarantine(BadBlob(sha256, actual, Path(path)))
        except FileNotFoundError:
            return False  # another process found it first and set it aside
        log.warning("the store's blob %s was damaged (its bytes hash to sha256=%s): moved to %s",
                    sha256, actual, bad.quarantined_to)
        return False

    def _set_aside_if_damaged(self, path: str, sha256: str) -> bool:
        """Where a blob being published is there already: set it aside if it is no good.

        Not a regular file, or a small one (a METADATA file: hashed at once)
        whose bytes are not its name's; say if it was set aside, so the good
        bytes in hand take its place. (A big blob is checked before its bytes
        are staged at all: see :meth:`intact`.)
        """
        if self._set_aside_if_no_blob(path, sha256):
            return True
        try:
            if os.lstat(path).st_size > SMALL_BLOB:
                return False
        except FileNotFoundError:
            return True
        return not self.intact(sha256)

    def _set_aside_if_no_blob(self, path: str, sha256: str) -> bool:
        """Move what stands under a blob's name aside if it is no regular file; say if it was.

        (A symbolic link or a directory there would otherwise be kept as "the
        blob is there already", and linked into houses as it is.)
        """
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                return False
        except FileNotFoundError:
            return True
        try:
            bad = self._quarantine(BadBlob(sha256, None, Path(path)))
        except FileNotFoundError:
            return True
        log.warning("the store's blob %s was not a regular file: moved to %s", sha256,
                    bad.quarantined_to)
        return True

    def _quarantine(self, bad: BadBlob) -> BadBlob:
        qdir = self.root / "quarantine"
        qdir.mkdir(parents=True, exist_ok=True)
        dest = qdir / f"{bad.path.name}.{int(time.time())}.{os.getpid()}.{os.urandom(4).hex()}"
        bad.path.replace(dest)
        # A record an older version wrote described the good bytes; it goes too.
        if _HEX64.match(bad.expected):
            self.forget_record(bad.expected)
        log.warning("quarantined %s to %s", bad.path, dest)
        return BadBlob(bad.expected, bad.actual, bad.path, dest)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but not ours
    return True


class _UseLocks:
    """Per-process, re-entrant readers-writer locks on files (``flock``).

    A process takes the file lock once, however many threads or nested calls
    hold it; it is released when the last one leaves. Shared holders never
    wait for each other. Where ``flock`` is missing (Windows), both kinds are
    exclusive, which is slower but still safe.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[Path, tuple[int, bool, int]] = {}  # path -> (fd, shared, count)

    @contextlib.contextmanager
    def hold(self, path: Path, *, shared: bool, timeout: float) -> Iterator[None]:
        self._acquire(path, shared=shared, timeout=timeout)
        try:
            yield
        finally:
            self._release(path)

    def _acquire(self, path: Path, *, shared: bool, timeout: float) -> None:
        # Writers (shared) go before gc (exclusive): a writer that has to wait
        # holds "<lock>.waiting" shared meanwhile, and gc does not take the
        # lock while anyone holds that. Without it, gc run back to back (a
        # cron loop, a test) left a writer's polls almost no gap to land in.
        deadline = time.monotonic() + timeout
        waiting = path.with_name(path.name + ".waiting")
        wait_fd: int | None = None
        try:
            while True:
                with self._mutex:
                    held = self._held.get(path)
                    if held is not None:
                        fd, held_shared, count = held
                        if held_shared == shared or not held_shared:
                            # Same kind, or exclusive already covers shared.
                            self._held[path] = (fd, held_shared, count + 1)
                            return
                    elif shared or _lock_free(waiting):
                        new_fd = _lock_file(path, shared=shared)
                        if new_fd is not None:
                            self._held[path] = (new_fd, shared, 1)
                            return
                if shared and wait_fd is None:
                    wait_fd = _lock_file(waiting, shared=True)
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(str(path), timeout)
                time.sleep(0.05)
        finally:
            if wait_fd is not None:
                os.close(wait_fd)

    def _release(self, path: Path) -> None:
        with self._mutex:
            fd, shared, count = self._held[path]
            if count > 1:
                self._held[path] = (fd, shared, count - 1)
                return
            del self._held[path]
            os.close(fd)  # closing the descriptor releases the flock


_USE_LOCKS = _UseLocks()


def _lock_free(path: Path) -> bool:
    """True when nobody holds a lock on *path* (tested by taking it for an instant)."""
    fd = _lock_file(path, shared=False)
    if fd is None:
        return False
    os.close(fd)
    return True


def _lock_file(path: Path, *, shared: bool) -> int | None:
    """Open *path* and try to lock it without waiting; the fd, or None if it is taken."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
    try:
        if sys.platform == "win32":  # pragma: no cover - no flock: exclusive only
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
