"""Store upkeep: house registration, gc (unused, --older-than, --max-size), du, and races."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_wheel
from tests.conftest import LocalIndex, WheelFactory, isolated_env, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.bundle import export, import_bundle
from wheelhouse.cli import main
from wheelhouse.errors import LockTimeoutError, StoreError
from wheelhouse.house import House
from wheelhouse.store import Store
from wheelhouse.upkeep import disk_usage, gc, parse_age, parse_size

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def blobs_of(house: House) -> set[str]:
    out: set[str] = set()
    for e in house.read_manifest().files:
        out.add(e.sha256)
        if e.metadata_sha256:
            out.add(e.metadata_sha256)
    return out


def store_blobs(store: Store) -> set[str]:
    return {name for name, _ in store.iter_blobs()}


def add_house(root: Path, store: Store, *wheels: Path) -> House:
    house = House.open(root, create=True)
    add_paths(house, store, list(wheels))
    return house


@pytest.mark.parametrize(("text", "value"), [
    ("100", 100), ("1k", 1024), ("1kB", 1000), ("10G", 10 * 2**30), ("1.5GB", 1_500_000_000),
    ("512MiB", 512 * 2**20), ("2 T", 2 * 2**40), ("7b", 7),
])
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(("text", "value"), [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("2w", 14 * 86400), ("90m", 5400), ("1.5s", 1.5),
])
def test_parse_age(text: str, value: float) -> None:
    assert parse_age(text) == value


def test_houses_register_themselves_on_add_and_import(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    h1 = add_house(tmp_path / "h1", store, make_wheel("demo", "1.0"))
    export(h1, tmp_path / "b.tar")
    import_bundle(tmp_path / "b.tar", tmp_path / "h2", store=store)
    House.open(tmp_path / "empty", create=True)  # links nothing: nothing to keep
    assert [p for p, _ in store.registered_houses()] == [tmp_path / "h1", tmp_path / "h2"]


def test_gc_removes_only_blobs_no_house_uses(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    keep = add_house(tmp_path / "keep", store, make_wheel("demo", "1.0"))
    drop = add_house(tmp_path / "drop", store, make_wheel("other", "1.0"),
                     make_wheel("demo", "1.0"))
    drop.remove("other")
    assert len(store_blobs(store)) == 4

    for sha in store_blobs(store):  # records an older version kept beside its blobs
        store.meta_path(sha).parent.mkdir(parents=True, exist_ok=True)
        store.meta_path(sha).write_text("{}")
    dry = gc(store, dry_run=True)
    assert len(dry.removed) == 2 and store_blobs(store) == blobs_of(keep) | {
        b.sha256 for b in dry.removed}

    result = gc(store)
    assert {b.sha256 for b in result.removed} == {b.sha256 for b in dry.removed}
    assert store_blobs(store) == blobs_of(keep) == blobs_of(drop)
    assert result.kept == 2 and result.freed == sum(b.size for b in result.removed)
    for b in result.removed:
        assert not store.meta_path(b.sha256).exists()
    assert not any(store.meta_path(sha).exists() for sha in blobs_of(keep))  # (all go)
    assert gc(store).removed == ()
    assert keep.verify() == [] and drop.verify() == []


def test_gc_forgets_houses_that_no_longer_exist(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    add_house(tmp_path / "keep", store, make_wheel("demo", "1.0"))
    gone = add_house(tmp_path / "gone", store, make_wheel("other", "1.0"))
    shutil.rmtree(gone.root)

    assert gc(store, dry_run=True).forgotten == (tmp_path / "gone",)
    assert len(store.registered_houses()) == 2
    result = gc(store)
    assert result.forgotten == (tmp_path / "gone",) and len(result.removed) == 2
    assert [p for p, _ in store.registered_houses()] == [tmp_path / "keep"]


def test_gc_keeps_blobs_an_unregistered_house_still_hard_links(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    add_house(tmp_path / "h", store, make_wheel("demo", "1.0"))
    # A copy made with hard links (cp -al) is not registered; the original goes.
    shutil.copytree(tmp_path / "h", tmp_path / "copy", copy_function=os.link)
    shutil.rmtree(tmp_path / "h")

    usage = disk_usage(store)
    assert (usage.referenced, usage.linked_elsewhere, usage.unreferenced) == (0, 2, 0)
    result = gc(store)
    assert result.removed == () and result.linked_elsewhere == 2
    assert len(store_blobs(store)) == 2

    shutil.rmtree(tmp_path / "copy")
    result = gc(store)
    assert len(result.removed) == 2 and result.disk_freed == result.freed > 0


def test_gc_refuses_to_guess_when_a_house_cannot_be_read(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    house = add_house(tmp_path / "h", store, make_wheel("demo", "1.0"))
    house.manifest_path.write_text('{"format": 99, "files": []}')
    before = store_blobs(store)
    with pytest.raises(StoreError, match="cannot tell which blobs"):
        gc(store)
    assert store_blobs(store) == before


def test_max_size_trims_least_recently_used_first(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    old = add_house(tmp_path / "old", store, make_wheel("old", "1.0", padding=200_000))
    time.sleep(0.05)
    new = add_house(tmp_path / "new", store, make_wheel("new", "1.0", padding=200_000))
    new_size = sum(store.blob_path(s).stat().st_size for s in blobs_of(new))

    result = gc(store, max_size=new_size + 10)

    assert {b.sha256 for b in result.removed} == blobs_of(old)
    assert all(b.referenced for b in result.removed)
    assert result.disk_freed == 0  # the old house still links them: no space freed yet
    assert store_blobs(store) == blobs_of(new)
    # The house keeps its own links: it still verifies and installs.
    assert old.verify() == []

    # Using a blob again (linking it into a house) makes it recent.
    time.sleep(0.05)
    add_house(tmp_path / "again", store, make_wheel("old", "1.0", padding=200_000))
    result = gc(store, max_size=new_size + 10)
    assert {b.sha256 for b in result.removed} == blobs_of(new)


def test_older_than_trims_blobs_not_used_since(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    house = add_house(tmp_path / "h", store, make_wheel("demo", "1.0"))
    now = time.time()
    assert gc(store, older_than=3600, now=now, dry_run=True).removed == ()
    result = gc(store, older_than=3600, now=now + 7200)
    assert {b.sha256 for b in result.removed} == blobs_of(house)
    assert store_blobs(store) == set()


def test_du_shows_the_store_and_each_house(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    a = add_house(tmp_path / "a", store, make_wheel("demo", "1.0", padding=10_000))
    add_house(tmp_path / "b", store, make_wheel("other", "1.0"))
    a.remove("demo")
    shutil.rmtree(tmp_path / "b")
    add_house(tmp_path / "c", store, make_wheel("third", "1.0"))

    usage = disk_usage(store)

    assert usage.blobs == 6 and usage.referenced == 2 and usage.unreferenced == 4
    assert usage.size == sum(p.stat().st_size for _, p in store.iter_blobs())
    assert [h.path for h in usage.houses] == [tmp_path / "a", tmp_path / "c"]
    assert [(h.files, h.blobs, h.not_in_store) for h in usage.houses] == [(0, 0, 0), (1, 2, 0)]
    assert usage.gone == (tmp_path / "b",)


def test_cli_gc_du_and_keep(
    tmp_path: Path, store: Store, make_wheel: WheelFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    s = ["--store", str(store.root)]
    wheel = make_wheel("demo", "1.0")
    assert main([*s, "add", str(wheel), "-o", str(tmp_path / "h")]) == 0
    # A house copied by hand is not registered; --keep registers it.
    shutil.copytree(tmp_path / "h", tmp_path / "copy")
    shutil.rmtree(tmp_path / "h")
    capsys.readouterr()

    assert main([*s, "du"]) == 0
    out = capsys.readouterr().out
    assert "2 blob(s)" in out and "gone" in out

    # The dry run lists what would go, by project as well as by hash.
    assert main([*s, "gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 2 blob(s)" in out
    assert "demo 1.0 (wheel)" in out

    assert main([*s, "gc", "--dry-run", "--keep", str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert "would remove 0 blob(s)" in out and f"would forget {tmp_path / 'h'}" in out


    assert main([*s, "gc", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["removed"] == [] and data["forgotten"] == [str(tmp_path / "h")]

    assert main([*s, "du", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [h["path"] for h in data["houses"]] == [str(tmp_path / "copy")]

    assert main([*s, "gc", "--max-size", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err
    assert main([*s, "gc", "--older-than", "3"]) == 2
    assert main(["--store", str(tmp_path / "nostore"), "gc"]) == 1
    assert "no wheelhouse store" in capsys.readouterr().err


# -- concurrency ---------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from wheelhouse.store import Store
    with Store.open(sys.argv[1]).in_use():
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_gc_waits_while_a_writer_holds_the_store(
    tmp_path: Path, store: Store, make_wheel: WheelFactory
) -> None:
    house = add_house(tmp_path / "h", store, make_wheel("demo", "1.0"))
    house.remove("demo")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store.root), "3"],
                            stdout=subprocess.PIPE, text=True, env=isolated_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with pytest.raises(LockTimeoutError, match=r"use\.lock"):
            gc(store, timeout=0.5)
        assert len(store_blobs(store)) == 2  # nothing removed meanwhile
        # Writers share the lock: an add goes on while another writer holds it.
        add_house(tmp_path / "h2", store, make_wheel("other", "1.0"))
    finally:
        proc.communicate(timeout=30)
    assert len(gc(store, timeout=10).removed) == 2


ADD_LOOP = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    from wheelhouse.add import add_paths
    from wheelhouse.house import House
    from wheelhouse.store import Store
    store = Store.open(sys.argv[1])
    dists, work, rounds = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    for i in range(rounds):
        house = House.open(work / f"h{i}", create=True)
        add_paths(house, store, [dists], jobs=2)
        for e in house.read_manifest().files:
            assert store.has(e.sha256), e.filename
        assert house.verify() == [], house.verify()
        shutil.rmtree(house.root)  # its blobs are garbage now, for the gc alongside
    print("ok", rounds)
""")


