"""The main job: requirement files in, a house that installs offline out."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from wheelhouse._fs import scratch_dir, write_atomic
from wheelhouse._pip import PipRunner, SubprocessPip
from wheelhouse.errors import (
    IntegrityError,
    InvalidInputError,
    NetworkError,
    ResolutionError,
    WheelhouseError,
)
from wheelhouse.house import FileEntry, House
from wheelhouse.requirements import (
    location_key,
    redact_url,
    refuse_requirements_file_as_requirement,
    requirements_from_pyproject,
    scan_requirement_files,
    split_direct_requirement,
)
from wheelhouse.store import Store
from wheelhouse.targets import Target

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from wheelhouse.acquire import BuiltWheel
    from wheelhouse.add import Incoming
    from wheelhouse.resolve import Resolved
    from wheelhouse.upstream import FileFacts, PageFacts

__all__ = ["BuildResult", "build"]

log = logging.getLogger(__name__)

#: Inside the house: the last build's resolution, for warm rebuilds.
CACHE_NAME = ".wheelhouse-build.json"
#: Inside the house: what the last build did.
REPORT_NAME = "wheelhouse-report.json"
#: Inside the house: per-target locks whose hashes are the house's files.
LOCKS_DIR = "locks"
_CACHE_FORMAT = 2
#: Resolutions remembered per house (a multi-target build and a host-only one, ...).
_CACHE_ENTRIES = 8
HOST = "host"


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What :func:`build` did."""

    #: The house written.
    house: Path
    #: For each target name, the files in the house that serve it.
    targets: dict[str, tuple[FileEntry, ...]]
    #: File names downloaded in this run.
    downloaded: tuple[str, ...] = ()
    #: File names built here from sdists or sources.
    built: tuple[str, ...] = ()
    #: File names whose bytes were already in the store.
    reused: tuple[str, ...] = ()
    #: True when the last resolution was reused and pip never ran.
    from_cache: bool = False
    #: Wall time in seconds.
    seconds: float = 0.0
    #: Targets that could not be served, with the reason (with ``allow_missing``).
    missing: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A summary for ``--json``."""
        return {
            "house": str(self.house),
            "targets": {t: [e.filename for e in files] for t, files in self.targets.items()},
            "downloaded": list(self.downloaded),
            "built": list(self.built),
            "reused": list(self.reused),
            "from_cache": self.from_cache,
            "seconds": round(self.seconds, 3),
            "missing": self.missing,
        }


#: pip settings that change how pip talks or shows progress, never what it resolves.
_NOT_RESOLUTION = frozenset({
    "PIP_DEFAULT_TIMEOUT", "PIP_TIMEOUT", "PIP_RETRIES", "PIP_PROGRESS_BAR",
    "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT", "PIP_VERBOSE", "PIP_QUIET",
    "PIP_NO_COLOR", "PIP_LOG", "PIP_LOG_FILE", "PIP_CACHE_DIR", "PIP_NO_CACHE_DIR",
    "PIP_ROOT_USER_ACTION", "PIP_REQUIRE_VIRTUALENV", "PIP_NO_PYTHON_VERSION_WARNING",
})


def _config_fingerprint() -> dict[str, str]:
    # The user's pip configuration changes what a resolution means: include it
    # (but not a timeout or a progress bar).
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith("PIP_") and k not in _NOT_RESOLUTION}
    files = [os.environ.get("PIP_CONFIG_FILE", ""), "/etc/pip.conf", "/etc/xdg/pip/pip.conf",
             str(Path.home() / ".pip" / "pip.conf"),
             str(Path.home() / ".config" / "pip" / "pip.conf")]
    if os.environ.get("VIRTUAL_ENV"):
        files.append(str(Path(os.environ["VIRTUAL_ENV"]) / "pip.conf"))
    for name in files:
        if name and name != os.devnull and Path(name).is_file():
            env[f"file:{name}"] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
    return env


P = ParamSpec("P")
R = TypeVar("R")


def _holding_store(func: Callable[P, R]) -> Callable[P, R]:
    """Hold the store's use lock shared for the whole call (see Store.in_use).

    From the first "the store has it" to the manifest naming it, gc waits
    rather than remove a blob the build counts on. The store is the one the
    call names, else the default one (the same lock either way).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = kwargs.get("store")
        with (store if isinstance(store, Store) else Store.open()).in_use():
            return func(*args, **kwargs)

    return wrapper


