from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_wheel, corrupt_zip, damage_member, metadata_text
from tests.conftest import interrupt_each_fork, reaped
from wheelhouse.add import add_paths
from wheelhouse.errors import HouseError, InvalidInputError
from wheelhouse.house import FileEntry, House, Manifest
from wheelhouse.store import Sha256, Store

if TYPE_CHECKING:
    from tests.conftest import WheelFactory


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def test_add_links_files_and_writes_manifest(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, make_sdist: WheelFactory
) -> None:
    wheel = make_wheel("Demo_Pkg", "1.0", requires_python=">=3.8")
    sdist = make_sdist("demo-pkg", "1.0")
    house = House.open(tmp_path / "house", create=True)

    result = add_paths(house, store, [wheel, sdist])

    assert [e.filename for e in result.added] == ["demo_pkg-1.0-py3-none-any.whl",
                                                  "demo_pkg-1.0.tar.gz"]
    manifest = house.read_manifest()
    by_name = manifest.by_filename()
    w = by_name["demo_pkg-1.0-py3-none-any.whl"]
    assert (w.project, w.version, w.kind, w.requires_python) == ("demo-pkg", "1.0", "wheel",
                                                                 ">=3.8")
    assert w.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert w.size == wheel.stat().st_size
    assert w.origin == wheel.absolute().as_uri()
    # The file under its real name is the blob itself (a hard link).
    assert house.file_path(w.filename).samefile(store.blob_path(w.sha256))
    # PEP 658: the metadata file is byte-identical to the METADATA inside the wheel.
    with zipfile.ZipFile(wheel) as zf:
        inner = zf.read("demo_pkg-1.0.dist-info/METADATA")
    metadata_file = house.file_path(w.filename + ".metadata")
    assert metadata_file.read_bytes() == inner
    assert w.metadata_sha256 == hashlib.sha256(inner).hexdigest()
    s = by_name["demo_pkg-1.0.tar.gz"]
    assert (s.kind, s.metadata_sha256) == ("sdist", None)
    # No record of a blob's facts beside it: the blob says what it holds.
    assert not store.meta_path(w.sha256).exists() and not (store.root / "meta").exists()
    assert house.verify() == []


def test_adding_twice_is_a_no_op_and_reuses_the_store(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    wheel = make_wheel("demo", "1.0")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [wheel])
    before = _tree(house.root)
    again = add_paths(house, store, [wheel])
    # (Counted once, as unchanged: reused counts only the files added.)
    assert (again.added, [e.filename for e in again.unchanged], again.reused) == (
        (), ["demo-1.0-py3-none-any.whl"], 0
    )
    assert _tree(house.root) == before


def test_add_counts_each_file_once_new_from_the_store_or_already_there(
    tmp_path: Path, store: Store, store_env: dict[str, str], make_wheel: WheelFactory
) -> None:
    from tests.conftest import wheelhouse

    there, in_store, new = (make_wheel(name, "1.0") for name in ("there", "instore", "new"))
    house = tmp_path / "house"
    add_paths(House.open(house, create=True), store, [there])
    add_paths(House.open(tmp_path / "other", create=True), store, [in_store])
    out = wheelhouse("add", str(there), str(in_store), str(new), "-o", str(house),
                     env=store_env)
    assert out.stdout == (f"{house}: 2 added (1 copied into the store, 1 reused from it), "
                          "1 already there\n")


def test_add_directory_recursively(tmp_path: Path, store: Store) -> None:
    build_wheel(tmp_path / "in" / "a", "alpha", "1.0")
    build_wheel(tmp_path / "in" / "b", "beta", "2.0")
    build_wheel(tmp_path / "in" / ".hidden", "gamma", "3.0")
    (tmp_path / "in" / "README.txt").write_text("not a distribution")
    house = House.open(tmp_path / "house", create=True)
    result = add_paths(house, store, [tmp_path / "in"])
    assert sorted(e.project for e in result.added) == ["alpha", "beta"]


def test_a_directory_is_walked_in_order_with_symlinks_followed_to_files_only(
    tmp_path: Path
) -> None:
    from wheelhouse.add import collect_dist_paths

    top = tmp_path / "in"
    for d in ("b/inner", "a", ".hidden", "c"):
        (top / d).mkdir(parents=True)
    for f in ("z-1.0.tar.gz", "b/y-1.0-py3-none-any.whl", "b/inner/x-1.0.zip",
              "a/w-1.0-py3-none-any.whl", ".hidden/h-1.0.tar.gz", "c/notes.txt",
              "b/v-1.0.tar.gz"):
        (top / f).write_bytes(b"x")
    (top / "c" / "link-1.0.tar.gz").symlink_to(top / "z-1.0.tar.gz")
    (top / "c" / "dir-1.0.tar.gz").symlink_to(top / "a")  # a directory: not entered
    (top / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "o-1.0.tar.gz").write_bytes(b"x")

    found = collect_dist_paths([top])

    assert [p.relative_to(top).as_posix() for p in found] == [
        "z-1.0.tar.gz", "a/w-1.0-py3-none-any.whl", "b/v-1.0.tar.gz",
        "b/y-1.0-py3-none-any.whl", "b/inner/x-1.0.zip", "c/link-1.0.tar.gz",
    ]
    (top / "c" / "gone-1.0.tar.gz").symlink_to(top / "nowhere")
    with pytest.raises(InvalidInputError, match="no such file") as info:
        collect_dist_paths([top])
    assert "gone-1.0.tar.gz" in str(info.value)


