"""Bundles: export -> import round trips, delta chains, and every way a bundle can be bad."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tarfile
from collections import namedtuple
from typing import TYPE_CHECKING

import pytest

from tests.conftest import WheelFactory, run, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.bundle import (
    BUNDLE_MANIFEST,
    export,
    import_bundle,
    read_base_manifest,
    verify_bundle,
)
from wheelhouse.cli import main
from wheelhouse.errors import (
    BundleBaseError,
    BundleError,
    BundleIntegrityError,
    DiskSpaceError,
    FormatVersionError,
    HashMismatchError,
    HouseError,
    IntegrityError,
    InvalidInputError,
    StoreError,
)
from wheelhouse.house import House
from wheelhouse.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

HAVE_ZSTD = importlib.util.find_spec("zstandard") is not None or sys.version_info >= (3, 14)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file of a house (manifest, files, index, locks), relative path -> bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".wheelhouse") and "/.tmp-" not in rel:
            out[rel] = path.read_bytes()
    return out


def house_view(root: Path) -> dict[str, bytes]:
    """What must be equal after a round trip: manifest, files, every index byte, locks."""
    return {k: v for k, v in snapshot(root).items()
            if k == "wheelhouse.json" or k.startswith(("files/", "simple/", "locks/"))
            or k == "find-links.html"}


def store_state(store: Store) -> dict[str, int]:
    """The store's blobs, records an older version kept, registrations and temp files."""
    out = {}
    for sub in ("blobs", "meta", "houses", "tmp"):
        base = store.root / sub
        if base.is_dir():
            for path in base.rglob("*"):
                if path.is_file():
                    out[path.relative_to(store.root).as_posix()] = path.stat().st_size
    return out


def make_house(tmp_path: Path, store: Store, make_wheel: WheelFactory,
               make_sdist: WheelFactory) -> House:
    make_wheel("demo", "1.0")
    make_wheel("demo", "2.0", requires_python=">=3.8")
    make_wheel("big", "1.0", padding=3 * 1024 * 1024)
    make_sdist("other", "1.0")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [tmp_path / "dists"])
    house.yank("demo==1.0", reason="broken")
    locks = house.own_subdir("locks")
    (locks / "host.requirements.txt").write_text("demo==2.0 --hash=sha256:00\n")
    return house


@pytest.fixture
def house(tmp_path: Path, store: Store, make_wheel: WheelFactory,
          make_sdist: WheelFactory) -> House:
    return make_house(tmp_path, store, make_wheel, make_sdist)


@pytest.fixture
def other_store(tmp_path: Path) -> Store:
    """The store on the other side of the air gap."""
    return Store.open(tmp_path / "far-store")


# -- round trips ----------------------------------------------------------------

SUFFIXES = [
    pytest.param(".tar", id="tar"),
    pytest.param(".tar.gz", id="gz"),
    pytest.param(".tar.zst", id="zst",
                 marks=pytest.mark.skipif(not HAVE_ZSTD, reason="no zstd library")),
]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_gives_the_same_manifest_files_and_index_bytes(
    tmp_path: Path, house: House, other_store: Store, suffix: str
) -> None:
    out = tmp_path / f"bundle{suffix}"
    result = export(house, out)
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert result.size == out.stat().st_size

    imported = import_bundle(out, tmp_path / "far", store=other_store)

    assert imported.files == 4 and not imported.delta
    assert house_view(tmp_path / "far") == house_view(house.root)
    assert "locks/host.requirements.txt" in house_view(tmp_path / "far")
    assert House.open(tmp_path / "far").verify() == []
    assert other_store.verify().ok
    # The far side's store now holds every file (and registered the house).
    for e in House.open(tmp_path / "far").read_manifest().files:
        assert other_store.has(e.sha256)
    assert [p for p, _ in other_store.registered_houses()] == [tmp_path / "far"]


def test_the_same_house_gives_the_same_bundle_bytes(tmp_path: Path, house: House) -> None:
    for suffix in (".tar", ".tar.gz"):
        a = export(house, tmp_path / f"a{suffix}")
        b = export(house, tmp_path / f"b{suffix}")
        assert a.sha256 == b.sha256
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_bundle_manifest_comes_first_and_lists_every_member(
    tmp_path: Path, house: House
) -> None:
    export(house, tmp_path / "b.tar")
    with tarfile.open(tmp_path / "b.tar") as tf:
        names = tf.getnames()
        data = tf.extractfile(BUNDLE_MANIFEST).read()  # type: ignore[union-attr]
        sizes = {m.name: m.size for m in tf.getmembers()}
    assert names[:2] == [BUNDLE_MANIFEST, "wheelhouse.json"]
    raw = json.loads(data)
    assert raw["format"] == 1 and raw["kind"] == "full"
    assert [m["name"] for m in raw["members"]] == names[1:]
    for m in raw["members"]:
        assert sizes[m["name"]] == m["size"]
    files = {m["name"] for m in raw["members"] if m["name"].startswith("files/")}
    assert files == {f"files/{p.name}" for p in house.files_dir.iterdir()}


