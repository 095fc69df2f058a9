"""The resolver on its own: pre-releases, yanks, hashes and markers, decided as pip decides."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
from packaging.markers import default_environment
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelhouse.dists import scan_headers
from wheelhouse.errors import InvalidInputError, ResolutionError, WheelhouseError
from wheelhouse.house import FileEntry
from wheelhouse.requirements import RequirementLine
from wheelhouse.resolver import (
    Environment,
    UnsatisfiableError,
    WantedSet,
    _metadata_field,
    locked_versions,
    map_built_paths,
    resolve_in_house,
)
from wheelhouse.store import Sha256

if TYPE_CHECKING:
    from pathlib import Path

ENV = Environment(
    "test-env",
    (Tag("cp312", "cp312", "manylinux_2_17_x86_64"), Tag("py3", "none", "any")),
    {**{k: str(v) for k, v in default_environment().items()}, "python_version": "3.12",
     "python_full_version": "3.12.0"},
    Version("3.12"),
)


class FakeHouse:
    """Manifest entries and their bytes, in memory."""

    def __init__(self) -> None:
        self.entries: list[FileEntry] = []
        self.data: dict[str, bytes] = {}
        self.requires: dict[str, list[str]] = {}
        #: (filename, algorithm) of every digest read from a file.
        self.digests_read: list[tuple[str, str]] = []

    def add(self, project: str, version: str, *, tag: str = "py3-none-any",
            yanked: str | None = None, requires: tuple[str, ...] = ()) -> FileEntry:
        filename = f"{project}-{version}-{tag}.whl"
        data = f"bytes of {filename}".encode()
        entry = FileEntry(filename, Sha256(hashlib.sha256(data).hexdigest()), len(data),
                          "wheel", project, version, yanked=yanked)
        self.entries.append(entry)
        self.data[filename] = data
        self.requires[filename] = list(requires)
        return entry

    def read_metadata(self, entry: FileEntry) -> bytes:
        lines = ["Metadata-Version: 2.1", f"Name: {entry.project}", f"Version: {entry.version}"]
        lines += [f"Requires-Dist: {r}" for r in self.requires[entry.filename]]
        return ("\n".join(lines) + "\n").encode()

    def file_digest(self, entry: FileEntry, algorithm: str) -> str:
        self.digests_read.append((entry.filename, algorithm))
        return hashlib.new(algorithm, self.data[entry.filename]).hexdigest()

    def resolve(self, *reqs: str | RequirementLine, pre: bool = False,
                digests: bool = False) -> dict[str, str]:
        """Resolve; with *digests*, the resolver may read files' digests."""
        lines = [r if isinstance(r, RequirementLine) else RequirementLine(r, (), f"req.txt:{i}")
                 for i, r in enumerate(reqs, 1)]
        wanted = WantedSet.from_lines(lines, pre=pre)
        if digests:
            resolution = resolve_in_house(self.entries, wanted, ENV, self.read_metadata,
                                          file_digest=self.file_digest)
        else:
            resolution = resolve_in_house(self.entries, wanted, ENV, self.read_metadata)
        return {c.name: c.entry.filename for c in resolution.chosen}


def unmet_reasons(error: UnsatisfiableError) -> dict[str, str]:
    return {u.requirement: u.reason for u in error.unmet}


# -- PEP 440 pre-releases and PEP 592 yanks --------------------------------


def test_prereleases_are_filtered_before_yanked_files() -> None:
    # pip keeps the final release (1.0) over the pre-release, then leaves the
    # yanked 1.0 out: nothing is left. Taking 2.0b1 instead would be a guess.
    house = FakeHouse()
    house.add("lib", "1.0", yanked="broken")
    house.add("lib", "2.0b1")
    with pytest.raises(UnsatisfiableError) as info:
        house.resolve("lib")
    (reason,) = unmet_reasons(info.value).values()
    assert reason == ("only yanked files fit (1.0); a yanked file is taken only when its "
                      "version is pinned exactly with == or === (PEP 592); pre-releases are "
                      "not considered without --pre")


