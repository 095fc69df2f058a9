"""Distribution file names: parse and validate wheel and sdist names, safely."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from wheelhouse.errors import InvalidFilenameError

if TYPE_CHECKING:
    from packaging.tags import Tag
    from packaging.version import Version

__all__ = [
    "DistFilename",
    "Kind",
    "is_safe_component",
    "parse_filename",
    "validate_component",
]

#: What kind of distribution a file is.
Kind = Literal["wheel", "sdist"]

# Every character a real wheel or sdist name needs (PEP 427/625 names, PEP 440
# versions with epochs "!" and local labels "+", compatibility tags). Anything
# else — a separator, NUL, a control character, a quote, "<", "&", unicode — is
# refused: such a name would be unsafe as a path component or in an HTML page.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*\Z")
_MAX_LEN = 255  # the usual file-system limit for one path component


def is_safe_component(name: str) -> bool:
    """Tell whether *name* may be used as one path component inside a store or house.

    >>> is_safe_component("six-1.16.0-py2.py3-none-any.whl")
    True
    >>> is_safe_component("../etc/passwd")
    False
    """
    return (
        0 < len(name) <= _MAX_LEN
        and name not in {".", ".."}
        and ".." not in name
        and _SAFE_NAME.match(name) is not None
    )


def validate_component(name: str) -> str:
    """Return *name* if it is one safe path component, else raise InvalidFilenameError.

    >>> validate_component("demo-1.0.tar.gz")
    'demo-1.0.tar.gz'
    """
    if len(name) <= _MAX_LEN and ".." not in name and _SAFE_NAME.match(name):
        return name  # the common case, in one regex
    # Otherwise find the most helpful reason.
    if not name:
        raise InvalidFilenameError(name, "empty name")
    if "/" in name or "\\" in name:
        raise InvalidFilenameError(name, "contains a path separator")
    if "\x00" in name:
        raise InvalidFilenameError(name, "contains a NUL byte")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidFilenameError(name, "contains a control character")
    if name in {".", ".."} or ".." in name:
        raise InvalidFilenameError(name, "contains '..'")
    if len(name) > _MAX_LEN:
        raise InvalidFilenameError(name, f"longer than {_MAX_LEN} characters")
    if not _SAFE_NAME.match(name):
        raise InvalidFilenameError(
            name, "contains characters outside A-Z a-z 0-9 . _ + ! - or starts with one"
        )
    return name


@dataclass(frozen=True, slots=True)
class DistFilename:
    """A validated wheel or sdist file name and what it says."""

    #: The file name exactly as given.
    filename: str
    #: ``"wheel"`` or ``"sdist"``.
    kind: Kind
    #: The project name, normalised (PEP 503).
    name: NormalizedName
    #: The version.
    version: Version
    #: The wheel build tag, if any, as ``(number, rest)``.
    build: tuple[int, str] | None
    #: The wheel's compatibility tags (empty for an sdist).
    tags: frozenset[Tag]

    @property
    def tag_strings(self) -> tuple[str, ...]:
        """The compatibility tags as sorted strings (``py3-none-any``)."""
        return tuple(sorted(str(t) for t in self.tags))


def parse_filename(filename: str) -> DistFilename:
    """Parse and validate a wheel or sdist file name.

    Raises InvalidFilenameError for anything that is not a safe, well-formed name.

    >>> d = parse_filename("Six-1.16.0-py2.py3-none-any.whl")
    >>> (d.kind, d.name, str(d.version), d.tag_strings)
    ('wheel', 'six', '1.16.0', ('py2-none-any', 'py3-none-any'))
    >>> parse_filename("demo_pkg-2.0.tar.gz").name
    'demo-pkg'
    """
    validate_component(filename)
    if filename.endswith(".whl"):
        if len(filename) > _MAX_LEN - len(".metadata"):
            # Its PEP 658 file (NAME.metadata) must fit in a path component too.
            raise InvalidFilenameError(
                filename, f"longer than {_MAX_LEN - len('.metadata')} characters (a wheel's "
                "name.metadata file must fit the 255 a file name may have)")
        try:
            name, version, build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as e:
            raise InvalidFilenameError(filename, str(e)) from e
        parsed = DistFilename(filename, "wheel", name, version, build or None, tags)
        # Round trip: the parts must survive a second parse unchanged. This
        # catches names packaging accepts leniently but that would not be read
        # back as the same project by another tool.
        stem_name = filename.split("-", 1)[0]
        if canonicalize_name(stem_name) != name:
            raise InvalidFilenameError(filename, "project name does not round-trip")
        return parsed
    if filename.endswith((".tar.gz", ".zip")):
        try:
            name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename as e:
            raise InvalidFilenameError(filename, str(e)) from e
        return DistFilename(filename, "sdist", name, version, None, frozenset())
    raise InvalidFilenameError(filename, "not a wheel (.whl) or sdist (.tar.gz, .zip)")
