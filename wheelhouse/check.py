"""Prove, before anyone gets on the plane, that requirements install from a house alone.

For each target, :func:`check` resolves the requirements against the house's
manifest only (:mod:`wheelhouse.resolver`: dependency closure, markers,
Requires-Python, tags, yanks, hashes) and, where pip can answer the same question
(``pip install --dry-run --index-url file://HOUSE/simple/ --only-binary=:all:``
with the target's options), asks pip too. A disagreement between the two is
reported as what it is: a bug in wheelhouse.

pip is asked the same question and nothing more: it reads the house's own index
(so it sees yanks as we do), no configuration, no ``PIP_*`` variables, and
requirement files rewritten to hold only requirements, hashes and constraints
(an ``--index-url`` or ``--find-links`` line in the user's file never reaches it).
When the interpreter has no usable pip, the cross-check is skipped, and the
verdict says so.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelhouse._fs import scratch_dir
from wheelhouse.errors import (
    IntegrityError,
    InvalidInputError,
    PipError,
    ResolutionError,
)
from wheelhouse.house import House
from wheelhouse.index import SIMPLE_DIR
from wheelhouse.install import read_house_digest, read_house_metadata
from wheelhouse.resolver import (
    Environment,
    Unmet,
    UnsatisfiableError,
    locked_versions,
    map_built_paths,
    resolve_in_house,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wheelhouse._pip import PipRunner
    from wheelhouse.house import FileEntry
    from wheelhouse.requirements import RequirementLine
    from wheelhouse.resolver import FileDigest, WantedSet
    from wheelhouse.targets import Target

__all__ = ["CheckResult", "TargetCheck", "check"]

log = logging.getLogger(__name__)

#: The oldest pip with ``install --dry-run --report``.
_MIN_PIP = (22, 2)


@dataclass(slots=True)
class TargetCheck:
    """The verdict for one target."""

    #: The target's name, as ``build`` gives it: ``host`` for this interpreter.
    target: str
    #: True when the requirements install from the house alone.
    ok: bool
    #: What would be installed: ``{project: version}`` (when ok).
    chosen: dict[str, str] = field(default_factory=dict)
    #: What is missing and why (when not ok).
    unmet: list[Unmet] = field(default_factory=list)
    #: pip's answer: ``{project: version}``, ``None`` if pip failed or was not asked.
    pip_chosen: dict[str, str] | None = None
    #: pip's error, when it failed.
    pip_error: str | None = None
    #: False when pip was not asked (``--no-pip``).
    pip_asked: bool = False
    #: Why pip's answer differs without that being a bug in ours, if it does.
    pip_note: str | None = None
    #: Why the cross-check with pip was skipped (pip not available), if it was.
    pip_skipped: str | None = None
    #: The target's tags in short (``cp312-manylinux_2_28_x86_64``), the host's too.
    tag: str = ""

    @property
    def label(self) -> str:
        """The name for messages: ``host (cp312-…)`` for this interpreter, else the name."""
        return self.target if self.tag in ("", self.target) else f"{self.target} ({self.tag})"

    @property
    def disagreement(self) -> str | None:
        """A description of how pip's answer differs from ours, or None."""
        if not self.pip_asked or self.pip_note or self.pip_skipped:
            return None
        pip_ok = self.pip_chosen is not None
        if pip_ok != self.ok:
            if self.ok:
                return f"pip cannot install it from the house: {self.pip_error}"
            return "pip can install it from the house: " + _pins(self.pip_chosen or {})
        if self.ok and self.pip_chosen != self.chosen:
            ours, theirs = self.chosen, self.pip_chosen or {}
            diff = sorted(set(ours.items()) ^ set(theirs.items()))
            names = sorted({n for n, _ in diff})
            return "pip chooses differently: " + "; ".join(
                f"{n}: ours {ours.get(n, '-')}, pip {theirs.get(n, '-')}" for n in names)
        return None

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON-ready data."""
        return {
            "target": self.target,
            "tag": self.tag,
            "ok": self.ok,
            "chosen": self.chosen,
            "unmet": [{"requirement": u.requirement, "required_by": u.required_by,
                       "reason": u.reason} for u in self.unmet],
            "pip": None if not self.pip_asked else {
                "ok": None if self.pip_skipped else self.pip_chosen is not None,
                "chosen": self.pip_chosen, "error": self.pip_error,
                "skipped": self.pip_skipped},
            "disagreement": self.disagreement,
            "pip_note": self.pip_note,
        }


@dataclass(slots=True)
class CheckResult:
    """Every target's verdict."""

    targets: list[TargetCheck]

    @property
    def ok(self) -> bool:
        """True when every target installs and pip agrees everywhere it was asked."""
        return all(t.ok and t.disagreement is None for t in self.targets)