@pytest.mark.parametrize(
    ("requirement", "pre", "chosen"),
    [
        pytest.param("lib", True, "lib-2.0b1-py3-none-any.whl", id="pre-flag"),
        pytest.param("lib>=2.0b1", False, "lib-2.0b1-py3-none-any.whl", id="specifier-names-pre"),
        pytest.param("lib==1.0", False, "lib-1.0-py3-none-any.whl", id="exact-pin-takes-yanked"),
    ],
)
def test_prerelease_or_yanked_taken_when_asked(requirement: str, pre: bool, chosen: str) -> None:
    house = FakeHouse()
    house.add("lib", "1.0", yanked="broken")
    house.add("lib", "2.0b1")
    assert house.resolve(requirement, pre=pre) == {"lib": chosen}


@pytest.mark.parametrize(
    ("requirement", "chosen"),
    [
        pytest.param("lib==1.0", "lib-1.0-py3-none-any.whl", id="exact"),
        pytest.param("lib===1.0", "lib-1.0-py3-none-any.whl", id="arbitrary-equality"),
        pytest.param("lib==1.*", None, id="wildcard-is-not-a-pin"),
        pytest.param("lib<2,>=1", None, id="range"),
        pytest.param("lib~=1.0", None, id="compatible"),
    ],
)
def test_only_an_exact_pin_takes_a_yanked_file(requirement: str, chosen: str | None) -> None:
    house = FakeHouse()
    house.add("lib", "1.0", yanked="")
    if chosen is not None:
        assert house.resolve(requirement) == {"lib": chosen}
        return
    with pytest.raises(UnsatisfiableError) as info:
        house.resolve(requirement)
    assert unmet_reasons(info.value) == {requirement: (
        "only yanked files fit (1.0); a yanked file is taken only when its version is "
        "pinned exactly with == or === (PEP 592)")}


