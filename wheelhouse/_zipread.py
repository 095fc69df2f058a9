"""A fast reader for the common case of a small zip archive held in memory.

``zipfile.ZipFile`` builds a ``ZipInfo`` object per member and a file-like
object per read; for a small wheel that is most of the cost of reading its
METADATA (about 30 µs of 35). This module reads the central directory of a
plain archive (no comment, no zip64, no prefix, no encryption, stored or
deflated members) with ``struct`` alone.

It is a fast path, not a second zip reader: anything it does not fully
understand makes it return ``None``, and the caller asks ``zipfile``, which
gives the error or the answer. It never accepts what ``zipfile`` would refuse:
every check ``zipfile`` makes on the way to a member's bytes is made here too
(signatures, the local header's name, sizes, CRC-32), and a failed check also
returns ``None``, so the error message comes from ``zipfile``.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["Member", "members", "read_member"]

_EOCD = struct.Struct("<4s4H2LH")  # 22 bytes
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # 46 bytes
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # 30 bytes
_ZIP64_LOCATOR = b"PK\x06\x07"

_UTF8_NAME = 0x800
# Encrypted, compressed patch data, strong encryption: zipfile refuses or asks
# for a password; leave them to it.
_UNUSUAL_FLAGS = 0x1 | 0x20 | 0x40
_STORED = 0
_DEFLATED = 8
_FULL32 = 0xFFFFFFFF
_MAX_EXTRACT_VERSION = 63  # zipfile refuses members needing a later one
_EXTRA_LEFT_TO_ZIPFILE = (0x0001, 0x7075)  # zip64; Info-ZIP Unicode Path

#: ``(name, flags, method, crc, compressed size, size, local header offset,
#: end of the member's room)``: the room ends where the next member's local
#: header, or the central directory, begins.
Member = tuple[str, int, int, int, int, int, int, int]


def members(data: bytes) -> list[Member] | None:
    """The members of a plain zip archive, in central directory order, or None."""
    n = len(data)
    if n < _EOCD.size:
        return None
    (sig, disk, cd_disk, on_disk, count, cd_size, cd_offset, comment) = _EOCD.unpack_from(
        data, n - _EOCD.size
    )
    if sig != b"PK\x05\x06" or comment or disk or cd_disk or on_disk != count:
        return None
    if cd_offset + cd_size != n - _EOCD.size:
        return None  # a prefix, a zip64 record, or a lie: zipfile decides
    if n >= _EOCD.size + 20 and data[n - _EOCD.size - 20 : n - _EOCD.size - 16] == _ZIP64_LOCATOR:
        return None
    found: list[Member] = []
    pos = cd_offset
    end = cd_offset + cd_size
    unpack = _CENTRAL.unpack_from
    for _ in range(count):
        if pos + _CENTRAL.size > end:
            return None
        (sig, _v1, _s1, needs, _r, flags, method, _t, _d, crc, csize, size,
         name_len, extra_len, comment_len, _disk, _ia, _ea, offset) = unpack(data, pos)
        if (sig != b"PK\x01\x02" or _FULL32 in (csize, size, offset)
                or needs > _MAX_EXTRACT_VERSION or offset + _LOCAL.size > cd_offset):
            return None
        pos += _CENTRAL.size
        raw_name = data[pos : pos + name_len]
        # zipfile cuts a name at a NUL, and on Windows reads "\\" as "/".
        if len(raw_name) != name_len or b"\x00" in raw_name or b"\\" in raw_name:
            return None
        extra = pos + name_len
        pos = extra + extra_len + comment_len
        if pos > end or (extra_len and not _extra_ok(data, extra, extra + extra_len)):
            return None
        try:
            # ASCII reads the same in both (and cp437's codec is slow).
            name = raw_name.decode("ascii" if raw_name.isascii()
                                   else "utf-8" if flags & _UTF8_NAME else "cp437")
        except UnicodeDecodeError:
            return None
        found.append((name, flags, method, crc, csize, size, offset, 0))
    if pos != end:
        return None
    # Each member's room ends where the next one (by offset) begins. Two
    # entries sharing a local header leave one of them no room in zipfile
    # from Python 3.13 ("Overlapped entries"): left to it.
    starts = sorted({m[6] for m in found})
    if len(starts) != len(found):
        return None
    ends = dict(zip(starts, [*starts[1:], cd_offset], strict=True))
    return [(*m[:7], ends[m[6]]) for m in found]


def _extra_ok(data: bytes, pos: int, end: int) -> bool:
    # zipfile parses the extra field (and refuses a corrupt one); a zip64
    # field changes sizes and offsets, and from Python 3.12 an Info-ZIP
    # Unicode Path field (0x7075) renames the member (or, when corrupt, makes
    # the whole archive unreadable): all are left to it.
    while end - pos >= 4:
        kind, size = struct.unpack_from("<HH", data, pos)
        if kind in _EXTRA_LEFT_TO_ZIPFILE or pos + 4 + size > end:
            return False
        pos += 4 + size
    return pos == end


def read_member(data: bytes, member: Member, *, limit: int) -> bytes | None:
    """A member's bytes, checked against its size and CRC-32, or None to ask zipfile.

    None also when the member is larger than *limit* bytes.
    """
    name, flags, method, crc, csize, size, offset, room = member
    if flags & _UNUSUAL_FLAGS or method not in (_STORED, _DEFLATED) or size > limit:
        return None
    if offset + _LOCAL.size > room:
        return None
    (sig, _v, _r, local_flags, _m, _t, _d, _crc, _cs, _s, name_len, extra_len) = (
        _LOCAL.unpack_from(data, offset)
    )
    start = offset + _LOCAL.size
    if sig != b"PK\x03\x04" or (local_flags ^ flags) & _UTF8_NAME:
        return None
    local_name = data[start : start + name_len]
    if local_name != name.encode("ascii" if name.isascii()
                                 else "utf-8" if flags & _UTF8_NAME else "cp437"):
        return None
    start += name_len + extra_len
    if start + csize > room:
        return None
    raw = data[start : start + csize]
    if method == _STORED:
        out = raw
    else:
        inflate = zlib.decompressobj(-15)
        try:
            out = inflate.decompress(raw, size + 1)
        except zlib.error:
            return None
        if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
            return None
    if len(out) != size or zlib.crc32(out) != crc:
        return None
    return out