def _pins(chosen: dict[str, str]) -> str:
    return ", ".join(f"{n}=={v}" for n, v in sorted(chosen.items())) or "nothing"


def host_environment() -> Environment:
    """Describe the running interpreter, as it sees itself."""
    from packaging.markers import default_environment
    from packaging.tags import sys_tags
    from packaging.version import Version

    from wheelhouse.targets import Target

    return Environment(
        str(Target.host()), tuple(dict.fromkeys(sys_tags())),
        {k: str(v) for k, v in default_environment().items()},
        Version(".".join(str(p) for p in sys.version_info[:3])),
    )


def check(
    house_path: Path | str,
    wanted: WantedSet,
    *,
    targets: Sequence[Target | None] = (),
    requirement_files: Sequence[Path] = (),
    constraint_files: Sequence[Path] = (),
    requirements: Sequence[str] = (),
    ask_pip: bool = True,
    pip: PipRunner | None = None,
) -> CheckResult:
    """Check *wanted* against the house for each target (``None``: this interpreter).

    *requirement_files*, *constraint_files* and *requirements* are what *wanted*
    was read from; pip is given the same requirements, hashes and constraints
    (rewritten into files of its own, without the files' options), so both
    answer the same question. *pip* runs pip (default: this interpreter's, with
    no configuration); if it has no usable pip, the cross-check is skipped and
    each verdict says so.
    """
    house = House.open(house_path)
    files = house.read_manifest().files
    read_metadata = read_house_metadata(house)
    file_digest = read_house_digest(house)
    pip_skipped: str | None = None
    if ask_pip:
        pip = pip if pip is not None else _isolated_pip()
        pip_skipped = _pip_unavailable(pip)
        if not pip_skipped and not house.index_is_current():
            # pip reads the index, which would show another house than ours.
            pip_skipped = (f"the index does not match the manifest (a change was interrupted): "
                           f"run 'wheelhouse index {house.root}'")
        if pip_skipped:
            log.warning("cross-check with pip skipped (%s)", pip_skipped)
    from wheelhouse.build import HOST
    from wheelhouse.targets import Target

    host = Target.host()
    out: list[TargetCheck] = []
    hashed: dict[str, str | None] = {}  # file name -> what is wrong with its bytes
    for target in targets or (None,):
        env = host_environment() if target is None else Environment.for_target(target)
        # Named as build names it (and the manifest records it): this interpreter is "host".
        name = HOST if target is None or target == host else env.name
        verdict = TargetCheck(name, ok=False, tag=env.name)
        try:
            resolution = resolve_in_house(files, wanted, env, read_metadata,
                                          file_digest=file_digest)
        except UnsatisfiableError as e:
            verdict.unmet = e.unmet
        except ResolutionError as e:
            verdict.unmet = [Unmet("(all)", "the requirements", e.message)]
        else:
            damaged = [u for u in (_damage(file_digest, c.entry, hashed) for c in resolution.chosen)
                       if u is not None]
            verdict.ok = not damaged
            verdict.unmet = damaged
            verdict.chosen = {c.name: str(c.version) for c in resolution.chosen}
        if ask_pip and pip is not None:
            verdict.pip_asked = True
            if pip_skipped:
                verdict.pip_skipped = pip_skipped
                out.append(verdict)
                continue
            verdict.pip_chosen, verdict.pip_error = _ask_pip(
                pip, house, target, requirement_files, constraint_files, requirements, wanted)
            if target is not None and verdict.disagreement:
                verdict.pip_note = _pip_marker_limitation(
                    files, wanted, env, read_metadata, file_digest, verdict.pip_chosen)
            if (verdict.disagreement and not wanted.require_hashes
                    and verdict.pip_chosen is not None and verdict.unmet
                    and all(u.reason.startswith("hash mismatch for ") for u in verdict.unmet)):
                # Outside hash-checking mode (--no-require-hashes), pip checks a
                # line's --hash when it downloads the file, which a dry run never does.
                verdict.pip_note = ("pip's dry run checks a --hash only in hash-checking mode; "
                                    "a real 'pip install' refuses these files when it "
                                    "downloads them")
        out.append(verdict)
    return CheckResult(out)


