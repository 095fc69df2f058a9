"""A house made by ``add`` installs offline with the real pip, with or without the store."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from tests.builders import build_wheel
from tests.conftest import Venv, run, wheelhouse

if TYPE_CHECKING:
    from pathlib import Path


def test_house_installs_offline_with_pip_and_survives_without_the_store(
    tmp_path: Path, store_env: dict[str, str], venv: Venv
) -> None:
    dists = tmp_path / "dists"
    build_wheel(dists, "app", "1.0", requires_dist=["lib>=2", "extra-only; extra == 'x'"],
                console_scripts={"app-hello": "app:hello"},
                files={"app.py": b"def hello():\n    print('hello from app')\n"})
    build_wheel(dists, "lib", "1.0")
    build_wheel(dists, "lib", "2.1")
    house = tmp_path / "house"
    wheelhouse("add", str(dists), "-o", str(house), env=store_env)

    # Carry the house somewhere else and delete the store: it must not matter.
    moved = tmp_path / "elsewhere" / "house"
    shutil.copytree(house, moved)
    shutil.rmtree(store_env["WHEELHOUSE_STORE"])

    venv.pip("install", "--no-index", "--find-links", str(moved / "files"), "app")

    assert venv.installed() == {"app": "1.0", "lib": "2.1"}
    out = run([str(venv.bin / "app-hello")]).stdout
    assert out == "hello from app\n"


def test_pip_refuses_what_the_house_lacks(
    tmp_path: Path, store_env: dict[str, str], venv: Venv
) -> None:
    build_wheel(tmp_path / "dists", "app", "1.0", requires_dist=["absent-dep"])
    house = tmp_path / "house"
    wheelhouse("add", str(tmp_path / "dists"), "-o", str(house), env=store_env)
    proc = venv.pip("install", "--no-index", "--find-links", str(house / "files"), "app",
                    check=False)
    assert proc.returncode != 0
    assert "absent-dep" in proc.stderr
