"""Choose, from a house alone, the wheels that satisfy a requirement set on one target.

Pure logic: a :class:`Environment` (the tags, marker values and Python version of
an interpreter, real or described by a :class:`~wheelhouse.targets.Target`), the
house's manifest and a way to read each wheel's core metadata (and, for
``--hash=sha384:``/``sha512:`` pins, a way to digest a file) go in; the chosen
files, or a :class:`UnsatisfiableError` naming every unmet requirement and why, come
out. No network, no pip. Backtracking is resolvelib's (the resolver pip and pdm
use), so a house holding several versions of a project resolves as pip would.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import platform as _platform
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, parse_tag
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from resolvelib import AbstractProvider

from wheelhouse.dists import parse_email, scan_headers
from wheelhouse.errors import InvalidInputError, ResolutionError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

    from wheelhouse.house import FileEntry
    from wheelhouse.requirements import RequirementLine
    from wheelhouse.targets import Target

#: The ``--hash`` algorithms pip accepts (sha256 or stronger), and so do we.
HASH_ALGORITHMS = ("sha256", "sha384", "sha512")

__all__ = [
    "HASH_ALGORITHMS",
    "Environment",
    "FileDigest",
    "Resolution",
    "Unmet",
    "UnsatisfiableError",
    "WantedSet",
    "locked_versions",
    "map_built_paths",
    "parse_requires_dist",
    "resolve_in_house",
]

log = logging.getLogger(__name__)


class FileDigest(Protocol):
    """Reads a house file and gives the hex digest of its bytes (``hashlib`` algorithm name)."""

    def __call__(self, entry: FileEntry, algorithm: str) -> str:
        """The hex digest of *entry*'s bytes; raises WheelhouseError if they cannot be read."""
        ...


@dataclass(frozen=True, slots=True)
class Environment:
    """What an interpreter accepts: tags (most preferred first), markers, Python version."""

    #: A short name for messages, such as ``cp312-manylinux_2_28_x86_64``.
    name: str
    #: Accepted wheel tags, most preferred first.
    tags: tuple[Tag, ...]
    #: PEP 508 marker values (``python_version``, ``sys_platform``, ...).
    markers: Mapping[str, str]
    #: The Python version ``Requires-Python`` is checked against.
    python_version: Version

    @classmethod
    def for_target(cls, target: Target) -> Environment:
        """Describe a target given by version and platform (no interpreter to ask)."""
        markers = _target_markers(target)
        # pip pads --python-version X.Y to X.Y.0 for Requires-Python (=== too).
        return cls(str(target), tuple(target.tags()), markers, Version(target.full_version))

    def tag_rank(self) -> dict[Tag, int]:
        """Each accepted tag's rank (0 is best)."""
        return {tag: i for i, tag in enumerate(self.tags)}


_IMPLEMENTATIONS = {"cp": ("cpython", "CPython"), "pp": ("pypy", "PyPy"),
                    "gp": ("graalpy", "GraalVM"), "py": ("cpython", "CPython")}


def _target_markers(target: Target) -> dict[str, str]:
    major, minor = target.python_version
    impl_name, impl = _IMPLEMENTATIONS.get(target.implementation, ("cpython", "CPython"))
    platforms = [p for p in target.platforms if p != "any"]
    if not platforms:  # pure-only target: describe the host's platform
        system, sys_platform, os_name = _platform.system(), _host_sys_platform(), _host_os_name()
        machine = _platform.machine()
    else:
        system, sys_platform, os_name, machine = _describe_platform(platforms[0])
    return {
        "implementation_name": impl_name,
        "implementation_version": target.full_version,
        "os_name": os_name,
        "platform_machine": machine,
        "platform_python_implementation": impl,
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": target.full_version,
        "python_version": f"{major}.{minor}",
        "sys_platform": sys_platform,
    }


def _host_sys_platform() -> str:
    import sys

    return sys.platform


def _host_os_name() -> str:
    import os

    return os.name


_WIN_MACHINES = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}


def _describe_platform(tag: str) -> tuple[str, str, str, str]:
    """``(platform_system, sys_platform, os_name, platform_machine)`` for a platform tag."""
    if tag in _WIN_MACHINES:
        return "Windows", "win32", "nt", _WIN_MACHINES[tag]
    m = re.match(r"macosx_\d+_\d+_(.+)\Z", tag)
    if m:
        arch = m.group(1)
        return "Darwin", "darwin", "posix", "arm64" if arch in ("arm64", "universal2") else arch
    m = re.match(r"(?:many|musl)linux_\d+_\d+_(.+)\Z|manylinux\d+_(.+)\Z|linux_(.+)\Z", tag)
    if m:
        return "Linux", "linux", "posix", next(g for g in m.groups() if g)
    return _platform.system(), _host_sys_platform(), _host_os_name(), _platform.machine()


# ---------------------------------------------------------------------------
# What is asked for


