"""Install targets: a Python version, implementation, ABIs and platform, and the tags they accept."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from packaging import tags as ptags

from wheelhouse.errors import InvalidTargetError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "UV_PLATFORMS",
    "Target",
    "expand_platform",
    "parse_platform",
    "parse_python_version",
]

_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_([a-z0-9_]+)\Z")
_LEGACY = re.compile(r"(manylinux1|manylinux2010|manylinux2014)_([a-z0-9_]+)\Z")
_MUSLLINUX = re.compile(r"musllinux_(\d+)_(\d+)_([a-z0-9_]+)\Z")
_MACOS = re.compile(r"macosx_(\d+)_(\d+)_([a-z0-9_]+)\Z")
_SIMPLE = re.compile(r"(linux|win|win32|win_amd64|win_arm64|any)(?:_([a-z0-9_]+))?\Z")
_LEGACY_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_GLIBC_LEGACY = {v: k for k, v in _LEGACY_GLIBC.items()}
_WINDOWS = {"win32", "win_amd64", "win_arm64"}
_LINUX_ARCHES = {"x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x", "riscv64",
                 "loongarch64"}

#: uv's ``--python-platform`` names and the wheel platform each stands for.
#: Source: uv's ``TargetTriple`` (crates/uv-configuration/src/target_triple.rs),
#: and what uv 0.13 resolves for each (a test asks it): ``linux`` and
#: ``*-unknown-linux-gnu`` mean manylinux_2_28, ``*-unknown-linux-musl``
#: musllinux_1_2, and the Apple targets assume macOS 13.0 (uv reads
#: MACOSX_DEPLOYMENT_TARGET; we take the platform tag as given instead).
UV_PLATFORMS: dict[str, str] = {
    "windows": "win_amd64",
    "linux": "manylinux_2_28_x86_64",
    "macos": "macosx_13_0_arm64",
    "x86_64-pc-windows-msvc": "win_amd64",
    "i686-pc-windows-msvc": "win32",
    "aarch64-pc-windows-msvc": "win_arm64",
    "x86_64-unknown-linux-gnu": "manylinux_2_28_x86_64",
    "aarch64-unknown-linux-gnu": "manylinux_2_28_aarch64",
    "x86_64-unknown-linux-musl": "musllinux_1_2_x86_64",
    "aarch64-unknown-linux-musl": "musllinux_1_2_aarch64",
    "x86_64-apple-darwin": "macosx_13_0_x86_64",
    "aarch64-apple-darwin": "macosx_13_0_arm64",
    "x86_64-manylinux2014": "manylinux_2_17_x86_64",
    "aarch64-manylinux2014": "manylinux_2_17_aarch64",
    **{
        f"{arch}-manylinux_2_{minor}": f"manylinux_2_{minor}_{arch}"
        for arch in ("x86_64", "aarch64")
        for minor in (17, 28, *range(31, 41))
    },
}


def parse_python_version(value: str) -> tuple[int, int]:
    """Parse ``3.12``, ``3.12.1`` or ``312`` into ``(3, 12)`` (a micro version: Target.micro).

    >>> parse_python_version("3.12"), parse_python_version("312")
    ((3, 12), (3, 12))
    """
    text = value.strip()
    m = re.fullmatch(r"(\d)\.(\d{1,2})(?:\.\d+)?", text) or re.fullmatch(r"(\d)(\d{1,2})", text)
    if m is None:
        raise InvalidTargetError(
            f"invalid Python version {value!r}",
            hint="use a major.minor version such as 3.12",
        )
    major, minor = int(m.group(1)), int(m.group(2))
    if major != 3:
        raise InvalidTargetError(
            f"unsupported Python version {value!r}: wheelhouse builds for Python 3 only",
            hint="use a Python 3 version such as 3.12")
    return major, minor


def parse_platform(value: str) -> str:
    """Validate a wheel platform tag or a uv ``--python-platform`` name; return the tag.

    >>> parse_platform("aarch64-apple-darwin")
    'macosx_13_0_arm64'
    >>> parse_platform("manylinux2014_x86_64")
    'manylinux_2_17_x86_64'
    """
    text = value.strip()
    if text in UV_PLATFORMS:
        return UV_PLATFORMS[text]
    linux = _LEGACY.match(text) or _MANYLINUX.match(text) or _MUSLLINUX.match(text)
    if linux and linux.group(linux.re.groups) not in _LINUX_ARCHES:
        arch = linux.group(linux.re.groups)
        hint = " (on Linux, 64-bit ARM is 'aarch64')" if arch == "arm64" else ""
        raise InvalidTargetError(
            f"unknown platform {value!r}: {arch!r} is not a Linux architecture{hint}",
            hint="Linux architectures: " + ", ".join(sorted(_LINUX_ARCHES)))
    if m := _LEGACY.match(text):
        major, minor = _LEGACY_GLIBC[m.group(1)]
        return f"manylinux_{major}_{minor}_{m.group(2)}"
    if (
        _MANYLINUX.match(text)
        or _MUSLLINUX.match(text)
        or _MACOS.match(text)
        or text in _WINDOWS
        or text == "any"
        or (text.startswith("linux_") and text[6:] in _LINUX_ARCHES)
    ):
        return text
    raise InvalidTargetError(
        f"unknown platform {value!r}",
        hint="use a wheel platform tag (manylinux_2_28_x86_64, musllinux_1_2_aarch64, "
        "macosx_14_0_arm64, win_amd64, any) or a uv name (" + ", ".join(sorted(
            n for n in UV_PLATFORMS if "manylinux_2_" not in n)) + ")",
    )


def expand_platform(value: str) -> list[str]:
    """Every platform tag a platform accepts, most specific first.

    ``manylinux_2_28_x86_64`` accepts every glibc down to 2.5 (2.17 on other
    architectures), with the legacy ``manylinux2014``/``2010``/``1`` aliases
    right after their PEP 600 equivalents, as ``packaging.tags`` orders them
    on a real host. ``musllinux_1_2`` accepts ``1_1`` and ``1_0``; a macOS
    version accepts older ones and the fat binary formats; ``any`` adds
    nothing (pure wheels are always accepted).

    >>> expand_platform("musllinux_1_2_x86_64")
    ['musllinux_1_2_x86_64', 'musllinux_1_1_x86_64', 'musllinux_1_0_x86_64']
    >>> expand_platform("manylinux_2_18_aarch64")
    ['manylinux_2_18_aarch64', 'manylinux_2_17_aarch64', 'manylinux2014_aarch64']
    """
    tag = parse_platform(value)
    if tag == "any":
        return []
    if m := _MANYLINUX.match(tag):
        major, minor, arch = int(m.group(1)), int(m.group(2)), m.group(3)
        if major != 2:
            raise InvalidTargetError(f"unsupported glibc major version in {value!r}")
        lowest = 5 if arch in {"x86_64", "i686"} else 17
        if minor < lowest:
            raise InvalidTargetError(f"{value!r}: no manylinux below glibc 2.{lowest} for {arch}")
        out = []
        for glibc_minor in range(minor, lowest - 1, -1):
            out.append(f"manylinux_2_{glibc_minor}_{arch}")
            legacy = _GLIBC_LEGACY.get((2, glibc_minor))
            if legacy is not None:
                out.append(f"{legacy}_{arch}")
        return out
    if m := _MUSLLINUX.match(tag):
        major, minor, arch = int(m.group(1)), int(m.group(2)), m.group(3)
        return [f"musllinux_{major}_{v}_{arch}" for v in range(minor, -1, -1)]
    if m := _MACOS.match(tag):
        version = (int(m.group(1)), int(m.group(2)))
        arch = m.group(3)
        return list(ptags.mac_platforms(version, arch))
    return [tag]


@dataclass(frozen=True, slots=True)
class Target:
    """What an installation runs on: Python version, implementation, ABIs, platforms."""

    #: ``(major, minor)`` of the Python version.
    python_version: tuple[int, int]
    #: Interpreter implementation tag prefix: ``"cp"`` (CPython), ``"pp"`` (PyPy), ...
    implementation: str = "cp"
    #: ABI tags; empty means the implementation's default (``cp312`` for CPython 3.12).
    abis: tuple[str, ...] = ()
    #: Platform tags, as validated by :func:`parse_platform`; empty means pure only.
    platforms: tuple[str, ...] = ()
    #: The micro version Requires-Python (``>=3.8.1``) and markers
    #: (``python_full_version``) see: given
    #: (``--python-version 3.8.10``), or this interpreter's when no version is
    #: given (as pip without ``--python-version``); None: ``X.Y`` is ``X.Y.0``.
    micro: int | None = None
    #: True when the micro version was given: it is then part of the target's
    #: name (``cp38_10-manylinux_2_28_x86_64``; two micro versions may need
    #: different files).
    micro_named: bool = field(default=False, compare=False)

    @classmethod
    def host(cls) -> Target:
        """The running interpreter, as ``packaging.tags.sys_tags()`` sees it."""
        impl = ptags.interpreter_name()
        first = next(iter(ptags.sys_tags()))
        abis: tuple[str, ...] = ()
        if impl == "cp":
            abis = (first.abi,) if first.abi.startswith("cp") else ()
        platforms = tuple(dict.fromkeys(ptags.platform_tags()))
        return cls(sys.version_info[:2], impl, abis, platforms or ("any",), sys.version_info[2])

    @classmethod
    def parse(
        cls,
        *,
        python_version: str | None = None,
        platform: str | None = None,
        implementation: str | None = None,
        abi: str | None = None,
    ) -> Target:
        """Build a target from command-line strings; anything missing is the host's."""
        host = cls.host()
        version = parse_python_version(python_version) if python_version else host.python_version
        impl = (implementation or host.implementation).strip().lower()
        if not re.fullmatch(r"[a-z]{2}", impl):
            raise InvalidTargetError(
                f"invalid implementation {implementation!r}",
                hint="use a two-letter tag: cp (CPython), pp (PyPy), py (any)",
            )
        abis: tuple[str, ...]
        if abi:
            if not re.fullmatch(r"[a-z0-9_]+", abi):
                raise InvalidTargetError(f"invalid ABI tag {abi!r}")
            abis = (abi,)
        elif python_version or implementation:
            abis = ()  # the default for the chosen version/implementation
        else:
            abis = host.abis
        # None means this machine's; an empty --platform '' is a mistake, said as such.
        platforms = host.platforms if platform is None else (parse_platform(platform),)
        if not python_version:
            return cls(version, impl, abis, platforms, host.micro)
        given = re.fullmatch(r"\d\.\d{1,2}\.(\d+)", python_version.strip())
        if given is None:
            return cls(version, impl, abis, platforms)
        return cls(version, impl, abis, platforms, int(given.group(1)), micro_named=True)

    @classmethod
    def from_name(cls, name: str) -> Target:
        """The target a name from :meth:`__str__` (as manifests record) stands for.

        >>> str(Target.from_name("cp312-manylinux_2_28_aarch64"))
        'cp312-manylinux_2_28_aarch64'
        """
        parts = name.split("-")
        m = re.fullmatch(r"([a-z]{2})(\d)(\d+)(?:_(\d+))?", parts[0])
        if len(parts) < 2 or m is None:
            raise InvalidTargetError(f"not a target name: {name!r}")
        abis = tuple(a for a in "-".join(parts[1:-1]).split("+") if a)
        platform = parts[-1]
        version = (int(m.group(2)), int(m.group(3)))
        platforms = () if platform == "any" else (parse_platform(platform),)
        if m.group(4) is not None:
            return cls(version, m.group(1), abis, platforms, int(m.group(4)), micro_named=True)
        # No micro version in the name: this interpreter's, if it is the same
        # X.Y (a house built here without --python-version), else X.Y.0.
        here = sys.version_info[2] if version == sys.version_info[:2] else None
        return cls(version, m.group(1), abis, platforms, here)

    @property
    def full_version(self) -> str:
        """``X.Y.Z`` as pip pads ``--python-version X.Y`` (``3.12`` is ``3.12.0``)."""
        return f"{self.python_version[0]}.{self.python_version[1]}.{self.micro or 0}"

    @property
    def interpreter(self) -> str:
        """The interpreter tag, such as ``cp312``."""
        return f"{self.implementation}{self.python_version[0]}{self.python_version[1]}"

    def __str__(self) -> str:
        # The most telling platform names the target: a host's list starts with
        # linux_<arch>, which says less than the manylinux tag after it.
        named = [p for p in self.platforms if not p.startswith("linux_")] or list(self.platforms)
        abi = f"-{'+'.join(self.abis)}" if self.abis else ""
        # ("_": a name may not hold a dot in pylock.<name>.toml, PEP 751.)
        micro = f"_{self.micro}" if self.micro_named else ""
        return f"{self.interpreter}{micro}{abi}-{named[0] if named else 'any'}"

    def abi_tags(self) -> tuple[str, ...]:
        """The ABIs given, or the implementation's own: ``cp312``; ``pypy310_pp73`` for PyPy.

        PyPy's wheels are tagged ``pp310-pypy310_pp73-<platform>`` (PyPy 7.3,
        every PyPy 3 since 2020); without it a PyPy target took pure wheels only
        (and pip, with no ``--abi``, this machine's CPython ABI).
        """
        if self.abis:
            return self.abis
        major, minor = self.python_version
        if self.implementation == "cp":
            return (self.interpreter,)
        if self.implementation == "pp":
            return (f"pypy{major}{minor}_pp73",)
        return ()

    def platform_tags(self) -> list[str]:
        """Every platform tag this target accepts, most specific first."""
        out: dict[str, None] = {}
        for platform in self.platforms:
            out.update(dict.fromkeys(expand_platform(platform)))
        return list(out)

    def iter_tags(self) -> Iterator[ptags.Tag]:
        """Every tag this target accepts, most preferred first (as pip orders them)."""
        # A pure-only target names the platform "any": an empty list is "this
        # machine's platforms" to packaging before 26.4 (and to pip).
        platforms = self.platform_tags() or ["any"]
        if self.implementation == "cp":
            yield from ptags.cpython_tags(self.python_version, list(self.abi_tags()), platforms)
        else:
            yield from ptags.generic_tags(self.interpreter, list(self.abi_tags()), platforms)
        yield from ptags.compatible_tags(self.python_version, self.interpreter, platforms)

    def tags(self) -> list[ptags.Tag]:
        """:meth:`iter_tags` as a list without duplicates."""
        return list(dict.fromkeys(self.iter_tags()))

    def supports(self, tags: Iterable[ptags.Tag]) -> bool:
        """Tell whether this target accepts a file with any of *tags* (e.g. a wheel's)."""
        accepted = set(self.tags())
        return any(t in accepted for t in tags)