def test_unyanked_file_of_a_version_beats_a_better_tagged_yanked_one() -> None:
    house = FakeHouse()
    house.add("lib", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64", yanked="bad build")
    house.add("lib", "1.0")
    assert house.resolve("lib==1.0") == {"lib": "lib-1.0-py3-none-any.whl"}
    assert house.resolve("lib") == {"lib": "lib-1.0-py3-none-any.whl"}


# -- --hash in every algorithm pip takes -------------------------------------


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_stronger_hash_is_checked_against_the_file(algorithm: str) -> None:
    house = FakeHouse()
    entry = house.add("lib", "1.0")
    good = hashlib.new(algorithm, house.data[entry.filename]).hexdigest()
    line = RequirementLine("lib==1.0", (f"{algorithm}:{good}",), "req.txt:1")
    assert house.resolve(line, digests=True) == {"lib": entry.filename}
    assert house.digests_read == [(entry.filename, algorithm)]


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_stronger_hash_mismatch_names_the_file_and_both_hashes(algorithm: str) -> None:
    house = FakeHouse()
    entry = house.add("lib", "1.0")
    actual = hashlib.new(algorithm, house.data[entry.filename]).hexdigest()
    wrong = "0" * len(actual)
    line = RequirementLine("lib==1.0", (f"{algorithm}:{wrong}",), "req.txt:1")
    with pytest.raises(UnsatisfiableError) as info:
        house.resolve(line, digests=True)
    assert unmet_reasons(info.value) == {"lib==1.0": (
        f"hash mismatch for {entry.filename}: expected {algorithm}={wrong}, got "
        f"{algorithm}={actual} (the --hash values do not match the house's file)")}


def test_any_matching_algorithm_is_enough_as_in_pip() -> None:
    house = FakeHouse()
    entry = house.add("lib", "1.0")
    line = RequirementLine("lib==1.0", (f"sha512:{'0' * 128}", f"sha256:{entry.sha256}"),
                           "req.txt:1")
    assert house.resolve(line) == {"lib": entry.filename}


def test_stronger_hash_without_a_way_to_read_files_is_an_error_not_a_pass() -> None:
    house = FakeHouse()
    house.add("lib", "1.0")
    line = RequirementLine("lib==1.0", (f"sha512:{'0' * 128}",), "req.txt:1")
    with pytest.raises(ResolutionError, match="cannot check --hash=sha512"):
        house.resolve(line)


def test_unknown_hash_algorithm_is_refused() -> None:
    line = RequirementLine("lib==1.0", (f"md5:{'0' * 32}",), "req.txt:7")
    with pytest.raises(InvalidInputError, match=r"req.txt:7: unsupported --hash 'md5:0+'"):
        WantedSet.from_lines([line])


@pytest.mark.parametrize("spec", ["lib>=1.0", "lib==1.*", "lib"])
def test_hash_mode_needs_exact_pins_as_pip(spec: str) -> None:
    house = FakeHouse()
    entry = house.add("lib", "1.0")
    line = RequirementLine(spec, (f"sha256:{entry.sha256}",), "req.txt:3")
    with pytest.raises(InvalidInputError, match=r"req.txt:3: lib.* is not pinned with =="):
        WantedSet.from_lines([line])
    # --require-hashes alone turns it on too, for lines without hashes.
    with pytest.raises(InvalidInputError, match="is not pinned with =="):
        WantedSet.from_lines([RequirementLine(spec, (), "req.txt:3")], require_hashes=True)
    pinned = RequirementLine("lib===1.0", (f"sha256:{entry.sha256}",), "req.txt:3")
    assert house.resolve(pinned) == {"lib": entry.filename}


# -- markers that parse but cannot be evaluated ------------------------------


def test_unevaluable_marker_in_a_requirement_names_where_it_came_from() -> None:
    house = FakeHouse()
    house.add("lib", "1.0")
    with pytest.raises(InvalidInputError) as info:
        house.resolve("other", 'lib; python_version ~= "3"')
    assert info.value.message == (
        "req.txt:2: cannot evaluate the environment marker of 'lib; python_version ~= \"3\"' "
        "for test-env (UndefinedComparison: Undefined <Op('~=')> on '3.12' and '3'.)")


def test_unevaluable_marker_in_a_dependency_names_the_wheel() -> None:
    house = FakeHouse()
    house.add("app", "1.0", requires=('lib; platform_release ~= "x"',))
    house.add("lib", "1.0")
    with pytest.raises(ResolutionError) as info:
        house.resolve("app")
    assert not isinstance(info.value, UnsatisfiableError)
    assert info.value.message.startswith(
        "app==1.0 (Requires-Dist of app-1.0-py3-none-any.whl): cannot evaluate the "
        "environment marker of 'lib; platform_release ~= \"x\"' for test-env")
    assert isinstance(info.value, WheelhouseError)


# What packaging's full parser (the email parser) reads, for metadata the quick
# header scan takes and for metadata it hands over: the same values either way.
_METADATA_CASES = [
    (b"Metadata-Version: 2.1\nName: a\nVersion: 1\nRequires-Dist: b>=1\n"
     b"Requires-Dist: c ; extra == 'x'  \nProvides-Extra: x\n\nRequires-Dist: in-the-body\n"),
    b"Metadata-Version: 2.1\r\nName: a\r\nRequires-Dist: b>=1\r\nRequires-Dist:   c\r\n\r\nbody",
    b"Metadata-Version: 2.1\nName: a\nRequires-Dist: b>=1,\n  <2\nRequires-Dist: c\n",
    b"Metadata-Version: 2.1\nName: a\nnot a header\nRequires-Dist: after-the-headers\n",
    b"Metadata-Version: 2.1\nName : a\nRequires-Dist: after-the-headers\n",
    b"Metadata-Version: 2.1\nRequires-Dist: =?utf-8?q?b?=\n",
    b"Metadata-Version: 2.1\nName: caf\xc3\xa9\nRequires-Dist: d\nProvides-Extra: \xc3\xa9\n",
    b"Metadata-Version: 2.1\nName: caf\xe9\nRequires-Dist: d\n",
    b"Metadata-Version: 2.1\nrequires-dist: lower\nREQUIRES-DIST: upper\nprovides-extra: X\n",
    b"Metadata-Version: 2.1\nDescription: x\n  continued\nRequires-Dist: e\n",
    b"Metadata-Version: 2.1\nRequires-Dist:\n",
    # A CR alone ends a line for the email parser: a second header, or the end
    # of the headers (a CR before the CRLF), never part of the value.
    b"Metadata-Version: 2.1\nRequires-Dist: a\rRequires-Dist: b\nProvides-Extra: x\rz\n",
    b"Metadata-Version: 2.1\r\nRequires-Dist: a\r\r\nRequires-Dist: hidden\r\n",
    # Only spaces and tabs are taken off the front of a value.
    b"Metadata-Version: 2.1\nRequires-Dist:\x0ca\nProvides-Extra:\xc2\xa0x\nRequires-Dist:\x1cb\n",
]


@pytest.mark.parametrize("data", _METADATA_CASES)
def test_metadata_fields_read_as_packaging_reads_them(data: bytes) -> None:
    from packaging.metadata import parse_email

    raw, _ = parse_email(data)
    for header, key in (("requires-dist", "requires_dist"), ("provides-extra", "provides_extra")):
        assert _metadata_field(data, header, key) == raw.get(key, [])


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(b"Metadata-Version: 2.1\nName: demo\rVersion: 1.0\n", ("demo", "1.0"),
                 id="cr-alone-ends-a-line"),
    pytest.param(b"Metadata-Version: 2.1\r\nName: demo\r\nVersion: 1.0\r\r\nVersion: 2.0\r\n",
                 ("demo", "1.0"), id="cr-before-crlf-ends-the-headers"),
])
def test_core_metadata_lines_end_where_the_email_parser_ends_them(
        data: bytes, expected: tuple[str, str]) -> None:
    from wheelhouse.dists import parse_core_metadata

    m = parse_core_metadata(data, source="x")
    assert (m.name, str(m.version)) == expected