@dataclass(slots=True)
class ReleaseControl:
    """Which projects may take pre-releases: pip 26.3's ``--all-releases`` / ``--only-final``.

    Each switch is applied in order, as pip's ``ReleaseControl`` applies it: a
    value is ``:all:``, ``:none:`` or project names with commas between them;
    naming a project in one set takes it out of the other; ``:all:`` empties
    both sets first; ``--pre`` adds ``:all:`` to the first set and leaves the
    other as it is.
    """

    all_releases: set[str] = field(default_factory=set)
    only_final: set[str] = field(default_factory=set)

    def apply(self, kind: str, value: str = "") -> None:
        """Apply one switch: *kind* is ``pre``, ``all_releases`` or ``only_final``."""
        if kind == "pre":
            self.all_releases.add(":all:")
            return
        target, other = ((self.all_releases, self.only_final) if kind == "all_releases"
                         else (self.only_final, self.all_releases))
        names = value.split(",")
        while ":all:" in names:
            other.clear()
            target.clear()
            target.add(":all:")
            del names[:names.index(":all:") + 1]
            if ":none:" not in names:
                return
        for name in names:
            if name == ":none:":
                target.clear()
                continue
            canonical = canonicalize_name(name)
            other.discard(canonical)
            target.add(canonical)

    def allows_prereleases(self, name: NormalizedName) -> bool | None:
        """True: pre-releases allowed; False: final releases only; None: pip's default rule."""
        if name in self.all_releases:
            return True
        if name in self.only_final:
            return False
        if ":all:" in self.all_releases:
            return True
        if ":all:" in self.only_final:
            return False
        return None


@dataclass(slots=True)
class WantedSet:
    """Requirements, constraints and hash pins, as read from files or a command line."""

    #: Top-level requirements with where each was stated.
    requirements: list[tuple[Requirement, str]] = field(default_factory=list)
    #: Constraints (``-c``), by project.
    constraints: dict[NormalizedName, list[tuple[SpecifierSet, str]]] = field(default_factory=dict)
    #: Allowed digests by project, then by algorithm (``sha256``, ``sha384``, ``sha512``):
    #: as in pip, a file is accepted when any one of its digests is among them.
    hashes: dict[NormalizedName, dict[str, set[str]]] = field(default_factory=dict)
    #: True to allow pre-releases everywhere (``--pre``).
    pre: bool = False
    #: True when every file must match a ``--hash`` (pip's hash-checking mode).
    require_hashes: bool = False
    #: True with ``--no-require-hashes``: a ``--hash`` checks its own
    #: requirement's files only, and turns no hash-checking mode on.
    no_require_hashes: bool = False
    #: The pre-release switches, in the order given (``--pre`` first when it
    #: came from the command line): ``(kind, value)`` as ``ReleaseControl.apply`` takes.
    release_switches: list[tuple[str, str]] = field(default_factory=list)

    @property
    def release_switches_in_effect(self) -> list[tuple[str, str]]:
        """The pre-release switches that decide: those given, else ``--pre`` alone when set.

        (:meth:`from_lines` puts ``--pre`` among the switches; a set made
        otherwise may have ``pre`` and no switches.)

        >>> WantedSet(pre=True).release_switches_in_effect
        [('pre', '')]
        """
        return self.release_switches or [("pre", "")] * self.pre

    @property
    def release(self) -> ReleaseControl:
        """What the switches in effect add up to."""
        control = ReleaseControl()
        for kind, value in self.release_switches_in_effect:
            control.apply(kind, value)
        return control

    @classmethod
    def from_lines(
        cls, lines: Iterable[RequirementLine], *, pre: bool = False, require_hashes: bool = False,
        no_require_hashes: bool = False, release_switches: Sequence[tuple[str, str]] = (),
    ) -> WantedSet:
        """Build from requirement-file lines; raises InvalidInputError naming file:line.

        *release_switches* are a scan's ``release_control``; *pre* is the command
        line's ``--pre``, applied before them (as pip applies its own).
        """
        wanted = cls(pre=pre, require_hashes=require_hashes, no_require_hashes=no_require_hashes)
        wanted.release_switches = [("pre", "")] * pre + list(release_switches)
        problems: list[str] = []
        for line in lines:
            try:
                req = Requirement(line.text)
            except InvalidRequirement:
                problems.append(
                    f"{line.where}: {line.shown!r} is a path or URL; installing from a house "
                    "takes project names (name, name==1.0, name[extra]>=2)")
                continue
            if req.url and not line.constraint:
                problems.append(
                    f"{line.where}: {line.shown!r} names a URL that no file in the house came "
                    "from; installing from a house takes project names, and never goes online")
                continue
            if line.constraint:
                if req.url or req.extras:
                    problems.append(f"{line.where}: a constraint takes a name and versions "
                                    f"only: {line.shown!r}")
                    continue
                wanted.constraints.setdefault(canonicalize_name(req.name), []).append(
                    (req.specifier, line.where))
                continue
            wanted.requirements.append((req, line.where))
            if line.hashes:
                wanted.require_hashes |= not no_require_hashes
                digests = wanted.hashes.setdefault(canonicalize_name(req.name), {})
                for h in line.hashes:
                    algorithm, _, value = h.partition(":")
                    if algorithm not in HASH_ALGORITHMS or not value:
                        # Never ignore a pin: one we cannot check is an error.
                        problems.append(f"{line.where}: unsupported --hash {h!r} (pip takes "
                                        "sha256, sha384 or sha512)")
                        continue
                    digests.setdefault(algorithm, set()).add(value.lower())
        if wanted.require_hashes:
            # As pip: in hash-checking mode every requirement names one version.
            problems += [
                f"{where}: {req} is not pinned with == (hash-checking mode, as with --hash "
                "or --require-hashes, needs one exact version per requirement)"
                for req, where in wanted.requirements if not _is_pinned([req.specifier])]
        if problems:
            raise InvalidInputError(
                f"{len(problems)} problem(s) in the requirements:\n  " + "\n  ".join(problems))
        return wanted

    def add(self, text: str, where: str = "command line") -> None:
        """Add one requirement given as a string."""
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            raise InvalidInputError(
                f"{where}: invalid requirement {text!r} ({str(e).splitlines()[0]})",
                hint="use a project name with an optional version, e.g. 'requests>=2'") from None
        if req.url:
            raise InvalidInputError(
                f"{where}: {text!r} names a URL; installing from a house takes project names, "
                "and never goes online",
                hint="build the house from it first (wheelhouse build), then name the project")
        self.requirements.append((req, where))