def _new_house_undone_on_failure(func: Callable[P, R]) -> Callable[P, R]:
    """A build that fails leaves no empty house behind where there was none."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from wheelhouse.house import removed_if_new_and_failed

        path = kwargs.get("house")
        if not isinstance(path, (str, Path)):
            return func(*args, **kwargs)
        with removed_if_new_and_failed(path):
            return func(*args, **kwargs)

    return wrapper


@_new_house_undone_on_failure
@_holding_store
def build(
    requirements: Sequence[str] = (),
    *,
    house: Path | str,
    requirement_files: Sequence[Path | str] = (),
    constraint_files: Sequence[Path | str] = (),
    targets: Sequence[Target] = (),
    store: Store | None = None,
    pip_options: Sequence[str] = (),
    jobs: int | None = None,
    offline: bool = False,
    refresh: bool = False,
    isolated: bool = False,
    allow_missing: bool = False,
    pip: PipRunner | None = None,
    progress: Callable[[str], None] | None = None,
    extras: Sequence[str] = (),
    groups: Sequence[str] = (),
    keep_sdists: bool = False,
) -> BuildResult:
    """Resolve, acquire and write a house for each target (default: this interpreter).

    *requirements* are requirement strings; *requirement_files* and
    *constraint_files* are pip requirements files (nested ``-r``/``-c``,
    ``--hash``, index options all honoured, by pip itself). *pip_options* are
    passed to every pip run (``--index-url``, ``--find-links``, ``--pre``, ...).
    A rebuild with the same inputs reuses the last resolution and the store
    without running pip; *refresh* resolves again; *offline* refuses to.
    *progress* receives one line per step (the CLI shows them on a terminal).
    A requirements file named ``pyproject.toml`` contributes its PEP 621
    dependencies, the optional-dependencies *extras* and the PEP 735 *groups*.
    """
    say = progress or (lambda _: None)
    started = time.perf_counter()
    store = store or Store.open()
    house_obj = House.open(house, create=True)
    pip = pip or SubprocessPip(isolated=isolated)
    jobs = jobs or min(8, (os.cpu_count() or 1) * 2)

    req_files = [Path(p) for p in requirement_files if Path(p).name != "pyproject.toml"]
    requirements = list(requirements)
    for p in requirement_files:
        if Path(p).name == "pyproject.toml":
            # PEP 621 dependencies (and the chosen extras and PEP 735 groups).
            requirements += requirements_from_pyproject(Path(p), extras=extras, groups=groups)
    con_files = [Path(p) for p in constraint_files]
    # A cheap scan for the cache key; lines are validated below before pip runs
    # (a warm rebuild reuses inputs that were valid when they were resolved).
    scan = scan_requirement_files(req_files, validate=False, constraints=con_files)
    if not requirements and not req_files:
        raise InvalidInputError("nothing to build", hint="name requirements or pass -r FILE")

    host = Target.host()
    wanted = list(targets) or [host]
    names = [HOST if t == host else str(t) for t in wanted]
    requirement_args: list[str] = []
    for p in req_files:
        requirement_args += ["-r", str(p.absolute())]
    for p in con_files:
        requirement_args += ["-c", str(p.absolute())]
    requirement_args += list(requirements)

    inputs: dict[str, Any] = {
        "inputs": scan.digest(), "requirements": list(requirements), "targets": names,
        "pip_options": list(pip_options), "isolated": isolated, "sdists": keep_sdists,
        "config": {} if isolated else _config_fingerprint(),
        "local": _local_fingerprints([line.text for line in scan.lines] + list(requirements)),
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    cached = _load_cache(house_obj, key)
    if cached is not None and not refresh and all(store.has(e["sha256"]) for e in cached):
        result = _build_from_cache(house_obj, store, cached, names, started)
        _write_outputs(house_obj, result, names)
        return result
    _validate_inputs(req_files + con_files, requirements)
    if offline and refresh:
        raise InvalidInputError("--offline and --refresh cannot be used together",
                                hint="--refresh resolves again, which needs the indexes")
    if offline:
        why = (_missing_from_store(store, cached) if cached is not None
               else _what_changed(house_obj, inputs))
        raise InvalidInputError(
            f"--offline: this house has no earlier resolution of these inputs whose files "
            f"are all in the store ({why})",
            hint="run the build once with the network (or with the same inputs as before), "
            "then --offline works",
        )

    with scratch_dir("wheelhouse-build-") as tmp:
        def upstream() -> list[str]:
            from wheelhouse.upstream import index_urls

            return index_urls(pip_options, scan.index_options, isolated=isolated)

        try:
            result = _build_cold(house_obj, store, pip, wanted, names, host, requirement_args,
                                 pip_options, jobs, allow_missing, tmp, started, say,
                                 keep_sdists, upstream, isolated)
        except ResolutionError as e:
            _raise_if_offline(e, upstream(), isolated)
            raise
    _save_cache(house_obj, key, result, _summary(inputs))
    _write_outputs(house_obj, result, names)
    return result


def _raise_if_offline(error: ResolutionError, indexes: list[str], isolated: bool) -> None:
    """Raise NetworkError when pip found nothing because no index could be reached."""
    if "(from versions: none)" not in error.message or not indexes:
        return
    from wheelhouse.upstream import unreachable

    dead = unreachable(indexes, isolated=isolated)
    if len(dead) == len(indexes):
        raise NetworkError(
            "pip found nothing because no package index could be reached: "
            + ", ".join(redact_url(u) for u in dead),
            hint="check the network, a proxy, and the index pip uses (pip config list); "
            "'wheelhouse build --offline' reuses the last resolution",
        ) from error


def _warn_if_sources_disagree(items: Sequence[Resolved],
                              pages: Mapping[str, PageFacts]) -> None:
    """Say when two index pages pip read offer one file name with different bytes.

    pip takes one of them without a word. A file name names one file: two
    sources that disagree mean one of them (a mirror, a proxy, a private
    index shadowing a public name) serves something else.
    """
    offered: dict[str, dict[str, list[str]]] = {}
    for url, facts in pages.items():
        for filename, (sha, _facts) in facts.items():
            offered.setdefault(filename, {}).setdefault(sha.lower(), []).append(url)
    said: set[str] = set()
    for item in items:
        shas = offered.get(item.filename)
        if not item.sha256 or not shas or item.filename in said:
            continue
        others = {sha: urls for sha, urls in shas.items() if sha != item.sha256.lower()}
        if not others:
            continue
        said.add(item.filename)
        other_sha, other_urls = min(others.items())
        log.warning("%s: the indexes disagree about its bytes: pip took sha256=%s (%s); %s "
                    "offers sha256=%s. A file name names one file: find out which source "
                    "is wrong before you trust either", item.filename, item.sha256,
                    redact_url(item.url), redact_url(other_urls[0]), other_sha)


def _fetch_facts(files: Sequence[tuple[str, str | None]], upstream: Callable[[], list[str]],
                 jobs: int, isolated: bool,
                 read: Mapping[str, PageFacts] | None = None,
                 ) -> dict[str, FileFacts]:
    """Upload time and yank state of each ``(filename, sha256)``, from the index pages.

    *read*: pages pip already fetched (see :func:`wheelhouse.upstream.fetch_file_facts`).
    """
    from wheelhouse.filenames import parse_filename
    from wheelhouse.upstream import fetch_file_facts

    wanted: dict[str, list[tuple[str, str]]] = {}
    for filename, sha256 in files:
        if sha256 and filename:
            wanted.setdefault(parse_filename(filename).name, []).append((filename, sha256))
    if not wanted:
        return {}
    indexes = upstream()
    if not indexes:
        return {}
    # Pages are small and the wait is the network's: more threads than cores.
    return fetch_file_facts(indexes, wanted, jobs=max(jobs, 8), isolated=isolated, read=read)


def _with_upstream_facts(files: list[Incoming], upstream: Callable[[], list[str]], jobs: int,
                         isolated: bool, say: Callable[[str], None],
                         known: Mapping[str, FileFacts],
                         read: Mapping[str, PageFacts] | None = None,
                         ) -> list[Incoming]:
    """Add each index file's upload time and yank state, as its index page gives them.

    *known* holds facts already read (for the host's files, while they downloaded).
    """
    from dataclasses import replace

    from_index = [i for i in files if i.filename and i.expected_sha256
                  and (i.origin or "").startswith(("https:", "http:", "file:"))]
    rest: list[tuple[str, str | None]] = [
        (i.filename, i.expected_sha256) for i in from_index
        if i.filename is not None and i.filename not in known]
    facts = dict(known)
    if rest:
        say(f"reading upload times and yank state for {len(rest)} more file(s)")
        facts.update(_fetch_facts(rest, upstream, jobs, isolated, read))
    found = {i.filename for i in from_index if i.filename in facts}
    return [
        replace(i, upload_time=facts[i.filename].upload_time, yanked=facts[i.filename].yanked)
        if i.filename in found else i
        for i in files
    ]


class _Kept:
    """What a keeping pip leaves in *folder*, taken as it comes.

    A thread hashes the files and parses the index pages while pip is still
    resolving. After :meth:`finish`, :meth:`adopt` gives the copy of a file pip
    downloaded, checked against the hash the resolution names, and *pages*
    maps each page pip read (by the URL it asked for) to what it says
    (:func:`wheelhouse.upstream.parse_saved_page`).
    """

    def __init__(self, folder: Path) -> None:
        from wheelhouse._pip import KeptReader

        self._reader = KeptReader(folder)
        #: (filename, sha256 in the link pip followed) -> (copy, sha256 of its bytes).
        self._files: dict[tuple[str, str], tuple[Path, str]] = {}
        self._used: set[Path] = set()
        self.pages: dict[str, PageFacts] = {}
        #: Wheel file name -> the PEP 658 metadata pip resolved it with.
        self.metadata: dict[str, Path] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wheelhouse-kept", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        from wheelhouse.store import sha256_file
        from wheelhouse.upstream import parse_saved_page

        kept = self._reader.read()
        self.metadata.update(kept.metadata)
        for key, path in kept.files.items():
            try:
                self._files[key] = (path, sha256_file(path)[0])
            except OSError:
                continue
        for url, (final, ctype, path) in kept.pages.items():
            page = parse_saved_page(final, ctype, path)
            if page is not None:
                self.pages[url] = page
            path.unlink(missing_ok=True)  # read: the page is not needed again

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._take()

    def finish(self) -> _Kept:
        """Stop watching and take what is left."""
        self._stop.set()
        self._thread.join()
        self._take()
        return self

    def adopt(self, item: Resolved) -> Path | None:
        """The copy pip left of *item*'s file, checked, or None.

        A copy whose bytes are not the ones the resolution names is an
        IntegrityError, never a reason to fetch the file again.
        """
        if not item.sha256:
            return None
        hit = self._files.get((item.filename, item.sha256))
        if hit is None:
            return None
        path, actual = hit
        if actual != item.sha256:
            raise IntegrityError(
                f"a downloaded file does not match its hash; nothing entered the store:\n"
                f"{item.name} {item.version} from {redact_url(item.url)}: expected "
                f"sha256={item.sha256}, got sha256={actual}",
                hint="the index or a proxy served different bytes; do not trust them",
            )
        self._used.add(path)
        return path

    def discard_unused(self) -> None:
        """Delete the copies nothing adopted (pip's backtracking leaves some)."""
        for path, _sha in self._files.values():
            if path not in self._used:
                path.unlink(missing_ok=True)


def _adopt_kept(items: Iterable[Resolved], kept: Sequence[_Kept],
                fetched: dict[str, Path]) -> dict[str, Resolved]:
    """Put into *fetched* the checked copies pip left of *items*; return the rest, to fetch."""
    rest: dict[str, Resolved] = {}
    for item in items:
        path = next((p for k in kept if (p := k.adopt(item)) is not None), None)
        if path is not None:
            fetched[item.url] = path
        else:
            rest[item.url] = item
    return rest


def _check_resolved_metadata(files: Sequence[Incoming], resolved_with: Mapping[str, Path]) -> None:
    """Each wheel's METADATA must be the PEP 658 metadata pip resolved it with.

    The index serves the two apart; a copy that differs (a mirror that made
    its own) makes pip resolve with dependencies the wheel does not have, and
    the house would lack what the wheel needs. pip refuses such a wheel at
    install time (since 26.2); the build refuses it before anything enters the
    store.
    """
    from wheelhouse.dists import read_dist_info
    from wheelhouse.filenames import parse_filename

    for item in files:
        name = item.filename or item.path.name
        kept = resolved_with.get(name)
        if kept is None or not name.endswith(".whl"):
            continue
        try:
            with item.path.open("rb") as f:
                own = read_dist_info(f, parse_filename(name), source=name).metadata
            index_copy = kept.read_bytes()
        except (OSError, WheelhouseError):
            continue  # the checks at ingest say what is wrong with the wheel
        if own is not None and own != index_copy:
            raise IntegrityError(
                f"the index's PEP 658 metadata for {name} is not the wheel's own METADATA "
                f"(sha256={hashlib.sha256(index_copy).hexdigest()} from the index, "
                f"sha256={hashlib.sha256(own).hexdigest()} in the wheel): pip resolved with "
                "dependencies the wheel may not have; nothing entered the store",
                hint="the index serves metadata that does not match its files; tell whoever "
                "runs it, or build from another index",
            )


def _keep_partial(store: Store, partial: dict[str, Path], items: dict[str, Resolved]) -> None:
    """Put files that did download into the store (not the house) before failing."""
    from wheelhouse.add import Incoming, store_files

    store_files(store, [
        Incoming(path, items[url].filename, url, (), items[url].sha256)
        for url, path in partial.items() if url in items
    ])


def _validate_inputs(files: list[Path], requirements: Sequence[str]) -> None:
    """Every requirement line well-formed (file:line errors), before pip runs."""
    from packaging.requirements import InvalidRequirement, Requirement

    refuse_requirements_file_as_requirement(requirements)
    scan_requirement_files(files)
    problems = []
    for text in requirements:
        if "://" in text or text.startswith((".", "/")) or text.endswith((".whl", ".tar.gz")):
            continue
        try:
            Requirement(text)
        except InvalidRequirement as e:
            problems.append(f"invalid requirement {text!r}: {str(e).splitlines()[0]}")
    if problems:
        raise InvalidInputError("; ".join(problems))


def _build_cold(
    house: House, store: Store, pip: PipRunner, wanted: list[Target], names: list[str],
    host: Target, requirement_args: list[str], pip_options: Sequence[str], jobs: int,
    allow_missing: bool, tmp: Path, started: float, say: Callable[[str], None],
    keep_sdists: bool = False, upstream: Callable[[], list[str]] = list,
    isolated: bool = False,
) -> BuildResult:
    from wheelhouse.acquire import build_wheel, download_files
    from wheelhouse.add import Incoming, ingest
    from wheelhouse.resolve import resolve_target, target_pip_options
    from wheelhouse.upstream import direct_fetcher

    # Files whose sha256 the index gave are fetched in this process where pip's
    # settings allow it (no proxy of pip's own); pip fetches the rest.
    # Reading pip's settings for it runs pip too (0.15 s): done while pip resolves.
    settings_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wheelhouse-settings")
    direct_later = settings_pool.submit(direct_fetcher, pip_options, isolated=isolated)
    settings_pool.shutdown(wait=False)

    # 1. The host first: it is the only target sdists can be built for, and the
    #    pure wheels built from them serve every other target too.
    resolutions: dict[str, list[Resolved]] = {}
    missing: dict[str, str] = {}
    host_wanted = HOST in names
    say("resolving for this interpreter")
    # What pip downloads and reads while it resolves is kept, not fetched again;
    # the pages are read as they come, while pip goes on.
    kept_pages: dict[str, PageFacts] = {}
    resolved_with: dict[str, Path] = {}  # wheel name -> the PEP 658 metadata pip used

    def keep(watch: _Kept) -> _Kept:
        watch.finish()
        kept_pages.update(watch.pages)
        resolved_with.update(watch.metadata)
        return watch

    host_kept = _Kept(tmp / "kept-host")
    try:
        resolutions[HOST] = resolve_target(pip, None, requirement_args, pip_options=pip_options,
                                           keep=tmp / "kept-host")
    except ResolutionError as e:
        if host_wanted and not allow_missing:
            raise
        if host_wanted:
            missing[HOST] = str(e)
        resolutions[HOST] = []
    finally:
        keep(host_kept)
    built: dict[str, BuiltWheel] = {}  # key: resolved URL of the sdist/source
    fetched: dict[str, Path] = {}
    downloads_needed = _adopt_kept(
        (i for i in resolutions[HOST]
         if i.kind in ("wheel", "sdist") and not (i.sha256 and store.has(i.sha256))),
        [host_kept], fetched)
    host_kept.discard_unused()
    direct = direct_later.result()
    # The index pages' facts (upload time, yank state) need only the names and
    # hashes pip chose: they are read while the files download.
    facts_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wheelhouse-facts")
    early_facts = facts_pool.submit(
        _fetch_facts, [(i.filename, i.sha256) for i in resolutions[HOST]
                       if i.kind in ("wheel", "sdist") and i.sha256], upstream, jobs, isolated,
        dict(kept_pages))
    facts_pool.shutdown(wait=False)
    if fetched:
        say(f"{len(fetched)} file(s) pip downloaded while it resolved are kept")
    if downloads_needed:
        say(f"downloading {len(downloads_needed)} file(s)")
    try:
        fetched.update(download_files(pip, list(downloads_needed.values()), tmp / "downloads",
                                      jobs=jobs, pip_options=pip_options, direct=direct,
                                      say=say))
    except NetworkError as e:
        _keep_partial(store, {**fetched, **getattr(e, "partial", {})},
                      {**downloads_needed, **{i.url: i for i in resolutions[HOST]}})
        raise

    def local(item: Resolved) -> Path:
        if item.url in fetched:
            return fetched[item.url]
        assert item.sha256 is not None
        return store.blob_path(item.sha256)

    wheel_dir = tmp / "built"
    for item in resolutions[HOST]:
        if item.kind in ("sdist", "source"):
            say(f"building {item.name} {item.version} (runs the package's own build code)")
        if item.kind == "sdist":
            built[item.url] = build_wheel(pip, item, str(local(item)), tmp / "builds",
                                          pip_options=pip_options, origin=item.url)
        elif item.kind == "source":
            assert item.source_spec is not None
            built[item.url] = build_wheel(pip, item, item.source_spec, tmp / "builds",
                                          pip_options=pip_options)
    pure_dir = wheel_dir / "pure"
    pure_dir.mkdir(parents=True)
    for b in built.values():
        if b.pure:
            os.link(b.path, pure_dir / b.path.name)

    # 2. Foreign targets: wheels only, plus the pure wheels built above. Their
    #    resolutions are independent: two pip processes at a time.
    foreign_targets = [(t, n) for t, n in zip(wanted, names, strict=True) if n != HOST]

    def resolve_foreign(target: Target, name: str, n: int) -> list[Resolved] | ResolutionError:
        say(f"resolving for {name}")
        try:
            return resolve_target(pip, target, requirement_args, pip_options=pip_options,
                                  find_links=[str(pure_dir)] if built else [],
                                  keep=tmp / f"kept-{n}")
        except ResolutionError as e:
            return e

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda tnn: resolve_foreign(*tnn),
                                [(t, name, n) for n, (t, name) in enumerate(foreign_targets)]))
    foreign_kept = [keep(_Kept(tmp / f"kept-{n}"))  # read once pip is done
                    for n in range(len(foreign_targets))]
    for (_target, name), answer in zip(foreign_targets, answers, strict=True):
        if not isinstance(answer, ResolutionError):
            resolutions[name] = answer
            continue
        if not allow_missing:
            raise ResolutionError(
                f"{answer.message}\n(target {name}: only wheels can serve another platform; "
                "a package with only an sdist needs a pure wheel built from it)",
                hint=answer.hint,
            ) from answer
        missing[name] = str(answer)
        resolutions[name] = []
    pure_by_name = {b.path.name: b for b in built.values() if b.pure}
    for n, (target, name) in enumerate(zip(wanted, names, strict=True)):
        if name == HOST:
            continue
        foreign = _adopt_kept(
            (i for i in resolutions.get(name, [])
             if not (i.filename in pure_by_name and i.url.startswith("file:"))
             and i.url not in fetched and not (i.sha256 and store.has(i.sha256))),
            foreign_kept, fetched)
        # pip fetches a wheel for another platform only when told that platform.
        if foreign:
            say(f"downloading {len(foreign)} file(s) for {name}")
        fetched.update(download_files(
            pip, list(foreign.values()), tmp / f"downloads-{n}", jobs=jobs,
            pip_options=pip_options, target_options=target_pip_options(target), direct=direct,
            say=say))
    for kept in foreign_kept:
        kept.discard_unused()
    _warn_if_sources_disagree([i for items in resolutions.values() for i in items], kept_pages)

    # 3. Everything into the store and the house, each file tagged with its targets.
    incoming: dict[str, Incoming] = {}
    served: dict[str, set[str]] = {}
    origin_of: dict[str, str] = {}
    reused: list[str] = []
    built_names: list[str] = []

    def want(filename: str, path: Path, origin: str, target: str, sha: str | None) -> None:
        served.setdefault(filename, set()).add(target)
        if filename not in incoming:
            incoming[filename] = Incoming(path, filename, origin, (), sha)
            origin_of[filename] = origin

    for name, items in resolutions.items():
        if name == HOST and not host_wanted:
            continue
        for item in items:
            if item.kind == "wheel":
                if item.filename in pure_by_name and item.url.startswith("file:"):
                    b = pure_by_name[item.filename]
                    want(b.path.name, b.path, f"built:{b.built_from}", name, None)
                    built_names.append(b.path.name)
                    continue
                if item.url not in fetched:
                    reused.append(item.filename)
                want(item.filename, local(item), item.url, name, item.sha256)
            else:
                b = built[item.url]
                want(b.path.name, b.path, f"built:{b.built_from}", name, None)
                built_names.append(b.path.name)
    if keep_sdists:
        _keep_sdists(pip, store, resolutions[HOST], built, local, names, want, pip_options,
                     jobs, tmp, say, kept_pages)
    # A pure wheel built for the host serves every target that chose it.
    files = [
        Incoming(i.path, i.filename, i.origin, tuple(sorted(served[f])), i.expected_sha256)
        for f, i in sorted(incoming.items())
    ]
    _check_resolved_metadata(files, resolved_with)
    files = _with_upstream_facts(files, upstream, jobs, isolated, say, early_facts.result(),
                                 kept_pages)
    if files:
        say(f"checking {len(files)} file(s) into the store and the house")
        ingest(house, store, files, jobs=jobs)
    manifest = house.read_manifest().by_filename()
    per_target = {
        name: tuple(sorted((manifest[f] for f, ts in served.items() if name in ts),
                           key=lambda e: e.filename))
        for name in names
    }
    downloaded = sorted({p.name for p in fetched.values()} & set(incoming))
    return BuildResult(
        house=house.root, targets=per_target, downloaded=tuple(downloaded),
        built=tuple(sorted(set(built_names))), reused=tuple(sorted(set(reused))),
        from_cache=False, seconds=time.perf_counter() - started, missing=missing,
    )