def test_manifest_is_deterministic(tmp_path: Path, make_wheel: WheelFactory) -> None:
    wheels = [make_wheel(n, "1.0") for n in ("zeta", "alpha", "mid")]
    houses = []
    for i, order in enumerate([wheels, list(reversed(wheels))]):
        store = Store.open(tmp_path / f"store{i}")
        house = House.open(tmp_path / f"house{i}", create=True)
        for w in order:
            add_paths(house, store, [w])
        houses.append(house.manifest_path.read_bytes())
    assert houses[0] == houses[1]
    assert [e["project"] for e in json.loads(houses[0])["files"]] == ["alpha", "mid", "zeta"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("not-a-zip", "not a readable zip archive", id="not-a-zip"),
        pytest.param("damaged-metadata", "not a readable zip archive", id="damaged-metadata"),
        pytest.param("encrypted-metadata", "is encrypted", id="encrypted-metadata"),
        pytest.param("name-mismatch", "metadata says 'other'", id="name-mismatch"),
        pytest.param("version-mismatch", "metadata says 2.0", id="version-mismatch"),
        pytest.param("no-metadata", "found: none", id="no-metadata"),
        pytest.param("bad-name", "invalid distribution file name", id="bad-name"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_added(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, setup: str, message: str
) -> None:
    good = make_wheel("good", "1.0")
    bad_dir = tmp_path / "bad"
    if setup == "not-a-zip":
        bad = build_wheel(bad_dir, "broken", "1.0")
        corrupt_zip(bad)
    elif setup in ("damaged-metadata", "encrypted-metadata"):
        bad = build_wheel(bad_dir, "broken", "1.0")
        damage_member(bad, "broken-1.0.dist-info/METADATA",
                      how="data" if setup == "damaged-metadata" else "encrypted")
    elif setup == "name-mismatch":
        bad = build_wheel(bad_dir, "demo", "1.0", metadata=metadata_text("other", "1.0"))
    elif setup == "version-mismatch":
        bad = build_wheel(bad_dir, "demo", "1.0", metadata=metadata_text("demo", "2.0"))
    elif setup == "no-metadata":
        bad_dir.mkdir()
        bad = bad_dir / "demo-1.0-py3-none-any.whl"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("demo.py", "")
    else:
        bad_dir.mkdir()
        bad = bad_dir / "demo 1.0.whl"
        shutil.copy(good, bad)
    house = House.open(tmp_path / "house", create=True)
    manifest_before = house.manifest_path.read_bytes()

    with pytest.raises(InvalidInputError) as info:
        add_paths(house, store, [good, bad])

    assert message in str(info.value)
    assert "nothing was added" in str(info.value)
    assert house.manifest_path.read_bytes() == manifest_before
    assert list(house.files_dir.iterdir()) == []
    if setup != "bad-name":  # (that one holds the good wheel's bytes under a bad name)
        # The bad bytes never got a name in the store.
        assert not store.has(hashlib.sha256(bad.read_bytes()).hexdigest())


def test_same_filename_different_bytes_is_refused(
    tmp_path: Path, store: Store
) -> None:
    first = build_wheel(tmp_path / "one", "demo", "1.0", files={"demo.py": b"one = 1\n"})
    second = build_wheel(tmp_path / "two", "demo", "1.0", files={"demo.py": b"two = 2\n"})
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [first])
    before = _tree(house.root)
    with pytest.raises(HouseError) as info:
        add_paths(house, store, [second])
    text = str(info.value)
    assert hashlib.sha256(first.read_bytes()).hexdigest() in text
    assert hashlib.sha256(second.read_bytes()).hexdigest() in text
    assert _tree(house.root) == before
    with pytest.raises(InvalidInputError, match="two different files are named"):
        add_paths(House.open(tmp_path / "h2", create=True), store, [first, second])


def test_missing_path_is_named(tmp_path: Path, store: Store) -> None:
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match=r"nope\.whl"):
        add_paths(house, store, [tmp_path / "nope.whl"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_or_device_is_named_not_read(tmp_path: Path, store: Store) -> None:
    house = House.open(tmp_path / "house", create=True)
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "fifo-1.0-py3-none-any.whl")  # reading it would wait for a writer
    (odd / "zero-1.0-py3-none-any.whl").symlink_to("/dev/zero")  # and this, forever
    with pytest.raises(InvalidInputError, match="not a regular file") as info:
        add_paths(house, store, [odd])
    assert "fifo-1.0" in str(info.value) and "zero-1.0" in str(info.value)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        add_paths(house, store, [odd / "fifo-1.0-py3-none-any.whl"])
    assert house.read_manifest().files == ()


def test_house_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "house"
    path.write_text("I am a file")
    with pytest.raises(HouseError, match="not a directory"):
        House.open(path, create=True)
    assert path.read_text() == "I am a file"


def test_refuses_to_turn_a_non_empty_directory_into_a_house(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(HouseError, match="not empty and is not a house"):
        House.open(tmp_path, create=True)


def test_a_house_whose_creation_was_killed_is_created_on_the_next_run(tmp_path: Path) -> None:
    # What a run killed between creating files/ and writing the manifest leaves.
    root = tmp_path / "house"
    (root / "files").mkdir(parents=True)
    (root / ".wheelhouse.lock").write_text("")
    (root / ".tmp-abc123.part").write_text("{")
    house = House.open(root, create=True)
    assert house.read_manifest().files == ()
    # But not over anything else: a file in files/ is someone's.
    other = tmp_path / "other"
    (other / "files").mkdir(parents=True)
    (other / "files" / "x-1.0-py3-none-any.whl").write_text("mine")
    with pytest.raises(HouseError, match="not empty and is not a house"):
        House.open(other, create=True)
    assert (other / "files" / "x-1.0-py3-none-any.whl").read_text() == "mine"


def test_a_house_is_created_under_its_lock(tmp_path: Path) -> None:
    # Two commands creating the same house at once: the second waits for the
    # first (else each cleans up the other's temp files, and one fails).
    import threading
    import time

    root = tmp_path / "house"
    root.mkdir()
    created: list[House] = []
    with House(root).lock():
        creator = threading.Thread(target=lambda: created.append(House.open(root, create=True)))
        creator.start()
        time.sleep(0.3)
        assert not (root / "wheelhouse.json").exists()  # waiting for the lock
    creator.join(timeout=30)
    assert created and created[0].read_manifest().files == ()
    assert (root / "simple" / "index.html").is_file()
    # A house made meanwhile by another command is opened, not made again.
    manifest = (root / "wheelhouse.json").read_bytes()
    assert House.open(root, create=True).read_manifest().files == ()
    assert (root / "wheelhouse.json").read_bytes() == manifest


def test_house_on_another_filesystem_gets_verified_copies(
    store: Store, make_wheel: WheelFactory
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == store.root.stat().st_dev:
        pytest.skip("needs a second file system (/dev/shm) to test copying across devices")
    import errno
    import tempfile

    try:
        scratch = tempfile.TemporaryDirectory(dir=shm)
    except OSError as exc:  # a full /dev/shm is the machine's state, not ours
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES):
            raise
        pytest.skip(f"cannot create a directory in {shm}: {exc.strerror}")
    with scratch as other:
        house = House.open(Path(other) / "house", create=True)
        wheel = make_wheel("demo", "1.0")
        (entry,) = add_paths(house, store, [wheel]).added
        copy = house.file_path(entry.filename)
        assert copy.read_bytes() == wheel.read_bytes()
        assert copy.stat().st_ino != store.blob_path(entry.sha256).stat().st_ino
        assert house.verify() == []


def test_verify_reports_changed_missing_and_stray_files(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [make_wheel("a", "1.0"), make_wheel("b", "1.0")])
    a = house.file_path("a-1.0-py3-none-any.whl")
    data = bytearray(a.read_bytes())
    data[10] ^= 0xFF
    a.unlink()  # break the hard link first, as an editor would
    a.write_bytes(bytes(data))
    house.file_path("b-1.0-py3-none-any.whl").unlink()
    (house.files_dir / "stray-1.0-py3-none-any.whl").write_bytes(b"x")
    problems = {(p.path, p.problem.split(":")[0]) for p in house.verify()}
    assert problems == {
        ("files/a-1.0-py3-none-any.whl", "hash mismatch"),
        ("files/b-1.0-py3-none-any.whl", "missing"),
        ("files/stray-1.0-py3-none-any.whl", "not in the manifest"),
    }
    assert store.verify().ok  # the store's blob was not touched


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b'{"format": 1,\n "files": ["\xff"]}',
                     r"wheelhouse\.json:2: not valid UTF-8 \(invalid start byte\)",
                     id="not-utf8"),
        pytest.param(b'{"format": 7, "files": []}', "format version 7", id="future-format"),
        pytest.param(b'{"format": "1", "files": []}', r"not a number \('1'\)",
                     id="format-string"),
        pytest.param(b'{"files": []}', "has no format version", id="no-format"),
        pytest.param(
            json.dumps({"format": 1, "files": [{
                "filename": "../evil-1.0-py3-none-any.whl", "sha256": "a" * 64, "size": 1,
                "kind": "wheel", "project": "evil", "version": "1.0"}]}).encode(),
            "path separator", id="traversal-in-manifest",
        ),
        pytest.param(
            json.dumps({"format": 1, "files": [{
                "filename": "evil-1.0-py3-none-any.whl", "sha256": "../x", "size": 1,
                "kind": "wheel", "project": "evil", "version": "1.0"}]}).encode(),
            "not a sha256", id="bad-digest",
        ),
        pytest.param(b'{"format": 1, "files": null}', "'files' is not a list",
                     id="files-null"),
        pytest.param(b'{"format": 1, "files": [{"filename": "evil-1.0-py3-none-any.whl", '
                     b'"sha256": "' + b"a" * 64 + b'", "size": 1e400, "kind": "wheel", '
                     b'"project": "evil", "version": "1.0"}]}', "'size' must be a whole number",
                     id="size-infinite"),
        pytest.param(b'{"format": 1, "files": ["just a string"]}',
                     "wheelhouse.json:1: not a JSON object: 'just a string'", id="entry-string"),
    ],
)
def test_bad_manifest_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "wheelhouse.json").write_bytes(content)
    with pytest.raises(Exception, match=message) as info:
        House.open(tmp_path)
    from wheelhouse.errors import WheelhouseError

    assert isinstance(info.value, WheelhouseError)


