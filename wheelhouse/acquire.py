"""Acquisition: download the files a resolution chose, and build wheels from sources."""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wheelhouse.dists import check_wheel_contents
from wheelhouse.errors import (
    BuildError,
    HashMismatchError,
    IntegrityError,
    InvalidDistributionError,
    NetworkError,
    PipError,
    WheelhouseError,
)
from wheelhouse.filenames import parse_filename, validate_component

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wheelhouse._pip import PipRunner
    from wheelhouse.resolve import Resolved

__all__ = ["BuiltWheel", "build_wheel", "download_files"]

log = logging.getLogger(__name__)


#: Files one pip process downloads before another is started beside it.
_FILES_PER_PROCESS = 24


def local_file(url: str) -> Path | None:
    """The regular file a ``file:`` URL names, or None (another scheme, or no such file)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(urllib.request.url2pathname(parts.path))
    return path if path.is_file() else None


class DirectFetcher(Protocol):
    """Downloads a file in this process (see :func:`wheelhouse.upstream.direct_fetcher`)."""

    def proxied(self, url: str) -> bool:
        """True when *url* must go through a proxy (then pip fetches it)."""

    def download(self, url: str, dest: Path, sha256: str) -> None:
        """Stream *url* into *dest*, checking its sha256; raise OSError on failure."""

    def close(self) -> None:
        """Close the connections."""


class _Progress:
    """Files done, bytes and rate, said at most twice a second (and at the end)."""

    def __init__(self, total: int, say: Callable[[str], None] | None) -> None:
        self.total = total
        self.say = say
        self.files = 0
        self.bytes = 0
        self.started = self.shown = time.monotonic()
        self.lock = threading.Lock()

    def done(self, size: int) -> None:
        with self.lock:
            self.files += 1
            self.bytes += size
            if time.monotonic() - self.shown >= 0.5:
                self._show()

    def end(self) -> None:
        with self.lock:
            self._show()

    def _show(self) -> None:
        now = self.shown = time.monotonic()
        if self.say is not None:
            rate = self.bytes / max(now - self.started, 1e-3) / 1e6
            self.say(f"downloaded {self.files}/{self.total} file(s), "
                     f"{self.bytes / 1e6:.1f} MB, {rate:.1f} MB/s")


def _safe_name(filename: str) -> bool:
    """A URL's last segment that is one safe file name (else pip deals with it)."""
    try:
        validate_component(filename)
    except WheelhouseError:
        return False
    return True


def _fetch_directly(direct: DirectFetcher, items: list[Resolved], dest: Path, jobs: int,
                    result: dict[str, Path],
                    say: Callable[[str], None] | None = None) -> list[Resolved]:
    """Fetch what can be fetched in this process into *result*; return what pip must fetch."""
    mine = [i for i in items if i.sha256 and _safe_name(i.filename) and not direct.proxied(i.url)]
    if not mine:
        return items
    dest.mkdir(parents=True, exist_ok=True)
    progress = _Progress(len(mine), say)

    def one(item: Resolved) -> Path | None:
        assert item.sha256 is not None
        path = dest / item.sha256 / item.filename
        path.parent.mkdir(exist_ok=True)
        try:
            direct.download(item.url, path, item.sha256)
        except HashMismatchError as e:
            raise IntegrityError(
                f"a downloaded file does not match its hash; nothing entered the store:\n"
                f"{item.name} {item.version} from {item.url}: expected sha256={e.expected}, "
                f"got sha256={e.actual}",
                hint="the index or a proxy served different bytes; do not trust them",
            ) from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            log.debug("fetching %s here failed (%s): pip will", item.url, e)
            return None
        progress.done(path.stat().st_size)
        return path

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max(jobs, 8), len(mine)))) as pool:
            got = list(pool.map(one, mine))
        progress.end()
    finally:
        direct.close()
    for item, path in zip(mine, got, strict=True):
        if path is not None:
            result[item.url] = path
    return [i for i in items if i.url not in result]