def test_import_onto_the_same_house_again_changes_nothing(
    tmp_path: Path, house: House, store: Store
) -> None:
    export(house, tmp_path / "b.tar")
    before = house_view(house.root)
    result = import_bundle(tmp_path / "b.tar", house.root, store=store)
    assert result.new_blobs == 0 and result.removed == 0
    assert house_view(house.root) == before


# -- deltas -----------------------------------------------------------------------


def test_delta_chain_of_three_yields_exactly_each_newer_house(
    tmp_path: Path, house: House, store: Store, other_store: Store, make_wheel: WheelFactory
) -> None:
    far = tmp_path / "far"
    # Month 1: a full bundle.
    export(house, tmp_path / "m1.tar")
    import_bundle(tmp_path / "m1.tar", far, store=other_store)
    assert house_view(far) == house_view(house.root)

    # Month 2: a new release, one file removed, one un-yanked; delta against month 1's bundle.
    add_paths(house, store, [make_wheel("demo", "3.0", padding=100_000)])
    house.remove("other-1.0.tar.gz")
    house.yank("demo==1.0", undo=True)
    d2 = export(house, tmp_path / "m2.tar", since=tmp_path / "m1.tar")
    with tarfile.open(tmp_path / "m2.tar") as tf:
        carried = sorted(n for n in tf.getnames() if n.startswith("files/"))
    assert carried == ["files/demo-3.0-py3-none-any.whl",
                       "files/demo-3.0-py3-none-any.whl.metadata"]
    assert d2.skipped == 6  # big, demo 1.0 and 2.0, each with its .metadata
    assert d2.size < 300_000
    r2 = import_bundle(tmp_path / "m2.tar", far, store=other_store)
    assert r2.delta and r2.removed == 1 and r2.new_blobs == 2
    assert house_view(far) == house_view(house.root)

    # Month 3: delta against month 2's delta (a delta is a valid --since too),
    # and the same against the far side's manifest itself.
    add_paths(house, store, [make_wheel("newproj", "0.1")])
    house.remove("demo==1.0")
    export(house, tmp_path / "m3.tar", since=tmp_path / "m2.tar")
    export(house, tmp_path / "m3b.tar", since=far / "wheelhouse.json")
    assert (tmp_path / "m3.tar").read_bytes() == (tmp_path / "m3b.tar").read_bytes()
    import_bundle(tmp_path / "m3.tar", far, store=other_store)
    assert house_view(far) == house_view(house.root)
    assert House.open(far).verify() == []
    assert not (far / "files" / "demo-1.0-py3-none-any.whl").exists()


def test_full_bundle_over_an_older_house_yields_the_newer_house(
    tmp_path: Path, house: House, store: Store, other_store: Store, make_wheel: WheelFactory
) -> None:
    export(house, tmp_path / "m1.tar")
    import_bundle(tmp_path / "m1.tar", tmp_path / "far", store=other_store)
    add_paths(house, store, [make_wheel("demo", "3.0")])
    house.remove("big")
    (house.root / "locks" / "host.requirements.txt").unlink()
    export(house, tmp_path / "m2.tar")

    result = import_bundle(tmp_path / "m2.tar", tmp_path / "far", store=other_store)

    assert not result.delta and result.removed == 1
    assert house_view(tmp_path / "far") == house_view(house.root)
    assert not (tmp_path / "far" / "locks" / "host.requirements.txt").exists()


def test_delta_without_its_base_is_refused_naming_what_is_missing(
    tmp_path: Path, house: House, store: Store, other_store: Store, make_wheel: WheelFactory
) -> None:
    export(house, tmp_path / "m1.tar")
    add_paths(house, store, [make_wheel("demo", "3.0")])
    export(house, tmp_path / "m2.tar", since=tmp_path / "m1.tar")
    before = store_state(other_store)

    with pytest.raises(BundleBaseError) as info:
        import_bundle(tmp_path / "m2.tar", tmp_path / "far", store=other_store)

    assert "files/big-1.0-py3-none-any.whl (sha256=" in str(info.value)
    assert len(info.value.missing) == 7  # 3 wheels, their .metadata, 1 sdist
    assert not (tmp_path / "far").exists()
    assert store_state(other_store) == before


def test_delta_takes_base_files_from_the_house_when_the_store_lacks_them(
    tmp_path: Path, house: House, store: Store, make_wheel: WheelFactory
) -> None:
    export(house, tmp_path / "m1.tar")
    import_bundle(tmp_path / "m1.tar", tmp_path / "far", store=Store.open(tmp_path / "s1"))
    add_paths(house, store, [make_wheel("demo", "3.0")])
    export(house, tmp_path / "m2.tar", since=tmp_path / "far")
    # The far house moved to a machine with an empty store (a copy, not links).
    shutil.copytree(tmp_path / "far", tmp_path / "far2")
    fresh = Store.open(tmp_path / "s2")

    result = import_bundle(tmp_path / "m2.tar", tmp_path / "far2", store=fresh)

    assert house_view(tmp_path / "far2") == house_view(house.root)
    assert result.new_blobs == 9  # 2 from the delta, 7 checked in from the house
    assert fresh.verify().ok


