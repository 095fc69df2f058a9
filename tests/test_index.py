"""The index pages: PEP 503/691/592/629/658/714/700, checked with pypi-simple's parser."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pypi_simple import DistributionPackage, IndexPage, ProjectPage

from tests.builders import build_sdist, build_wheel, metadata_text
from tests.conftest import interrupt_each_fork, isolated_env, reaped, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.errors import HouseError, InvalidInputError
from wheelhouse.house import INDEX_STATE, FileEntry, House, Manifest
from wheelhouse.index import JSON_CONTENT_TYPE, RENDERING, render_index, render_project_json
from wheelhouse.store import Sha256, Store

if TYPE_CHECKING:
    from collections.abc import Callable

GOLDEN = Path(__file__).parent / "data" / "golden"
NASTY = 'has "quotes" & <tags> \u00e9\u4e2d'


def _entry(filename: str, project: str, version: str, n: int, **kw: object) -> FileEntry:
    return FileEntry(
        filename=filename, sha256=Sha256(f"{n:x}" * 64), size=100 * n, project=project,
        version=version, kind="wheel" if filename.endswith(".whl") else "sdist",
        **kw,  # type: ignore[arg-type]
    )


GOLDEN_MANIFEST = Manifest((
    _entry("demo_pkg-1.0-py3-none-any.whl", "demo-pkg", "1.0", 1, requires_python=">=3.8,<4",
           metadata_sha256=Sha256("a" * 64), upload_time="2024-03-01T12:00:00.000000Z"),
    _entry("demo_pkg-1.0.tar.gz", "demo-pkg", "1.0", 2, requires_python=">=3.8,<4"),
    _entry("demo_pkg-2.0-py3-none-any.whl", "demo-pkg", "2.0", 3,
           metadata_sha256=Sha256("b" * 64), yanked=NASTY),
    _entry("demo_pkg-10.0-py3-none-any.whl", "demo-pkg", "10.0", 5,
           metadata_sha256=Sha256("c" * 64), yanked=""),
    _entry("other-0.1-cp312-abi3-manylinux_2_28_x86_64.whl", "other", "0.1", 4,
           metadata_sha256=Sha256("d" * 64)),
))


def test_rendering_matches_golden_files() -> None:
    pages = render_index(GOLDEN_MANIFEST)
    if os.environ.get("REGEN_GOLDEN"):
        for rel, data in pages.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(data)
    on_disk = {
        str(p.relative_to(GOLDEN)): p.read_bytes() for p in GOLDEN.rglob("*") if p.is_file()
    }
    assert pages == on_disk


def test_json_pages_are_the_canonical_json_dump() -> None:
    # The project pages are assembled by hand (for speed): they must be the
    # bytes json.dumps gives, escapes and key order included.
    odd = _entry("demo_pkg-3.0.tar.gz", "demo-pkg", "3.0", 6,
                 requires_python='>=3.8,<"4" \u00e9', yanked="bad \u2028 \"x\"\n\\")
    for project, entries in Manifest((*GOLDEN_MANIFEST.files, odd)).projects().items():
        page = render_project_json(project, entries)
        canonical = json.dumps(json.loads(page), sort_keys=True, ensure_ascii=True,
                               separators=(",", ":")).encode() + b"\n"
        assert page == canonical


def test_rendering_is_deterministic() -> None:
    shuffled = Manifest(tuple(reversed(GOLDEN_MANIFEST.files)))
    assert render_index(shuffled) == render_index(GOLDEN_MANIFEST)


def _packages_from_html(house: Path, project: str) -> list[DistributionPackage]:
    page = house / "simple" / project / "index.html"
    parsed = ProjectPage.from_html(project, page.read_bytes(), base_url=page.as_uri())
    assert parsed.repository_version == "1.1"
    return parsed.packages


def _packages_from_json(house: Path, project: str) -> ProjectPage:
    page = house / "simple" / project / "index.json"
    data = json.loads(page.read_bytes())
    assert data["meta"]["api-version"] == "1.1"
    return ProjectPage.from_json_data(data, base_url=page.parent.as_uri() + "/")


def test_pypi_simple_reads_every_page_identically(tmp_path: Path) -> None:
    """HTML and JSON agree with the manifest on every field a client reads."""
    manifest = Manifest(GOLDEN_MANIFEST.files)
    house = tmp_path / "house"
    for rel, data in render_index(manifest).items():
        (house / rel).parent.mkdir(parents=True, exist_ok=True)
        (house / rel).write_bytes(data)

    root = IndexPage.from_html((house / "simple" / "index.html").read_bytes())
    assert root.projects == ["demo-pkg", "other"]
    root_json = json.loads((house / "simple" / "index.json").read_bytes())
    assert [p["name"] for p in root_json["projects"]] == ["demo-pkg", "other"]

    for project, entries in manifest.projects().items():
        html_packages = _packages_from_html(house, project)
        json_page = _packages_from_json(house, project)
        assert json_page.versions == sorted({e.version for e in entries},
                                            key=lambda v: tuple(int(x) for x in v.split(".")))
        for html_pkg, json_pkg, entry in zip(html_packages, json_page.packages, entries,
                                             strict=True):
            expected_url = (house / "files" / entry.filename).as_uri()
            assert html_pkg.filename == json_pkg.filename == entry.filename
            assert html_pkg.url == expected_url
            assert json_pkg.url == expected_url
            assert html_pkg.digests == json_pkg.digests == {"sha256": entry.sha256}
            assert html_pkg.requires_python == json_pkg.requires_python == entry.requires_python
            assert html_pkg.is_yanked == json_pkg.is_yanked == (entry.yanked is not None)
            # PEP 592: an empty data-yanked and JSON `true` both mean "yanked, no reason".
            assert (html_pkg.yanked_reason or None) == json_pkg.yanked_reason == (
                entry.yanked or None
            )
            assert html_pkg.has_metadata == (True if entry.metadata_sha256 else None)
            assert json_pkg.has_metadata == bool(entry.metadata_sha256)
            if entry.metadata_sha256:
                assert html_pkg.metadata_digests == json_pkg.metadata_digests == {
                    "sha256": entry.metadata_sha256
                }
            assert json_pkg.size == entry.size
            if entry.upload_time is None:
                assert json_pkg.upload_time is None
            else:
                assert json_pkg.upload_time is not None
                assert json_pkg.upload_time.isoformat() == "2024-03-01T12:00:00+00:00"

    # The flat page lists every file with the same data.
    flat = ProjectPage.from_html("", (house / "find-links.html").read_bytes(),
                                 base_url=(house / "find-links.html").as_uri())
    assert [p.filename for p in flat.packages] == sorted(e.filename for e in manifest.files)
    assert {p.url for p in flat.packages} == {
        (house / "files" / e.filename).as_uri() for e in manifest.files
    }


def test_nasty_strings_round_trip_through_html_and_json(tmp_path: Path) -> None:
    pages = render_index(GOLDEN_MANIFEST)
    html_page = pages["simple/demo-pkg/index.html"]
    assert b"<tags>" not in html_page and b'"quotes"' not in html_page
    packages = ProjectPage.from_html("demo-pkg", html_page).packages
    assert {p.filename: p.yanked_reason for p in packages}[
        "demo_pkg-2.0-py3-none-any.whl"] == NASTY
    assert {p.filename: p.requires_python for p in packages}[
        "demo_pkg-1.0-py3-none-any.whl"] == ">=3.8,<4"
    data = json.loads(pages["simple/demo-pkg/index.json"])
    assert {f["filename"]: f["yanked"] for f in data["files"]}[
        "demo_pkg-2.0-py3-none-any.whl"] == NASTY
    assert all(b < 0x80 for b in pages["simple/demo-pkg/index.json"])


# What a character reference does not bring back (C1 controls read as
# Windows-1252, noncharacters dropped by Python's parser, control characters
# dropped by it too), and what a raw byte does not (CR LF read as LF).
STRANGE = "a\x85\x9b b \x80\x99 \ufdd0\ufffe\U0010ffff \x1b[31mRED\x07 \r\nX: 1\tend\x0b\x0c\x7f"


@pytest.mark.parametrize("page", ["simple/demo-pkg/index.html", "find-links.html"])
def test_control_characters_and_c1_round_trip_through_html(page: str) -> None:
    from html.parser import HTMLParser

    manifest = Manifest((
        _entry("demo_pkg-1.0-py3-none-any.whl", "demo-pkg", "1.0", 1,
               requires_python=">=3.8" + STRANGE),
        _entry("demo_pkg-2.0-py3-none-any.whl", "demo-pkg", "2.0", 2, yanked=STRANGE),
    ))
    data = render_index(manifest)[page]
    # pypi-simple's reading, and the standard library's parser (pip's).
    packages = {p.filename: p for p in ProjectPage.from_html("demo-pkg", data).packages}
    assert packages["demo_pkg-1.0-py3-none-any.whl"].requires_python == ">=3.8" + STRANGE
    assert packages["demo_pkg-2.0-py3-none-any.whl"].yanked_reason == STRANGE
    found: dict[str, dict[str, str | None]] = {}

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                found[dict(attrs)["href"] or ""] = dict(attrs)

    Links().feed(data.decode("utf-8"))
    by_file = {href.split("/")[-1].split("#")[0]: a for href, a in found.items()}
    assert by_file["demo_pkg-1.0-py3-none-any.whl"]["data-requires-python"] == (
        ">=3.8" + STRANGE)
    assert by_file["demo_pkg-2.0-py3-none-any.whl"]["data-yanked"] == STRANGE
    # One link a line (the find-links page is edited line by line), no raw CR.
    assert b"\r" not in data
    assert sum(line.count(b"<a ") for line in data.split(b"\n") if b"<a " in line) == len(
        [line for line in data.split(b"\n") if b"<a " in line])


def test_a_yank_reason_an_index_page_cannot_carry_is_refused(
    tmp_path: Path, store: Store
) -> None:
    build_wheel(tmp_path / "d", "demo", "1.0")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [tmp_path / "d"])
    before = house.manifest_path.read_bytes()
    for reason in ("null\x00byte", "not text \udcff"):
        with pytest.raises(InvalidInputError, match="cannot carry"):
            house.yank("demo", reason=reason)
    assert house.manifest_path.read_bytes() == before
    # From an upstream index, such a reason is kept with U+FFFD in place.
    from wheelhouse.upstream import _parse_page

    page = json.dumps({"files": [{"filename": "demo-1.0-py3-none-any.whl",
                                  "hashes": {"sha256": "a" * 64}, "yanked": "x\x00y\ud800"}]})
    facts = _parse_page(page.encode(), JSON_CONTENT_TYPE, "https://example/simple/demo/")
    assert facts["demo-1.0-py3-none-any.whl"][1].yanked == "x\ufffdy\ufffd"


def test_a_requires_python_with_a_nul_is_refused_at_add(tmp_path: Path, store: Store) -> None:
    wheel = build_wheel(tmp_path / "d", "demo", "1.0", metadata=metadata_text(
        "demo", "1.0", requires_python=">=3.8\x00"))
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match="Requires-Python holds a NUL"):
        add_paths(house, store, [wheel])
    assert house.read_manifest().files == ()


@pytest.fixture
def built_house(tmp_path: Path, store: Store) -> House:
    dists = tmp_path / "dists"
    build_wheel(dists, "Demo.Pkg", "1.0", requires_python=">=3.8")
    build_sdist(dists, "Demo.Pkg", "1.0", requires_python=">=3.8")
    build_wheel(dists, "zeta", "0.1")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [dists])
    return house


def test_metadata_files_are_byte_identical_and_advertised(built_house: House) -> None:
    manifest = built_house.read_manifest()
    for entry in manifest.files:
        if entry.kind != "wheel":
            continue
        with zipfile.ZipFile(built_house.file_path(entry.filename)) as zf:
            (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
            inner = zf.read(name)
        sidecar = built_house.file_path(entry.filename + ".metadata").read_bytes()
        assert sidecar == inner
        (pkg,) = [p for p in _packages_from_html(built_house.root, entry.project)
                  if p.filename == entry.filename]
        assert pkg.metadata_digests == {"sha256": hashlib.sha256(inner).hexdigest()}
    sdist = [p for p in _packages_from_html(built_house.root, "demo-pkg")
             if p.filename.endswith(".tar.gz")]
    assert sdist[0].has_metadata is None


def _page_stamps(house: House) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(house.root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted((house.root / "simple").rglob("*"))
        if p.is_file() and p.name != ".manifest-sha256"
    } | {"find-links.html": ((house.root / "find-links.html").stat().st_ino, 0)}


def test_adding_one_project_rewrites_only_its_pages(
    built_house: House, store: Store, tmp_path: Path
) -> None:
    before = _page_stamps(built_house)
    new = build_wheel(tmp_path / "more", "newcomer", "1.0")
    add_paths(built_house, store, [new])
    after = _page_stamps(built_house)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {
        "simple/newcomer/index.html", "simple/newcomer/index.json",
        "simple/index.html", "simple/index.json", "find-links.html",
    }
    # And what was written equals a full render.
    assert render_index(built_house.read_manifest()) == {
        rel: (built_house.root / rel).read_bytes() for rel in render_index(
            built_house.read_manifest())
    }


def test_pages_from_an_older_rendering_are_all_rewritten(
    built_house: House, store: Store, tmp_path: Path
) -> None:
    # A house indexed by an older wheelhouse: its state file holds the bare
    # manifest digest, and its pages carry the pre-PEP 714 metadata name.
    simple = built_house.root / "simple"
    state = simple / ".manifest-sha256"
    first = state.read_text().split()[0]  # r<rendering>-<manifest sha256>
    state.write_text(first.split("-", 1)[1] + "\n")
    old_page = simple / "zeta" / "index.html"
    old_page.write_bytes(old_page.read_bytes().replace(
        b"data-core-metadata=", b"data-dist-info-metadata=", 1))
    add_paths(built_house, store, [build_wheel(tmp_path / "more", "newcomer", "1.0")])
    # Adding one project rewrote the page of another, untouched one.
    assert b"data-dist-info-metadata" not in old_page.read_bytes()
    manifest = built_house.read_manifest()
    assert render_index(manifest) == {
        rel: (built_house.root / rel).read_bytes() for rel in render_index(manifest)
    }


def test_new_version_of_existing_project_leaves_root_alone(
    built_house: House, store: Store, tmp_path: Path
) -> None:
    before = _page_stamps(built_house)
    add_paths(built_house, store, [build_wheel(tmp_path / "more", "zeta", "0.2")])
    after = _page_stamps(built_house)
    assert {k for k in after if before.get(k) != after[k]} == {
        "simple/zeta/index.html", "simple/zeta/index.json", "find-links.html",
    }


def test_remove_takes_a_file_out_of_every_page(built_house: House) -> None:
    built_house.remove("demo_pkg-1.0.tar.gz")
    assert not built_house.file_path("demo_pkg-1.0.tar.gz").exists()
    every_page = b"".join(
        p.read_bytes() for p in built_house.root.rglob("*") if p.suffix in {".html", ".json"}
    )
    assert b"demo_pkg-1.0.tar.gz" not in every_page
    assert [p.filename for p in _packages_from_html(built_house.root, "demo-pkg")] == [
        "demo_pkg-1.0-py3-none-any.whl"
    ]
    built_house.remove("zeta")
    assert not (built_house.root / "simple" / "zeta").exists()
    root = IndexPage.from_html((built_house.root / "simple" / "index.html").read_bytes())
    assert root.projects == ["demo-pkg"]
    assert built_house.verify() == []


def test_yank_and_unyank_by_spec(built_house: House) -> None:
    built_house.yank("demo.pkg==1.0", reason="broken <build>")
    packages = _packages_from_html(built_house.root, "demo-pkg")
    assert {(p.filename, p.yanked_reason) for p in packages} == {
        ("demo_pkg-1.0-py3-none-any.whl", "broken <build>"),
        ("demo_pkg-1.0.tar.gz", "broken <build>"),
    }
    built_house.yank("demo-pkg", undo=True)
    assert not any(p.is_yanked for p in _packages_from_html(built_house.root, "demo-pkg"))


@pytest.mark.parametrize("selector", ["nothing-1.0-py3-none-any.whl", "demo-pkg>5", "not a spec"])
def test_selectors_that_match_nothing_are_errors(built_house: House, selector: str) -> None:


    before = built_house.manifest_path.read_bytes()
    with pytest.raises(InvalidInputError, match=r"match|no file|not a file name"):
        built_house.remove(selector)
    assert built_house.manifest_path.read_bytes() == before


def test_hand_edited_index_is_rewritten_not_trusted(built_house: House, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.html").write_text("precious")
    simple = built_house.root / "simple"
    (simple / "zeta" / "index.html").write_text("<a href='http://evil.invalid/x.whl'>x</a>")
    (simple / "stray").mkdir()
    (simple / "stray" / "index.html").write_text("stray")
    (simple / "junk.txt").write_text("junk")
    for child in (simple / "demo-pkg").iterdir():
        child.unlink()
    (simple / "demo-pkg").rmdir()
    (simple / "demo-pkg").symlink_to(outside)

    stats = built_house.reindex()

    assert stats.written >= 3
    assert (outside / "index.html").read_text() == "precious"
    assert not (simple / "demo-pkg").is_symlink()
    assert not (simple / "stray").exists() and not (simple / "junk.txt").exists()
    expected = render_index(built_house.read_manifest())
    for rel, data in expected.items():
        assert (built_house.root / rel).read_bytes() == data
    # A second run finds nothing to do.
    assert built_house.reindex().written == 0


def test_index_restores_a_deleted_metadata_file(built_house: House) -> None:
    sidecar = built_house.file_path("zeta-0.1-py3-none-any.whl.metadata")
    original = sidecar.read_bytes()
    sidecar.unlink()
    built_house.reindex()
    assert sidecar.read_bytes() == original


def test_wheel_without_readable_metadata_is_refused_at_add(
    tmp_path: Path, store: Store
) -> None:


    bad = build_wheel(tmp_path / "bad", "demo", "1.0", metadata="this is not: metadata\n")
    house = House.open(tmp_path / "house", create=True)
    with pytest.raises(InvalidInputError, match="lacks a Name or Version"):
        add_paths(house, store, [bad])


def test_metadata_with_nasty_requires_python_is_escaped(tmp_path: Path, store: Store) -> None:
    wheel = build_wheel(tmp_path / "d", "demo", "1.0", metadata=metadata_text(
        "demo", "1.0", requires_python='>=3.8"><script>alert(1)</script>'))
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [wheel])
    page = (house.root / "simple" / "demo" / "index.html").read_bytes()
    assert b"<script>" not in page
    (pkg,) = _packages_from_html(house.root, "demo")
    assert pkg.requires_python == '>=3.8"><script>alert(1)</script>'


def test_dataclass_fields_cover_pep700() -> None:
    names = {f.name for f in dataclasses.fields(FileEntry)}
    assert {"upload_time", "yanked", "size", "requires_python", "metadata_sha256"} <= names


def _many_entries(count: int) -> list[FileEntry]:
    entries = []
    for i in range(count):
        project = f"proj-{i // 3:03d}"
        version = f"1.{i % 3}"
        name = project.replace("-", "_")
        entries.append(_entry(
            f"{name}-{version}-py3-none-any.whl", project, version, i % 15 + 1,
            requires_python=">=3.8" if i % 2 else None,
            metadata_sha256=Sha256("e" * 64) if i % 4 else None,
            yanked=NASTY if i % 7 == 0 else None,
        ))
    return entries


def test_spliced_find_links_page_equals_a_full_render() -> None:
    from wheelhouse.index import render_find_links, splice_find_links

    old = _many_entries(60)
    page = render_find_links(old)
    new_entry = _entry("proj-005-1.9-py3-none-any.whl", "proj-005", "1.9", 3)
    first = _entry("aaa-0.1.tar.gz", "aaa", "0.1", 2, requires_python=NASTY)
    changed = dataclasses.replace(old[10], yanked="bad")
    removed = [old[0].filename, old[59].filename, old[10].filename, old[33].filename]
    added = [new_entry, first, changed]
    expected = render_find_links(
        [e for e in old if e.filename not in removed] + added
    )
    assert splice_find_links(page, len(old), removed, added) == expected
    # Everything removed, from an empty page, and pages that are not ours.
    assert splice_find_links(page, len(old), [e.filename for e in old], []) == (
        render_find_links([])
    )
    assert splice_find_links(render_find_links([]), 0, [], old) == page
    assert splice_find_links(page, len(old) + 1, [], [new_entry]) is None
    assert splice_find_links(page, len(old), ["nothere-1.0.tar.gz"], []) is None
    assert splice_find_links(page, len(old), [], [old[3]]) is None


def test_incremental_updates_write_what_a_full_render_writes(
    built_house: House, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wheelhouse.house
    import wheelhouse.index

    # Keep the manifest's lines at any size, as a large house does.
    monkeypatch.setattr(wheelhouse.house, "_LINES_MIN_BYTES", 0)
    spliced: list[bytes | None] = []
    splice = wheelhouse.index.splice_find_links

    def spy(*args: Any) -> bytes | None:
        spliced.append(splice(*args))
        return spliced[-1]

    # When the set of projects changes, the names come from the root JSON page
    # the last update wrote, not from a pass over every manifest line.
    scans: list[int] = []
    project_names = Manifest.project_names

    def names_spy(self: Manifest) -> list[str]:
        scans.append(1)
        return project_names(self)

    monkeypatch.setattr(Manifest, "project_names", names_spy)

    monkeypatch.setattr(wheelhouse.house, "splice_find_links", spy)

    def check() -> None:
        fresh = House(built_house.root)  # no cached manifest, no remembered lines
        manifest = fresh.read_manifest()
        assert built_house.manifest_path.read_bytes() == Manifest(manifest.files).render()
        expected = render_index(manifest)
        for rel, data in expected.items():
            assert (built_house.root / rel).read_bytes() == data, rel
        pages = {str(p.relative_to(built_house.root)) for p in
                 (built_house.root / "simple").rglob("index.*")}
        assert pages == {rel for rel in expected if rel.startswith("simple/")}
        state = (built_house.root / "simple" / ".manifest-sha256").read_text().split()
        assert state == [
            f"r{RENDERING}-" + hashlib.sha256(built_house.manifest_path.read_bytes()).hexdigest(),
            hashlib.sha256((built_house.root / "find-links.html").read_bytes()).hexdigest(),
            hashlib.sha256((built_house.root / "simple" / "index.json").read_bytes()).hexdigest(),
        ]

    check()
    more = tmp_path / "more"
    add_paths(built_house, store, [build_wheel(more, "zeta", "0.2", requires_python=NASTY)])
    check()
    add_paths(built_house, store, [build_wheel(more, "aardvark", "1.0"),
                                   build_sdist(more, "zzz", "3.0")])
    check()
    built_house.yank("zeta==0.1", reason="<why>")
    check()
    built_house.remove("demo_pkg-1.0.tar.gz")
    check()
    built_house.remove("aardvark")
    check()
    assert len(spliced) == 5 and None not in spliced
    # A find-links page edited by hand is rendered anew, not edited further.
    (built_house.root / "find-links.html").write_bytes(b"<a href='http://evil.invalid/'>x</a>")
    built_house.yank("zzz", reason="")
    check()
    assert len(spliced) == 5
    # New projects came (zeta, aardvark, zzz) and one went (aardvark): no scan.
    assert scans == []
    # A root page edited by hand is not where the names are read from.
    root_json = built_house.root / "simple" / "index.json"
    root_json.write_bytes(
        root_json.read_bytes().replace(b'"projects":[', b'"projects":[{"name":"evil"},'))
    add_paths(built_house, store, [build_wheel(more, "omega", "1.0")])
    check()
    assert scans == [1]


def test_a_root_page_edited_by_hand_is_never_recorded_as_ours(
    built_house: House, store: Store, tmp_path: Path
) -> None:
    # An update that leaves the root pages alone must not take the page on disk
    # for the one it wrote: the next update that adds a project would read the
    # project names from it (a project that is not there, or one left out).
    root_json = built_house.root / "simple" / "index.json"
    root_json.write_bytes(
        root_json.read_bytes().replace(b'"projects":[', b'"projects":[{"name":"evil"},'))
    more = tmp_path / "more"
    add_paths(built_house, store, [build_wheel(more, "zeta", "0.3")])  # no new project
    add_paths(built_house, store, [build_wheel(more, "omega", "1.0")])  # a new one
    expected = render_index(House(built_house.root).read_manifest())
    for rel in ("simple/index.json", "simple/index.html"):
        assert (built_house.root / rel).read_bytes() == expected[rel], rel
    assert b"evil" not in root_json.read_bytes()


def test_a_writer_killed_between_the_pages_and_the_index_state_leaves_no_state_to_trust(
    built_house: House, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A remove writes the index first, then the manifest. Killed after the pages
    # and before the index state (SIGKILL cannot wait), the old state must not
    # still name the manifest on disk: the next update would trust pages that
    # show another house (zeta's pages gone, zeta left out of the root pages).
    import wheelhouse.house
    from wheelhouse._fs import write_atomic

    def killed_at_the_state(path: Path, *args: Any, **kwargs: Any) -> None:
        if path.name == INDEX_STATE:
            raise KeyboardInterrupt  # where the process died
        write_atomic(path, *args, **kwargs)

    monkeypatch.setattr(wheelhouse.house, "write_atomic", killed_at_the_state)
    with pytest.raises(KeyboardInterrupt):
        built_house.remove("zeta")
    monkeypatch.undo()
    house = House.open(built_house.root)
    assert "zeta" in house.read_manifest().project_names()  # the manifest was not written
    assert not house.index_is_current()
    add_paths(house, store, [build_wheel(tmp_path / "more", "Demo.Pkg", "2.0")])
    expected = render_index(House(house.root).read_manifest())
    for rel, data in expected.items():
        assert (house.root / rel).read_bytes() == data, rel


def test_manifest_read_line_by_line_equals_the_json_reading(tmp_path: Path) -> None:
    manifest = Manifest(tuple(_many_entries(40)))
    data = manifest.render()
    by_lines = Manifest.parse(data, source="x", keep_lines=True)
    assert by_lines.files == manifest.files
    assert by_lines.render() == data
    changed = dataclasses.replace(by_lines.files[5], yanked="gone")
    assert by_lines.with_files([changed]).render() == manifest.with_files([changed]).render()
    # The same JSON in another layout is read all the same; broken JSON is refused.
    pretty = json.dumps(json.loads(data), indent=1).encode()
    assert Manifest.parse(pretty, source="x").files == manifest.files
    two_in_one = data.replace(b"},\n{", b"},{", 1)
    assert Manifest.parse(two_in_one, source="x").files == manifest.files
    from wheelhouse.errors import HouseError

    with pytest.raises(HouseError, match="not valid JSON"):
        Manifest.parse(data.replace(b"},\n{", b"}\n{", 1), source="x")


# -- a hand-edited manifest: every bad line is named by file and line --------

_DROP = object()


def _set(**changes: object) -> Callable[[str], str]:
    """An edit of one manifest line: keys set to new values (or dropped), written compactly."""
    def edit(line: str) -> str:
        entry = json.loads(line)
        for key, value in changes.items():
            if value is _DROP:
                del entry[key]
            else:
                entry[key] = value
        return json.dumps(entry, sort_keys=True, separators=(",", ":"))

    return edit


def _edit_manifest_line(house: House, number: int, edit: Callable[[str], str]) -> None:
    """Edit line *number* (1-based) of the house's manifest as a person would, keeping its comma."""
    lines = house.manifest_path.read_text().split("\n")
    line = lines[number - 1]
    comma = "," if line.endswith(",") else ""
    lines[number - 1] = edit(line.removesuffix(",")) + comma
    house.manifest_path.write_text("\n".join(lines))


