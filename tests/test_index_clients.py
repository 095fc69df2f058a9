"""pip, uv and pypi-simple agree on every page of the same house."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LocalIndex, Venv, isolated_env, run
from wheelhouse.add import add_paths
from wheelhouse.house import House
from wheelhouse.store import Store

UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> House:
    """One house with wheels, an sdist-only project, a yanked file, requires-python
    ranges and a name that needs normalising."""
    tmp = tmp_path_factory.mktemp("clients")
    d = tmp / "dists"
    build_wheel(d, "app", "1.0", requires_dist=["lib<2"])
    # app 2.0 needs something no house has: a resolver must back off to 1.0,
    # reading only app 2.0's .metadata (PEP 658), never its wheel.
    build_wheel(d, "app", "2.0", requires_dist=["lib<2", "not-in-house>=1"])
    build_wheel(d, "Demo.Pkg", "1.0", requires_python=">=3.8")
    build_wheel(d, "lib", "1.0")
    build_wheel(d, "lib", "1.5", requires_python=">=3.8")
    build_wheel(d, "lib", "2.0")
    build_wheel(d, "lib", "3.0", requires_python=">=4")
    build_sdist(d, "srconly", "1.0")
    h = House.open(tmp / "house", create=True)
    add_paths(h, Store.open(tmp / "store"), [d])
    h.yank("lib==2.0", reason="broken")
    return h


def _pip(venv: Venv, *args: str) -> None:
    venv.pip("install", "--no-cache-dir", *args)


def _uv(venv: Venv, *args: str) -> None:
    assert UV is not None, "uv is a test dependency"
    run([UV, "pip", "install", "--python", str(venv.python), *args],
        env=isolated_env())


Installer = Callable[..., None]
CLIENTS = [pytest.param(_pip, id="pip"), pytest.param(_uv, id="uv")]


def _sources(house: House, kind: str) -> list[str]:
    if kind == "index-url":
        return ["--index-url", (house.root / "simple").as_uri() + "/"]
    if kind == "find-links-page":
        return ["--no-index", "--find-links", (house.root / "find-links.html").as_uri()]
    return ["--no-index", "--find-links", str(house.files_dir)]


@pytest.mark.parametrize("install", CLIENTS)
@pytest.mark.parametrize("source", ["index-url", "find-links-page", "find-links-dir"])
def test_clients_install_from_the_house(
    house: House, venv: Venv, install: Installer, source: str
) -> None:
    install(venv, *_sources(house, source), "app", "Demo.Pkg", "srconly")
    assert venv.installed() == {
        "app": "1.0", "demo-pkg": "1.0", "lib": "1.5", "srconly": "1.0",
    }


@pytest.mark.parametrize(
    ("install", "source"),
    [
        pytest.param(_pip, "index-url", id="pip-index-url"),
        pytest.param(_pip, "find-links-page", id="pip-find-links-page"),
        pytest.param(_uv, "index-url", id="uv-index-url"),
        # uv reads data-yanked only from indexes, not from find-links pages
        # (its flat-index reader ignores it), so that pair is not listed here.
    ],
)
def test_yanked_and_requires_python_are_honoured(
    house: House, venv: Venv, install: Installer, source: str
) -> None:
    # lib 3.0 needs Python >= 4 and 2.0 is yanked: 1.5 is the answer.
    install(venv, *_sources(house, source), "lib")
    assert venv.installed()["lib"] == "1.5"


@pytest.mark.parametrize("install", CLIENTS)
def test_requires_python_is_honoured_from_the_find_links_page(
    house: House, venv: Venv, install: Installer
) -> None:
    install(venv, *_sources(house, "find-links-page"), "lib!=2.0")
    assert venv.installed()["lib"] == "1.5"


@pytest.mark.parametrize("install", CLIENTS)
def test_yanked_file_installs_when_pinned_exactly(
    house: House, venv: Venv, install: Installer
) -> None:
    install(venv, *_sources(house, "index-url"), "lib==2.0")
    assert venv.installed()["lib"] == "2.0"


@pytest.mark.parametrize("install", CLIENTS)
def test_resolution_reads_metadata_files_not_wheels(
    house: House, venv: Venv, install: Installer,
    serve_dir: Callable[[Path], LocalIndex],
) -> None:
    server = serve_dir(house.root)
    install(venv, "--index-url", f"{server.url}/simple/", "app")
    assert venv.installed() == {"app": "1.0", "lib": "1.5"}
    gets = [r.split(" ", 1)[1] for r in server.requests if r.startswith("GET ")]
    assert "/files/app-2.0-py3-none-any.whl.metadata" in gets
    assert "/files/app-2.0-py3-none-any.whl" not in gets
    assert "/files/app-1.0-py3-none-any.whl" in gets
