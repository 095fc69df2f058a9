"""Every task for developers and CI: ``nox -s tests lint typecheck``, ``demo``, ``benchmarks``."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.needs_version = ">=2024.3.2"

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(str(ROOT / "pyproject.toml"))


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (no internet needed; real pip and uv against local houses)."""
    session.install("pip>=26.3", *_group("test"))
    session.install("-e", ".")
    session.run("pytest", "-m", "not network", *session.posargs)


@nox.session
def network(session: nox.Session) -> None:
    """Run the opt-in tests that reach the public package registry."""
    session.install("pip>=26.3", *_group("test"))
    session.install("-e", ".")
    session.run("pytest", "-m", "network", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package and the tests with mypy (strict)."""
    session.install(*_group("typecheck"))
    session.install("-e", ".")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """Build a house from the bundled example and install from it offline (needs the internet)."""
    session.install("-e", ".")
    out = Path(session.create_tmp()) / "demo"
    session.run("python", str(ROOT / "examples" / "demo.py"), str(out), *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run the benchmarks in benchmarks/ and print their tables."""
    session.install("-e", ".[fast]", *_group("benchmarks"))
    env = {"PIP_CONFIG_FILE": os.devnull}
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if not script.name.startswith("_"):
            session.run("python", str(script), *session.posargs, env=env)
