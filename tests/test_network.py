"""Opt-in: builds against the public registry (``nox -s network``)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ORIGINAL_ENV, Venv, run, wheelhouse

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.network


def _env(store: Path) -> dict[str, str]:
    # The machine's own pip configuration (index, proxy, CA) is how it reaches the registry.
    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith("WHEELHOUSE_")}
    env["WHEELHOUSE_STORE"] = str(store)
    return env


def test_requests_for_this_machine(tmp_path: Path, venv: Venv) -> None:
    env = _env(tmp_path / "store")
    wheelhouse("build", "requests", "-o", str(tmp_path / "house"), env=env)
    again = json.loads(wheelhouse("build", "requests", "-o", str(tmp_path / "house"), "--json",
                                  env=env).stdout)
    assert again["from_cache"] is True
    venv.pip("--isolated", "install", "--no-index", "--find-links",
             str(tmp_path / "house" / "files"), "requests")
    assert "requests" in venv.installed()


@pytest.mark.parametrize("platform", ["manylinux_2_28_aarch64", "win_amd64"])
def test_numpy_for_another_platform(tmp_path: Path, platform: str) -> None:
    env = _env(tmp_path / "store")
    out = json.loads(wheelhouse("build", "numpy", "-o", str(tmp_path / "house"),
                                "--python-version", "3.12", "--platform", platform, "--json",
                                env=env).stdout)
    (files,) = out["targets"].values()
    (numpy,) = [f for f in files if f.startswith("numpy-")]
    assert "cp312" in numpy and platform.split("_")[-1] in numpy
    run([sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--no-index",
         "--find-links", str(tmp_path / "house" / "files"), "--platform", platform,
         "--python-version", "3.12", "--only-binary=:all:", "--target", str(tmp_path / "t"),
         "numpy"], env=env)


def test_sdist_only_package_serves_every_target(tmp_path: Path) -> None:
    env = _env(tmp_path / "store")
    out = json.loads(wheelhouse("build", "docopt==0.6.2", "-o", str(tmp_path / "house"),
                                "--python-version", "3.12", "--platform",
                                "manylinux_2_28_aarch64", "--json", env=env).stdout)
    assert out["built"] == ["docopt-0.6.2-py2.py3-none-any.whl"]