def test_the_quick_scan_takes_plain_metadata_and_hands_over_the_rest() -> None:
    # Otherwise the test above would compare the full parser with itself.
    fields = ("requires-dist",)
    assert scan_headers(_METADATA_CASES[0].decode(), fields) == {
        "requires-dist": ["b>=1", "c ; extra == 'x'  "]}
    assert scan_headers(_METADATA_CASES[1].decode(), fields) == {"requires-dist": ["b>=1", "c"]}
    for folded_or_odd in _METADATA_CASES[2:6]:
        assert scan_headers(folded_or_odd.decode(), fields) is None


def _built(project: str, version: str, origin: str, yanked: str | None = None) -> FileEntry:
    filename = f"{project}-{version}-py3-none-any.whl"
    return FileEntry(filename, Sha256(hashlib.sha256(filename.encode()).hexdigest()), 1,
                     "wheel", project, version, origin=origin, yanked=yanked)


@pytest.mark.parametrize(("line", "read_as"), [
    # pip's spellings of a local project: extras after the path, a marker after ";".
    ("/src/mine", "mine==1.0"),
    ("/src/mine[fast]", "mine[fast]==1.0"),
    ("/src/mine[fast, x] ; python_version >= '3'", "mine[fast,x]==1.0; python_version >= '3'"),
    ("/src/mine;os_name == 'posix'", "mine==1.0; os_name == 'posix'"),
    ("mine[fast] @ file:///src/mine ; os_name == 'posix'", "mine[fast]==1.0; os_name == 'posix'"),
    ("mine @ file:///src/mine;os_name == 'posix'", "mine==1.0; os_name == 'posix'"),
    ("/src/mine[fast]/", "mine[fast]==1.0"),
    ("/elsewhere/mine[fast]", "mine[fast]==1.0"),  # moved: matched by its last component
    ("https://example.org/x/mine", "https://example.org/x/mine"),  # a URL: never by name
    ("other @ file:///src/mine", "other @ file:///src/mine"),  # another project: left
    ("/src/unknown[fast]", "/src/unknown[fast]"),  # nothing came from there: left
])
def test_path_lines_read_as_the_file_built_from_them(line: str, read_as: str) -> None:
    files = [_built("mine", "1.0", "built:/src/mine"), _built("lib", "2.0", "https://x/lib")]
    (mapped,) = map_built_paths([RequirementLine(line, (), "r.txt:1")], files)
    assert mapped.text == read_as and mapped.where == "r.txt:1"
    if read_as != line:  # and what it reads as is a requirement a house takes
        WantedSet.from_lines([mapped])


