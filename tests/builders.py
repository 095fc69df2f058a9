"""Build tiny, real wheels and sdists for tests (no network, no setuptools)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
import textwrap
import zipfile
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

# A complete PEP 517 build backend in one file: sdists that name it through
# build-system.backend-path build with `pip wheel` and nothing from outside.
BACKEND = textwrap.dedent(
    '''
    """A minimal in-tree PEP 517 backend for wheelhouse's tests."""
    import base64
    import hashlib
    import os
    import zipfile
    from pathlib import Path

    HERE = Path(__file__).parent


    def _meta():
        return (HERE / "PKG-INFO").read_text(encoding="utf-8")


    def _field(name):
        for line in _meta().splitlines():
            if line.startswith(name + ": "):
                return line.split(": ", 1)[1]
        raise KeyError(name)


    def get_requires_for_build_wheel(config_settings=None):
        return []


    def get_requires_for_build_sdist(config_settings=None):
        return []


    def _record_line(path, data):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        return f"{path},sha256={digest.decode()},{len(data)}"


    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        name = _field("Name").replace("-", "_").replace(".", "_").lower()
        version = _field("Version")
        filename = f"{name}-{version}-py3-none-any.whl"
        dist_info = f"{name}-{version}.dist-info"
        files = {}
        src = HERE / "src"
        for path in sorted(src.rglob("*")):
            if path.is_file():
                files[path.relative_to(src).as_posix()] = path.read_bytes()
        files[f"{dist_info}/METADATA"] = _meta().encode()
        files[f"{dist_info}/WHEEL"] = (
            b"Wheel-Version: 1.0\\nGenerator: test-backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        )
        record = [_record_line(p, d) for p, d in files.items()]
        record.append(f"{dist_info}/RECORD,,")
        files[f"{dist_info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
        with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
            for path, data in files.items():
                zf.writestr(path, data)
        return filename
    '''
)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def metadata_text(
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    extra_headers: Mapping[str, str] | None = None,
    summary: str = "A test package",
) -> str:
    """Core metadata 2.1 for a test distribution."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    extras = sorted({m for r in requires_dist for m in re.findall(r"extra == '([^']+)'", r)})
    lines.extend(f"Provides-Extra: {e}" for e in extras)
    lines.extend(f"Requires-Dist: {r}" for r in requires_dist)
    for key, value in (extra_headers or {}).items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def build_wheel(
    directory: Path,
    name: str,
    version: str = "1.0",
    *,
    tag: str = "py3-none-any",
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    metadata: str | None = None,
    filename: str | None = None,
    build_tag: str | None = None,
    console_scripts: Mapping[str, str] | None = None,
    padding: int = 0,
) -> Path:
    """Write a valid wheel (METADATA, WHEEL, RECORD) and return its path.

    *files* defaults to a module ``<name>.py`` holding ``__version__``.
    *metadata* overrides the METADATA text; *filename* the file name.
    *padding* adds that many incompressible bytes (for large-file tests).
    """
    dist = canonicalize_name(name).replace("-", "_")
    parts = [dist, version] + ([build_tag] if build_tag else []) + [tag]
    wheel_name = filename or "-".join(parts) + ".whl"
    dist_info = f"{dist}-{version}.dist-info"
    contents: dict[str, bytes] = dict(
        files if files is not None else {f"{dist}.py": f'__version__ = "{version}"\n'.encode()}
    )
    if padding:
        contents[f"{dist}_data.bin"] = hashlib.shake_256(name.encode()).digest(padding)
    contents[f"{dist_info}/METADATA"] = (
        metadata
        if metadata is not None
        else metadata_text(name, version, requires_python=requires_python,
                           requires_dist=requires_dist)
    ).encode()
    pure = tag.endswith("-any")
    contents[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: wheelhouse-tests\n"
        f"Root-Is-Purelib: {'true' if pure else 'false'}\n"
        + "".join(f"Tag: {t}\n" for t in _expand_tag(tag))
    ).encode()
    if console_scripts:
        contents[f"{dist_info}/entry_points.txt"] = (
            "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in console_scripts.items())
        ).encode()
    record = [_record_line(p, d) for p, d in contents.items()] + [f"{dist_info}/RECORD,,"]
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / wheel_name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in contents.items():
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if member.endswith(".bin") else zipfile.ZIP_DEFLATED
            executable = ".data/scripts/" in member
            info.external_attr = (0o100755 if executable else 0o100644) << 16  # S_IFREG | mode
            zf.writestr(info, data)
    return path


def _expand_tag(tag: str) -> list[str]:
    py, abi, plat = tag.split("-")
    return [f"{p}-{a}-{pl}" for p in py.split(".") for a in abi.split(".") for pl in plat.split(".")]


def build_sdist(
    directory: Path,
    name: str,
    version: str = "1.0",
    *,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    build_requires: Sequence[str] = (),
    pkg_info: str | None = None,
    filename: str | None = None,
) -> Path:
    """Write a real sdist that `pip wheel` builds offline with an in-tree backend."""
    dist = canonicalize_name(name).replace("-", "_")
    base = f"{dist}-{version}"
    meta = pkg_info if pkg_info is not None else metadata_text(
        name, version, requires_python=requires_python, requires_dist=requires_dist
    )
    requires = ", ".join(f'"{r}"' for r in build_requires)
    pyproject = textwrap.dedent(
        f"""\
        [build-system]
        requires = [{requires}]
        build-backend = "backend"
        backend-path = ["."]
        """
    )
    members = {
        f"{base}/PKG-INFO": meta.encode(),
        f"{base}/pyproject.toml": pyproject.encode(),
        f"{base}/backend.py": BACKEND.encode(),
        f"{base}/src/{dist}.py": f'__version__ = "{version}"\n'.encode(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (filename or f"{base}.tar.gz")
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 1577836800
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


def corrupt_zip(path: Path) -> None:
    """Overwrite a file with bytes that are not a zip archive."""
    path.write_bytes(b"this is not a zip file\n" * 10)


def damage_member(path: Path, member: str, *, how: str) -> None:
    """Damage one member of a zip archive in place, leaving the rest intact.

    ``how="data"`` overwrites the start of its deflated bytes (a reserved
    block type: zlib's "invalid block type"); ``how="encrypted"`` sets its "encrypted" flag in the
    central directory (zipfile then asks for a password).
    """
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if how == "data":
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start : start + 8] = b"\xff" * 8
    elif how == "encrypted":
        entry = data.index(b"PK\x01\x02")
        while data[entry + 46 : entry + 46 + len(member)] != member.encode():
            entry = data.index(b"PK\x01\x02", entry + 4)
        data[entry + 8] |= 0x1
    else:
        raise ValueError(how)
    path.write_bytes(bytes(data))


def unpack_sdist(sdist: Path, dest: Path) -> None:
    """Unpack one of our own sdists into *dest*, safely on every supported Python.

    ``extractall(filter=...)`` came with 3.10.12 and 3.11.4; before that, the
    members (regular files and directories under one top directory) are checked here.
    """
    with tarfile.open(sdist) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="data")
            return
        members = tf.getmembers()
        for m in members:
            parts = m.name.split("/")
            if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
                raise ValueError(f"unexpected member in {sdist}: {m.name!r}")
        tf.extractall(dest, members=members)