def locked_versions(house_root: Path) -> dict[str, set[str]]:
    """Project -> the versions the house's per-target locks pin: what its last builds chose."""
    out: dict[str, set[str]] = {}
    for lock in sorted((house_root / "locks").glob("*.requirements.txt")):
        try:
            text = lock.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.MULTILINE):
            out.setdefault(canonicalize_name(m.group(1)), set()).add(m.group(2))
    return out


def map_built_paths(lines: Iterable[RequirementLine], files: Iterable[FileEntry],
                    locked: Mapping[str, Collection[str]] | None = None,
                    ) -> list[RequirementLine]:
    """Requirement lines with local paths and URLs replaced by what the house built from them.

    ``build`` accepts ``./my-project``, ``dist/pkg-1.0.tar.gz`` or ``pkg @ https://…``
    lines and records where each file came from; ``install`` and ``check`` take the
    same file and read those lines as ``name==version`` of that file, with the
    line's extras and marker. Matched by the same path or URL, else, for a
    local path (another machine, another directory), by the one origin with
    the same last component. A project built from there at several versions
    (edited, given a new version, built again) reads as the one *locked*
    (:func:`locked_versions`: what the last build chose) pins, else as the
    highest; not a yanked one while another is not. A line no file came from,
    or from which several projects came, is left as it is.
    """
    from wheelhouse.requirements import (
        RequirementLine,
        location_key,
        looks_like_path_or_url,
        split_direct_requirement,
    )

    # origin -> (project, version, yanked) of every file built from it.
    by_origin: dict[str, set[tuple[str, str, bool]]] = {}
    for e in files:
        if e.origin:
            key = location_key(e.origin.removeprefix("built:"))
            by_origin.setdefault(key, set()).add((e.project, e.version, e.yanked is not None))
    # A local directory's last component -> the origins that end with it.
    by_base: dict[str, list[str]] = {}
    for key in by_origin:
        if "://" not in key and (base := key.rstrip("/").rsplit("/", 1)[-1]):
            by_base.setdefault(base, []).append(key)
    out: list[RequirementLine] = []
    for line in lines:
        text = line.text
        name_part, at, _ = text.partition(" @ ")
        if not (at or looks_like_path_or_url(text)):
            out.append(line)
            continue
        location, extras, marker = split_direct_requirement(text)
        key = location_key(location)
        found = by_origin.get(key)
        if found is None and "://" not in key:
            # Another machine or directory: the one origin with the same last
            # component (a local path only; two such origins are ambiguous).
            origins = by_base.get(key.rstrip("/").rsplit("/", 1)[-1], [])
            found = by_origin[origins[0]] if len(origins) == 1 else None
        chosen = _latest_built(found or set(), locked or {})
        if chosen is not None:
            project, version = chosen
            if not at or canonicalize_name(name_part.split("[", 1)[0].strip()) == project:
                out.append(RequirementLine(
                    f"{project}{extras}=={version}" + (f"; {marker}" if marker else ""),
                    line.hashes, line.where, line.constraint))
                continue
        out.append(line)
    return out


def _latest_built(found: set[tuple[str, str, bool]],
                  locked: Mapping[str, Collection[str]]) -> tuple[str, str] | None:
    """Which version built from one place a line means; None if not one project.

    One a lock pins (the last build's choice), else the highest; not a
    yanked one while another is not.
    """
    if len({project for project, _, _ in found}) != 1:
        return None
    candidates = [f for f in found if not f[2]] or list(found)
    pinned = [f for f in candidates if f[1] in locked.get(f[0], ())]
    project, version, _ = max(pinned or candidates, key=lambda f: Version(f[1]))
    return project, version