def test_a_path_built_at_several_versions_reads_as_the_latest() -> None:
    files = [_built("mine", v, "built:/src/mine") for v in ("1.0", "1.10", "1.9")]
    (mapped,) = map_built_paths([RequirementLine("/src/mine", (), "r.txt:1")], files)
    assert mapped.text == "mine==1.10"
    # A yanked build is not what the path means while another is not yanked.
    files.append(_built("mine", "2.0", "built:/src/mine", yanked="broken"))
    (mapped,) = map_built_paths([RequirementLine("/src/mine", (), "r.txt:1")], files)
    assert mapped.text == "mine==1.10"
    # Two checkouts with the same last component: a third place is ambiguous.
    other = [*files, _built("mine", "3.0", "built:/b/mine")]
    (left,) = map_built_paths([RequirementLine("/c/mine", (), "r.txt:1")], other)
    assert left.text == "/c/mine"
    # Two projects from one place: which one is meant is not known, so it is left.
    files.append(_built("theirs", "1.0", "built:/src/mine"))
    (left,) = map_built_paths([RequirementLine("/src/mine", (), "r.txt:1")], files)
    assert left.text == "/src/mine"


def test_a_path_reads_as_the_version_the_last_build_locked(tmp_path: Path) -> None:
    # Built at 2.0, then at 1.5 (an older branch): the house keeps both, and
    # its locks say the last build chose 1.5.
    files = [_built("mine", v, "built:/src/mine") for v in ("2.0", "1.5")]
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "host.requirements.txt").write_text(
        "# wheelhouse lock for target host\nlib==2.0 \\\n    --hash=sha256:00\n"
        "mine==1.5 \\\n    --hash=sha256:11\n")
    locked = locked_versions(tmp_path)
    assert locked == {"lib": {"2.0"}, "mine": {"1.5"}}
    (mapped,) = map_built_paths([RequirementLine("/src/mine", (), "r.txt:1")], files, locked)
    assert mapped.text == "mine==1.5"
    assert locked_versions(tmp_path / "no-house") == {}


# -- pip 26.3's --all-releases / --only-final --------------------------------

_SWITCHES = [("pre", ""), ("all_releases", ":all:"), ("only_final", ":all:"),
             ("all_releases", "Lib"), ("only_final", "lib"), ("all_releases", "other,lib"),
             ("only_final", ":none:"), ("all_releases", ":none:"),
             ("only_final", ":all:,:none:,other"), ("all_releases", "lib,:all:")]


@pytest.mark.parametrize("seed", range(40))
def test_release_switches_add_up_as_pips_own_release_control(seed: int) -> None:
    # The real pip's ReleaseControl (and its file parser's way with --pre) is
    # the reference: every project's answer is the same after the same switches.
    import random

    from pip._internal.models.release_control import ReleaseControl as PipReleaseControl

    from wheelhouse.resolver import ReleaseControl

    rng = random.Random(seed)
    switches = [rng.choice(_SWITCHES) for _ in range(rng.randint(1, 5))]
    ours, theirs = ReleaseControl(), PipReleaseControl()
    for kind, value in switches:
        ours.apply(kind, value)
        if kind == "pre":  # as pip's req_file handles a --pre line
            theirs.all_releases.add(":all:")
        elif kind == "all_releases":
            theirs.handle_mutual_excludes(value, theirs.all_releases, theirs.only_final, kind)
        else:
            theirs.handle_mutual_excludes(value, theirs.only_final, theirs.all_releases, kind)
    for name in map(canonicalize_name, ("lib", "other", "third")):
        pips_answer = theirs.allows_prereleases(name)  # type: ignore[arg-type]  # vendored type
        assert ours.allows_prereleases(name) == pips_answer, switches


def test_only_final_refuses_a_prerelease_even_when_nothing_else_fits() -> None:
    house = FakeHouse()
    house.add("lib", "2.0b1")
    assert house.resolve("lib") == {"lib": "lib-2.0b1-py3-none-any.whl"}  # pip's default
    wanted = WantedSet.from_lines([RequirementLine("lib", (), "req.txt:2")],
                                  release_switches=[("only_final", "lib")])
    with pytest.raises(UnsatisfiableError) as info:
        resolve_in_house(house.entries, wanted, ENV, house.read_metadata)
    assert unmet_reasons(info.value) == {
        "lib": "only pre-releases fit (2.0b1), and --only-final excludes them"}
