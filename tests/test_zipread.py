"""The fast zip reader: same answer as zipfile, or no answer (and zipfile decides).

What a user sees is :func:`read_dist_info` on a wheel's bytes (what ``add``
uses) against the same call on an open file (the zipfile path): the same
metadata, or the same error message.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING

import pytest

from tests.builders import build_wheel, metadata_text
from wheelhouse import _zipread
from wheelhouse.dists import _wheel_metadata_fast, read_dist_info
from wheelhouse.errors import InvalidDistributionError
from wheelhouse.filenames import parse_filename

if TYPE_CHECKING:
    from pathlib import Path

FN = parse_filename("demo_pkg-1.0-py3-none-any.whl")
METADATA = metadata_text("demo-pkg", "1.0", requires_python=">=3.8").encode()
DIST_INFO = "demo_pkg-1.0.dist-info"


def wheel_bytes(
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    comment: bytes = b"",
    members: list[tuple[str, bytes]] | None = None,
    extra: bytes = b"",
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members if members is not None else [
            ("demo_pkg.py", b"x = 1\n" * 40),
            (f"{DIST_INFO}/METADATA", METADATA),
            (f"{DIST_INFO}/WHEEL", b"Wheel-Version: 1.0\nTag: py3-none-any\n"),
            (f"{DIST_INFO}/RECORD", b""),
        ]:
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.extra = extra
            zf.writestr(info, data)
        zf.comment = comment
    return buf.getvalue()


def outcome(read: object) -> tuple[str, object]:
    """What a user would see: the metadata's Requires-Python, or the error's text."""
    try:
        info = read_dist_info(read, FN, source="demo.whl")  # type: ignore[arg-type]
    except InvalidDistributionError as e:
        return "error", str(e)
    return "ok", (info.metadata, info.requires_python)


def same_as_zipfile(data: bytes) -> None:
    assert outcome(data) == outcome(io.BytesIO(data))
    fast = _wheel_metadata_fast(data, FN)
    if fast is not None:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert fast == zf.read(f"{DIST_INFO}/METADATA")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_plain_wheel_is_read_without_zipfile(compression: int) -> None:
    data = wheel_bytes(compression=compression)
    assert _wheel_metadata_fast(data, FN) == METADATA
    assert outcome(data) == ("ok", (METADATA, ">=3.8"))
    same_as_zipfile(data)


def test_a_wheel_built_by_the_test_builders_is_read_without_zipfile(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "Demo.Pkg", "2.0", requires_python=">=3.9")
    data = wheel.read_bytes()
    fast = _wheel_metadata_fast(data, parse_filename(wheel.name))
    assert fast is not None and b"Requires-Python: >=3.9" in fast
    with zipfile.ZipFile(wheel) as zf:
        assert fast == zf.read("demo_pkg-2.0.dist-info/METADATA")


def test_a_valid_extra_field_is_read_and_a_corrupt_one_left_to_zipfile() -> None:
    # An extended-timestamp field (0x5455), as many zip writers add.
    ok = wheel_bytes(extra=struct.pack("<HHBL", 0x5455, 5, 1, 1_600_000_000))
    assert _wheel_metadata_fast(ok, FN) == METADATA
    corrupt = wheel_bytes(extra=struct.pack("<HH", 0x5455, 40) + b"\x00" * 4)
    assert _wheel_metadata_fast(corrupt, FN) is None
    same_as_zipfile(corrupt)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(wheel_bytes(comment=b"hello"), id="archive comment"),
        pytest.param(b"#!/bin/sh\nexit 0\n" + wheel_bytes(), id="prefixed (zipfile adjusts)"),
        pytest.param(wheel_bytes(compression=zipfile.ZIP_BZIP2), id="bzip2"),
        pytest.param(wheel_bytes(compression=zipfile.ZIP_LZMA), id="lzma"),
        pytest.param(
            wheel_bytes(extra=struct.pack("<HHQQ", 1, 16, 0, 0)), id="a zip64 extra field"
        ),
    ],
)
def test_unusual_but_valid_archives_are_left_to_zipfile(data: bytes) -> None:
    assert _wheel_metadata_fast(data, FN) is None
    assert outcome(data) == outcome(io.BytesIO(data))
    assert outcome(data)[0] == "ok"


def _patch_central_flags(data: bytes, flags: int) -> bytes:
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        struct.pack_into("<H", out, pos + 8, flags)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def _move_central_entry(data: bytes, member: str, offset: int) -> bytes:
    """Point *member*'s central directory entry at another local header offset."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while out[pos + 46 : pos + 46 + len(member)] != member.encode():
        pos = out.find(b"PK\x01\x02", pos + 4)
    struct.pack_into("<L", out, pos + 42, offset)
    return bytes(out)