def test_delta_base_file_changed_in_the_house_is_refused(
    tmp_path: Path, house: House, store: Store, make_wheel: WheelFactory
) -> None:
    export(house, tmp_path / "m1.tar")
    import_bundle(tmp_path / "m1.tar", tmp_path / "far", store=Store.open(tmp_path / "s1"))
    add_paths(house, store, [make_wheel("demo", "3.0")])
    export(house, tmp_path / "m2.tar", since=tmp_path / "far")
    shutil.copytree(tmp_path / "far", tmp_path / "far2")
    victim = tmp_path / "far2" / "files" / "demo-2.0-py3-none-any.whl"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-1] + b"X")
    fresh = Store.open(tmp_path / "s2")
    before_house, before_store = snapshot(tmp_path / "far2"), store_state(fresh)

    with pytest.raises(HashMismatchError):
        import_bundle(tmp_path / "m2.tar", tmp_path / "far2", store=fresh)

    assert snapshot(tmp_path / "far2") == before_house
    assert store_state(fresh) == before_store


def test_read_base_manifest_from_house_manifest_and_bundle(
    tmp_path: Path, house: House
) -> None:
    export(house, tmp_path / "b.tar.gz")
    expected = house.read_manifest()
    digest = hashlib.sha256(house.manifest_path.read_bytes()).hexdigest()
    for source in (house.root, house.manifest_path, tmp_path / "b.tar.gz"):
        manifest, sha = read_base_manifest(source)
        assert manifest == expected and sha == digest


# -- bad bundles: nothing written ------------------------------------------------


Entry = namedtuple("Entry", "info data")