def _metadata_field(metadata: bytes, header: str, key: str) -> list[str]:
    """Every value of one multiple-use field of core metadata bytes.

    *header* is the field's lower-case name (``requires-dist``), *key*
    packaging's name for it (``requires_dist``), for the full parser, which
    reads what the quick scan finds unusual.
    """
    try:
        found = scan_headers(metadata.decode("utf-8"), (header,))
    except UnicodeDecodeError:
        found = None
    if found is not None:
        return found[header]
    raw, _ = parse_email(metadata)
    values = raw.get(key, [])
    return list(values) if isinstance(values, list) else []


def parse_requires_dist(metadata: bytes, *, source: str) -> list[Requirement]:
    """The ``Requires-Dist`` requirements of core metadata bytes."""
    out: list[Requirement] = []
    for text in _metadata_field(metadata, "requires-dist", "requires_dist"):
        try:
            out.append(Requirement(text))
        except InvalidRequirement as e:
            raise ResolutionError(
                f"{source}: invalid Requires-Dist {text!r} ({str(e).splitlines()[0]})",
                hint="the wheel's metadata is broken; rebuild or remove it from the house") from e
    return out


# ---------------------------------------------------------------------------
# Candidates


@dataclass(frozen=True, slots=True)
class Candidate:
    """One version of a project, as the best wheel the environment takes."""

    name: NormalizedName
    version: Version
    entry: FileEntry
    extras: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Req:
    """A requirement on one identifier (a project, or a project with extras)."""

    name: NormalizedName
    extras: frozenset[str]
    specifier: SpecifierSet
    #: Who asked: ``file:line``, ``command line`` or ``name==version``.
    parent: str
    #: The requirement as written, for messages.
    text: str

    @property
    def ident(self) -> str:
        return _ident(self.name, self.extras)


def _ident(name: str, extras: frozenset[str]) -> str:
    return f"{name}[{','.join(sorted(extras))}]" if extras else name


@dataclass(frozen=True, slots=True)
class Unmet:
    """One requirement the house cannot satisfy, and why."""

    #: The requirement, as written.
    requirement: str
    #: Who asked for it.
    required_by: str
    #: Why nothing in the house satisfies it.
    reason: str

    def __str__(self) -> str:
        return f"{self.requirement} (required by {self.required_by}): {self.reason}"


class UnsatisfiableError(ResolutionError):
    """The house cannot satisfy the requirements on this environment."""

    def __init__(self, environment: str, unmet: Sequence[Unmet]) -> None:
        self.environment = environment
        self.unmet = list(unmet)
        lines = "\n  ".join(str(u) for u in self.unmet)
        hashes_only = all("--hash" in u.reason for u in self.unmet)
        super().__init__(
            f"the house cannot satisfy the requirements for {environment}:\n  {lines}",
            hint="in hash-checking mode every project needs an exact pin and a --hash line; "
            "the house's locks/ folder has a requirements file with both" if hashes_only else
            "add the missing files to the house (wheelhouse build ... for this target), "
            "or relax the requirements",
        )


@dataclass(frozen=True, slots=True)
class Resolution:
    """The files to install, one per project, in dependency order (dependencies first)."""

    environment: str
    chosen: tuple[Candidate, ...]

    def entries(self) -> list[FileEntry]:
        """The chosen files."""
        return [c.entry for c in self.chosen]