def test_manifest_round_trips() -> None:
    from wheelhouse.house import FileEntry
    from wheelhouse.store import Sha256

    entry = FileEntry("demo-1.0-py3-none-any.whl", Sha256("a" * 64), 10, "wheel", "demo", "1.0",
                      requires_python=">=3.9", metadata_sha256=Sha256("b" * 64),
                      origin="https://example.invalid/demo", upload_time="2024-01-01T00:00:00Z",
                      yanked="broken", targets=("cp312-manylinux_2_28_x86_64",))
    manifest = Manifest((entry,))
    assert Manifest.parse(manifest.render(), source="x") == manifest


@pytest.mark.parametrize(
    "entry_kwargs",
    [
        pytest.param({}, id="minimal"),
        pytest.param({"requires_python": '>=3.8,<4 "\u00e9\\\n', "yanked": "", "origin": "x",
                      "upload_time": "2024-01-01T00:00:00Z", "targets": ("a", "b"),
                      "metadata_sha256": "b" * 64}, id="every-field"),
    ],
)
def test_manifest_lines_are_exactly_json(entry_kwargs: dict[str, object]) -> None:
    from wheelhouse.house import FileEntry

    entry = FileEntry("demo-1.0-py3-none-any.whl", "a" * 64, 10, "wheel",  # type: ignore[arg-type]
                      "demo", "1.0", **entry_kwargs)  # type: ignore[arg-type]
    assert entry.to_json_line() == json.dumps(entry.to_dict(), sort_keys=True,
                                              separators=(",", ":"))


def test_debris_of_a_dead_writer_is_cleaned_on_the_next_change(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [make_wheel("demo", "1.0")])
    assert not (house.root / ".wheelhouse.writing").exists()  # a writer's mark goes with it
    debris = [house.files_dir / ".tmp-123.abc.0.part", house.root / ".tmp-9.x.1.part",
              house.root / "simple" / ".tmp-9.x.2.part",
              house.root / "simple" / "demo" / ".tmp-9.x.3.part"]
    for path in debris:
        path.write_bytes(b"half")
    # Without a dead writer's mark, only the top directory is searched (listing
    # files/ of a large house costs more than the change itself) ...
    add_paths(house, store, [make_wheel("demo", "2.0")])
    assert [p.exists() for p in debris] == [True, False, True, True]
    # ... a writer that died left its mark: everything is searched.
    (house.root / ".wheelhouse.writing").write_bytes(b"")
    add_paths(house, store, [make_wheel("demo", "3.0")])
    assert not any(p.exists() for p in debris)
    assert not (house.root / ".wheelhouse.writing").exists()
    # 'wheelhouse index' (the repair) always searches everywhere.
    for path in debris:
        path.write_bytes(b"half")
    house.reindex()
    assert not any(p.exists() for p in debris)