def _damage(file_digest: FileDigest, entry: FileEntry,
            hashed: dict[str, str | None]) -> Unmet | None:
    """An Unmet when the house's copy of *entry* is missing or not the bytes it records.

    An install checks every byte; so does check, once per file for all targets.
    """
    if entry.filename not in hashed:
        try:
            file_digest(entry, "sha256")  # checks the bytes against the manifest
            hashed[entry.filename] = None
        except IntegrityError as e:
            hashed[entry.filename] = e.message
    problem = hashed[entry.filename]
    if problem is None:
        return None
    return Unmet(f"{entry.project}=={entry.version}", "the house",
                 f"the house is damaged: {problem} (run 'wheelhouse verify HOUSE', then add "
                 "or build the file again)")


def _pip_marker_limitation(
    files: Sequence[FileEntry],
    wanted: WantedSet,
    env: Environment,
    read_metadata: Callable[[FileEntry], bytes],
    file_digest: FileDigest,
    pip_chosen: dict[str, str] | None,
) -> str | None:
    """Explain a difference by pip's known limitation, if that is what it is.

    pip evaluates environment markers (``sys_platform == 'win32'``) for the
    machine it runs on even with ``--platform``/``--python-version``. If our
    resolution with this machine's markers equals pip's answer, the difference
    is pip's, not ours.
    """
    host = host_environment()
    as_pip = Environment(env.name, env.tags, host.markers, env.python_version)
    try:
        chosen = {c.name: str(c.version) for c in resolve_in_house(
            files, wanted, as_pip, read_metadata, file_digest=file_digest).chosen}
    except (ResolutionError, InvalidInputError):
        chosen = None
    if chosen == pip_chosen:
        return ("pip evaluated environment markers for this machine, not for the target "
                "(a known pip limitation with --platform); wheelhouse evaluates them for "
                "the target")
    return None


def _isolated_pip() -> PipRunner:
    """The running interpreter's pip, with no configuration file and no ``PIP_*``/``UV_*``."""
    from wheelhouse._pip import SubprocessPip

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return SubprocessPip(isolated=True, env=env)


def _pip_unavailable(pip: PipRunner) -> str | None:
    """Why *pip* cannot answer (not installed, too old), or None when it can."""
    try:
        result = pip(["--version"])
    except PipError as e:
        lines = [ln for ln in e.stderr_tail.splitlines() if ln.strip()]
        return "pip not available: " + (lines[-1] if lines else f"exit code {e.returncode}")
    except OSError as e:  # the interpreter itself is missing or not executable
        return f"pip not available: {e.strerror or e}"
    # pip prints its version as the second word: pip 26.3 from PATH (python 3.12)
    words = result.stdout.split()
    try:
        version = tuple(int(p) for p in words[1].split(".")[:2])
    except (IndexError, ValueError):
        return None  # an unusual version string: let pip itself answer
    if version < _MIN_PIP:
        return (f"pip {words[1]} is too old for 'install --dry-run --report' "
                f"(needs {'.'.join(map(str, _MIN_PIP))} or later)")
    return None