class _House:
    """The manifest, indexed by project, with lazily read metadata."""

    def __init__(
        self,
        files: Iterable[FileEntry],
        read_metadata: Callable[[FileEntry], bytes],
        env: Environment,
        file_digest: FileDigest | None = None,
    ) -> None:
        self.by_project: dict[str, list[FileEntry]] = {}
        for e in files:
            self.by_project.setdefault(e.project, []).append(e)
        self.read_metadata = read_metadata
        self.file_digest = file_digest
        self._digests: dict[tuple[str, str], str] = {}
        self.env = env
        self.rank = env.tag_rank()
        self._requires: dict[str, list[Requirement]] = {}
        self._versions: dict[str, list[tuple[Version, FileEntry]]] = {}

    def best_wheels(self, name: str, allowed: Callable[[FileEntry], bool] | None = None,
                    ) -> list[tuple[Version, FileEntry]]:
        """Per version, the best wheel this environment takes (newest version first).

        Files whose Requires-Python excludes the environment are left out. Of a
        version's files, pip's order decides: one *allowed* (its hash is among
        the pins) first, then one not yanked (pip takes a yanked file only when
        nothing else fits, PEP 592), then the best tag, then the highest build
        tag (``name-1.0-2-py3-none-any.whl`` over ``-1-``).
        """
        cached = self._versions.get(name) if allowed is None else None
        if cached is not None:
            return cached
        best: dict[Version, tuple[tuple[bool, bool, int], tuple[Any, ...], FileEntry]] = {}
        for entry in self.by_project.get(name, ()):
            if entry.kind != "wheel":
                continue
            rank = self.wheel_rank(entry)
            if rank is None or not self.python_ok(entry):
                continue
            version = _version(entry.version)
            if version is None:
                continue
            key = (allowed is not None and not allowed(entry), entry.yanked is not None, rank)
            build = _build_tag(entry.filename)
            if version not in best or (key, _negated(build)) < (best[version][0],
                                                                 _negated(best[version][1])):
                best[version] = (key, build, entry)
        out = sorted(((v, e) for v, (_k, _b, e) in best.items()), key=lambda t: t[0],
                     reverse=True)
        if allowed is None:
            self._versions[name] = out
        return out

    def wheel_rank(self, entry: FileEntry) -> int | None:
        tags = _wheel_tags(entry.filename)
        ranks = [self.rank[t] for t in tags if t in self.rank]
        return min(ranks) if ranks else None

    def python_ok(self, entry: FileEntry) -> bool:
        if not entry.requires_python:
            return True
        try:
            return SpecifierSet(entry.requires_python).contains(
                self.env.python_version, prereleases=True)
        except InvalidSpecifier:
            # As pip does: an unreadable Requires-Python is ignored (pip warns,
            # "has an invalid Requires-Python", and installs the file).
            return True

    def digest(self, entry: FileEntry, algorithm: str) -> str:
        """The hex digest of *entry* (sha256 from the manifest, others read from the file)."""
        if algorithm == "sha256":
            return entry.sha256
        key = (entry.filename, algorithm)
        cached = self._digests.get(key)
        if cached is None:
            if self.file_digest is None:
                # Never accept a pin unchecked: without the bytes there is no answer.
                raise ResolutionError(
                    f"cannot check --hash={algorithm}:... against {entry.filename}: the house "
                    f"records sha256 only, and no way to read the file was given",
                    hint="use --hash=sha256:... (pip hash -a sha256 FILE)")
            cached = self.file_digest(entry, algorithm)
            self._digests[key] = cached
        return cached

    def requires(self, entry: FileEntry) -> list[Requirement]:
        cached = self._requires.get(entry.filename)
        if cached is None:
            cached = parse_requires_dist(self.read_metadata(entry), source=entry.filename)
            self._requires[entry.filename] = cached
        return cached

    def provides_extra(self, entry: FileEntry) -> set[str]:
        """The extras a wheel's metadata names, normalised.

        ``Provides-Extra``, and any extra its ``Requires-Dist`` markers test
        (metadata older than 2.1 need not list them).
        """
        extras = _metadata_field(self.read_metadata(entry), "provides-extra", "provides_extra")
        out: set[str] = {canonicalize_name(e) for e in extras}
        for req in self.requires(entry):
            if req.marker is not None:
                out.update(canonicalize_name(m) for m in
                           re.findall(r"""extra == ['"]([^'"]+)['"]""", str(req.marker)))
        return out


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _wheel_tags(filename: str) -> frozenset[Tag]:
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return frozenset()
    return parse_tag("-".join(parts[-3:]))


# ---------------------------------------------------------------------------
# The resolvelib provider