def download_files(
    pip: PipRunner,
    items: Sequence[Resolved],
    dest: Path,
    *,
    jobs: int,
    pip_options: Sequence[str] = (),
    target_options: Sequence[str] = (),
    direct: DirectFetcher | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Download each item's file with pip (honouring the user's index, auth, proxy, CA).

    Files go to *dest*; the result maps each item's URL to its local path.
    pip checks the index's sha256 where there is one (hash-checking mode per
    chunk); the caller checks every byte again before anything enters the store.
    A ``file:`` URL is not copied: its path is returned as it is. The rest
    downloads in up to *jobs* pip processes in parallel. *target_options*
    (``--platform`` and friends) let pip fetch wheels for another platform.
    """
    result: dict[str, Path] = {}
    remote: list[Resolved] = []
    for item in items:
        local = local_file(item.url)
        if local is not None:
            # A file: URL (a local index or find-links folder) is read where it
            # lies: the store copies it, checking the index's sha256, and a pip
            # process to copy it first would only cost time.
            result[item.url] = local
        else:
            remote.append(item)
    if direct is not None:
        remote = _fetch_directly(direct, remote, dest / "direct", jobs, result, say)
    if remote and say is not None:
        say(f"pip downloads {len(remote)} file(s)")
    if not remote:
        return result
    # pip's start-up (~0.5 s of CPU) is the cost on a fast network, the
    # transfer on a slow one: a process per _FILES_PER_PROCESS files, at most *jobs*.
    count = max(1, min(jobs, -(-len(remote) // _FILES_PER_PROCESS)))
    chunks: list[list[Resolved]] = [[] for _ in range(count)]
    for i, item in enumerate(sorted(remote, key=lambda r: r.url)):
        chunks[i % len(chunks)].append(item)

    def run(index: int, chunk: list[Resolved]) -> dict[str, Path]:
        folder = dest / f"chunk-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        reqs = folder.with_suffix(".txt")
        all_hashed = all(r.sha256 for r in chunk)
        lines = [
            f"{r.url}" + (f" --hash=sha256:{r.sha256}" if r.sha256 else "") for r in chunk
        ]
        reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = ["download", "--no-deps", "--quiet", "--dest", str(folder), "-r", str(reqs),
                *pip_options, *target_options]
        if all_hashed:
            args.append("--require-hashes")
        try:
            pip(args)
        except PipError as e:
            names = ", ".join(f"{r.name} {r.version}" for r in chunk)
            if "DO NOT MATCH THE HASHES" in e.stderr:
                raise IntegrityError(
                    f"a downloaded file does not match its hash; nothing entered the store:\n"
                    f"{e.stderr_tail}",
                    hint="the index or a proxy served different bytes; do not trust them",
                ) from e
            raise NetworkError(
                f"downloading {names} failed:\n{e.stderr_tail}",
                hint="files already downloaded stay in the store; run the build again",
            ) from e
        out = {}
        for r in chunk:
            path = folder / r.filename
            if not path.is_file():
                raise NetworkError(f"pip did not save {r.filename} from {r.url}")
            out[r.url] = path
        return out

    failure: WheelhouseError | None = None
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        futures = [pool.submit(run, i, chunk) for i, chunk in enumerate(chunks)]
        for future in futures:
            try:
                result.update(future.result())
            except WheelhouseError as e:
                failure = failure or e
    if failure is not None:
        # Keep what finished: the caller puts it in the store before giving up.
        failure.partial = dict(result)  # type: ignore[attr-defined]
        raise failure
    return result


@dataclass(frozen=True, slots=True)
class BuiltWheel:
    """A wheel built here from an sdist or a source tree."""

    #: The wheel file (in a temp directory).
    path: Path
    #: What it was built from (an sdist file name or a source spec).
    built_from: str
    #: True if it is pure (``py3-none-any`` and the like): it serves every target.
    pure: bool


def build_wheel(pip: PipRunner, item: Resolved, source: str, dest: Path,
                *, pip_options: Sequence[str] = (), origin: str | None = None) -> BuiltWheel:
    """Build one wheel with ``pip wheel --no-deps`` and check it is what was asked for.

    Building runs the project's own build code, in a temp directory, never in
    the store or a house. The wheel must carry the resolved name and version.
    """
    out = dest / f"build-{item.name}-{item.version}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), *pip_options, source])
    except PipError as e:
        raise BuildError(
            f"building {item.name} {item.version} from {source} failed:\n{e.stderr_tail}",
            hint="the build needs its compilers and build dependencies; see the log above",
        ) from e
    wheels = sorted(p for p in out.iterdir() if p.name.endswith(".whl"))
    if len(wheels) != 1:
        raise BuildError(f"building {item.name} {item.version} produced {len(wheels)} wheels")
    fn = parse_filename(wheels[0].name)
    if fn.name != item.name or str(fn.version) != item.version:
        raise BuildError(
            f"building {item.name} {item.version} produced {wheels[0].name}: "
            "a different project or version"
        )
    try:
        # Every member against RECORD, every name inside the install directory:
        # a build runs someone's code, and what it wrote is checked before it
        # enters the store (what pip would refuse at install must not get in).
        check_wheel_contents(wheels[0], fn)
    except InvalidDistributionError as e:
        raise BuildError(
            f"building {item.name} {item.version} produced a malformed wheel "
            f"{wheels[0].name}: {e.reason}",
            hint="the project's build wrote a wheel pip would refuse; nothing was stored",
        ) from e
    pure = all(t.platform == "any" and t.abi == "none" for t in fn.tags)
    return BuiltWheel(wheels[0], origin or source, pure)
