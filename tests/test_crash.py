"""SIGKILL at any point of ``add`` leaves the store and the house consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from tests.builders import build_wheel
from tests.conftest import isolated_env, wheelhouse
from wheelhouse.house import House
from wheelhouse.store import Store

if TYPE_CHECKING:
    from pathlib import Path


def _assert_consistent(store_root: Path, house_root: Path) -> None:
    store = Store.open(store_root)  # opening cleans the debris of the dead writer
    assert store.verify().ok, "a blob does not match its name"
    assert list(store.tmp_dir.iterdir()) == []
    if (house_root / "wheelhouse.json").exists():
        house = House.open(house_root)
        manifest = house.read_manifest()  # never half-written: it parses
        for entry in manifest.files:
            assert house.file_path(entry.filename).is_file()
        problems = [p for p in house.verify() if p.problem != "not in the manifest"]
        # A kill between the manifest and the index (SIGKILL cannot wait) is
        # said by verify, and the next writer (here: index) puts it right.
        if [p.path for p in problems] == ["simple/"]:
            assert "run 'wheelhouse index" in problems[0].problem
            house.reindex()
            problems = [p for p in house.verify() if p.problem != "not in the manifest"]
        assert problems == []
        # A file linked before the kill but not yet in the manifest is whole.
        for path in house.files_dir.iterdir():
            if path.name.endswith(".whl"):
                assert store.has(__import__("hashlib").sha256(path.read_bytes()).hexdigest())


def test_sigkill_during_add_leaves_store_consistent(tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    for i in range(6):
        build_wheel(dists, f"big{i}", "1.0", padding=8 * 1024 * 1024)
    env = isolated_env({"WHEELHOUSE_STORE": str(tmp_path / "store")})
    argv = [sys.executable, "-m", "wheelhouse", "add", str(dists), "-o", "HOUSE", "-j", "2"]

    # Measure a full run, then kill runs at points spread across it. (A first
    # run first: in a fresh checkout it also compiles every module, and a run
    # measured then is far longer than the ones killed.)
    wheelhouse("add", str(dists), "-o", str(tmp_path / "warm-up"),
               env=dict(env, WHEELHOUSE_STORE=str(tmp_path / "store-warm-up")))
    start = time.monotonic()
    wheelhouse("add", str(dists), "-o", str(tmp_path / "reference"), env=env)
    full = time.monotonic() - start
    (tmp_path / "store").rename(tmp_path / "store-ref")

    delays = [full * f for f in (0.35, 0.45, 0.55, 0.65, 0.75, 0.85)]
    interrupted = 0
    for n, delay in enumerate(delays):
        store_root = tmp_path / f"store{n}"
        house_root = tmp_path / f"house{n}"
        run_env = dict(env, WHEELHOUSE_STORE=str(store_root))
        proc = subprocess.Popen([a.replace("HOUSE", str(house_root)) for a in argv],
                                env=run_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        manifest = house_root / "wheelhouse.json"
        if not manifest.exists() or len(House.open(house_root).read_manifest().files) < 6:
            interrupted += 1
        _assert_consistent(store_root, house_root)
        # And the next run finishes the job.
        wheelhouse("add", str(dists), "-o", str(house_root), env=run_env)
        house = House.open(house_root)
        assert len(house.read_manifest().files) == 6
        assert house.verify() == []
        # The killed writer's mark made the next one search the whole house
        # for its temp files.
        assert [p for p in house_root.rglob("*") if p.name.startswith(".tmp-")] == []
        assert not (house_root / ".wheelhouse.writing").exists()
    assert interrupted >= 3, "the kills came too late to test anything"


def test_ctrl_c_during_add_never_leaves_an_index_that_shows_another_house(
    tmp_path: Path
) -> None:
    # Ctrl-C waits while the manifest and the index are written: after it the
    # house is as it was or has everything, and its index shows what it has.
    dists = tmp_path / "dists"
    for i in range(300):
        build_wheel(dists, f"pkg{i}", "1.0")
    env = isolated_env()
    wheelhouse("--store", str(tmp_path / "store-warm-up"), "add", str(dists), "-o",
               str(tmp_path / "warm-up"), env=env)  # (compiles every module, once)
    start = time.monotonic()
    wheelhouse("--store", str(tmp_path / "store-ref"), "add", str(dists), "-o",
               str(tmp_path / "reference"), env=env)
    full = time.monotonic() - start
    for n, fraction in enumerate((0.5, 0.7, 0.8, 0.9, 0.95)):
        house_root = tmp_path / f"house{n}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "wheelhouse", "--store", str(tmp_path / f"store{n}"), "add",
             str(dists), "-o", str(house_root)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err
        # 130: interrupted; 0: done first; -SIGINT: done, and stopped while
        # Python was shutting down (its handler is gone by then).
        assert proc.returncode in (0, 130, -signal.SIGINT), err
        if (house_root / "wheelhouse.json").exists():
            house = House.open(house_root)
            assert house.index_is_current()
            assert [p for p in house.verify() if p.problem != "not in the manifest"] == []


def test_a_remove_killed_after_its_manifest_is_finished_by_the_next_writer(
    tmp_path: Path,
) -> None:
    # kill -9 between remove's new manifest and its unlinks: the files stay in
    # files/ (pip's --find-links files/ would still see them) until the next
    # command that takes the house's lock, which finds the dead writer's mark.
    from wheelhouse.add import add_paths

    store = Store.open(tmp_path / "store")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [build_wheel(tmp_path / "d", "keep", "1.0"),
                             build_wheel(tmp_path / "d", "gone", "1.0")])
    code = (
        "import os, signal, sys\n"
        "from wheelhouse.house import House\n"
        "House.unlink_file = lambda self, entry: os.kill(os.getpid(), signal.SIGKILL)\n"
        "House.open(sys.argv[1]).remove('gone')\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(house.root)], check=False,
                            env=isolated_env())
    assert killed.returncode == -signal.SIGKILL
    assert (house.files_dir / "gone-1.0-py3-none-any.whl").exists()
    assert [p.path for p in House.open(house.root).verify()] == [
        "files/gone-1.0-py3-none-any.whl", "files/gone-1.0-py3-none-any.whl.metadata"]

    done = wheelhouse("index", str(house.root), env=isolated_env())

    assert "2 file(s) in files/ that its manifest does not name" in done.stderr
    assert sorted(p.name for p in house.files_dir.iterdir()) == [
        "keep-1.0-py3-none-any.whl", "keep-1.0-py3-none-any.whl.metadata"]
    assert House.open(house.root).verify() == []
    # Without a dead writer's mark, a file someone put in files/ is left alone.
    (house.files_dir / "mine.txt").write_text("mine")
    wheelhouse("index", str(house.root), env=isolated_env())
    assert (house.files_dir / "mine.txt").read_text() == "mine"