class _Provider(AbstractProvider):  # type: ignore[type-arg]
    def __init__(self, house: _House, wanted: WantedSet, *, tolerant: bool = False) -> None:
        self.house = house
        self.wanted = wanted
        #: Which projects may take pre-releases (worked out once, not per lookup).
        self.release = wanted.release
        self.env = house.env
        #: When set, a project with nothing that fits resolves to a placeholder
        #: (recorded in :attr:`missing`) so that every gap is found in one pass.
        self.tolerant = tolerant
        self.missing: dict[str, list[_Req]] = {}
        #: Why :meth:`matching` last found nothing for a project, when the cause
        #: was a yank or a hash (the specifier cases are explained from scratch).
        self.why_none: dict[str, str] = {}
        #: (project, extra) already said to be unknown, so each is said once.
        self._warned_extras: set[tuple[str, str]] = set()

    # resolvelib's protocol -------------------------------------------------
    def identify(self, requirement_or_candidate: _Req | Candidate) -> str:
        return _ident(requirement_or_candidate.name, requirement_or_candidate.extras)

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[object]],
        backtrack_causes: Sequence[object],
    ) -> tuple[bool, bool, str]:
        infos = list(information[identifier])
        pinned = any(
            any(s.operator in ("==", "===") for s in info.requirement.specifier)  # type: ignore[attr-defined]
            for info in infos
        )
        causes = {c.requirement.name for c in backtrack_causes}  # type: ignore[attr-defined]
        return (identifier.split("[")[0] not in causes, not pinned, identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[_Req]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> list[Candidate]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        name = canonicalize_name(identifier.split("[")[0])
        extras = frozenset().union(*(r.extras for r in reqs)) if reqs else frozenset()
        found = [
            Candidate(name, version, entry, extras)
            for version, entry in self.matching(name, reqs)
            if version not in bad
        ]
        if not found and self.tolerant and not bad:
            self.missing[identifier] = reqs
            return [Candidate(name, _MISSING_VERSION, _MISSING_ENTRY, extras)]
        return found

    def is_satisfied_by(self, requirement: _Req, candidate: Candidate) -> bool:
        if candidate.entry is _MISSING_ENTRY:
            return True
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[_Req]:
        if candidate.entry is _MISSING_ENTRY:
            return []
        parent = f"{candidate.name}=={candidate.version}"
        deps: list[_Req] = []
        if candidate.extras:
            # An extra is its project at the same version, plus the extra's requirements.
            deps.append(_Req(candidate.name, frozenset(), SpecifierSet(f"=={candidate.version}"),
                             parent, f"{candidate.name}=={candidate.version}"))
            provided = self.house.provides_extra(candidate.entry)
            for extra in sorted(candidate.extras):
                if canonicalize_name(extra) not in provided and (
                        (candidate.name, extra) not in self._warned_extras):
                    self._warned_extras.add((candidate.name, extra))
                    log.warning("%s %s does not provide the extra '%s'", candidate.name,
                                candidate.version, extra)
                for req in self.house.requires(candidate.entry):
                    if req.marker is not None and self._marker(req, extra, candidate) and not (
                            self._marker(req, "", candidate)):
                        deps.append(_to_req(req, parent))
            return deps
        for req in self.house.requires(candidate.entry):
            if req.marker is None or self._marker(req, "", candidate):
                deps.append(_to_req(req, parent))
        return deps

    # helpers ------------------------------------------------------------------
    def _marker(self, req: Requirement, extra: str, candidate: Candidate) -> bool:
        where = f"{candidate.name}=={candidate.version} (Requires-Dist of {candidate.entry.filename})"
        try:
            return _evaluate_marker(req, self.env, extra=extra, where=where)
        except InvalidInputError as e:
            # The wheel's metadata, not the user's input, is at fault.
            raise ResolutionError(
                e.message, hint="the wheel's metadata is broken; rebuild it or remove it "
                "from the house") from e

    def matching(self, name: NormalizedName, reqs: Sequence[_Req]) -> list[tuple[Version, FileEntry]]:
        """Versions (best wheel each) that satisfy *reqs*, constraints, hashes; best first.

        The steps, in pip's order: the specifiers; then pre-releases (only with
        ``--pre``, when a specifier names one, or when nothing else matches);
        then yanked files (PEP 592); then, in hash-checking mode, the hashes.
        """
        specs = [r.specifier for r in reqs]
        specs += [s for s, _ in self.wanted.constraints.get(name, ())]
        # Hash pins choose among a version's files first, as in pip.
        def fits(version: Version | None) -> bool:
            return version is not None and all(spec.contains(version, prereleases=True)
                                               for spec in specs)

        def allowed(entry: FileEntry) -> bool:
            # Only a version the specifiers leave is worth reading (a sha384 or
            # sha512 pin reads the file): any other is dropped just below.
            return not fits(_version(entry.version)) or self.hash_problem(name, entry) is None

        pinned = self.wanted.require_hashes or name in self.wanted.hashes
        out = [(version, entry) for version, entry in self.house.best_wheels(
                   name, allowed if pinned else None) if fits(version)]
        # Pre-releases before yanks: a yanked final release still hides pre-releases,
        # as pip filters the versions by the specifier before it looks at yanks.
        hidden_pre = False
        allow_pre = self.release.allows_prereleases(name)
        if allow_pre is False:
            # --only-final: no pre-release, even one a specifier names, even
            # when nothing else is left (pip's filter with prereleases=False).
            finals = [(v, e) for v, e in out if not v.is_prerelease]
            if out and not finals:
                shown = ", ".join(sorted({str(v) for v, _ in out}))
                self.why_none[name] = (f"only pre-releases fit ({shown}), and --only-final "
                                       "excludes them")
            out = finals
        elif not (allow_pre or any(spec.prereleases for spec in specs)):
            finals = [(v, e) for v, e in out if not v.is_prerelease]
            if finals:
                hidden_pre = len(finals) < len(out)
                out = finals
        # PEP 592 as pip applies it: yanked files are left out, unless every file
        # left is yanked and the requirement pins its version exactly.
        yanked = [e for _, e in out if e.yanked is not None]
        if yanked and not (len(yanked) == len(out) and _is_pinned(specs)):
            kept = [(v, e) for v, e in out if e.yanked is None]
            if not kept:
                shown = ", ".join(sorted({str(v) for v, _ in out}))
                self.why_none[name] = (
                    f"only yanked files fit ({shown}); a yanked file is taken only when "
                    "its version is pinned exactly with == or === (PEP 592)"
                    + ("; pre-releases are not considered without --pre" if hidden_pre
                       else ""))
            out = kept
        if out and (self.wanted.require_hashes or name in self.wanted.hashes):
            # Hash-checking mode checks every project; without it (as with
            # --no-require-hashes) a --hash still checks its own project's files.
            problems = {e.filename: self.hash_problem(name, e) for _, e in out}
            kept = [(v, e) for v, e in out if problems[e.filename] is None]
            if not kept:
                self.why_none[name] = "; ".join(dict.fromkeys(p for p in problems.values() if p))
            out = kept
        return out

    def hash_problem(self, name: NormalizedName, entry: FileEntry) -> str | None:
        """Why *entry* fails hash-checking mode, or None when one of its digests is pinned.

        As in pip, a file passes when its digest under any pinned algorithm is
        among that algorithm's pins. sha384 and sha512 are read from the file.
        """
        allowed = self.wanted.hashes.get(name, {})
        if not any(allowed.values()):
            return "not pinned with --hash (hash-checking mode needs every project hashed)"
        got: list[str] = []
        for algorithm in HASH_ALGORITHMS:
            pins = allowed.get(algorithm)
            if not pins:
                continue
            digest = self.house.digest(entry, algorithm)
            if digest in pins:
                return None
            got.append(f"{algorithm}={digest}")
        expected = " or ".join(f"{a}={d}" for a in HASH_ALGORITHMS
                               for d in sorted(allowed.get(a, ())))
        return (f"hash mismatch for {entry.filename}: expected {expected}, got "
                f"{' and '.join(got)} (the --hash values do not match the house's file)")


def _build_tag(filename: str) -> tuple[Any, ...]:
    """A wheel's build tag as pip compares them: ``(2, "")`` for ``-2-``; none: ``()``."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        return tuple(parse_wheel_filename(filename)[2])
    except InvalidWheelFilename:
        return ()


def _negated(build: tuple[Any, ...]) -> tuple[Any, ...]:
    """A sort key under which a higher build tag comes first (an absent one last)."""
    if not build:
        return (1,)
    number, rest = build
    # (1 after the characters: of "ab" and "abc", pip's higher is "abc".)
    return (0, -number, (*(-ord(c) for c in rest), 1))


def _is_pinned(specs: Iterable[SpecifierSet]) -> bool:
    """True when a specifier pins one version exactly: ``===``, or ``==`` without ``.*``.

    >>> _is_pinned([SpecifierSet("==1.0")]), _is_pinned([SpecifierSet("==1.*")])
    (True, False)
    """
    return any(s.operator == "===" or (s.operator == "==" and not s.version.endswith(".*"))
               for spec in specs for s in spec)


def _evaluate_marker(
    req: Requirement, env: Environment, *, extra: str = "", where: str
) -> bool:
    """Evaluate *req*'s environment marker on *env* (True when it has none).

    A marker that parses but cannot be evaluated (``python_version ~= "3"``: PEP 440
    gives ``~=`` no meaning on one release component) raises InvalidInputError
    naming the requirement and *where* it came from. pip has no guard here (it
    stops with a traceback; pypa/pip#12829 was closed unmerged); treating the
    marker as true or false would quietly install a different set, so we stop too,
    with a message.
    """
    if req.marker is None:
        return True
    marker_env = dict(env.markers)
    marker_env["extra"] = extra
    try:
        return req.marker.evaluate(marker_env)
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker, InvalidVersion) as e:
        raise InvalidInputError(
            f"{where}: cannot evaluate the environment marker of {str(req)!r} for "
            f"{env.name} ({type(e).__name__}: {e})",
            hint="fix the marker (PEP 508); for example, ~= needs a version with at least "
            "two parts, such as ~=3.10") from e


_MISSING_VERSION = Version("0")
_MISSING_ENTRY: Any = object()


def _to_req(req: Requirement, parent: str) -> _Req:
    return _Req(canonicalize_name(req.name), frozenset(canonicalize_name(x) for x in req.extras),
                req.specifier, parent, str(req))


# ---------------------------------------------------------------------------
# Explaining failures


def _explain(house: _House, provider: _Provider, req: _Req, all_reqs: Sequence[_Req]) -> str:
    name = req.name
    files = house.by_project.get(name, [])
    if not files:
        close = difflib.get_close_matches(name, list(house.by_project), n=3, cutoff=0.75)
        if close:
            return f"not in the house (did you mean {' or '.join(map(repr, close))}?)"
        return "not in the house"
    wheels = [e for e in files if e.kind == "wheel"]
    if not wheels:
        names = ", ".join(sorted(e.filename for e in files))
        return f"only an sdist in the house ({names}); {house.env.name} needs a wheel"
    fitting = [e for e in wheels if house.wheel_rank(e) is not None]
    if not fitting:
        tags = sorted({"-".join(e.filename[:-4].split("-")[-3:]) for e in wheels})
        return (f"no wheel for the platform {house.env.name} (the house has wheels for "
                f"{', '.join(tags)})")
    runnable = [e for e in fitting if house.python_ok(e)]
    if not runnable:
        needs = sorted({e.requires_python or "" for e in fitting})
        return (f"every wheel requires Python {' or '.join(needs)}; "
                f"{house.env.name} has Python {house.env.python_version}")
    versions = sorted({v for v, _ in house.best_wheels(name)}, reverse=True)
    shown = ", ".join(str(v) for v in versions[:8]) + (" ..." if len(versions) > 8 else "")
    same = [r for r in all_reqs if r.name == name]
    specs = [(str(r.specifier), r.parent) for r in same if str(r.specifier)]
    constraint = provider.wanted.constraints.get(name, [])
    provider.why_none.pop(name, None)
    allowed = provider.matching(name, same)
    if not allowed and not (specs or constraint) and name in provider.why_none:
        return provider.why_none[name]
    if (specs or constraint) and not allowed:
        def fits(spec: SpecifierSet) -> bool:
            return any(spec.contains(v, prereleases=True) for v in versions)
        parts = [f"{s} (from {p})" for s, p in specs]
        parts += [f"{s} (constraint, {w})" for s, w in constraint]
        excluded_by = [f"{s} (constraint, {w})" for s, w in constraint if not fits(s)]
        if excluded_by:
            return (f"the house has {shown}; excluded by " + "; ".join(excluded_by))
        if name in provider.why_none:
            return provider.why_none[name]
        return f"the house has {shown}; none satisfies " + " and ".join(parts)
    if provider.wanted.require_hashes and name not in provider.wanted.hashes:
        return "not pinned with --hash (hash-checking mode needs every project hashed)"
    if provider.wanted.require_hashes:
        return "no file in the house matches the --hash values (hash-checking mode)"
    return f"the house has {shown}, but they conflict with other requirements"


# ---------------------------------------------------------------------------
# The entry point


def resolve_in_house(
    files: Iterable[FileEntry],
    wanted: WantedSet,
    env: Environment,
    read_metadata: Callable[[FileEntry], bytes],
    *,
    file_digest: FileDigest | None = None,
) -> Resolution:
    """Choose one wheel per project for *wanted* on *env* from *files* alone.

    *file_digest* reads a file's sha384 or sha512 for ``--hash`` pins in those
    algorithms (the manifest records sha256 only); without it such a pin is an
    error, never a pass. Raises :class:`UnsatisfiableError` listing every unmet
    requirement and why, and InvalidInputError for a requirement whose marker
    cannot be evaluated.
    """
    import resolvelib

    house = _House(files, read_metadata, env, file_digest)
    provider = _Provider(house, wanted)
    roots: list[_Req] = []
    for req, where in wanted.requirements:
        if not _evaluate_marker(req, env, where=where):
            continue
        roots.append(_to_req(req, where))
    if not roots:
        return Resolution(env.name, ())
    resolver: resolvelib.Resolver[_Req, Candidate, str] = resolvelib.Resolver(
        provider,
        resolvelib.BaseReporter(),
    )
    try:
        result = resolver.resolve(roots, max_rounds=20000)
    except resolvelib.ResolutionImpossible as e:
        every: list[_Req] = [cast("_Req", c.requirement) for c in e.causes]
        unmet: dict[tuple[str, str], Unmet] = {}
        for cause in every:
            if (cause.text, cause.parent) not in unmet:
                unmet[(cause.text, cause.parent)] = Unmet(
                    cause.text, cause.parent, _explain(house, provider, cause, every))
        # Look again, tolerating gaps, to name every missing project, not just the first.
        tolerant = _Provider(house, wanted, tolerant=True)
        with contextlib.suppress(resolvelib.ResolutionImpossible, resolvelib.ResolutionTooDeep):
            resolvelib.Resolver(tolerant, resolvelib.BaseReporter()).resolve(
                roots, max_rounds=20000)
        for reqs in tolerant.missing.values():
            for gap in reqs:
                if (gap.text, gap.parent) not in unmet:
                    unmet[(gap.text, gap.parent)] = Unmet(
                        gap.text, gap.parent, _explain(house, tolerant, gap, reqs))
        raise UnsatisfiableError(env.name, list(unmet.values())) from None
    except resolvelib.ResolutionTooDeep:
        raise ResolutionError(
            f"resolving for {env.name} took too many rounds",
            hint="pin some versions to help the resolver") from None
    # Dependencies first: a topological order of the graph, base projects only.
    chosen: dict[str, Candidate] = {}
    for ident, cand in result.mapping.items():
        if "[" not in ident:
            chosen[ident] = cand
    order: list[Candidate] = []
    seen: set[str] = set()
    graph = result.graph

    def visit(ident: str) -> None:
        base = ident.split("[")[0]
        if base in seen:
            return
        seen.add(base)
        for child in sorted(c for c in graph.iter_children(ident) if c):
            visit(child)
        for extra_ident in sorted(i for i in result.mapping if i.startswith(base + "[")):
            for child in sorted(c for c in graph.iter_children(extra_ident) if c):
                visit(child)
        if base in chosen:
            order.append(chosen[base])

    for ident in sorted(chosen):
        visit(ident)
    return Resolution(env.name, tuple(order))