def _gc_until(proc: subprocess.Popen[str], store: Store) -> tuple[int, int]:
    runs = removed = 0
    try:
        while proc.poll() is None:
            removed += len(gc(store, timeout=60).removed)
            runs += 1
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return runs, removed


@pytest.mark.slow
def test_gc_racing_add_in_another_process_loses_nothing(tmp_path: Path, store: Store) -> None:
    dists = tmp_path / "dists"
    for i in range(25):
        build_wheel(dists, f"pkg{i}", "1.0", padding=20_000)
    proc = subprocess.Popen(
        [sys.executable, "-c", ADD_LOOP, str(store.root), str(dists), str(tmp_path / "w"), "25"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated_env())
    runs, removed = _gc_until(proc, store)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip() == "ok 25"
    assert runs > 5 and removed > 0, (runs, removed)  # gc really ran alongside
    assert store.verify().ok


@pytest.mark.slow
def test_gc_racing_build_in_another_process_loses_nothing(
    tmp_path: Path, store: Store, serve_dir: Callable[[Path], LocalIndex]
) -> None:
    dists = tmp_path / "dists"
    build_wheel(dists, "app", "1.0", requires_dist=["lib>=1"], padding=50_000)
    build_wheel(dists, "lib", "1.0", padding=50_000)
    upstream = add_house(tmp_path / "upstream", Store.open(tmp_path / "upstream-store"), dists)
    index = serve_dir(upstream.root)
    env = isolated_env({"WHEELHOUSE_STORE": str(store.root)})
    argv = ["build", "app", "--index-url", f"{index.url}/simple/"]
    wheelhouse(*argv, "-o", str(tmp_path / "warm"), env=env)  # the store has every file
    shutil.rmtree(tmp_path / "warm")  # ... and no house uses them

    for n in range(3):
        house = tmp_path / f"b{n}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "wheelhouse", *argv, "-o", str(house)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        runs, _ = _gc_until(proc, store)
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        assert runs > 0
        built = House.open(house)
        assert built.verify() == []
        assert all(store.has(s) for s in blobs_of(built))
        shutil.rmtree(house)


@pytest.mark.parametrize("damage", ["truncated", "no-path", "a-list"])
def test_an_unreadable_house_record_stops_gc_and_the_next_add_writes_it_again(
    tmp_path: Path, store: Store, damage: str
) -> None:
    # gc cannot know which blobs the house of an unreadable record needs: it
    # must not guess (as for an unreadable manifest). The house's next add
    # writes the record again.
    wheel = build_wheel(tmp_path / "d", "kept", "1.0")
    house = add_house(tmp_path / "house", store, wheel)
    (record,) = (store.root / "houses").glob("*.json")
    record.write_text({"truncated": '{"format": 1, "pa', "no-path": '{"format": 1}',
                       "a-list": "[]"}[damage])
    blobs = sorted(p.name for p in (store.root / "blobs").rglob("*") if p.is_file())
    with pytest.raises(StoreError, match="cannot read the house record"):
        gc(store)
    assert sorted(p.name for p in (store.root / "blobs").rglob("*") if p.is_file()) == blobs
    add_paths(House.open(house.root), store, [build_wheel(tmp_path / "d", "more", "1.0")])
    assert json.loads(record.read_text())["path"] == str(house.root)
    assert gc(store).removed == ()


def test_verify_never_takes_a_blob_gone_meanwhile_for_a_damaged_one(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A blob gc (or another verify --quarantine) removed between the listing
    # and the hashing is not damage; verify waits for a running gc anyway.
    wheel = build_wheel(tmp_path / "d", "gone", "1.0")
    add_house(tmp_path / "house", store, wheel)
    real = Store.iter_blobs

    def and_a_vanished_one(self: Store) -> object:
        yield from real(self)
        yield "ab" * 32, self.root / "blobs" / "sha256" / "ab" / ("ab" * 32)

    monkeypatch.setattr(Store, "iter_blobs", and_a_vanished_one)
    report = store.verify(quarantine=True)
    assert report.ok and report.bad == ()


def test_du_and_gc_show_a_house_path_with_a_line_break_on_one_line(
    tmp_path: Path, store: Store
) -> None:
    # A path is the user's, but a line break in it must not make du print a
    # line that looks like another house.
    wheel = build_wheel(tmp_path / "d", "nl", "1.0")
    odd = tmp_path / "nl\nhouse /tmp/fake: 999 file(s)"
    add_house(odd, store, wheel)
    env = isolated_env({"WHEELHOUSE_STORE": str(store.root)})
    out = wheelhouse("du", env=env).stdout
    assert not any(line.startswith("house /tmp/fake") for line in out.splitlines())
    assert "nl\\x0ahouse /tmp/fake" in out
    shutil.rmtree(odd)
    out = wheelhouse("gc", env=env).stdout
    assert "forgot " in out and "nl\\x0ahouse" in out


def test_gc_removes_every_record_an_older_version_kept(tmp_path: Path, store: Store) -> None:
    # Nothing reads them any more, and each took a disk block: the records of
    # blobs that are gone (a gc killed between the two removals) and of blobs
    # still linked go, and nothing else under meta/.
    wheel = build_wheel(tmp_path / "d", "kept", "1.0")
    house = add_house(tmp_path / "house", store, wheel)
    (entry,) = house.read_manifest().files
    orphan = store.meta_path("ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_text("{}")
    store.meta_path(entry.sha256).parent.mkdir(parents=True, exist_ok=True)
    store.meta_path(entry.sha256).write_text("{}")
    other = orphan.parent / "notes.txt"
    other.write_text("mine")
    gc(store)
    assert not orphan.exists() and not store.meta_path(entry.sha256).exists()
    assert other.read_text() == "mine"
    assert gc(store, dry_run=True).removed == ()
    assert house.verify() == []


def test_a_blob_is_described_by_its_own_member_names(tmp_path: Path) -> None:
    # What gc --dry-run shows of a blob, which no house names any more.
    from tests.builders import build_sdist
    from wheelhouse.dists import describe_blob

    wheel = build_wheel(tmp_path, "Demo_Pkg", "1.0")
    sdist = build_sdist(tmp_path, "other", "2.0")
    zipped = tmp_path / "zipped"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("zed-3.0/PKG-INFO", "Metadata-Version: 2.1\nName: zed\nVersion: 3.0\n")
        zf.writestr("zed-3.0/setup.py", "")
    bare = tmp_path / "bare"
    with zipfile.ZipFile(bare, "w") as zf:
        zf.writestr("x.py", "")
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    assert describe_blob(wheel) == ("demo-pkg", "1.0", "wheel")
    assert describe_blob(sdist) == ("other", "2.0", "sdist")
    assert describe_blob(zipped) == ("zed", "3.0", "sdist")
    assert describe_blob(bare) is None
    assert describe_blob(junk) is None
    assert describe_blob(tmp_path / "missing") is None


def _damage(store: Store, sha256: str) -> None:
    blob = store.blob_path(sha256)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF
    blob.write_bytes(bytes(data))  # same inode: as an edit through a house's hard link


@pytest.mark.parametrize("step", ["gc", "verify --quarantine", "add into another house"])
def test_a_directory_where_an_older_version_kept_a_record_is_no_error(
    tmp_path: Path, store: Store, step: str
) -> None:
    # Nothing reads the records any more: one that cannot be removed (a
    # directory there) stopped gc after its first blob ("cannot remove blob",
    # though the blob was gone), and verify --quarantine and add with a bare
    # IsADirectoryError.
    wheels = [build_wheel(tmp_path / "d", name, "1.0") for name in ("alpha", "beta")]
    house = add_house(tmp_path / "house", store, *wheels)
    shas = store_blobs(store)
    for sha in shas:
        store.meta_path(sha).mkdir(parents=True)
    if step == "gc":
        shutil.rmtree(house.root)
        assert len(gc(store).removed) == len(shas)
        assert store_blobs(store) == set()
        return
    (entry, _) = house.read_manifest().files
    _damage(store, entry.sha256)
    if step == "verify --quarantine":
        report = store.verify(quarantine=True)
        assert [b.expected for b in report.bad] == [entry.sha256]
    else:
        other = add_house(tmp_path / "other", store, *wheels)
        assert other.verify() == []
    assert store.verify().ok


def test_gc_never_removes_a_file_outside_the_store_through_a_link(
    tmp_path: Path, store: Store
) -> None:
    # Containment: where an older version kept records, a symbolic link to a
    # directory of the user's; gc removed the user's <sha>.json through it.
    wheel = build_wheel(tmp_path / "d", "demo", "1.0")
    house = add_house(tmp_path / "house", store, wheel)
    (entry,) = house.read_manifest().files
    outside = tmp_path / "outside"
    outside.mkdir()
    theirs = outside / f"{entry.sha256}.json"
    theirs.write_text("the user's own file")
    orphan = outside / f"{'ab' * 32}.json"
    orphan.write_text("the user's own file")
    (store.root / "meta" / "sha256").mkdir(parents=True)
    (store.root / "meta" / "sha256" / entry.sha256[:2]).symlink_to(outside)
    (store.root / "meta" / "sha256" / "ab").symlink_to(outside)
    shutil.rmtree(house.root)
    assert entry.sha256 in {b.sha256 for b in gc(store).removed}
    assert theirs.read_text() == "the user's own file"
    assert orphan.read_text() == "the user's own file"
    # And the whole meta/ a link out of the store:
    shutil.rmtree(store.root / "meta")
    (store.root / "meta").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "sha256" / "ab").mkdir(parents=True)
    mine = tmp_path / "elsewhere" / "sha256" / "ab" / f"{'ab' * 32}.json"
    mine.write_text("the user's own file")
    gc(store)
    assert mine.read_text() == "the user's own file"


@pytest.mark.parametrize("member", [
    pytest.param("x\nwould remove " + "f" * 64 + "  1 KiB  (unused)  evil-1.0.dist-info/METADATA",
                 id="line-break"),
    pytest.param("evil\x1b]0;title\x07-1.0.dist-info/METADATA", id="escape"),
    pytest.param("evil-1.0\u2028x.dist-info/METADATA", id="unicode-line-separator"),
    pytest.param("evil pkg-1.0.dist-info/METADATA", id="space"),
    pytest.param("evil-not a version.dist-info/METADATA", id="bad-version"),
])
def test_a_blob_is_described_by_a_valid_name_and_version_or_not_at_all(
    tmp_path: Path, member: str
) -> None:
    # gc --dry-run prints what describe_blob gives on a blob's line: a line
    # break in a member name made a line of its own (clean() keeps \n).
    import io
    import tarfile

    from wheelhouse.dists import describe_blob

    wheel = tmp_path / "wheel"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, "")
    sdist = tmp_path / "sdist"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.addfile(tarfile.TarInfo(member.replace(".dist-info/METADATA", "/PKG-INFO")),
                   io.BytesIO(b""))
    assert (describe_blob(wheel), describe_blob(sdist)) == (None, None)


def test_a_blob_is_described_from_a_bounded_part_of_it(tmp_path: Path) -> None:
    # A gzip'd tar whose first header is a GNU long name of 32 MiB (32 kB
    # on disk): tarfile's "r:*" inflated and held all of it; a long name of
    # 8 GiB took 8 GiB.
    import gzip
    import tarfile
    import tracemalloc

    from wheelhouse.dists import describe_blob

    size = 32 * 1024 * 1024
    head = tarfile.TarInfo("././@LongLink")
    head.type, head.size = tarfile.GNUTYPE_LONGNAME, size
    bomb = tmp_path / "bomb"
    with gzip.open(bomb, "wb") as f:
        f.write(head.tobuf(format=tarfile.GNU_FORMAT))
        for _ in range(size // 2**20):
            f.write(bytes(2**20))
    tracemalloc.start()
    try:
        assert describe_blob(bomb) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20
    # What setuptools and tarfile write (a float mtime): a pax header first.
    sdist = tmp_path / "sdist"
    with tarfile.open(sdist, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("Demo_Pkg-1.0/" + "a" * 120 + "/PKG-INFO")
        info.mtime = 1_700_000_000.5
        tf.addfile(info)
    assert describe_blob(sdist) == ("demo-pkg", "1.0", "sdist")


def test_describing_a_blob_never_waits_on_a_fifo_nor_follows_a_link(tmp_path: Path) -> None:
    # gc lists whatever is under a blob's name; describing a FIFO there
    # waited for a writer for good (gc --dry-run hung), and a symbolic link
    # was followed out of the store.
    import threading

    from tests.builders import build_sdist
    from wheelhouse.dists import describe_blob

    outside = build_sdist(tmp_path / "outside", "other", "2.0")
    link = tmp_path / "link"
    link.symlink_to(outside)
    assert describe_blob(link) is None
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(describe_blob(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    waited = reader.is_alive()
    if waited:  # let it go: a writer that closes at once
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
    assert not waited and got == [None]