def render_requirements(lines: Sequence[RequirementLine]) -> bytes:
    r"""A requirements file holding *lines* and their ``--hash`` values, and nothing else.

    >>> from wheelhouse.requirements import RequirementLine
    >>> render_requirements([RequirementLine("lib==1.0", ("sha256:ab",), "r.txt:3")])
    b'lib==1.0 --hash=sha256:ab\n'
    """
    return "".join(
        " ".join([line.text, *(f"--hash={h}" for h in line.hashes)]) + "\n" for line in lines
    ).encode()


def _ask_pip(
    pip: PipRunner,
    house: House,
    target: Target | None,
    requirement_files: Sequence[Path],
    constraint_files: Sequence[Path],
    requirements: Sequence[str],
    wanted: WantedSet,
) -> tuple[dict[str, str] | None, str | None]:
    """Ask pip the same question, from the house's own index alone, isolated from config.

    pip reads ``file://HOUSE/simple/`` (PEP 503 pages with PEP 592 yanks: it sees
    what our resolver sees) and nothing else: no find-links, no other index. The
    user's requirement files are not handed over as they are (their
    ``--index-url``, ``--find-links`` and other options would reach pip); pip gets
    files rewritten to hold only their requirements, hashes and constraints.
    """
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from wheelhouse.requirements import RequirementLine, scan_requirement_files
    from wheelhouse.resolve import target_pip_options

    scan = scan_requirement_files(list(requirement_files), constraints=constraint_files)
    # Paths and URLs as install reads them: the files the house built from them.
    every = map_built_paths([*scan.lines, *(RequirementLine(text, (), "command line")
                                            for text in requirements)],
                            house.read_manifest().files, locked_versions(house.root))
    lines = [ln for ln in every if not ln.constraint]
    constraints = [ln for ln in every if ln.constraint]
    with scratch_dir("wheelhouse-check-") as tmp:
        report = Path(tmp) / "report.json"
        req_file, constraint_file = Path(tmp) / "requirements.txt", Path(tmp) / "constraints.txt"
        # The pre-release switches as the user's files gave them, in their
        # order, so pip applies them as it would have (as file lines, pip takes
        # --pre together with --all-releases / --only-final).
        switches = wanted.release_switches_in_effect
        req_file.write_bytes(b"".join(
            (b"--pre\n" if kind == "pre"
             else f"--{kind.replace('_', '-')} {value}\n".encode())
            for kind, value in switches) + render_requirements(lines))
        args = ["install", "--dry-run", "--ignore-installed", "--quiet",
                "--index-url", (house.root / SIMPLE_DIR).as_uri() + "/",
                "--report", str(report), "-r", str(req_file)]
        if constraints:
            constraint_file.write_bytes(render_requirements(constraints))
            args += ["-c", str(constraint_file)]
        if wanted.no_require_hashes:
            args.append("--no-require-hashes")
        if wanted.require_hashes:
            args.append("--require-hashes")
        if target is not None:
            args += [*target_pip_options(target), "--target", str(Path(tmp) / "target")]
        else:
            args.append("--only-binary=:all:")
        try:
            pip(args)
        except PipError as e:
            lines_out = [ln for ln in e.stderr_tail.splitlines() if ln.strip()]
            errors = [ln for ln in lines_out if ln.startswith("ERROR")] or lines_out
            return None, (errors[0] if errors else f"pip exited with {e.returncode}")[:300]
        data = json.loads(report.read_text(encoding="utf-8"))
    chosen = {
        str(canonicalize_name(item["metadata"]["name"])): str(Version(item["metadata"]["version"]))
        for item in data.get("install", [])
    }
    return chosen, None
