"""The one place that runs pip: a subprocess, never an import."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from wheelhouse.errors import PipError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["PipResult", "PipRunner", "SubprocessPip"]

log = logging.getLogger(__name__)

_TAIL_LINES = 25


@dataclass(frozen=True, slots=True)
class PipResult:
    """What a pip run printed."""

    #: The command that ran.
    argv: list[str]
    #: Its standard output.
    stdout: str
    #: Its standard error.
    stderr: str


class PipRunner(Protocol):
    """Runs ``pip ARGS``; a test can pass a fake that records argv."""

    def __call__(self, args: Sequence[str], *, cwd: Path | None = None) -> PipResult:
        """Run pip with *args*; raise PipError if it fails."""
        ...


@dataclass
class SubprocessPip:
    """``python -m pip`` in a subprocess, with the user's pip configuration.

    *isolated* adds ``--isolated`` (ignore configuration files and ``PIP_*``
    variables). *python* is the interpreter whose pip runs (default: ours).
    """

    isolated: bool = False
    python: str = field(default_factory=lambda: sys.executable)
    env: dict[str, str] | None = None

    def __call__(self, args: Sequence[str], *, cwd: Path | None = None) -> PipResult:
        """Run pip; raise PipError with argv, exit code and the tail of stderr on failure."""
        argv = [self.python, "-m", "pip", *(["--isolated"] if self.isolated else []), *args]
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.setdefault("PIP_NO_INPUT", "1")
        log.debug("running %s", " ".join(argv))
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=cwd, check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-_TAIL_LINES:])
            raise PipError(argv, proc.returncode, tail)
        return PipResult(argv, proc.stdout, proc.stderr)
