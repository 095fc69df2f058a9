"""Ask a Python interpreter what it accepts and where it installs.

The answer comes from the interpreter itself (run once, isolated, with the
``packaging`` this wheelhouse uses put first on its path), never from guessing:
its tags (``packaging.tags.sys_tags``), marker values, install scheme and
whether it is a virtual environment or an externally managed system Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import Tag, parse_tag
from packaging.version import Version

from wheelhouse.errors import InvalidInputError

__all__ = ["InterpreterInfo", "default_interpreter", "query_interpreter"]

#: Version of the cached answers' layout; a different one is asked afresh.
_CACHE_FORMAT = 2

# Runs inside the target interpreter: standard library plus packaging only
# (this wheelhouse's; on a Python it does not support, the interpreter's own pip's).
_QUERY = r"""
import json, os, sys, sysconfig
sys.path.insert(0, sys.argv[1])
try:
    from packaging import markers, tags
except Exception:
    # This wheelhouse's packaging does not run on this (older) Python: the
    # one its own pip uses does, and answers as that pip would.
    del sys.path[0]
    for name in [m for m in sys.modules if m.split(".")[0] == "packaging"]:
        del sys.modules[name]
    try:
        from pip._vendor.packaging import markers, tags
    except ImportError:
        from packaging import markers, tags
prefix = sys.argv[2] or None
if prefix:
    try:
        scheme = sysconfig.get_preferred_scheme("prefix")
    except AttributeError:
        scheme = "nt" if os.name == "nt" else "posix_prefix"
    paths = sysconfig.get_paths(scheme=scheme, vars={
        "base": prefix, "platbase": prefix, "installed_base": prefix,
        "installed_platbase": prefix})
else:
    paths = sysconfig.get_paths()
stdlib = sysconfig.get_paths()["stdlib"]
# Any virtual environment of this interpreter installs to these paths with its own
# root for @ROOT@: a new venv of a known interpreter needs no start-up to describe.
venv_scheme = "venv" if "venv" in sysconfig.get_scheme_names() else (
    "nt" if os.name == "nt" else "posix_prefix")
root = "@ROOT@"
venv_paths = sysconfig.get_paths(scheme=venv_scheme, vars={
    "base": root, "platbase": root, "installed_base": getattr(sys, "base_prefix", sys.prefix),
    "installed_platbase": getattr(sys, "base_exec_prefix", sys.exec_prefix)})