def _replace_in_local_header(data: bytes, old: bytes, new: bytes) -> bytes:
    pos = data.index(old)  # the first occurrence: the local header's copy
    return data[:pos] + new + data[pos + len(old):]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_patch_central_flags(wheel_bytes(), 0x1), id="encrypted"),
        pytest.param(
            _replace_in_local_header(wheel_bytes(), f"{DIST_INFO}/METADATA".encode(),
                                     f"{DIST_INFO}/METADATX".encode()),
            id="local name differs",
        ),
        pytest.param(
            wheel_bytes(members=[
                (f"{DIST_INFO}/METADATA", METADATA),
                ("Demo.Pkg-1.0.dist-info/METADATA", METADATA),
                (f"{DIST_INFO}/WHEEL", b""),
            ]),
            id="two METADATA",
        ),
        pytest.param(
            wheel_bytes(members=[(f"{DIST_INFO}/METADATA", METADATA)]), id="no WHEEL"),
        pytest.param(wheel_bytes()[:-1], id="truncated"),
        pytest.param(
            _move_central_entry(
                _move_central_entry(wheel_bytes(), f"{DIST_INFO}/METADATA", 0x2000000),
                f"{DIST_INFO}/RECORD", 0x3000000),
            id="offsets past the end",
        ),
        pytest.param(
            _move_central_entry(wheel_bytes(), f"{DIST_INFO}/METADATA", 0), id="offset of another"),
        pytest.param(
            wheel_bytes(compression=zipfile.ZIP_STORED).replace(
                b"Requires-Python: >=3.8", b"Requires-Python: >=3.9"),
            id="bad CRC",
        ),
    ],
)
def test_broken_archives_get_zipfiles_error(data: bytes) -> None:
    assert _wheel_metadata_fast(data, FN) is None
    kind, message = outcome(data)
    assert kind == "error" and "demo.whl" in str(message)
    assert outcome(io.BytesIO(data)) == (kind, message)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_damaged_bytes_never_read_differently_than_with_zipfile(compression: int) -> None:
    """Flip, drop or overwrite bytes anywhere: the fast path answers as zipfile or not at all."""
    rng = random.Random(20261130 + compression)
    good = wheel_bytes(compression=compression)
    answered = 0
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            what = rng.random()
            if what < 0.6:
                data[at] ^= 1 << rng.randrange(8)
            elif what < 0.8:
                data[at] = rng.choice([0x00, 0xFF, 0x50])
            else:
                del data[at:at + rng.randint(1, 8)]
        damaged = bytes(data)
        same_as_zipfile(damaged)
        answered += _wheel_metadata_fast(damaged, FN) is not None
    # Damage outside METADATA's entries leaves the fast path in use.
    assert answered > 100


def test_members_lists_every_member_with_its_room() -> None:
    data = wheel_bytes(compression=zipfile.ZIP_STORED)
    found = _zipread.members(data)
    assert found is not None
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    assert [m[0] for m in found] == [i.filename for i in infos]
    assert [(m[4], m[5], m[6]) for m in found] == [
        (i.compress_size, i.file_size, i.header_offset) for i in infos]
    # Each member's room ends where the next one starts; the last at the central directory.
    assert [m[7] for m in found[:-1]] == [m[6] for m in found[1:]]
    assert found[-1][7] == data.index(b"PK\x01\x02")