def read_entries(path: Path) -> list[Entry]:
    with tarfile.open(path) as tf:
        return [Entry(m, tf.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
                for m in tf.getmembers()]


def write_entries(path: Path, entries: list[Entry]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info = e.info
            if info.isreg():
                info.size = len(e.data)
                tf.addfile(info, io.BytesIO(e.data))
            else:
                tf.addfile(info)


def regular(name: str, data: bytes) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return Entry(info, data)


def special(name: str, kind: bytes, link: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return Entry(info, b"")


def relist(entries: list[Entry], extra: Entry) -> list[Entry]:
    """Add *extra* and list it in the bundle manifest too (a consistent forgery)."""
    raw = json.loads(entries[0].data)
    raw["members"].append({"name": extra.info.name, "sha256":
                           hashlib.sha256(extra.data).hexdigest(), "size": len(extra.data)})
    return [regular(BUNDLE_MANIFEST, json.dumps(raw).encode()), *entries[1:], extra]


def _find(entries: list[Entry], suffix: str) -> int:
    return next(i for i, e in enumerate(entries) if e.info.name.endswith(suffix))


def flip_byte(entries: list[Entry]) -> list[Entry]:
    i = _find(entries, "big-1.0-py3-none-any.whl")
    data = bytearray(entries[i].data)
    data[len(data) // 2] ^= 0x01
    entries[i] = Entry(entries[i].info, bytes(data))
    return entries


def add_member(entries: list[Entry]) -> list[Entry]:
    return [*entries, regular("files/evil-1.0-py3-none-any.whl", b"boo")]


def remove_member(entries: list[Entry]) -> list[Entry]:
    del entries[_find(entries, "demo-2.0-py3-none-any.whl")]
    return entries


def edit_house_manifest(entries: list[Entry]) -> list[Entry]:
    i = _find(entries, "wheelhouse.json")
    entries[i] = Entry(entries[i].info, entries[i].data.replace(b'"yanked":"broken"',
                                                                b'"yanked":"fine!!"'))
    return entries


def edit_house_manifest_and_its_listing(entries: list[Entry]) -> list[Entry]:
    # The house manifest drops a file and the bundle manifest is made to agree:
    # the bundle still carries the file the manifest no longer names.
    i = _find(entries, "wheelhouse.json")
    manifest = json.loads(entries[i].data)
    manifest["files"] = [f for f in manifest["files"] if f["project"] != "other"]
    data = json.dumps(manifest).encode()
    raw = json.loads(entries[0].data)
    for m in raw["members"]:
        if m["name"] == "wheelhouse.json":
            m.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    entries[i] = regular("wheelhouse.json", data)
    entries[0] = regular(BUNDLE_MANIFEST, json.dumps(raw).encode())
    return entries


def edit_bundle_manifest(entries: list[Entry]) -> list[Entry]:
    raw = json.loads(entries[0].data)
    raw["members"][-1]["sha256"] = "0" * 64
    entries[0] = regular(BUNDLE_MANIFEST, json.dumps(raw).encode())
    return entries


def duplicate_member(entries: list[Entry]) -> list[Entry]:
    return [*entries, entries[_find(entries, "demo-2.0-py3-none-any.whl")]]


def manifest_not_first(entries: list[Entry]) -> list[Entry]:
    return [entries[1], entries[0], *entries[2:]]


def pax_sparse(entries: list[Entry]) -> list[Entry]:
    # A pax-format (1.0) sparse member: a regular-file type whose pax records
    # make it a file with holes. Only regular files are taken.
    i = _find(entries, "demo-2.0-py3-none-any.whl")
    name, data = entries[i].info.name, entries[i].data
    sparse_map = f"1\n0\n{len(data)}\n".encode().ljust(512, b"\0")
    info = tarfile.TarInfo("files/GNUSparseFile.0/demo")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": str(len(data))}
    entries[i] = Entry(info, sparse_map + data)
    return entries


TAMPERINGS: list[object] = [
    pytest.param(flip_byte, id="byte-flipped"),
    pytest.param(add_member, id="member-added"),
    pytest.param(remove_member, id="member-removed"),
    pytest.param(edit_house_manifest, id="house-manifest-edited"),
    pytest.param(edit_house_manifest_and_its_listing, id="house-manifest-and-listing-edited"),
    pytest.param(edit_bundle_manifest, id="bundle-manifest-edited"),
    pytest.param(duplicate_member, id="duplicate-name"),
    pytest.param(manifest_not_first, id="bundle-manifest-not-first"),
    pytest.param(pax_sparse, id="pax-sparse"),
    pytest.param(lambda es: [*es, regular("../evil.whl", b"x")], id="dotdot"),
    pytest.param(lambda es: [*es, regular("files/../../evil.whl", b"x")], id="dotdot-inside"),
    pytest.param(lambda es: [*es, regular("/tmp/evil.whl", b"x")], id="absolute"),
    pytest.param(lambda es: relist(es, regular("../evil.whl", b"x")), id="dotdot-listed"),
    pytest.param(lambda es: relist(es, regular("/etc/evil", b"x")), id="absolute-listed"),
    pytest.param(lambda es: relist(es, regular("setup.py", b"x")), id="unexpected-listed"),
    pytest.param(lambda es: [*es, special("files/link.whl", tarfile.SYMTYPE, "/etc/passwd")],
                 id="symlink"),
    pytest.param(lambda es: [*es, special("files/hard.whl", tarfile.LNKTYPE,
                                          "wheelhouse.json")], id="hardlink"),
    pytest.param(lambda es: [*es, special("files/dev.whl", tarfile.CHRTYPE)], id="device"),
    pytest.param(lambda es: [*es, special("files/fifo.whl", tarfile.FIFOTYPE)], id="fifo"),
    pytest.param(lambda es: [*es, special("files/d", tarfile.DIRTYPE)], id="directory"),
    pytest.param(lambda es: [es[0], special("files", tarfile.SYMTYPE, "/tmp"), *es[1:]],
                 id="symlinked-dir"),
]


def _assert_refused_and_nothing_written(
    bad: Path, tmp_path: Path, other_store: Store, target: Path | None = None
) -> BundleError | IntegrityError:
    target = target or tmp_path / "far"
    before_house = snapshot(target) if target.exists() else None
    before_store = store_state(other_store)
    with pytest.raises((BundleError, IntegrityError)) as info:
        import_bundle(bad, target, store=other_store)
    assert (snapshot(target) if target.exists() else None) == before_house
    assert store_state(other_store) == before_store
    with pytest.raises((BundleError, IntegrityError)):
        verify_bundle(bad)
    assert isinstance(info.value, (BundleError, IntegrityError))
    return info.value


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_tampered_bundle_is_refused_with_nothing_written(
    tmp_path: Path, house: House, other_store: Store,
    tamper: Callable[[list[Entry]], list[Entry]],
) -> None:
    export(house, tmp_path / "good.tar")
    write_entries(tmp_path / "bad.tar", tamper(read_entries(tmp_path / "good.tar")))
    error = _assert_refused_and_nothing_written(tmp_path / "bad.tar", tmp_path, other_store)
    assert isinstance(error, BundleIntegrityError)
    assert error.exit_code == 3
    # And onto an existing house: it stays exactly as it was.
    export(house, tmp_path / "good2.tar")
    import_bundle(tmp_path / "good.tar", tmp_path / "far2", store=other_store)
    _assert_refused_and_nothing_written(tmp_path / "bad.tar", tmp_path, other_store,
                                        tmp_path / "far2")


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda es: [*es, regular("../evil.whl", b"x")], id="dotdot"),
    pytest.param(lambda es: [*es, special("files/link.whl", tarfile.SYMTYPE, "/etc/passwd")],
                 id="symlink"),
    pytest.param(lambda es: [*es, special("files/dev.whl", tarfile.CHRTYPE)], id="device"),
])
def test_tar_slip_members_are_named_in_the_error(
    tmp_path: Path, house: House, other_store: Store,
    tamper: Callable[[list[Entry]], list[Entry]],
) -> None:
    export(house, tmp_path / "good.tar")
    write_entries(tmp_path / "bad.tar", tamper(read_entries(tmp_path / "good.tar")))
    error = _assert_refused_and_nothing_written(tmp_path / "bad.tar", tmp_path, other_store)
    assert "refused" in str(error)
    assert not (tmp_path / "evil.whl").exists()


@pytest.mark.parametrize("where", ["half", "in-the-first-members", "after-the-last-member",
                                   "between-members", "in-the-end-marker", "last-bytes"])
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_truncated_bundle_is_refused(
    tmp_path: Path, house: House, other_store: Store, where: str, suffix: str
) -> None:
    export(house, tmp_path / "good.tar")
    with tarfile.open(tmp_path / "good.tar") as tf:
        ends = [m.offset_data + ((m.size + 511) // 512) * 512 for m in tf.getmembers()]
    raw = (tmp_path / "good.tar").read_bytes()
    if suffix == ".tar.gz":
        tar_size = len(raw)
        export(house, tmp_path / "good.tar.gz")
        raw = (tmp_path / "good.tar.gz").read_bytes()
        ends = [min(len(raw) * e // tar_size, len(raw) - 20) for e in ends]
    cut = {
        "half": len(raw) // 2,
        "in-the-first-members": 700,
        "after-the-last-member": ends[-1],
        "between-members": ends[3],
        "in-the-end-marker": ends[-1] + 512,
        # A plain tar ends in zero padding past the end marker: cutting that
        # loses no content (the bundle's sha256 tells), so cut into the marker.
        "last-bytes": len(raw) - 10 if suffix == ".tar.gz" else ends[-1] + 700,
    }[where]
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(raw[:cut])
    error = _assert_refused_and_nothing_written(bad, tmp_path, other_store)
    # Said as what it is, in a few lines: not one "member removed?" per member never reached.
    assert "truncated" in str(error), str(error)
    assert "member removed?" not in str(error)
    assert len(str(error).splitlines()) < 8


def test_junk_after_the_end_of_the_archive_is_refused(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    export(house, tmp_path / "good.tar")
    data = (tmp_path / "good.tar").read_bytes()
    (tmp_path / "bad.tar").write_bytes(data + b"x" * 512)
    error = _assert_refused_and_nothing_written(tmp_path / "bad.tar", tmp_path, other_store)
    assert "after the end of the archive" in str(error)


def test_a_newer_bundle_format_is_refused_naming_both_versions(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    export(house, tmp_path / "good.tar")
    entries = read_entries(tmp_path / "good.tar")
    raw = json.loads(entries[0].data)
    raw["format"] = 2
    entries[0] = regular(BUNDLE_MANIFEST, json.dumps(raw).encode())
    write_entries(tmp_path / "new.tar", entries)
    with pytest.raises(FormatVersionError) as info:
        import_bundle(tmp_path / "new.tar", tmp_path / "far", store=other_store)
    assert "version 2 is not supported" in str(info.value)
    assert "reads version 1" in str(info.value)
    assert not (tmp_path / "far").exists()


def test_not_enough_disk_space_is_an_error_before_writing(
    tmp_path: Path, house: House, other_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    export(house, tmp_path / "b.tar")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda _: usage._replace(free=1024 * 1024))
    before = store_state(other_store)
    with pytest.raises(DiskSpaceError) as info:
        import_bundle(tmp_path / "b.tar", tmp_path / "far", store=other_store)
    assert "not enough disk space" in str(info.value)
    assert not (tmp_path / "far").exists() and store_state(other_store) == before
    with pytest.raises(DiskSpaceError):
        export(house, tmp_path / "c.tar")
    assert not (tmp_path / "c.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".c.tar")] == []


def test_disk_full_while_importing_rolls_back(
    tmp_path: Path, house: House, other_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    export(house, tmp_path / "b.tar")
    calls = []

    def filling_up(real: Callable[..., object]) -> Callable[..., object]:
        def write(self: Store, *args: object, **kwargs: object) -> object:
            calls.append(1)
            if len(calls) == 3:
                raise StoreError(
                    f"cannot write to the store at {self.root}: No space left on device")
            return real(self, *args, **kwargs)
        return write

    # Small members are staged from memory, large ones streamed: the disk
    # fills up at the third temp file, whichever way it is written.
    monkeypatch.setattr(Store, "write_temp", filling_up(Store.write_temp))
    monkeypatch.setattr(Store, "stage", filling_up(Store.stage))
    before = store_state(other_store)
    with pytest.raises(StoreError, match="No space left"):
        import_bundle(tmp_path / "b.tar", tmp_path / "far", store=other_store)
    assert store_state(other_store) == before  # no blob, no temp file
    assert not (tmp_path / "far").exists()


def test_disk_full_while_exporting_leaves_no_partial_bundle(
    tmp_path: Path, house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from wheelhouse import bundle

    real = bundle._add_file
    calls = []

    def filling_up(*args: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle, "_add_file", filling_up)
    with pytest.raises(OSError, match="No space left"):
        export(house, tmp_path / "b.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dists", "house", "store"]


def test_a_newer_house_manifest_inside_a_bundle_is_a_version_error(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    export(house, tmp_path / "good.tar")
    entries = read_entries(tmp_path / "good.tar")
    data = entries[1].data.replace(b'{"format":1,', b'{"format":7,', 1)
    entries[1] = regular("wheelhouse.json", data)
    raw = json.loads(entries[0].data)
    raw["members"][0].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    entries[0] = regular(BUNDLE_MANIFEST, json.dumps(raw).encode())
    write_entries(tmp_path / "new.tar", entries)
    with pytest.raises(FormatVersionError, match="manifest format version 7"):
        import_bundle(tmp_path / "new.tar", tmp_path / "far", store=other_store)
    assert not (tmp_path / "far").exists() and store_state(other_store) == {}


def test_bundle_digest_checked_on_import_and_verify(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    result = export(house, tmp_path / "b.tar")
    with pytest.raises(HashMismatchError):
        import_bundle(tmp_path / "b.tar", tmp_path / "far", store=other_store,
                      expect_sha256="0" * 64)
    assert not (tmp_path / "far").exists() and store_state(other_store) == {}
    with pytest.raises(HashMismatchError):
        verify_bundle(tmp_path / "b.tar", expect_sha256="0" * 64)
    report = verify_bundle(tmp_path / "b.tar", expect_sha256=result.sha256)
    assert report.sha256 == result.sha256 and len(report.manifest.files) == 4
    imported = import_bundle(tmp_path / "b.tar", tmp_path / "far", store=other_store,
                             expect_sha256=result.sha256.upper())
    assert imported.bundle_sha256 == result.sha256


def test_import_refuses_a_directory_that_is_not_a_house(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    export(house, tmp_path / "b.tar")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(HouseError, match="not empty and is not a house"):
        import_bundle(tmp_path / "b.tar", tmp_path / "busy", store=other_store)
    assert store_state(other_store) == {}


def test_export_refuses_a_house_file_that_does_not_match_its_manifest(
    tmp_path: Path, house: House
) -> None:
    victim = house.files_dir / "demo-2.0-py3-none-any.whl"
    data = victim.read_bytes()
    victim.unlink()  # break the hard link: the store keeps the good bytes
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(HashMismatchError, match=r"demo-2\.0"):
        export(house, tmp_path / "b.tar")
    assert list(tmp_path.glob("*b.tar*")) == []


def test_export_refuses_unknown_suffixes_and_missing_zstd(
    tmp_path: Path, house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInputError, match="unsupported bundle type"):
        export(house, tmp_path / "b.zip")

    def no_module(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_module)
    with pytest.raises(BundleError, match="no zstd library"):
        export(house, tmp_path / "b.tar.zst")
    assert list(tmp_path.glob("*b.tar*")) == []


@pytest.mark.skipif(not HAVE_ZSTD, reason="no zstd library")
def test_reading_zstd_without_the_library_is_a_clear_error(
    tmp_path: Path, house: House, other_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    export(house, tmp_path / "b.tar.zst")

    def no_module(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_module)
    with pytest.raises(BundleError, match="no zstd library"):
        import_bundle(tmp_path / "b.tar.zst", tmp_path / "far", store=other_store)


def test_not_a_bundle(tmp_path: Path, other_store: Store) -> None:
    (tmp_path / "x.tar").write_bytes(os.urandom(4096))
    with pytest.raises(IntegrityError):
        import_bundle(tmp_path / "x.tar", tmp_path / "far", store=other_store)
    (tmp_path / "y.zip").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(BundleError, match="zip file"):
        verify_bundle(tmp_path / "y.zip")
    with pytest.raises(InvalidInputError):
        verify_bundle(tmp_path / "missing.tar")


# -- the command line -------------------------------------------------------------


def test_cli_export_verify_import_and_errors(
    tmp_path: Path, house: House, store: Store
) -> None:
    env = {"WHEELHOUSE_STORE": str(store.root)}
    from tests.conftest import isolated_env

    full_env = isolated_env(env)
    out = wheelhouse("export", str(house.root), "-o", str(tmp_path / "b.tar"), env=full_env)
    digest = hashlib.sha256((tmp_path / "b.tar").read_bytes()).hexdigest()
    assert out.stdout.splitlines()[-1] == f"{digest}  {tmp_path / 'b.tar'}"

    ok = wheelhouse("verify", str(tmp_path / "b.tar"), "--sha256", digest, env=full_env)
    assert "all match" in ok.stdout and digest in ok.stdout

    far_env = isolated_env({"WHEELHOUSE_STORE": str(tmp_path / "far-store")})
    done = wheelhouse("import", str(tmp_path / "b.tar"), "-o", str(tmp_path / "far"),
                      "--sha256", digest, env=far_env)
    assert "4 file(s) from the bundle" in done.stdout
    assert house_view(tmp_path / "far") == house_view(house.root)

    entries = flip_byte(read_entries(tmp_path / "b.tar"))
    write_entries(tmp_path / "bad.tar", entries)
    bad = wheelhouse("verify", str(tmp_path / "bad.tar"), env=full_env, check=False)
    assert bad.returncode == 3 and "BAD" in bad.stdout and "big-1.0" in bad.stdout
    assert "imported" not in bad.stdout  # verify imports nothing, and says nothing of it
    bad = wheelhouse("import", str(tmp_path / "bad.tar"), "-o", str(tmp_path / "far3"),
                     env=far_env, check=False)
    assert bad.returncode == 3, bad.stderr
    assert "nothing was imported" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "far3").exists()

    wrong = wheelhouse("import", str(tmp_path / "b.tar"), "-o", str(tmp_path / "far4"),
                       "--sha256", "0" * 64, env=far_env, check=False)
    assert wrong.returncode == 3 and "hash mismatch" in wrong.stderr
    assert "not the bundle that was exported" in wrong.stderr
    # What is not a digest is said so before any reading, with the usage exit code.
    for typo in ("xyz", digest[:63], digest[:60] + "…e41a"):
        usage = wheelhouse("verify", str(tmp_path / "b.tar"), "--sha256", typo, env=full_env,
                           check=False)
        assert usage.returncode == 2 and "is not a sha256 digest" in usage.stderr
    prefixed = wheelhouse("verify", str(tmp_path / "b.tar"), "--sha256",
                          "sha256:" + digest.upper(), env=full_env)
    assert "all match" in prefixed.stdout
    # A mistyped bundle name is not taken for a house.
    mistyped = wheelhouse("verify", str(tmp_path / "b2.tar"), env=full_env, check=False)
    assert mistyped.returncode == 1
    assert f"no such bundle: {tmp_path / 'b2.tar'}" in mistyped.stderr
    # A file that is neither a manifest nor a bundle cannot be a delta's base.
    (tmp_path / "req.txt").write_text("six\n")
    since = wheelhouse("export", str(house.root), "--since", str(tmp_path / "req.txt"), "-o",
                       str(tmp_path / "d.tar"), env=full_env, check=False)
    assert since.returncode == 3 and "cannot be the base of a delta" in since.stderr
    assert "imported" not in since.stderr and not (tmp_path / "d.tar").exists()


def test_cli_delta_and_base_missing_exit_codes(
    tmp_path: Path, house: House, store: Store, make_wheel: WheelFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = ["--store", str(store.root)]
    assert main([*s, "export", str(house.root), "-o", str(tmp_path / "m1.tar")]) == 0
    add_paths(house, store, [make_wheel("demo", "3.0")])
    capsys.readouterr()
    assert main([*s, "export", str(house.root), "--since", str(tmp_path / "m1.tar"),
                 "-o", str(tmp_path / "m2.tar"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["delta"] and summary["skipped"] == 7

    far = ["--store", str(tmp_path / "far-store")]
    assert main([*far, "import", str(tmp_path / "m2.tar"), "-o", str(tmp_path / "far")]) == 1
    err = capsys.readouterr().err
    assert "is a delta" in err and "files/big-1.0-py3-none-any.whl" in err
    assert "Traceback" not in err

    assert main([*s, "export", str(house.root), "-o", str(tmp_path / "b.xz")]) == 0
    assert main([*s, "export", str(house.root), "-o", str(tmp_path / "b.tar.xz")]) == 1
    assert "unsupported bundle type" in capsys.readouterr().err
    assert main([*s, "export", str(house.root), "--since", str(tmp_path / "nope"),
                 "-o", str(tmp_path / "c.tar")]) == 2


def test_a_damaged_blob_in_the_receiving_store_is_replaced_from_the_bundle(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    out = tmp_path / "bundle.tar"
    export(house, out)
    import_bundle(out, tmp_path / "first", store=other_store)
    entry = next(e for e in house.read_manifest().files if e.filename.startswith("demo-2.0"))
    blob = other_store.blob_path(entry.sha256)
    blob.unlink()
    blob.write_bytes(b"not the wheel")
    # The blob is in the store, so the bundle's copy would have been skipped:
    # it is hashed first, found damaged, set aside, and the bundle's bytes used.
    imported = import_bundle(out, tmp_path / "second", store=other_store)
    assert imported.new_blobs == 1
    assert House.open(tmp_path / "second").verify() == []
    assert other_store.verify().ok


def test_a_damaged_blob_the_house_links_is_not_trusted_on_import(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    # A house file edited in place is a hard link to its blob: both changed.
    # The house's file is no proof the blob is good; the bundle's bytes are.
    out = tmp_path / "bundle.tar"
    export(house, out)
    far = tmp_path / "far"
    import_bundle(out, far, store=other_store)
    entry = next(e for e in house.read_manifest().files if e.filename.startswith("demo-2.0"))
    victim = far / "files" / entry.filename
    assert victim.samefile(other_store.blob_path(entry.sha256))
    victim.chmod(0o644)
    with victim.open("r+b") as f:
        f.seek(10)
        f.write(b"XX")

    imported = import_bundle(out, far, store=other_store)

    assert imported.new_blobs == 1
    assert House.open(far).verify() == []
    assert other_store.verify().ok
    assert house_view(far) == house_view(house.root)


def test_a_delta_takes_the_base_files_the_house_links_as_they_are(
    tmp_path: Path, house: House, store: Store, other_store: Store, make_wheel: WheelFactory
) -> None:
    # A delta builds on the house: its base files are not read (hashing them
    # would make each monthly delta cost the whole house). One damaged in
    # place stays damaged, and verify (and install, and serve) still say so.
    export(house, tmp_path / "m1.tar")
    far = tmp_path / "far"
    import_bundle(tmp_path / "m1.tar", far, store=other_store)
    add_paths(house, store, [make_wheel("demo", "3.0")])
    export(house, tmp_path / "m2.tar", since=tmp_path / "m1.tar")
    entry = next(e for e in house.read_manifest().files if e.filename.startswith("demo-2.0"))
    victim = far / "files" / entry.filename
    victim.chmod(0o644)
    with victim.open("r+b") as f:
        f.seek(10)
        f.write(b"XX")

    import_bundle(tmp_path / "m2.tar", far, store=other_store)

    assert (far / "files" / "demo-3.0-py3-none-any.whl").exists()
    problems = House.open(far).verify()
    assert [p.path for p in problems] == [f"files/{entry.filename}"]
    assert entry.sha256 in problems[0].problem


def test_import_never_gives_a_file_name_in_the_house_other_bytes(
    tmp_path: Path, house: House, store: Store, other_store: Store, make_wheel: WheelFactory
) -> None:
    far = tmp_path / "far"
    export(house, tmp_path / "b.tar")
    import_bundle(tmp_path / "b.tar", far, store=other_store)
    # Another house, where demo 2.0 was built again: the same name, other bytes.
    (tmp_path / "dists").rename(tmp_path / "dists-first")
    rebuilt = make_wheel("demo", "2.0", requires_python=">=3.8", padding=10)
    other = House.open(tmp_path / "other", create=True)
    add_paths(other, store, [rebuilt])
    export(other, tmp_path / "other.tar")
    before_house, before_store = snapshot(far), store_state(other_store)

    with pytest.raises(HouseError) as info:
        import_bundle(tmp_path / "other.tar", far, store=other_store)

    assert "never reuses a file name for different bytes" in str(info.value)
    assert "demo-2.0-py3-none-any.whl" in str(info.value)
    assert info.value.exit_code == 1
    assert snapshot(far) == before_house
    assert store_state(other_store) == before_store


def test_a_symlinked_files_dir_is_refused_before_the_store_changes(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    export(house, tmp_path / "b.tar")
    far = tmp_path / "far"
    import_bundle(tmp_path / "b.tar", far, store=Store.open(tmp_path / "s1"))
    outside = tmp_path / "outside"
    (far / "files").rename(outside)
    (far / "files").symlink_to(outside)
    before_outside, before_store = snapshot(outside), store_state(other_store)

    with pytest.raises(HouseError, match="symbolic link"):
        import_bundle(tmp_path / "b.tar", far, store=other_store)

    assert snapshot(outside) == before_outside
    assert store_state(other_store) == before_store


def test_an_import_killed_after_its_manifest_is_finished_by_the_next_one(
    tmp_path: Path, house: House, store: Store, other_store: Store,
) -> None:
    # kill -9 (no handler runs) between the new manifest and the removal of
    # the files it dropped: the next import of the same bundle removes them,
    # so pip's --find-links files/ no longer sees them.
    far = tmp_path / "far"
    export(house, tmp_path / "m1.tar")
    import_bundle(tmp_path / "m1.tar", far, store=other_store)
    house.remove("big")
    export(house, tmp_path / "m2.tar")
    code = (
        "import os, sys, signal\n"
        "from wheelhouse import house\n"
        "from wheelhouse.bundle import import_bundle\n"
        "from wheelhouse.store import Store\n"
        "house.House.unlink_file = lambda self, entry: os.kill(os.getpid(), signal.SIGKILL)\n"
        "import_bundle(sys.argv[1], sys.argv[2], store=Store.open(sys.argv[3]))\n"
    )
    killed = run([sys.executable, "-c", code, str(tmp_path / "m2.tar"), str(far),
                  str(other_store.root)], check=False)
    assert killed.returncode == -9
    assert (far / "files" / "big-1.0-py3-none-any.whl").exists()
    assert House.open(far).verify() != []

    import_bundle(tmp_path / "m2.tar", far, store=other_store)

    assert not (far / "files" / "big-1.0-py3-none-any.whl").exists()
    assert not (far / "files" / "big-1.0-py3-none-any.whl.metadata").exists()
    assert House.open(far).verify() == []
    assert house_view(far) == house_view(house.root)


def test_an_import_killed_while_creating_the_house_does_not_block_the_next(
    tmp_path: Path, house: House, other_store: Store
) -> None:
    export(house, tmp_path / "b.tar")
    far = tmp_path / "far"
    # What a creation killed before its manifest leaves.
    (far / "files").mkdir(parents=True)
    (far / ".wheelhouse.lock").touch()
    (far / ".wheelhouse.writing").touch()

    import_bundle(tmp_path / "b.tar", far, store=other_store)

    assert house_view(far) == house_view(house.root)


@pytest.mark.parametrize("value", ["true", "1.0"])
@pytest.mark.parametrize("which", ["bundle", "house"])
def test_a_format_that_only_equals_one_is_not_format_one(
    tmp_path: Path, house: House, other_store: Store, value: str, which: str
) -> None:
    export(house, tmp_path / "good.tar")
    entries = read_entries(tmp_path / "good.tar")
    i = 0 if which == "bundle" else _find(entries, "wheelhouse.json")
    data = entries[i].data
    assert data.startswith(b'{"format":1,')
    entries[i] = regular(entries[i].info.name, b'{"format":' + value.encode() + data[11:])
    if which == "house":  # listed in the bundle manifest as it now is
        raw = json.loads(entries[0].data)
        for m in raw["members"]:
            if m["name"] == "wheelhouse.json":
                m.update(sha256=hashlib.sha256(entries[i].data).hexdigest(),
                         size=len(entries[i].data))
        entries[0] = regular(BUNDLE_MANIFEST, json.dumps(raw).encode())
    write_entries(tmp_path / "odd.tar", entries)

    with pytest.raises((BundleIntegrityError, FormatVersionError)) as info:
        import_bundle(tmp_path / "odd.tar", tmp_path / "far", store=other_store)

    assert value in str(info.value) or value.title() in str(info.value)
    assert not (tmp_path / "far").exists()