print(json.dumps({
    "executable": sys.executable,
    "version": list(sys.version_info[:3]),
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "tags": [str(t) for t in tags.sys_tags()],
    "markers": markers.default_environment(),
    "paths": paths,
    "venv_paths": venv_paths,
    "cache_tag": sys.implementation.cache_tag,
    "externally_managed": os.path.isfile(os.path.join(stdlib, "EXTERNALLY-MANAGED")),
    "os_name": os.name,
}))
"""


@dataclass(frozen=True, slots=True)
class InterpreterInfo:
    """What one interpreter said about itself."""

    #: Its ``sys.executable`` (the path console scripts' shebangs name).
    executable: str
    #: ``(major, minor, micro)``.
    version: tuple[int, int, int]
    #: ``sys.prefix`` and ``sys.base_prefix`` (equal outside a virtual environment).
    prefix: str
    base_prefix: str
    #: Accepted wheel tags, most preferred first.
    tags: tuple[Tag, ...]
    #: PEP 508 marker values.
    markers: dict[str, str]
    #: Install scheme: purelib, platlib, scripts, data, headers, ...
    paths: dict[str, str]
    #: ``sys.implementation.cache_tag`` (``cpython-312``), for bytecode file names.
    cache_tag: str | None
    #: True when the standard library carries an EXTERNALLY-MANAGED marker (PEP 668).
    externally_managed: bool
    #: ``os.name``.
    os_name: str

    @property
    def is_venv(self) -> bool:
        """True for a virtual environment."""
        return self.prefix != self.base_prefix

    @property
    def python_version(self) -> Version:
        """The full Python version."""
        return Version(".".join(str(p) for p in self.version))

    @property
    def name(self) -> str:
        """A name for messages: the executable and its most specific tag."""
        first = self.tags[0] if self.tags else None
        return f"{self.executable} ({first})" if first else self.executable


def _packaging_root() -> str:
    import packaging

    return str(Path(packaging.__file__).resolve().parent.parent)


def _stamp(exe: str) -> list[object] | None:
    """What identifies an interpreter's answer: its file, its link, its venv's config."""
    try:
        real = Path(exe).stat()
        link = Path(exe).lstat()
    except OSError:
        return None
    out: list[object] = [real.st_ino, real.st_size, real.st_mtime_ns, link.st_ino,
                         link.st_mtime_ns]
    cfg = Path(exe).absolute().parent.parent / "pyvenv.cfg"
    try:
        st = cfg.stat()
        out += [st.st_ino, st.st_size, st.st_mtime_ns]
    except OSError:
        out.append(None)
    import packaging

    out.append(packaging.__version__)
    return out


def _cache_file(exe: str, prefix: Path | None) -> Path | None:
    try:
        import hashlib

        from platformdirs import user_cache_path

        key = hashlib.sha256(f"{Path(exe).absolute()}\0{prefix or ''}".encode()).hexdigest()
        return user_cache_path("wheelhouse") / "interpreters" / f"{key[:32]}.json"
    except Exception:  # noqa: BLE001 - a cache is an optimisation, never a failure
        return None


def query_interpreter(python: str | Path, *, prefix: Path | None = None) -> InterpreterInfo:
    """Run *python* once and read what it says about itself.

    With *prefix*, the install paths are those of ``--prefix DIR`` for it. The
    answer is cached per interpreter file (and its venv's ``pyvenv.cfg``), as
    uv does: asking costs a Python start-up.
    Raises InvalidInputError when *python* is missing or is not a Python.
    """
    exe = _locate(str(python))
    venv = _venv_root(exe) if prefix is None else None
    # A venv is described by its base interpreter's answer and its own root: ask
    # the base (the file the venv's python links to), so that the answer cached
    # under the base's name is the base's own, never one venv's.
    ask = exe
    if venv is not None:
        real = os.path.realpath(exe)
        if _venv_root(real) is None:
            ask = real
    stamp = _stamp(ask)
    cache = _cache_file(ask, prefix) if stamp is not None and not _is_wrapper(ask) else None
    raw: dict[str, Any] | None = None
    if cache is not None:
        try:
            cached = json.loads(cache.read_bytes())
            if (cached.get("format") == _CACHE_FORMAT
                    and cached.get("stamp") == json.loads(json.dumps(stamp))):
                raw = cached["info"]
                with contextlib.suppress(OSError):
                    os.utime(cache)  # used now: kept by _prune_cache
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raw = None
    if raw is None:
        raw = _ask(ask, prefix)
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"format": _CACHE_FORMAT, "stamp": stamp, "info": raw}),
                               encoding="utf-8")
                tmp.replace(cache)
                _prune_cache(cache.parent)
            except OSError:
                pass
    if venv is not None:
        root = str(venv)
        raw = {**raw, "executable": str(Path(exe).absolute()), "prefix": root,
               "paths": {k: v.replace("@ROOT@", root) for k, v in raw["venv_paths"].items()}}
    return _info(raw)


#: Interpreter answers kept at most (about 30 KB each): the ones used last stay.
_CACHE_KEEP = 64


def _prune_cache(directory: Path) -> None:
    """Keep the :data:`_CACHE_KEEP` answers used last (a use touches its file).

    Temporary virtual environments (a test suite's, a CI job's) each left an
    answer there for good.
    """
    try:
        entries = [(e.stat().st_mtime, e.path) for e in os.scandir(directory)
                   if e.name.endswith(".json")]
    except OSError:
        return
    if len(entries) <= _CACHE_KEEP:
        return
    for _, path in sorted(entries)[: len(entries) - _CACHE_KEEP]:
        with contextlib.suppress(OSError):
            os.unlink(path)  # noqa: PTH108


def _locate(exe: str) -> str:
    """*exe* as a path: a bare name (``python3``) is looked up on ``PATH``, as a shell does."""
    if os.sep in exe or (os.altsep and os.altsep in exe):
        return exe
    import shutil

    found = shutil.which(exe)
    if found is None and Path(exe).is_file():
        # Not on PATH, but a file here: run as ./NAME (a bare name would be
        # looked up on PATH again).
        return os.path.join(os.curdir, exe)  # noqa: PTH118
    if found is None:
        raise InvalidInputError(f"no such interpreter: {exe!r} is not on PATH",
                                hint="give the path to a Python executable, e.g. .venv/bin/python")
    return found


def _is_wrapper(exe: str) -> bool:
    """True for a ``#!`` script, such as a pyenv or asdf shim.

    What it runs can change without the file changing, so its answer is never cached.
    """
    try:
        with Path(exe).open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def _venv_root(exe: str) -> Path | None:
    """The virtual environment *exe* belongs to (its ``pyvenv.cfg``), if any."""
    bin_dir = Path(exe).absolute().parent
    for candidate in (bin_dir, bin_dir.parent):
        if (candidate / "pyvenv.cfg").is_file():
            return candidate
    return None


def _ask(exe: str, prefix: Path | None) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [exe, "-I", "-c", _QUERY, _packaging_root(), str(prefix) if prefix else ""],
            capture_output=True, text=True, timeout=60, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )
    except FileNotFoundError:
        raise InvalidInputError(f"no such interpreter: {exe!r}") from None
    except PermissionError:
        raise InvalidInputError(f"{exe!r} is not an executable Python interpreter") from None
    except OSError as e:
        raise InvalidInputError(f"{exe!r} is not a Python interpreter ({e.strerror})") from None
    except subprocess.TimeoutExpired:
        raise InvalidInputError(f"{exe!r} did not answer within 60 s; is it a Python?") from None
    try:
        raw: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        # A Python too old or broken says why on stderr (its last error line: a
        # SyntaxError, ...); a wrapper that found no Python (a pyenv shim) says so
        # first ("pyenv: python3.12: command not found"). What another program
        # prints on stdout explains nothing.
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if re.search(r"\w(Error|Exception)\b", line)]
        detail = errors[-1] if errors else lines[0] if lines else ""
        said = f": {detail[:200]}" if detail else ""
        raise InvalidInputError(
            f"{exe!r} is not a Python interpreter wheelhouse can use (it did not answer as "
            f"Python does{said})",
            hint="point --python at a CPython or PyPy 3.8+ executable, e.g. .venv/bin/python",
        ) from None
    return raw


def _info(raw: dict[str, Any]) -> InterpreterInfo:
    tags: list[Tag] = []
    for text in raw["tags"]:
        tags.extend(sorted(parse_tag(text), key=str))
    return InterpreterInfo(
        executable=str(raw["executable"]),
        version=(int(raw["version"][0]), int(raw["version"][1]), int(raw["version"][2])),
        prefix=str(raw["prefix"]),
        base_prefix=str(raw["base_prefix"]),
        tags=tuple(dict.fromkeys(tags)),
        markers={str(k): str(v) for k, v in raw["markers"].items()},
        paths={str(k): str(v) for k, v in raw["paths"].items()},
        cache_tag=raw.get("cache_tag"),
        externally_managed=bool(raw.get("externally_managed")),
        os_name=str(raw.get("os_name", os.name)),
    )


def default_interpreter() -> Path:
    """The active virtual environment's interpreter (``$VIRTUAL_ENV``).

    Raises InvalidInputError when no virtual environment is active.
    """
    venv = os.environ.get("VIRTUAL_ENV")
    if not venv:
        raise InvalidInputError(
            "no virtual environment is active",
            hint="activate one, or say where to install: --python PATH, --prefix DIR "
            "or --target DIR",
        )
    base = Path(venv)
    exe = base / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not exe.exists():
        raise InvalidInputError(f"$VIRTUAL_ENV={venv} has no {exe.relative_to(base)}",
                                hint="deactivate and activate the environment again, "
                                "or pass --python PATH")
    return exe