def _run_cli(store: Store, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and what it wrote to stderr (nothing else)."""
    from wheelhouse.cli import main

    capsys.readouterr()
    code = main(["--store", str(store.root), "--quiet", *args])
    out, err = capsys.readouterr()
    assert out == ""
    return code, err


# built_house's manifest: line 2 the demo-pkg wheel, 3 its sdist, 4 the zeta wheel.
@pytest.mark.parametrize(("number", "edit", "problem"), [
    pytest.param(2, _set(sha256="0123abcd"),
                 "'sha256' is not a sha256 digest (64 lowercase hex digits): '0123abcd'",
                 id="sha256-malformed"),
    pytest.param(4, _set(sha256="A" * 64), f"'sha256' is not a sha256 digest (64 lowercase "
                 f"hex digits): '{'A' * 64}'", id="sha256-uppercase"),
    pytest.param(2, _set(metadata_sha256=""),
                 "'metadata_sha256' is not a sha256 digest (64 lowercase hex digits): ''",
                 id="metadata-sha256-empty"),
    pytest.param(3, _set(size="12"), "'size' must be a whole number of bytes, not '12'",
                 id="size-string"),
    pytest.param(4, _set(size=1.5), "'size' must be a whole number of bytes, not 1.5",
                 id="size-float"),
    pytest.param(4, _set(size=-1), "'size' must not be negative: -1", id="size-negative"),
    pytest.param(3, _set(filename="../demo_pkg-1.0.tar.gz"), "invalid distribution file name "
                 "(contains a path separator): '../demo_pkg-1.0.tar.gz'", id="filename-traversal"),
    pytest.param(4, _set(filename="zeta-0.1.egg"), "invalid distribution file name (not a "
                 "wheel (.whl) or sdist (.tar.gz, .zip)): 'zeta-0.1.egg'", id="filename-not-a-dist"),
    pytest.param(4, _set(filename="zeta-0.1.whl"), "invalid distribution file name (Invalid "
                 "wheel filename (wrong number of parts): 'zeta-0.1'): 'zeta-0.1.whl'",
                 id="filename-not-a-wheel-name"),
    pytest.param(4, _set(filename=7), "'filename' must be a string, not 7",
                 id="filename-number"),
    pytest.param(2, _set(kind=_DROP), "missing key 'kind'", id="missing-key"),
    pytest.param(3, _set(size=_DROP, sha256=_DROP), "missing keys 'sha256', 'size'",
                 id="missing-keys"),
    pytest.param(4, _set(yankd="bad build"), "unknown key 'yankd'", id="unknown-key"),
    pytest.param(2, _set(kind="egg"), "'kind' must be 'wheel' or 'sdist', not 'egg'",
                 id="kind-unknown"),
    pytest.param(3, _set(kind="wheel"),
                 "'kind' 'wheel' disagrees with its file name (an sdist's)", id="kind-wrong"),
    pytest.param(4, _set(yanked=True),
                 "'yanked' must be a string (the reason, possibly empty), not True",
                 id="yanked-true"),
    pytest.param(4, _set(origin=["x"]), "'origin' must be a string, not ['x']",
                 id="origin-list"),
    pytest.param(4, _set(targets="cp312"), "'targets' must be a list of strings, not 'cp312'",
                 id="targets-string"),
    pytest.param(4, _set(version=0.1), "'version' must be a string, not 0.1",
                 id="version-number"),
    pytest.param(4, _set(version="latest"), "'version' is not a valid version (PEP 440): "
                 "'latest'", id="version-invalid"),
    pytest.param(2, _set(version="2.0"),
                 "'version' '2.0' disagrees with its file name (version 1.0)",
                 id="version-disagrees-wheel"),
    pytest.param(3, _set(version="1.0.1"),
                 "'version' '1.0.1' disagrees with its file name (version 1.0)",
                 id="version-disagrees-sdist"),
    pytest.param(4, _set(project="demo-pkg"),
                 "'project' 'demo-pkg' disagrees with its file name (project 'zeta')",
                 id="project-disagrees"),
    pytest.param(3, _set(project="Demo.Pkg"),
                 "'project' is not a normalised project name (PEP 503): 'Demo.Pkg'",
                 id="project-not-normalised"),
    pytest.param(3, _set(filename="demo_pkg-1.0-py3-none-any.whl", kind="wheel"),
                 "duplicate file name 'demo_pkg-1.0-py3-none-any.whl' (first on line 2)",
                 id="duplicate"),
    pytest.param(3, lambda line: "{" + line, "not valid JSON (Expecting property name "
                 "enclosed in double quotes, column 2)", id="not-json"),
    pytest.param(3, lambda line: '"demo_pkg-1.0.tar.gz"',
                 "not a JSON object: 'demo_pkg-1.0.tar.gz'", id="not-an-object"),
])
def test_a_bad_manifest_line_is_named_by_verify_and_index(
    built_house: House, store: Store, capsys: pytest.CaptureFixture[str],
    number: int, edit: Callable[[str], str], problem: str,
) -> None:
    _edit_manifest_line(built_house, number, edit)
    edited = built_house.manifest_path.read_bytes()
    for command in ("verify", "index"):
        code, err = _run_cli(store, command, str(built_house.root), capsys=capsys)
        assert code == 1, err
        message, hint = err.splitlines()  # one message, and what to do
        assert message == f"error: {built_house.manifest_path}:{number}: {problem}"
        assert hint.startswith("  hint: was it edited by hand?")
    assert built_house.manifest_path.read_bytes() == edited  # 'index' wrote nothing back


def test_every_bad_manifest_line_is_named_at_once(
    built_house: House, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit_manifest_line(built_house, 2, _set(version="3.0"))
    _edit_manifest_line(built_house, 4, _set(sha256="0" * 63))
    code, err = _run_cli(store, "verify", str(built_house.root), capsys=capsys)
    path = built_house.manifest_path
    assert code == 1
    expected = [
        f"error: {path}: 2 invalid lines in the manifest:",
        f"  {path}:2: 'version' '3.0' disagrees with its file name (version 1.0)",
        f"  {path}:4: 'sha256' is not a sha256 digest (64 lowercase hex digits): '{'0' * 63}'",
    ]
    assert err.splitlines()[:3] == expected
    # The real command, in its own process: the same, and no traceback.
    proc = wheelhouse("index", str(built_house.root), env=isolated_env(
        {"WHEELHOUSE_STORE": str(store.root)}), check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[:3] == expected and "Traceback" not in proc.stderr


def test_a_bad_entry_is_named_by_its_line_in_any_json_layout(
    built_house: House, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reformatted (by a JSON tool) and then edited: the entry's first line is named.
    manifest = json.loads(built_house.manifest_path.read_bytes())
    manifest["files"][2]["version"] = "0.2"
    pretty = json.dumps(manifest, indent=1)
    built_house.manifest_path.write_text(pretty)
    opening = [n for n, line in enumerate(pretty.splitlines(), 1) if line == "  {"]
    assert len(opening) == 3
    code, err = _run_cli(store, "index", str(built_house.root), capsys=capsys)
    assert code == 1
    assert err.splitlines()[0] == (f"error: {built_house.manifest_path}:{opening[2]}: "
                                   "'version' '0.2' disagrees with its file name (version 0.1)")


@pytest.mark.parametrize(("edit", "problem"), [
    pytest.param(_set(version="9.9"), "'version' '9.9' disagrees with its file name "
                 "(version 1.0)", id="version"),
    pytest.param(_set(sha256="x"), "'sha256' is not a sha256 digest (64 lowercase hex "
                 "digits): 'x'", id="sha256"),
])
def test_a_bad_line_read_lazily_is_named_by_its_line(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str],
    edit: Callable[[str], str], problem: str,
) -> None:
    # A large manifest whose digest the index state records is read line by
    # line, each line parsed when needed: a bad one (forged state, or a line an
    # older wheelhouse let through) is named all the same.
    entries = tuple(dataclasses.replace(e, metadata_sha256=None) for e in _many_entries(3000))
    house = House.open(tmp_path / "house", create=True)
    house.write_manifest(Manifest(entries))
    house.write_index(house.read_manifest())
    assert entries[1500].filename == "proj_500-1.0-py3-none-any.whl"
    _edit_manifest_line(house, 1502, edit)
    state = house.root / "simple" / INDEX_STATE
    words = state.read_text().split()
    words[0] = f"r{RENDERING}-" + hashlib.sha256(house.manifest_path.read_bytes()).hexdigest()
    state.write_text(" ".join(words) + "\n")
    assert House.open(house.root).read_manifest()._rows is not None  # read lazily
    for command in ("verify", "index"):
        code, err = _run_cli(store, command, str(house.root), capsys=capsys)
        assert code == 1
        assert err.splitlines()[0] == f"error: {house.manifest_path}:1502: {problem}"


def test_pep700_versions_are_in_pep440_order_whatever_order_the_files_come_in() -> None:
    import itertools

    # 1.0 and 1.0.0 are equal versions: their spellings order them, so the page
    # is the same bytes in every run (a set's order changes with the hash seed).
    spellings = ["1.0.0", "10.0", "1.0", "2.0rc1", "1!0.1", "2.0", "1.0.post1"]
    pages = set()
    for order in itertools.islice(itertools.permutations(spellings), 0, 5040, 97):
        entries = [_entry(f"demo-{v}.tar.gz", "demo", v, spellings.index(v) + 1)
                   for v in order]
        page = render_project_json("demo", entries)
        assert json.loads(page)["versions"] == [
            "1.0", "1.0.0", "1.0.post1", "2.0rc1", "2.0", "10.0", "1!0.1"]
        pages.add(page)
    assert len(pages) == 1


def test_versions_spelt_otherwise_than_normalised_are_read_as_packaging_compares(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'add' writes the normalised version ("2013b0" for a file named "2013b"),
    # and a wheel may carry a build tag: such houses stay valid, and a version
    # equal as PEP 440 compares is accepted as the file's.
    dists = tmp_path / "dists"
    build_wheel(dists, "legacy", "2013b")
    build_sdist(dists, "legacy", "2013b")
    build_wheel(dists, "tagged", "1.0", build_tag="1")
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [dists])
    assert [(e.filename, e.version) for e in house.read_manifest().files] == [
        ("legacy-2013b-py3-none-any.whl", "2013b0"),
        ("legacy-2013b.tar.gz", "2013b0"),
        ("tagged-1.0-1-py3-none-any.whl", "1.0"),
    ]
    _edit_manifest_line(house, 2, _set(version="2013b"))
    _edit_manifest_line(house, 3, _set(version="2013.0b0"))
    _edit_manifest_line(house, 4, _set(version="1.0.0"))
    for command in ("index", "verify"):
        code, err = _run_cli(store, command, str(house.root), capsys=capsys)
        assert (code, err) == (0, "")
    assert [e.version for e in House.open(house.root).read_manifest().files] == [
        "2013b", "2013.0b0", "1.0.0"]
    _edit_manifest_line(house, 4, _set(version="1.0.1"))
    code, err = _run_cli(store, "verify", str(house.root), capsys=capsys)
    assert code == 1
    assert err.splitlines()[0] == (f"error: {house.manifest_path}:4: "
                                   "'version' '1.0.1' disagrees with its file name (version 1.0)")


@pytest.mark.parametrize("fork", [False, True])
def test_large_new_index_is_built_aside_and_swapped_in(
    built_house: House, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    import wheelhouse.house

    # As a house of thousands of projects would, at the size of this one.
    monkeypatch.setattr(wheelhouse.house, "_FRESH_MIN_PROJECTS", 2)
    monkeypatch.setattr(wheelhouse.house, "_FRESH_MAX_EXISTING", 3)
    monkeypatch.setattr(wheelhouse.house, "_FORK_MIN_PROJECTS", 2 if fork else 10**9)
    built = []
    original = wheelhouse.house.House._write_index_fresh

    def spy(self: House, manifest: Manifest, *args: Any) -> Any:
        built.append(original(self, manifest, *args))
        return built[-1]

    monkeypatch.setattr(wheelhouse.house.House, "_write_index_fresh", spy)
    expected = render_index(built_house.read_manifest())
    simple = built_house.root / "simple"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.html").write_text("precious")
    shutil.rmtree(simple)
    simple.mkdir()
    (simple / "junk.txt").write_text("junk")
    (simple / "zeta").symlink_to(outside)

    stats = built_house.reindex()

    assert built[-1] is not None and stats.removed == 1
    assert (outside / "index.html").read_text() == "precious"
    for rel, data in expected.items():
        assert (built_house.root / rel).read_bytes() == data, rel
    on_disk = {str(p.relative_to(built_house.root)) for p in simple.rglob("*")
               if not p.is_dir()}
    assert on_disk == {rel for rel in expected if rel.startswith("simple/")} | {
        "simple/.manifest-sha256"}
    assert not [p for p in built_house.root.iterdir() if p.name.startswith(".tmp-")]
    # An index already there is brought up to date page by page, as before.
    assert built_house.reindex().written == 0 and built[-1] is None


def test_index_built_aside_by_a_writer_that_died_is_debris(
    built_house: House, store: Store, tmp_path: Path
) -> None:
    debris = built_house.root / ".tmp-simple.123.abcd"
    (debris / "demo-pkg").mkdir(parents=True)
    (debris / "demo-pkg" / "index.html").write_text("half")
    add_paths(built_house, store, [build_wheel(tmp_path / "more", "zeta", "0.3")])
    assert not debris.exists()


def _house_of(tmp_path: Path, entries: list[FileEntry]) -> House:
    """A house whose manifest lists *entries*, with the .metadata files the index looks for."""
    house = House.open(tmp_path / "house", create=True)
    house.write_manifest(Manifest(entries))
    house.files_dir.mkdir(exist_ok=True)
    for e in entries:
        if e.metadata_sha256 is not None:
            (house.files_dir / (e.filename + ".metadata")).write_bytes(b"")
    return house


def _slow_helper(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make a forked helper (any process but this one) wait *seconds* before each run."""
    import wheelhouse.house as wh

    parent = os.getpid()
    write_groups = wh._write_groups

    def slow(*args: Any, **kwargs: Any) -> None:
        if os.getpid() != parent:
            import time

            time.sleep(seconds)
        write_groups(*args, **kwargs)

    monkeypatch.setattr(wh, "_write_groups", slow)


class _HeadStarts:
    """The head starts `wheelhouse index` made, and where each one's two writers met."""

    def __init__(self) -> None:
        self.made: list[Any] = []
        self.met: list[tuple[int, int]] = []  # (chunks from the front, all chunks)


@pytest.fixture
def head_starts(monkeypatch: pytest.MonkeyPatch) -> _HeadStarts:
    """A few hundred entries handled as a house of 50,000 would be (see _HeadStart)."""
    import wheelhouse.house as wh

    monkeypatch.setattr(wh, "_HEAD_START_MIN_BYTES", 1)
    monkeypatch.setattr(wh, "_FORK_MIN_PROJECTS", 100)
    monkeypatch.setattr(wh, "_FRESH_MIN_PROJECTS", 2)
    monkeypatch.setattr(wh, "_CHUNK_FILES", 9)
    seen = _HeadStarts()
    begin = wh._HeadStart.begin.__func__  # type: ignore[attr-defined]
    finish = wh._HeadStart.finish

    def spy_begin(cls: type, *args: Any) -> Any:
        seen.made.append(begin(cls, *args))
        return seen.made[-1]

    def spy_finish(self: Any, files: Any) -> None:
        finish(self, files)
        seen.met.append((self.chunks.split(), len(self.bounds)))

    monkeypatch.setattr(wh._HeadStart, "begin", classmethod(spy_begin))
    monkeypatch.setattr(wh._HeadStart, "finish", spy_finish)
    return seen


def _assert_index_is(house: House, manifest: Manifest) -> None:
    """The house's index is exactly *manifest*'s pages, and nothing is left aside."""
    expected = render_index(manifest)
    for rel, data in expected.items():
        assert (house.root / rel).read_bytes() == data, rel
    on_disk = {str(p.relative_to(house.root)) for p in (house.root / "simple").rglob("*")
               if not p.is_dir()}
    assert on_disk == {rel for rel in expected if rel.startswith("simple/")} | {
        f"simple/{INDEX_STATE}"}
    assert not [p for p in house.root.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("slow", ["helper", "parent"])
def test_index_of_a_large_house_has_a_helper_writing_pages_from_the_first_byte(
    tmp_path: Path, head_starts: _HeadStarts, monkeypatch: pytest.MonkeyPatch, slow: str,
) -> None:
    import wheelhouse.house as wh

    # Entries with escapes (a yank reason needing them), with and without
    # requires-python and metadata: lines of both shapes the parser reads.
    house = _house_of(tmp_path, _many_entries(600))
    if slow == "helper":
        _slow_helper(monkeypatch, 0.02)
    else:
        render = wh.render_find_links  # type: ignore[attr-defined]

        def slow_parent(files: Any) -> bytes:
            import time

            time.sleep(1)  # the helper meanwhile takes every chunk
            return render(files)

        monkeypatch.setattr(wh, "render_find_links", slow_parent)

    stats = House.open(house.root, validate=False).reindex()

    [head] = head_starts.made
    [(front, count)] = head_starts.met
    assert head is not None and count == len(head.bounds) > 10
    if slow == "helper":
        assert 0 < front < count  # each took some
    else:
        assert front == 0  # the helper took them all
    assert reaped(head.helper.pid)
    manifest = House.open(house.root).read_manifest()
    assert stats.written == stats.rendered == 2 * len(manifest.projects()) + 3
    _assert_index_is(house, manifest)
    assert House.open(house.root).reindex().written == 0


def test_index_of_a_large_house_with_a_bad_line_at_the_end_writes_nothing(
    tmp_path: Path, head_starts: _HeadStarts, store: Store, capsys: pytest.CaptureFixture[str],
) -> None:
    house = _house_of(tmp_path, _many_entries(600))
    # The last line: the helper's first chunk.
    _edit_manifest_line(house, 601, _set(size=-5))
    before = {p: p.read_bytes() for p in house.root.rglob("*") if p.is_file()
              and p.name != ".wheelhouse.lock"}

    code, err = _run_cli(store, "index", str(house.root), capsys=capsys)

    assert code == 1
    assert err.splitlines()[0] == (f"error: {house.manifest_path}:601: "
                                   "'size' must not be negative: -5")
    [head] = head_starts.made
    assert head is not None and head_starts.met == []
    assert reaped(head.helper.pid)
    after = {p: p.read_bytes() for p in house.root.rglob("*") if p.is_file()
             and p.name != ".wheelhouse.lock"}
    assert after == before  # no page written, nothing left aside


def test_index_of_a_large_unsorted_manifest_throws_the_helpers_pages_away(
    tmp_path: Path, head_starts: _HeadStarts,
) -> None:
    house = _house_of(tmp_path, _many_entries(600))
    head, rest = house.manifest_path.read_text().split("\n", 1)
    body, tail = rest.rsplit("\n]}", 1)
    items = body.split(",\n")
    assert len(items) == 600
    # The first project's lines moved to the end (as a hand edit might): valid, unsorted.
    items = items[3:] + items[:3]
    house.manifest_path.write_text(head + "\n" + ",\n".join(items) + "\n]}" + tail)

    House.open(house.root, validate=False).reindex()

    [head] = head_starts.made
    assert head is not None and head_starts.met == []  # made, not used
    manifest = House.open(house.root).read_manifest()
    assert manifest.files == Manifest(_many_entries(600)).files
    assert house.manifest_path.read_bytes() == manifest.render()  # written back, sorted
    _assert_index_is(house, manifest)


@pytest.mark.parametrize("how", ["index", "write_index"])
def test_pages_of_a_helper_that_was_killed_are_written_again(
    tmp_path: Path, head_starts: _HeadStarts, monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    import signal

    import wheelhouse.house as wh

    house = _house_of(tmp_path, _many_entries(600))
    parent = os.getpid()
    write_groups = wh._write_groups

    def killed_after_a_while(*args: Any, **kwargs: Any) -> None:
        # The helper dies in its third chunk, two projects in: one chunk half done.
        if os.getpid() != parent and len(killed_after_a_while.calls) == 2:  # type: ignore[attr-defined]
            directory, files, groups = args
            write_groups(directory, files, groups[:2])
            os.kill(os.getpid(), signal.SIGKILL)
        killed_after_a_while.calls.append(1)  # type: ignore[attr-defined]
        write_groups(*args, **kwargs)

    killed_after_a_while.calls = []  # type: ignore[attr-defined]
    monkeypatch.setattr(wh, "_write_groups", killed_after_a_while)
    if how == "index":
        House.open(house.root, validate=False).reindex()
        [(front, count)] = head_starts.met
        assert front < count - 2
    else:  # as add writes a new house's index: the manifest in memory
        monkeypatch.setattr(wh, "_FORK_MIN_PROJECTS", 2)
        house.write_index(house.read_manifest())
    _assert_index_is(house, House.open(house.root).read_manifest())


def test_a_failed_index_stops_the_helper_before_removing_its_directory(
    tmp_path: Path, head_starts: _HeadStarts, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rmtree racing a helper still writing fails (a directory not empty), and
    # its OSError would hide the error that stopped the index.
    import wheelhouse.house as wh

    house = _house_of(tmp_path, _many_entries(600))
    _slow_helper(monkeypatch, 0.05)

    def broken(files: Any) -> bytes:
        raise RuntimeError("no find-links page")

    removed_while: list[bool] = []
    remove_tree = wh._remove_tree

    def spy_remove_tree(path: Path) -> None:
        [head] = head_starts.made
        if path == head.directory:
            removed_while.append(not reaped(head.helper.pid))
        remove_tree(path)

    monkeypatch.setattr(wh, "render_find_links", broken)
    monkeypatch.setattr(wh, "_remove_tree", spy_remove_tree)
    with pytest.raises(RuntimeError, match="no find-links page"):
        House.open(house.root, validate=False).reindex()
    [head] = head_starts.made
    assert removed_while and not any(removed_while)  # the helper was gone each time
    assert reaped(head.helper.pid)
    assert not [p for p in house.root.iterdir() if p.name.startswith(".tmp-")]


def test_an_interrupt_just_after_the_helper_starts_stops_it_before_its_directory_goes(
    tmp_path: Path, head_starts: _HeadStarts, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C between the fork and the command's keeping hold of the helper:
    # the helper must still be stopped before its directory is removed (an
    # rmtree racing it fails, and leaves a helper writing pages for nobody).
    import wheelhouse.house as wh

    house = _house_of(tmp_path, _many_entries(600))
    _slow_helper(monkeypatch, 0.05)
    forked = interrupt_each_fork(monkeypatch, wh)
    removed_while: list[bool] = []
    remove_tree = wh._remove_tree

    def spy_remove_tree(path: Path) -> None:
        if forked and path.name.startswith(".tmp-simple."):
            removed_while.append(not reaped(forked[0].pid))
        remove_tree(path)

    monkeypatch.setattr(wh, "_remove_tree", spy_remove_tree)
    with pytest.raises(KeyboardInterrupt):
        House.open(house.root, validate=False).reindex()
    [helper] = forked
    assert reaped(helper.pid)
    assert not any(removed_while)  # the helper was gone each time
    assert not [p for p in house.root.iterdir() if p.name.startswith(".tmp-")]
    House.open(house.root).reindex()
    _assert_index_is(house, House.open(house.root).read_manifest())


def test_a_helper_whose_pages_will_not_be_used_is_stopped_at_once(
    tmp_path: Path, head_starts: _HeadStarts, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 600 files of 200 projects: too few projects for an index built aside
    # (here, fewer than 300), so the pages are written in place; the helper
    # must not go on writing (and flushing) pages nobody will use meanwhile.
    import wheelhouse.house as wh

    monkeypatch.setattr(wh, "_FRESH_MIN_PROJECTS", 300)
    house = _house_of(tmp_path, _many_entries(600))
    full = wh.House._write_index_full
    alive: list[bool] = []

    def spy_full(self: House, manifest: Manifest) -> Any:
        [head] = head_starts.made
        alive.append(not reaped(head.helper.pid))
        return full(self, manifest)

    monkeypatch.setattr(wh.House, "_write_index_full", spy_full)
    House.open(house.root, validate=False).reindex()
    [head] = head_starts.made
    assert head is not None and alive == [False]
    _assert_index_is(house, House.open(house.root).read_manifest())


@pytest.mark.parametrize("how", ["index", "write_index"])
def test_a_house_where_directories_cannot_be_flocked_is_indexed_by_one_process(
    tmp_path: Path, head_starts: _HeadStarts, monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    # NFS takes flock as a byte-range lock, which needs a file open for
    # writing: on a directory it fails (EBADF). The two writers cannot share
    # chunks there; one process writes every page, as before helpers.
    import errno
    import fcntl
    import stat

    import wheelhouse.house as wh

    flock = fcntl.flock

    def nfs_flock(fd: int, operation: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    house = _house_of(tmp_path, _many_entries(600))
    if how == "index":
        House.open(house.root, validate=False).reindex()
        assert head_starts.made == [None]
    else:
        monkeypatch.setattr(wh, "_FORK_MIN_PROJECTS", 2)
        house.write_index(house.read_manifest())
    _assert_index_is(house, House.open(house.root).read_manifest())


def test_a_manifest_the_house_wrote_is_rendered_again_from_its_own_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Adding one file to a 50,000-file house must not render 50,000 lines again:
    # the lines of the manifest the house wrote (its index state names its
    # digest) are reused for every entry that did not change.
    house = House.open(tmp_path / "house", create=True)
    house.write_manifest(Manifest(tuple(_many_entries(2000))))
    house.write_index(house.read_manifest())
    assert (house.root / "simple" / INDEX_STATE).read_text().startswith(f"r{RENDERING}-")

    rendered: list[str] = []
    original = FileEntry.to_json_line

    def counting(self: FileEntry) -> str:
        rendered.append(self.filename)
        return original(self)

    monkeypatch.setattr(FileEntry, "to_json_line", counting)
    again = House.open(tmp_path / "house")
    new = _entry("zz_new-1.0-py3-none-any.whl", "zz-new", "1.0", 3)
    changed = again.read_manifest().with_files([new])
    data = changed.render()
    assert rendered == [new.filename]
    monkeypatch.setattr(FileEntry, "to_json_line", original)
    assert data == Manifest(changed.files).render()


def test_one_file_added_to_a_large_house_parses_few_manifest_lines(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The manifest the house wrote is trusted line by line: adding one file
    # looks up a few lines by bisection instead of parsing all 3,000, and the
    # index it updates is the one a full render gives.
    house = House.open(tmp_path / "house", create=True)
    house.write_manifest(Manifest(tuple(_many_entries(3000))))
    house.write_index(house.read_manifest())
    parsed: list[str] = []
    from_line, from_dict = FileEntry._from_line, FileEntry.from_dict

    def counting_line(match: Any, *caches: Any) -> FileEntry:
        parsed.append(match.group(1))
        return from_line(match, *caches)

    def counting_dict(raw: dict[str, Any], **kw: Any) -> FileEntry:
        parsed.append(raw["filename"])
        return from_dict(raw, **kw)

    monkeypatch.setattr(FileEntry, "_from_line", staticmethod(counting_line))
    monkeypatch.setattr(FileEntry, "from_dict", staticmethod(counting_dict))
    again = House.open(tmp_path / "house")
    # A new version of a project in the middle, and a new project.
    wheels = [build_wheel(tmp_path / "new", "proj-500", "9.0"),
              build_wheel(tmp_path / "new", "zz-new", "1.0")]
    add_paths(again, store, wheels)
    assert 0 < len(parsed) < 100
    monkeypatch.undo()

    fresh = House.open(tmp_path / "house")
    files = fresh.read_manifest().files
    assert len(files) == 3002
    assert list(files) == sorted(files, key=lambda e: (e.project, e.filename))
    assert fresh.read_manifest().render() == Manifest(files).render()
    # Every page is the one a full render gives.
    for rel, data in render_index(fresh.read_manifest()).items():
        assert (fresh.root / rel).read_bytes() == data, rel


@pytest.mark.parametrize("lazy", [False, True])
def test_changes_since_names_what_really_changed(lazy: bool) -> None:
    base = Manifest(tuple(_many_entries(30)))
    if lazy:
        base = Manifest.parse(base.render(), source="x", keep_lines=True)
    old = base.files[4]
    new = dataclasses.replace(old, yanked="bad")
    other = _entry("zz_new-1.0-py3-none-any.whl", "zz-new", "1.0", 3)
    twice = dataclasses.replace(other, size=99)
    # The same name twice: the last wins; an entry given again unchanged is no change.
    step = base.with_files([new, other, twice, base.files[7]])
    assert step.changes_since(base) == ([old], [new, twice])
    assert step.files == Manifest((*base.files[:4], new, *base.files[5:], twice)).files
    # Two steps compose: a file added then removed was never there.
    gone = step.without([twice.filename, base.files[0].filename])
    assert gone.changes_since(base) == ([old, base.files[0]], [new])
    assert gone.changes_since(Manifest()) is None  # not where it came from
    # Many at once take the other way, with the same answer.
    many = [dataclasses.replace(e, size=e.size + 1) for e in _many_entries(300)]
    big = Manifest(tuple(_many_entries(300)))
    if lazy:
        big = Manifest.parse(big.render(), source="x", keep_lines=True)
    changed = big.with_files(many)
    gone_many, new_many = changed.changes_since(big) or ([], [])
    assert sorted(e.filename for e in gone_many) == sorted(e.filename for e in big.files)
    assert new_many == many
    assert changed.render() == Manifest(tuple(many)).render()


def test_index_never_writes_through_a_symlinked_files_dir(built_house: House) -> None:
    # wheelhouse index (and serve, which indexes a stale house first) would
    # write the missing .metadata files out of the house.
    root = built_house.root
    outside = root.parent / "outside"
    shutil.copytree(root / "files", outside)
    for metadata in outside.glob("*.metadata"):
        metadata.unlink()
    shutil.rmtree(root / "files")
    (root / "files").symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    with pytest.raises(HouseError, match="symbolic link"):
        built_house.reindex()
    assert sorted(p.name for p in outside.iterdir()) == before