def test_symlinked_files_dir_is_refused_and_nothing_outside_changes(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [make_wheel("a", "1.0")])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".tmp-1.x.0.part").write_text("not ours")
    (outside / "a-1.0-py3-none-any.whl").write_text("not ours either")
    for p in house.files_dir.iterdir():
        p.unlink()
    house.files_dir.rmdir()
    house.files_dir.symlink_to(outside)
    with pytest.raises(HouseError, match="symbolic link"):
        add_paths(house, store, [make_wheel("b", "1.0")])
    manifest = house.manifest_path.read_bytes()
    with pytest.raises(HouseError, match="symbolic link"):
        house.remove("a")
    assert house.manifest_path.read_bytes() == manifest
    assert sorted(p.name for p in outside.iterdir()) == [".tmp-1.x.0.part",
                                                         "a-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("forked", [True, False], ids=["forked helpers", "process pool"])
def test_many_files_go_through_helper_processes_that_publish_their_blobs(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, forked: bool
) -> None:
    import wheelhouse._forked
    import wheelhouse.add

    if not forked:  # another thread runs, say: the process pool takes over
        monkeypatch.setattr(wheelhouse._forked, "can_fork", lambda: False)
    else:
        import concurrent.futures

        def no_pool(*args: object, **kwargs: object) -> None:
            raise AssertionError("the process pool was used")

        monkeypatch.setattr(concurrent.futures.ProcessPoolExecutor, "__init__", no_pool)
    dists = tmp_path / "dists"
    for i in range(12):
        build_wheel(dists, f"pkg{i}", "1.0")
    threads = House.open(tmp_path / "by-threads", create=True)
    add_paths(threads, Store.open(tmp_path / "other-store"), [dists], jobs=None)

    # Past the threshold, two helper processes stage and publish the blobs.
    monkeypatch.setattr(wheelhouse.add, "_PROCESS_THRESHOLD", 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    bad = build_wheel(tmp_path / "bad", "zzz", "1.0", metadata=metadata_text("other", "1.0"))
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match="nothing was added"):
        add_paths(house, store, [dists, bad])
    assert list(house.files_dir.iterdir()) == []
    assert house.read_manifest().files == ()
    assert not store.has(hashlib.sha256(bad.read_bytes()).hexdigest())
    assert list(store.tmp_dir.iterdir()) == []

    result = add_paths(house, store, [dists])
    assert len(result.added) == 12
    assert house.read_manifest().files == threads.read_manifest().files
    assert house.verify() == []
    assert list(store.tmp_dir.iterdir()) == []
    for entry in house.read_manifest().files:
        assert store.has(entry.sha256) and entry.metadata_sha256 is not None
        assert store.has(entry.metadata_sha256)
        assert house.file_path(entry.filename).samefile(store.blob_path(entry.sha256))
    assert _tree(house.root / "simple") == _tree(threads.root / "simple")


def test_an_add_interrupted_as_its_helper_starts_stops_the_helper(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wheelhouse._forked
    import wheelhouse.add

    made = interrupt_each_fork(monkeypatch, wheelhouse._forked)
    monkeypatch.setattr(wheelhouse._forked, "can_fork", lambda: True)
    monkeypatch.setattr(wheelhouse.add, "_PROCESS_THRESHOLD", 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    dists = tmp_path / "dists"
    for i in range(12):
        build_wheel(dists, f"pkg{i}", "1.0")
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(KeyboardInterrupt):
        add_paths(house, store, [dists])
    [helper] = made
    assert reaped(helper.pid)
    assert house.read_manifest().files == ()
    assert list(store.tmp_dir.iterdir()) == []


def test_a_helpers_outcomes_cross_the_pipe_with_every_field() -> None:
    import pickle

    from wheelhouse.add import _pack, _Prepared, _Problem, _unpack

    full = FileEntry(
        filename="a-1.0-py3-none-any.whl", sha256=Sha256("1" * 64), size=10, kind="wheel",
        project="a", version="1.0", requires_python=">=3.9", metadata_sha256=Sha256("2" * 64),
        origin="https://example.org/a.whl", upload_time="2024-01-02T03:04:05.000000Z",
        yanked="broken", targets=("cp312-manylinux_2_17_x86_64", "cp313-win_amd64"),
    )
    bare = FileEntry(filename="b-2.0.tar.gz", sha256=Sha256("3" * 64), size=5, kind="sdist",
                     project="b", version="2.0")
    outcomes: list[_Prepared | _Problem] = [
        _Prepared(full, True, []), _Problem("c: bad", True), _Prepared(bare, False, []),
    ]
    back = _unpack(pickle.loads(pickle.dumps(_pack(outcomes))))
    assert back == outcomes


def test_manifest_lines_read_fast_or_slow_give_the_same_entries() -> None:
    from wheelhouse.house import _LINE, FileEntry

    sha = Sha256("a" * 64)
    entries = (
        FileEntry("demo-1.0-py3-none-any.whl", sha, 10, "wheel", "demo", "1.0",
                  requires_python=">=3.8", metadata_sha256=Sha256("b" * 64), origin="file:///x/y",
                  upload_time="2024-01-01T00:00:00Z", yanked="", targets=("py312-linux", "t2")),
        FileEntry("demo-1.0.tar.gz", sha, 0, "sdist", "demo", "1.0"),
        FileEntry("demo-2.0.tar.gz", sha, 5, "sdist", "demo", "2.0", yanked='"bad" \\ \u00e9\n'),
        FileEntry("Other_Pkg-3-py2.py3-none-any.whl", sha, 7, "wheel", "other-pkg", "3",
                  targets=("x",)),
    )
    data = Manifest(entries).render()
    lines = data.decode().split("\n")[1:-2]
    fast = [bool(_LINE.match(line.rstrip(","))) for line in lines]
    assert fast.count(True) == 3  # the escaped one goes to the JSON decoder
    for keep in (False, True):
        parsed = Manifest.parse(data, source="x", keep_lines=keep)
        assert parsed.files == Manifest(entries).files
        assert parsed.render() == data


@pytest.mark.parametrize(("filename", "project", "message"), [
    ("a..b-1.0.tar.gz", "a-b", "'..'"),
    ("x" * 250 + "-1.0-py3-none-any.whl", "x" * 250, "longer than"),
    ("demo-1.0-py3-none-any.whl", "other", "disagrees with its file name"),
])
def test_manifest_lines_read_fast_are_checked_as_strictly(
    tmp_path: Path, filename: str, project: str, message: str
) -> None:
    line = (f'{{"filename":"{filename}","kind":"wheel","project":"{project}",'
            f'"sha256":"{"a" * 64}","size":1,"version":"1.0"}}')
    data = f'{{"format":1,"files":[\n{line}\n]}}\n'.encode()
    with pytest.raises(HouseError, match=message):
        Manifest.parse(data, source="x")
    # The same line with an escape in it goes to the JSON decoder: as strict.
    escaped = line.replace('"version"', '"\\u0076ersion"')
    assert escaped != line
    data = f'{{"format":1,"files":[\n{escaped}\n]}}\n'.encode()
    with pytest.raises(HouseError, match=message):
        Manifest.parse(data, source="x")


@pytest.mark.parametrize("filename", [
    "demo-1.0--none-any.whl", "demo-1.0-py3-none-.whl", "demo-1.0-py3..py2-none-any.whl",
    "demo-1.0-3py-none-any.whl", "demo-1.0-py3-none-any.whl", "demo-1.0-py2.py3-none-any.whl",
])
def test_a_manifest_takes_the_wheel_names_add_takes_and_no_other(filename: str) -> None:
    # Its lines' tags are checked as parse_filename checks them (packaging
    # from 26.3 refuses an empty tag part, an interpreter that is not an
    # identifier), by either way of reading a line.
    from wheelhouse.errors import InvalidFilenameError
    from wheelhouse.filenames import parse_filename

    try:
        parse_filename(filename)
        refused = None
    except InvalidFilenameError as e:
        refused = e.message
    line = (f'{{"filename":"{filename}","kind":"wheel","project":"demo",'
            f'"sha256":"{"a" * 64}","size":1,"version":"1.0"}}')
    escaped = line.replace('"version"', '"\\u0076ersion"')  # for the JSON decoder
    for text in (line, escaped):
        data = f'{{"format":1,"files":[\n{text}\n]}}\n'.encode()
        if refused is None:
            assert [e.filename for e in Manifest.parse(data, source="x").files] == [filename]
        else:
            with pytest.raises(HouseError) as info:
                Manifest.parse(data, source="x")
            assert refused in str(info.value)


def test_known_wheel_whose_metadata_blob_is_gone_gets_it_again(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    wheel = make_wheel("demo", "1.0")
    first = House.open(tmp_path / "one", create=True)
    add_paths(first, store, [wheel])
    (entry,) = first.read_manifest().files
    assert entry.metadata_sha256 is not None
    # As gc does when a deleted house still held the wheel's link, not the metadata's.
    store.blob_path(entry.metadata_sha256).unlink()
    second = House.open(tmp_path / "two", create=True)
    add_paths(second, store, [wheel])
    assert store.has(entry.metadata_sha256)
    assert second.read_manifest().files == first.read_manifest().files
    assert second.verify() == []


def test_no_shared_memory_for_worker_processes_falls_back_to_threads(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    import wheelhouse._forked
    import wheelhouse.add

    def no_semaphores(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")  # what a full /dev/shm gives

    monkeypatch.setattr(concurrent.futures.ProcessPoolExecutor, "__init__", no_semaphores)
    monkeypatch.setattr(wheelhouse._forked, "can_fork", lambda: False)  # the pool's turn
    monkeypatch.setattr(wheelhouse.add, "_PROCESS_THRESHOLD", 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    wheels = [make_wheel(f"pkg{i}", "1.0") for i in range(4)]
    house = House.open(tmp_path / "house", create=True)
    result = add_paths(house, store, wheels)
    assert len(result.added) == 4
    assert house.verify() == [] and store.verify().ok


def test_a_damaged_blob_is_never_linked_and_the_good_bytes_take_its_place(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = make_wheel("demo", "1.0")
    other = make_wheel("other", "1.0")
    first = House.open(tmp_path / "one", create=True)
    add_paths(first, store, [wheel])
    (entry,) = first.read_manifest().files
    # The store's copy is replaced by other bytes (a disk error, a hand edit).
    blob = store.blob_path(entry.sha256)
    blob.unlink()
    blob.write_bytes(other.read_bytes())
    second = House.open(tmp_path / "two", create=True)
    result = add_paths(second, store, [wheel])
    assert result.reused == 0  # not taken from the store: stored again
    linked = second.file_path(entry.filename).read_bytes()
    assert hashlib.sha256(linked).hexdigest() == entry.sha256
    assert second.verify() == []
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == entry.sha256
    assert [p.name.split(".")[0] for p in (store.root / "quarantine").iterdir()] == [
        entry.sha256]
    assert any("damaged" in r.getMessage() and entry.sha256 in r.getMessage()
               for r in caplog.records)


def test_a_failed_command_never_removes_a_house_somebody_else_filled(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    from wheelhouse.house import removed_if_new_and_failed

    wheel = make_wheel("demo", "1.0")
    root = tmp_path / "house"
    with pytest.raises(RuntimeError), removed_if_new_and_failed(root):
        # Another process creates the same house and fills it meanwhile.
        add_paths(House.open(root, create=True), store, [wheel])
        raise RuntimeError("this command fails")
    assert [e.filename for e in House.open(root).read_manifest().files] == [wheel.name]
    # An empty house this command created is removed.
    empty = tmp_path / "empty"
    with pytest.raises(RuntimeError), removed_if_new_and_failed(empty):
        House.open(empty, create=True)
        raise RuntimeError("this command fails")
    assert not empty.exists()


def test_a_damaged_blob_another_process_set_aside_first_is_not_an_error(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = make_wheel("demo", "1.0")
    first = House.open(tmp_path / "one", create=True)
    add_paths(first, store, [wheel])
    (entry,) = first.read_manifest().files
    blob = store.blob_path(entry.sha256)
    blob.unlink()
    blob.write_bytes(b"damaged")

    def gone_already(*_args: object) -> None:
        blob.unlink()  # the other process moved it first
        raise FileNotFoundError(2, "No such file or directory", str(blob))

    monkeypatch.setattr(Store, "_quarantine", gone_already)
    assert store.intact(entry.sha256) is False
    monkeypatch.undo()
    second = House.open(tmp_path / "two", create=True)
    add_paths(second, store, [wheel])
    assert second.verify() == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="reads /proc")
def test_a_killed_add_takes_its_worker_processes_with_it(tmp_path: Path) -> None:
    # Forked workers outlived a SIGKILL of `add`, holding the store's use lock
    # (inherited), so that `gc` waited for them for good.
    import sys
    import time

    from tests.conftest import isolated_env, kill_leaves_no_workers, own_session, wheelhouse

    dists = tmp_path / "dists"
    for i in range(8):
        build_wheel(dists, f"pkg{i}", "1.0")
    ready = tmp_path / "workers-ready"
    script = (
        "import os, sys, time, wheelhouse.add as a\n"
        "a._PROCESS_THRESHOLD = 4\n"
        "os.cpu_count = lambda: 2\n"
        "def slow(parent):\n"  # in each helper, once it is set to die with its parent
        f"    open({str(ready)!r}, 'a').write('x')\n"
        "    time.sleep(60)\n"
        "a.adopt_temp_files_for = slow\n"
        "from wheelhouse.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = isolated_env({"WHEELHOUSE_STORE": str(tmp_path / "store")})
    argv = [sys.executable, "-c", script, "add", str(dists), "-o", str(tmp_path / "house")]
    with own_session(argv, env) as proc:
        deadline = time.monotonic() + 30
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists() and proc.poll() is None, "no worker started"
        kill_leaves_no_workers(proc)
    # The store's use lock is free: gc does not wait.
    out = wheelhouse("gc", "--dry-run", env=env, timeout=30)
    assert out.returncode == 0


def test_a_helper_that_dies_midway_has_its_chunks_done_by_the_add_itself(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import time

    import wheelhouse.add

    dists = tmp_path / "dists"
    for i in range(40):
        build_wheel(dists, f"pkg{i:02}", "1.0")
    monkeypatch.setattr(wheelhouse.add, "_PROCESS_THRESHOLD", 4)
    monkeypatch.setattr(wheelhouse.add, "_MIN_CHUNK", 4)  # 10 chunks
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    parent = os.getpid()
    real_chunk = wheelhouse.add._prepare_chunk
    done_in_helper = tmp_path / "done-in-helper"

    def dies_after_one_chunk(root: str, items: list[str]) -> object:
        if os.getpid() != parent:
            if done_in_helper.exists():  # its second chunk: killed half-way through
                real_chunk(root, items[: len(items) // 2])

                def killed(*args: object, **kwargs: object) -> None:
                    os.kill(os.getpid(), signal.SIGKILL)

                # (in the helper only) killed with the rest staged, not yet named
                Store.publish_many = killed  # type: ignore[method-assign]
                real_chunk(root, items[len(items) // 2 :])
            done_in_helper.write_text("x")
        else:
            time.sleep(0.1)  # the helper gets more than one chunk
        return real_chunk(root, items)

    monkeypatch.setattr(wheelhouse.add, "_prepare_chunk", dies_after_one_chunk)
    house = House.open(tmp_path / "house", create=True)
    result = add_paths(house, store, [dists])

    assert done_in_helper.exists()  # the helper did take chunks
    # What the killed helper had staged had no name yet: nothing is left behind.
    assert list(store.tmp_dir.iterdir()) == []
    assert len(result.added) == 40
    assert sorted(e.project for e in house.read_manifest().files) == [
        f"pkg{i:02}" for i in range(40)]
    assert house.verify() == [] and store.verify().ok
    for entry in house.read_manifest().files:
        assert house.file_path(entry.filename).samefile(store.blob_path(entry.sha256))


@pytest.mark.parametrize("helper_dies", [False, True], ids=["helper links", "helper killed"])
def test_many_files_are_linked_by_a_helper_while_the_manifest_is_rendered(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, helper_dies: bool
) -> None:
    import signal
    import time

    import wheelhouse.house

    dists = tmp_path / "dists"
    for i in range(30):
        build_wheel(dists, f"pkg{i:02}", "1.0")
    monkeypatch.setattr(wheelhouse.house, "_FORK_MIN_LINKS", 4)
    monkeypatch.setattr(wheelhouse.house, "_LINK_CHUNK", 3)  # 10 chunks
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    parent = os.getpid()
    real_link = House._link_entries
    helper_linked = tmp_path / "helper-linked"

    def link(self: House, store: Store, entries: list[FileEntry]) -> None:
        if os.getpid() == parent:
            time.sleep(0.05)  # the helper gets more than one chunk
        else:
            if helper_dies and helper_linked.exists():
                real_link(self, store, entries[:1])  # killed half-way through a chunk
                os.kill(os.getpid(), signal.SIGKILL)
            helper_linked.write_text("x")
        real_link(self, store, entries)

    monkeypatch.setattr(House, "_link_entries", link)
    house = House.open(tmp_path / "house", create=True)
    result = add_paths(house, store, [dists])

    assert helper_linked.exists()
    assert len(result.added) == 30
    assert house.verify() == []
    files = house.read_manifest().files
    assert len(files) == 30
    for entry in files:
        assert house.file_path(entry.filename).samefile(store.blob_path(entry.sha256))
        assert entry.metadata_sha256 is not None
        assert house.file_path(entry.filename + ".metadata").samefile(
            store.blob_path(entry.metadata_sha256))
    assert house.manifest_path.read_bytes() == house.read_manifest().render()


def test_a_chunk_stays_within_the_descriptor_limit(
    tmp_path: Path, store: Store
) -> None:
    import resource

    from wheelhouse.add import _prepare_chunk, _Prepared

    dists = tmp_path / "dists"
    wheels = [str(build_wheel(dists, f"pkg{i:03}", "1.0")) for i in range(150)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 150 wheels staged unnamed at once would hold 300 descriptors.
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    try:
        outcomes = _prepare_chunk(str(store.root), wheels)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert all(isinstance(o, _Prepared) for o in outcomes)
    assert len(outcomes) == 150
    for o in outcomes:
        assert isinstance(o, _Prepared) and store.has(o.entry.sha256)
        assert o.entry.metadata_sha256 is not None and store.has(o.entry.metadata_sha256)
    assert list(store.tmp_dir.iterdir()) == []
    assert store.verify().ok


def test_a_hand_reordered_manifest_is_never_read_as_sorted(tmp_path: Path) -> None:
    # 'wheelhouse index' after a hand edit that reordered lines used to record
    # the digest of the unsorted file: later commands then read it lazily as if
    # sorted (a yank or remove missed, a file listed twice), and verify said OK.
    import dataclasses

    from tests.test_index import _many_entries
    from wheelhouse.index import render_index

    # Entries only (no files): without metadata files to restore.
    entries = tuple(dataclasses.replace(e, metadata_sha256=None) for e in _many_entries(3000))
    house = House.open(tmp_path / "house", create=True)
    house.write_manifest(Manifest(entries))
    house.write_index(house.read_manifest())
    lines = house.manifest_path.read_text().split("\n")
    lines[1], lines[3000] = lines[3000] + ",", lines[1][:-1]  # first and last entries swapped
    # ... and one line reformatted (a space after a colon).
    lines[2] = lines[2].replace('"project":"', '"project": "')
    house.manifest_path.write_text("\n".join(lines))
    edited = house.manifest_path.read_bytes()

    again = House.open(tmp_path / "house")
    # The same entries in another order: the index already shows them.
    assert again.index_is_current()
    again.reindex()
    assert again.manifest_path.read_bytes() != edited  # written back in its own shape
    assert again.manifest_path.read_bytes() == Manifest(entries).render()
    assert House.open(tmp_path / "house").index_is_current()
    first, last = entries[0], entries[-1]
    again.yank(f"{first.project}=={first.version}", reason="bad")
    again.remove(last.filename)
    third = House.open(tmp_path / "house")
    files = third.read_manifest().files
    assert list(files) == sorted(files, key=lambda e: (e.project, e.filename))
    assert last.filename not in {e.filename for e in files}
    assert next(e for e in files if e.filename == first.filename).yanked == "bad"
    for rel, data in render_index(third.read_manifest()).items():
        assert (third.root / rel).read_bytes() == data, rel


def test_a_directory_deeper_than_the_recursion_limit_is_walked(tmp_path: Path) -> None:
    import sys

    from wheelhouse.add import collect_dist_paths

    depth = sys.getrecursionlimit() + 50
    # Made one level at a time, relative to the last (os.makedirs recurses, and
    # a path this long is past what one system call takes on some systems).
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("x-1.0.tar.gz", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    (tmp_path / "a-1.0.tar.gz").write_bytes(b"x")

    try:
        found = collect_dist_paths([tmp_path])
    finally:
        # Removed here, bottom up: pytest's own clean-up (shutil.rmtree, which
        # recurses before Python 3.12) fails on it in a later run.
        deepest = tmp_path.joinpath(*["d"] * depth)
        (deepest / "x-1.0.tar.gz").unlink()
        for level in range(depth, 0, -1):
            os.rmdir(tmp_path.joinpath(*["d"] * level))  # noqa: PTH106

    assert found == [tmp_path / "a-1.0.tar.gz", deepest / "x-1.0.tar.gz"]


@pytest.mark.parametrize("lie", ["other facts", "unreadable", "a directory"])
def test_a_blob_record_an_older_version_left_is_not_believed(
    tmp_path: Path, store: Store, lie: str
) -> None:
    # Earlier versions kept a record of what a blob holds beside it, named by
    # nothing: what a new house publishes about a reused blob is read from
    # the blob itself, whatever a record there says.
    d = tmp_path / "d"
    alpha = build_wheel(d, "alpha", "1.0")
    build_wheel(d, "beta", "1.0", requires_python=">=3.8")
    add_paths(House.open(tmp_path / "first", create=True), store, [d])
    entries = House.open(tmp_path / "first").read_manifest().by_filename()
    a, b = entries[alpha.name], entries["beta-1.0-py3-none-any.whl"]
    record = store.meta_path(a.sha256)
    record.parent.mkdir(parents=True)
    if lie == "other facts":
        record.write_text(json.dumps({
            "filename": alpha.name, "format": 1, "kind": "wheel",
            "metadata_sha256": b.metadata_sha256, "name": "alpha",
            "requires_python": ">=3.99", "sha256": a.sha256, "size": 1,
            "tags": ["py3-none-any"], "version": "1.0"}))
    elif lie == "unreadable":
        record.write_bytes(b"[1, 2")
    else:
        record.mkdir()

    new = House.open(tmp_path / "second", create=True)
    add_paths(new, store, [alpha])

    entry = new.read_manifest().by_filename()[alpha.name]
    assert (entry.metadata_sha256, entry.requires_python, entry.size) == (
        a.metadata_sha256, a.requires_python, a.size)
    with zipfile.ZipFile(alpha) as zf:
        inner = zf.read("alpha-1.0.dist-info/METADATA")
    assert new.file_path(alpha.name + ".metadata").read_bytes() == inner
    assert new.verify() == []


def test_a_blob_replaced_by_a_symbolic_link_is_never_linked_into_a_house(
    tmp_path: Path, store: Store
) -> None:
    wheel = build_wheel(tmp_path / "d", "sym", "1.0")
    add_paths(House.open(tmp_path / "first", create=True), store, [wheel])
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    blob = store.blob_path(sha)
    outside = tmp_path / "outside.whl"
    shutil.copyfile(blob, outside)  # the right bytes, outside the store
    shutil.rmtree(tmp_path / "first")
    blob.unlink()
    blob.symlink_to(outside)

    new = House.open(tmp_path / "second", create=True)
    add_paths(new, store, [wheel])

    assert not new.file_path(wheel.name).is_symlink()
    assert new.verify() == []
    assert not blob.is_symlink() and blob.is_file()
    assert list((store.root / "quarantine").iterdir())


@pytest.mark.parametrize("failure", [
    pytest.param(KeyboardInterrupt(), id="ctrl-c"),
    pytest.param(OSError(28, "No space left on device"), id="disk-full"),
])
def test_an_add_that_fails_while_linking_leaves_files_as_the_manifest_says(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
        failure: BaseException) -> None:
    # add links its files into files/ before it writes its manifest. One that
    # failed there (Ctrl-C, a full disk) left them for good: pip's
    # --find-links files/ offered wheels the house does not have, and verify
    # failed, until a command found a dead writer's mark (never, after a
    # handled failure).
    for i in range(10):
        build_wheel(tmp_path / "in", f"p{i}", "1.0")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [build_wheel(tmp_path / "seed", "seed", "1.0")])
    before = sorted(p.name for p in house.files_dir.iterdir())
    real_link, calls = os.link, [0]

    def link(*args: object, **kwargs: object) -> None:
        calls[0] += 1
        if calls[0] == 7 or (calls[0] > 7 and isinstance(failure, OSError)):  # full stays full
            raise failure
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(KeyboardInterrupt if isinstance(failure, KeyboardInterrupt)
                       else HouseError):  # "cannot write ...: No space left on device"
        add_paths(house, store, [tmp_path / "in"])
    monkeypatch.setattr(os, "link", real_link)
    assert calls[0] >= 7
    assert sorted(p.name for p in house.files_dir.iterdir()) == before
    assert house.verify() == []
    assert not (house.root / ".wheelhouse.writing").exists()
    add_paths(house, store, [tmp_path / "in"])  # and the next add is whole
    assert len(house.read_manifest().files) == 11 and house.verify() == []


def test_a_wheel_name_too_long_for_its_metadata_file_is_refused_up_front(
        tmp_path: Path, store: Store) -> None:
    # A 250-character wheel name fits a file system; NAME.whl.metadata does
    # not. The wheel was linked, then the add failed on the metadata file
    # with a hint about how wheel names look.
    name = "p" + "x" * 228
    wheel = build_wheel(tmp_path / "d", name, "1.0")
    assert 246 < len(wheel.name) <= 255, len(wheel.name)
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match="longer than 246 characters"):
        add_paths(house, store, [wheel])
    assert not house.files_dir.exists() or list(house.files_dir.iterdir()) == []
    assert list(store.iter_blobs()) == []


@pytest.mark.parametrize("how", ["same-wheel-into-a-new-house", "new-wheel-same-metadata"])
@pytest.mark.parametrize("description", [0, 1_200_000], ids=["small", "over-1-MiB"])
def test_a_damaged_metadata_blob_is_never_linked_into_a_house(
        tmp_path: Path, store: Store, how: str, description: int) -> None:
    # The wheel's blob was hashed before it was linked again; its METADATA
    # blob was only looked for. Edited in place (through a house's hard link),
    # it went into the new house, which then failed verify and pip's check.
    # (A new wheel's METADATA of over 1 MiB, a long description, was staged
    # unlooked-at, and publishing hashes only a smaller blob it finds there.)
    text = metadata_text("demo", "1.0") + ("\n" + "d" * description if description else "")
    first = build_wheel(tmp_path / "a", "demo", "1.0", metadata=text)
    h1 = House.open(tmp_path / "h1", create=True)
    add_paths(h1, store, [first])
    entry = h1.read_manifest().files[0]
    assert entry.metadata_sha256 is not None
    meta_blob = store.blob_path(entry.metadata_sha256)
    meta_blob.chmod(0o644)
    meta_blob.write_bytes(meta_blob.read_bytes() + b"Summary: edited\n")  # same inode
    second = (first if how == "same-wheel-into-a-new-house"
              else build_wheel(tmp_path / "b", "demo", "1.0", tag="py2.py3-none-any",
                               metadata=text))
    h2 = House.open(tmp_path / "h2", create=True)
    add_paths(h2, store, [second])
    assert h2.verify() == []
    (e2,) = h2.read_manifest().files
    assert e2.metadata_sha256 == entry.metadata_sha256
    got = h2.file_path(e2.filename + ".metadata").read_bytes()
    assert hashlib.sha256(got).hexdigest() == e2.metadata_sha256
    assert store.intact(entry.metadata_sha256)


@pytest.mark.parametrize(("extra", "said"), [
    pytest.param("other-1.0.dist-info/METADATA", "more than one .dist-info directory",
                 id="two-dist-info"),
    pytest.param("../evil.pth", "'..' in the path", id="parent"),
    pytest.param("/etc/evil", "absolute path", id="absolute"),
    pytest.param("..\\evil.pth", "'..' in the path", id="parent-windows"),
    pytest.param("demo.py", "the name appears twice", id="duplicate"),
])
@pytest.mark.parametrize("padding", [0, 3_000_000], ids=["small", "large"])
def test_a_wheel_no_installer_would_install_is_refused_at_add(
        tmp_path: Path, store: Store, extra: str, said: str, padding: int) -> None:
    # Read from its member list alone (no member is read): small wheels take
    # the quick reader, large ones zipfile; both refuse.
    import warnings

    wheel = build_wheel(tmp_path / "d", "demo", "1.0", padding=padding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile: "Duplicate name"
        with zipfile.ZipFile(wheel, "a") as zf:
            zf.writestr(extra, b"x = 1\n")
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match=re.escape(said)):
        add_paths(house, store, [wheel])
    assert list(store.iter_blobs()) == []


def test_a_directory_add_cannot_list_is_skipped_and_said(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # os.walk skips a directory it cannot list: the wheels in it were missing
    # from the house, and add said "1 added" and nothing else. It is still
    # skipped (a volume's lost+found must not stop 'add /media/usb'), but said.
    # (As root, permissions do not stop a listing: the refusal is simulated.)
    build_wheel(tmp_path / "in", "visible", "1.0")
    build_wheel(tmp_path / "in" / "sub", "wanted", "1.0")
    real = os.scandir

    def scandir(path: str) -> object:
        if str(path).endswith("/sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [tmp_path / "in"])
    assert [e.project for e in house.read_manifest().files] == ["visible"]
    assert re.search(r"skipped the directory .*/sub.* \(Permission denied\): it cannot be "
                     r"listed; any wheels in it are not added", caplog.text)


@pytest.mark.parametrize("blank", [" ", "\t", "\u00a0", "\x0b", "\u3000"])
def test_a_name_with_trailing_blanks_in_metadata_is_not_the_files_project(
        tmp_path: Path, store: Store, blank: str) -> None:
    # pip does not find "demo" in a wheel whose METADATA says "Name: demo ";
    # the quick header reader stripped the value (any Unicode blank), and the
    # wheel was indexed as demo. Both readers now read the value as it is.
    metadata = metadata_text("demo", "1.0").replace("Name: demo", f"Name: demo{blank}")
    wheel = build_wheel(tmp_path / "d", "demo", "1.0", metadata=metadata)
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match="file name says project 'demo' but its metadata"):
        add_paths(house, store, [wheel])


def _tgz(path: Path, members: list[tuple[str, bytes]]) -> Path:
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_an_sdists_own_pkg_info_is_the_one_read(tmp_path: Path, store: Store) -> None:
    # PEP 625: demo-1.0.tar.gz holds demo-1.0/PKG-INFO. Another top-level
    # PKG-INFO before it gave the sdist its Requires-Python; one written
    # "./demo-1.0/PKG-INFO" (tar czf x ./demo-1.0) was not checked at all.
    own = metadata_text("demo", "1.0").encode()
    other = metadata_text("demo", "1.0", requires_python=">=3.99").encode()
    sdist = _tgz(tmp_path / "a" / "demo-1.0.tar.gz",
                 [("aaa/PKG-INFO", other), ("demo-1.0/PKG-INFO", own)])
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [sdist])
    (entry,) = house.read_manifest().files
    assert entry.requires_python is None
    liar = _tgz(tmp_path / "b" / "demo-2.0.tar.gz",
                [("./demo-2.0/PKG-INFO", metadata_text("other", "2.0").encode())])
    with pytest.raises(InvalidInputError, match="its metadata says 'other'"):
        add_paths(house, store, [liar])


_PKG_INFO = ("demo-1.0/PKG-INFO", metadata_text("demo", "1.0").encode())


@pytest.mark.parametrize(("limit", "value", "before", "said"), [
    # A member that inflates past the limit: its data is never inflated.
    pytest.param("_MAX_SDIST_UNPACKED", 1024 * 1024, [("demo-1.0/zeros", bytes(8 << 20))],
                 "in its first 1 MiB unpacked", id="unpacked"),
    pytest.param("_MAX_SDIST_MEMBERS", 50, [(f"demo-1.0/{i}.py", b"") for i in range(100)],
                 "in its first 50 members", id="members"),
    # tarfile reads a pax header (here a long member name) in one read.
    pytest.param("_MAX_METADATA", 4096, [("demo-1.0/" + "a" * 8000, b"")],
                 "before a tar header or member of 8192 bytes (at most 4 KiB are read at once)",
                 id="header"),
])
def test_an_sdist_that_unpacks_past_the_limits_before_its_pkg_info_is_refused(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
    limit: str, value: int, before: list[tuple[str, bytes]], said: str,
) -> None:
    # PKG-INFO may come last (hatchling, flit_core): a small .tar.gz that
    # inflates to gigabytes (or millions of members) before it made add read
    # for minutes. The limits are lowered here so the bombs stay small.
    import wheelhouse.dists

    monkeypatch.setattr(wheelhouse.dists, limit, value)
    bomb = _tgz(tmp_path / "bomb" / "demo-1.0.tar.gz", [*before, _PKG_INFO])
    assert bomb.stat().st_size < 64 * 1024
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError) as info:
        add_paths(house, store, [bomb])
    assert str(info.value) == (
        f"1 problem(s); nothing was added:\n  {bomb}: not a valid distribution "
        f"(demo-1.0/PKG-INFO not found {said}, the most wheelhouse reads of an sdist (a real "
        "one is far smaller, a decompression bomb is not); if this one is real, build a wheel "
        f"from it (pip wheel --no-deps {bomb}) and add the wheel)")
    assert house.read_manifest().files == ()
    assert [p for p in store.root.rglob("*") if p.is_file() and p.parent.name != "locks"
            and p.name != "wheelhouse-store.json"] == []
    # The same members after PKG-INFO: it is found first, and nothing more is read.
    fine = _tgz(tmp_path / "fine" / "demo-1.0.tar.gz", [_PKG_INFO, *before])
    (entry,) = add_paths(house, store, [fine]).added
    assert entry.filename == "demo-1.0.tar.gz"


def test_file_names_that_differ_only_in_case_are_refused(tmp_path: Path, store: Store) -> None:
    # On a case-insensitive file system (a house copied to macOS or Windows)
    # they are one file; the index offered both for one project and version.
    lower = build_wheel(tmp_path / "a", "demo", "1.0")
    upper = build_wheel(tmp_path / "b", "demo", "1.0", files={"demo.py": b"X = 2\n"},
                        filename="Demo-1.0-py3-none-any.whl")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [lower])
    with pytest.raises(HouseError, match="two file names that differ only in case"):
        add_paths(house, store, [upper])
    other = House.open(tmp_path / "other", create=True)
    with pytest.raises(HouseError, match=r"demo-1.0-py3-none-any.whl: the house gets Demo-1"):
        add_paths(other, store, [lower, upper])
    assert [e.filename for e in house.read_manifest().files] == [lower.name]


def test_a_house_an_older_wheelhouse_filled_with_a_case_pair_takes_either_again(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import wheelhouse.add as add_module

    lower = build_wheel(tmp_path / "a", "demo", "1.0")
    upper = build_wheel(tmp_path / "b", "demo", "1.0", files={"demo.py": b"X = 2\n"},
                        filename="Demo-1.0-py3-none-any.whl")
    old = House.open(tmp_path / "old", create=True)
    add_paths(old, store, [lower])
    with monkeypatch.context() as m:  # as an older wheelhouse did: no case check
        m.setattr(add_module, "refuse_other_bytes", lambda *a, **k: None)
        add_paths(old, store, [upper])
    add_paths(old, store, [upper, lower])  # a rebuild: the same names, the same bytes
    assert len(old.read_manifest().files) == 2 and old.verify() == []


def test_a_failed_change_takes_only_the_files_it_put_in_files(
        tmp_path: Path, store: Store) -> None:
    # The clean-up after a failed change removes what that change linked, not
    # a file someone put in files/ by hand earlier (a typo in 'remove' took it).
    import time

    from tests.conftest import isolated_env, wheelhouse

    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [build_wheel(tmp_path / "in", "demo", "1.0")])
    mine = build_wheel(tmp_path / "mine", "mine", "2.0")
    shutil.copyfile(mine, house.files_dir / mine.name)
    time.sleep(0.2)
    env = isolated_env({"WHEELHOUSE_STORE": str(store.root)})
    out = wheelhouse("remove", str(house.root), "demo==9.9", env=env, check=False)
    assert out.returncode != 0
    assert (house.files_dir / mine.name).exists()
    assert not (house.root / ".wheelhouse.writing").exists()


@pytest.mark.parametrize("member", ["demo\\sub.py", "a\tb.txt", "a:b.txt"])
def test_odd_member_names_pip_installs_are_taken_at_add(
        tmp_path: Path, store: Store, member: str) -> None:
    # pip installs these; a house serves what pip would install (and
    # 'wheelhouse install' judges them for itself).
    wheel = build_wheel(tmp_path / "d", "demo", "1.0", files={"demo.py": b"", member: b"x"})
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [wheel])
    assert house.verify() == []


@pytest.mark.parametrize("jobs", [1, 3])
def test_an_interrupted_add_leaves_no_staged_copy_in_the_store(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    # A Ctrl-C while large wheels were staged left their whole copies in the
    # store's tmp/ (a GB and more) until the next run cleaned it.
    import wheelhouse.add as add_module

    wheels = [build_wheel(tmp_path / "d", f"big{i}", "1.0", padding=9_000_000) for i in range(4)]
    real, calls = add_module._prepare_one, [0]

    def prepare(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(add_module, "_prepare_one", prepare)
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(KeyboardInterrupt):
        add_paths(house, store, wheels, jobs=jobs)
    assert calls[0] >= 3
    assert [p.name for p in store.tmp_dir.iterdir()] == []
    assert list(store.iter_blobs()) == []