def _keep_sdists(
    pip: PipRunner, store: Store, host_items: list[Resolved], built: dict[str, BuiltWheel],
    local: Callable[[Resolved], Path], names: list[str],
    want: Callable[[str, Path, str, str, str | None], None], pip_options: Sequence[str],
    jobs: int, tmp: Path, say: Callable[[str], None],
    kept_pages: dict[str, PageFacts] | None = None,
) -> None:
    """Add the sdists wheels were built from, and the wheels their builds need.

    Index pages pip reads while it resolves the build dependencies go into *kept_pages*.
    """
    from wheelhouse.acquire import download_files
    from wheelhouse.dists import read_build_requires
    from wheelhouse.filenames import parse_filename
    from wheelhouse.resolve import resolve_target

    build_requires: set[str] = set()
    for item in host_items:
        if item.kind != "sdist" or item.url not in built:
            continue
        path = local(item)
        for name in names:
            want(item.filename, path, item.url, name, item.sha256)
        with path.open("rb") as f:
            build_requires.update(read_build_requires(f, parse_filename(item.filename),
                                                      source=item.filename))
    if not build_requires:
        return
    say(f"resolving the build dependencies of the sdists: {', '.join(sorted(build_requires))}")
    kept = _Kept(tmp / "kept-build-deps")
    try:
        needed = resolve_target(pip, None, sorted(build_requires), pip_options=pip_options,
                                keep=tmp / "kept-build-deps")
    finally:
        kept.finish()
        if kept_pages is not None:
            kept_pages.update(kept.pages)
    fetched: dict[str, Path] = {}
    missing = _adopt_kept(
        (r for r in needed if r.kind == "wheel" and not (r.sha256 and store.has(r.sha256))),
        [kept], fetched)
    kept.discard_unused()
    fetched.update(download_files(pip, list(missing.values()), tmp / "build-deps", jobs=jobs,
                                  pip_options=pip_options))
    for r in needed:
        if r.kind != "wheel":
            raise ResolutionError(
                f"the build dependency {r.name} {r.version} has no wheel; an offline build "
                "could not install it",
            )
        path = fetched.get(r.url) or store.blob_path(str(r.sha256))
        want(r.filename, path, r.url, "sdist-build", r.sha256)


