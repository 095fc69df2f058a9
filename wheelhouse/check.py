"""Prove, before anyone gets on the plane, that requirements install from a house alone.

For each target, :func:`check` resolves the requirements against the house's
manifest only (:mod:`wheelhouse.resolver`: dependency closure, markers,
Requires-Python, tags, hashes) and, where pip can answer the same question
(``pip install --dry-run --no-index --find-links HOUSE/files --only-binary=:all:``
with the target's options), asks pip too. A disagreement between the two is
reported as what it is: a bug in wheelhouse.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelhouse.errors import PipError, ResolutionError
from wheelhouse.house import House
from wheelhouse.install import read_house_metadata
from wheelhouse.resolver import Environment, Unmet, UnsatisfiableError, resolve_in_house

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wheelhouse.house import FileEntry
    from wheelhouse.resolver import WantedSet
    from wheelhouse.targets import Target

__all__ = ["CheckResult", "TargetCheck", "check"]


@dataclass(slots=True)
class TargetCheck:
    """The verdict for one target."""

    #: The target's name.
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

    @property
    def disagreement(self) -> str | None:
        """A description of how pip's answer differs from ours, or None."""
        if not self.pip_asked or self.pip_note:
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
            "ok": self.ok,
            "chosen": self.chosen,
            "unmet": [{"requirement": u.requirement, "required_by": u.required_by,
                       "reason": u.reason} for u in self.unmet],
            "pip": None if not self.pip_asked else {
                "ok": self.pip_chosen is not None, "chosen": self.pip_chosen,
                "error": self.pip_error},
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
) -> CheckResult:
    """Check *wanted* against the house for each target (``None``: this interpreter).

    *requirement_files*, *constraint_files* and *requirements* are what *wanted*
    was read from; pip is given the same, so both answer the same question.
    """
    house = House.open(house_path)
    files = house.read_manifest().files
    read_metadata = read_house_metadata(house)
    out: list[TargetCheck] = []
    for target in targets or (None,):
        env = host_environment() if target is None else Environment.for_target(target)
        verdict = TargetCheck(env.name, ok=False)
        try:
            resolution = resolve_in_house(files, wanted, env, read_metadata)
        except UnsatisfiableError as e:
            verdict.unmet = e.unmet
        except ResolutionError as e:
            verdict.unmet = [Unmet("(all)", "the requirements", e.message)]
        else:
            verdict.ok = True
            verdict.chosen = {c.name: str(c.version) for c in resolution.chosen}
        if ask_pip:
            verdict.pip_asked = True
            verdict.pip_chosen, verdict.pip_error = _ask_pip(
                house, target, requirement_files, constraint_files, requirements, wanted.pre)
            if target is not None and verdict.disagreement:
                verdict.pip_note = _pip_marker_limitation(
                    files, wanted, env, read_metadata, verdict.pip_chosen)
        out.append(verdict)
    return CheckResult(out)


def _pip_marker_limitation(
    files: Sequence[FileEntry],
    wanted: WantedSet,
    env: Environment,
    read_metadata: Callable[[FileEntry], bytes],
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
        chosen = {c.name: str(c.version)
                  for c in resolve_in_house(files, wanted, as_pip, read_metadata).chosen}
    except ResolutionError:
        chosen = None
    if chosen == pip_chosen:
        return ("pip evaluated environment markers for this machine, not for the target "
                "(a known pip limitation with --platform); wheelhouse evaluates them for "
                "the target")
    return None


def _ask_pip(
    house: House,
    target: Target | None,
    requirement_files: Sequence[Path],
    constraint_files: Sequence[Path],
    requirements: Sequence[str],
    pre: bool,
) -> tuple[dict[str, str] | None, str | None]:
    """Ask pip the same question, from the house's files alone, isolated from config."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from wheelhouse._pip import SubprocessPip
    from wheelhouse.resolve import target_pip_options

    # Only the house: no configuration, no PIP_* variables, no index.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    pip = SubprocessPip(isolated=True, env=env)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-check-") as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--no-index",
                "--find-links", str(house.files_dir), "--report", str(report)]
        if pre:
            args.append("--pre")
        if target is not None:
            args += [*target_pip_options(target), "--target", str(Path(tmp) / "target")]
        else:
            args.append("--only-binary=:all:")
        for f in requirement_files:
            args += ["-r", str(f)]
        for f in constraint_files:
            args += ["-c", str(f)]
        args += list(requirements)
        try:
            pip(args)
        except PipError as e:
            lines = [ln for ln in e.stderr_tail.splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
            return None, (errors[0] if errors else f"pip exited with {e.returncode}")[:300]
        data = json.loads(report.read_text(encoding="utf-8"))
    chosen = {
        str(canonicalize_name(item["metadata"]["name"])): str(Version(item["metadata"]["version"]))
        for item in data.get("install", [])
    }
    return chosen, None