def _unicode_path(name: str, raw_name: str) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) renaming *raw_name* to *name*."""
    body = struct.pack("<BL", 1, zlib.crc32(raw_name.encode())) + name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


def _wheel_with_extras(members: list[tuple[str, bytes, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, extra in members:
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            info.extra = extra
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            _wheel_with_extras([
                (f"{DIST_INFO}/METADATA", METADATA.replace(b">=3.8", b">=3.7"),
                 _unicode_path("decoy", f"{DIST_INFO}/METADATA")),
                ("decoy", METADATA, _unicode_path(f"{DIST_INFO}/METADATA", "decoy")),
                (f"{DIST_INFO}/WHEEL", b"Wheel-Version: 1.0\n", b""),
            ]),
            id="names swapped by unicode path fields",
        ),
        pytest.param(
            _wheel_with_extras([
                (f"{DIST_INFO}/METADATA", METADATA, b""),
                ("demo_pkg.py", b"", struct.pack("<HH", 0x7075, 2) + b"\x01\x00"),
                (f"{DIST_INFO}/WHEEL", b"Wheel-Version: 1.0\n", b""),
            ]),
            id="a corrupt unicode path field on another member",
        ),
    ],
)
def test_a_unicode_path_extra_field_is_left_to_zipfile(data: bytes) -> None:
    # From Python 3.12 zipfile names a member by its Unicode Path field (and
    # refuses the archive when one is corrupt): the raw name is not its name.
    assert _wheel_metadata_fast(data, FN) is None
    same_as_zipfile(data)


def test_two_entries_sharing_a_local_header_are_left_to_zipfile() -> None:
    # WHEEL's entry points at METADATA's local header and comes first in the
    # central directory: zipfile 3.13 gives METADATA no room ("Overlapped
    # entries"), so the fast path must not answer.
    data = wheel_bytes(members=[
        (f"{DIST_INFO}/METADATA", METADATA),
        (f"{DIST_INFO}/WHEEL", b"Wheel-Version: 1.0\n"),
    ])
    cd = data.index(b"PK\x01\x02")
    first = 46 + len(f"{DIST_INFO}/METADATA")
    metadata_entry, rest = data[cd : cd + first], data[cd + first :]
    second = 46 + len(f"{DIST_INFO}/WHEEL")
    wheel_entry = bytearray(rest[:second])
    struct.pack_into("<L", wheel_entry, 42, 0)
    shared = data[:cd] + bytes(wheel_entry) + metadata_entry + rest[second:]
    assert _wheel_metadata_fast(shared, FN) is None
    same_as_zipfile(shared)


class _WindowsOs:
    """``os`` as zipfile sees it on Windows: a member's ``\\`` is read as ``/``."""

    sep = "\\"
    altsep = "/"

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


def test_a_backslash_in_a_name_is_left_to_zipfile(monkeypatch: pytest.MonkeyPatch) -> None:
    # On Windows zipfile reads "x.dist-info\METADATA" as "x.dist-info/METADATA":
    # this wheel has two METADATA there, and one here.
    data = wheel_bytes(members=[
        (f"{DIST_INFO}/METADATA", METADATA),
        (f"{DIST_INFO}\\METADATA", METADATA.replace(b">=3.8", b">=3.7")),
        (f"{DIST_INFO}/WHEEL", b"Wheel-Version: 1.0\n"),
    ])
    assert _wheel_metadata_fast(data, FN) is None
    monkeypatch.setattr(zipfile, "os", _WindowsOs())
    assert outcome(data) == outcome(io.BytesIO(data))
    assert outcome(data)[0] == "error"


def test_a_local_header_offset_past_what_a_seek_takes_is_a_clear_error() -> None:
    # A zip64 field puts METADATA's local header at 2**64 - 1: zipfile's seek
    # on the bytes raises OverflowError, which must not escape as a traceback.
    data = bytearray(wheel_bytes(compression=zipfile.ZIP_STORED,
                                 extra=struct.pack("<HHQ", 1, 8, 2**64 - 1)))
    name = f"{DIST_INFO}/METADATA".encode()
    entry = data.find(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.find(b"PK\x01\x02", entry + 4)
    struct.pack_into("<L", data, entry + 42, 0xFFFFFFFF)
    kind, message = outcome(bytes(data))
    assert kind == "error" and "not a readable zip archive" in str(message)
    assert outcome(io.BytesIO(bytes(data))) == (kind, message)