def _read_cache(house: House) -> list[dict[str, Any]]:
    try:
        data = json.loads((house.root / CACHE_NAME).read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT:
        return []
    entries = data.get("entries")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _missing_from_store(store: Store, cached: list[dict[str, Any]]) -> str:
    """Which files of the last resolution the store lacks, and for which targets."""
    gone = [e for e in cached if not store.has(e["sha256"])]
    shown = "; ".join(f"{e['filename']} (sha256={e['sha256']}, for "
                      f"{', '.join(e.get('targets') or ['?'])})" for e in gone[:5])
    more = f"; and {len(gone) - 5} more" if len(gone) > 5 else ""
    return f"the store no longer has {len(gone)} of the files it chose: {shown}{more}"


def _load_cache(house: House, key: str) -> list[dict[str, Any]] | None:
    for entry in _read_cache(house):
        if entry.get("key") == key:
            files = entry.get("files")
            return files if isinstance(files, list) else None
    return None


def _save_cache(house: House, key: str, result: BuildResult, summary: dict[str, Any]) -> None:
    files: dict[str, dict[str, Any]] = {}
    for name, entries in result.targets.items():
        for e in entries:
            record = files.setdefault(e.filename, {"filename": e.filename, "sha256": e.sha256,
                                                   "origin": e.origin, "targets": []})
            record["targets"].append(name)
    entry = {"key": key, "inputs": summary,
             "files": sorted(files.values(), key=lambda r: r["filename"])}
    kept = [e for e in _read_cache(house) if e.get("key") != key]
    data = {"format": _CACHE_FORMAT, "entries": [entry, *kept][:_CACHE_ENTRIES]}
    write_atomic(house.root / CACHE_NAME, json.dumps(data, indent=1, sort_keys=True).encode())


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _summary(inputs: dict[str, Any]) -> dict[str, Any]:
    """What a resolution was made from, as digests only (pip settings may hold secrets)."""
    out: dict[str, Any] = {k: _digest(v) for k, v in inputs.items() if k not in ("config", "local")}
    out["config"] = {k: _digest(v) for k, v in inputs["config"].items()}
    out["local"] = {k: _digest(v) for k, v in inputs["local"].items()}
    out["targets_named"] = list(inputs["targets"])
    return out


_WHAT = {"inputs": "the requirement or constraint files changed",
         "requirements": "the requirements given on the command line differ",
         "targets": "other targets", "pip_options": "other pip options",
         "isolated": "--isolated differs", "sdists": "--keep-sdists differs"}


def _what_changed(house: House, inputs: dict[str, Any]) -> str:
    """Why no remembered resolution fits, compared with the latest one."""
    entries = _read_cache(house)
    if not entries:
        return "it has never been built with the network"
    last = entries[0].get("inputs")
    if not isinstance(last, dict):
        return "it has never been built with the network"
    now = _summary(inputs)
    reasons = [text for field, text in _WHAT.items() if last.get(field) != now.get(field)]
    if field_changes := _changed_names(last.get("config"), now["config"]):
        reasons.append("the pip configuration changed (" + ", ".join(field_changes) + ")")
    if local := _changed_names(last.get("local"), now["local"]):
        reasons.append("local projects changed (" + ", ".join(local) + ")")
    if "other targets" in reasons:
        reasons[reasons.index("other targets")] = (
            f"other targets (last built for {', '.join(last.get('targets_named', []))})")
    return "since the last resolution: " + "; ".join(reasons or ["something else changed"])


def _changed_names(before: object, now: dict[str, str]) -> list[str]:
    old = before if isinstance(before, dict) else {}
    names = sorted(set(old) | set(now))
    return [f"{n} {'added' if n not in old else 'removed' if n not in now else 'changed'}"
            for n in names if old.get(n) != now.get(n)]


#: Directories a local project's fingerprint never looks into.
_NOT_SOURCE = {".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "__pycache__",
               "build", "dist", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def _local_fingerprints(texts: Sequence[str]) -> dict[str, str]:
    """For each requirement that is a local directory or file: a digest of what is in it.

    pip rebuilds a local project every time; the last resolution may be reused
    only while no file in it changed: names and contents, not modification
    times (a fresh checkout in CI, a ``touch``, a Docker ``COPY`` give every
    file a new time: the project was built again, into a wheel whose zip
    times differ, and the house refused the same name with other bytes).
    """
    from wheelhouse.store import sha256_file

    out: dict[str, str] = {}
    for text in texts:
        spec = split_direct_requirement(text)[0]  # no extras ("./project[fast]") or marker
        spec = location_key(spec) if spec.startswith("file:") else spec.split("#", 1)[0].strip()
        if not spec or not (spec.startswith((".", "/", "~")) or os.sep in spec):
            continue
        path = Path(spec).expanduser()
        try:
            real = path.resolve()
        except OSError:
            continue
        h = hashlib.sha256()
        if real.is_dir():
            for root, dirs, names in os.walk(real):
                dirs[:] = sorted(d for d in dirs
                                 if d not in _NOT_SOURCE and not d.endswith(".egg-info"))
                for name in sorted(names):
                    file = Path(root) / name
                    try:
                        digest = sha256_file(file)[0]
                    except OSError:
                        continue  # (a socket, a FIFO, unreadable: not a source file)
                    rel = file.relative_to(real).as_posix()
                    h.update(f"{rel}\0{digest}\n".encode())
        elif real.is_file():
            try:
                h.update(sha256_file(real)[0].encode())
            except OSError:
                continue
        else:
            continue
        out[str(real)] = h.hexdigest()
    return out


def _build_from_cache(house: House, store: Store, cached: list[dict[str, Any]],
                      names: list[str], started: float) -> BuildResult:
    manifest = house.read_manifest().by_filename()
    missing_in_house = [r for r in cached if r["filename"] not in manifest]
    if missing_in_house:
        from wheelhouse.add import Incoming, ingest

        # The house lost files the store still has: link them back.
        ingest(house, store, [
            Incoming(store.blob_path(r["sha256"]), r["filename"], r.get("origin"),
                     tuple(r["targets"]), r["sha256"])
            for r in missing_in_house
        ])
        manifest = house.read_manifest().by_filename()
    else:
        for r in cached:
            house.link_from_store(store, manifest[r["filename"]])
    per_target = {
        name: tuple(manifest[r["filename"]] for r in cached if name in r["targets"])
        for name in names
    }
    return BuildResult(
        house=house.root, targets=per_target,
        reused=tuple(r["filename"] for r in cached), from_cache=True,
        seconds=time.perf_counter() - started,
    )


def _write_outputs(house: House, result: BuildResult, names: list[str]) -> None:
    """The report and, per target, a requirements lock whose hashes are the house's files."""
    report = {
        "format": 1,
        "from_cache": result.from_cache,
        "seconds": round(result.seconds, 3),
        "missing": result.missing,
        "targets": {
            name: [
                {
                    "name": e.project, "version": e.version, "filename": e.filename,
                    "sha256": e.sha256, "size": e.size, "origin": e.origin,
                    "action": ("built" if e.filename in result.built
                               else "downloaded" if e.filename in result.downloaded
                               else "reused"),
                }
                for e in entries
            ]
            for name, entries in result.targets.items()
        },
    }
    write_atomic(house.root / REPORT_NAME,
                 json.dumps(report, indent=1, sort_keys=True).encode() + b"\n")
    locks = house.own_subdir(LOCKS_DIR)
    for name in names:
        entries = result.targets.get(name, ())
        write_atomic(locks / f"{name}.requirements.txt", render_requirements_lock(name, entries))
        write_atomic(locks / f"pylock.{name}.toml", render_pylock(entries))


def _toml_str(value: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def render_pylock(entries: Sequence[FileEntry]) -> bytes:
    """A PEP 751 lock (``pylock.<target>.toml``) of the house's files for one target.

    Paths are relative to the lock (``../files/NAME``), so the lock travels with
    the house.

    >>> render_pylock([]).decode().splitlines()[0]
    'lock-version = "1.0"'
    """
    by_pin: dict[tuple[str, str], list[FileEntry]] = {}
    for e in entries:
        by_pin.setdefault((e.project, e.version), []).append(e)
    lines = ['lock-version = "1.0"', 'created-by = "wheelhouse"']
    for (project, version), files in sorted(by_pin.items()):
        lines += ["", "[[packages]]", f"name = {_toml_str(project)}",
                  f"version = {_toml_str(version)}"]
        for e in sorted(files, key=lambda f: f.filename):
            common = [f"name = {_toml_str(e.filename)}",
                      f"path = {_toml_str('../files/' + e.filename)}",
                      f"size = {e.size}"]
            if e.upload_time:
                common.append(f"upload-time = {e.upload_time}")
            common.append(f"hashes = {{sha256 = {_toml_str(e.sha256)}}}")
            if e.kind == "wheel":
                lines += ["", "[[packages.wheels]]", *common]
            else:
                lines += ["", "[packages.sdist]", *common]
    return ("\n".join(lines) + "\n").encode()


def render_requirements_lock(target: str, entries: Sequence[FileEntry]) -> bytes:
    """A pip requirements file pinning every project, with the house files' hashes.

    >>> render_requirements_lock("host", []).decode().splitlines()[0]
    '# wheelhouse lock for target host: every hash is a file in this house'
    """
    by_pin: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        by_pin.setdefault((e.project, e.version), []).append(e.sha256)
    lines = [f"# wheelhouse lock for target {target}: every hash is a file in this house",
             ("# in the house directory: pip install --require-hashes --no-index "
              f"--find-links files -r locks/{target}.requirements.txt")]
    for (project, version), hashes in sorted(by_pin.items()):
        hash_lines = " \\\n".join(f"    --hash=sha256:{h}" for h in sorted(hashes))
        lines.append(f"{project}=={version} \\\n{hash_lines}")
    return ("\n".join(lines) + "\n").encode()

