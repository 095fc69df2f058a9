"""Lock files with pip-tools: requirements in, every version pinned and hashed out."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelhouse._fs import write_atomic
from wheelhouse.errors import (
    InvalidInputError,
    InvalidTargetError,
    NetworkError,
    ResolutionError,
)
from wheelhouse.requirements import expand_variables, location_key, scan_requirement_files

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["LockResult", "lock"]

log = logging.getLogger(__name__)

_TAIL = 25


@dataclass(frozen=True, slots=True)
class LockResult:
    """What :func:`lock` wrote."""

    #: The lock file.
    output: Path
    #: How many projects it pins.
    pins: int


def lock(
    sources: Sequence[Path | str],
    *,
    output: Path | str,
    constraint_files: Sequence[Path | str] = (),
    pip_options: Sequence[str] = (),
    upgrade: bool = False,
    python_version: str | None = None,
    platform: str | None = None,
) -> LockResult:
    """Compile requirements into a lock with ``--generate-hashes`` (pip-tools' semantics).

    The lock pins every project and lists the sha256 of every file the index
    offers for that version, so ``wheelhouse build -r LOCK`` is reproducible
    and runs in pip's hash-checking mode. pip-tools resolves for this
    interpreter only: for another Python or platform, build the house with
    ``--python-version``/``--platform``, which writes a lock per target.
    """
    if python_version or platform:
        raise InvalidTargetError(
            "pip-tools can only lock for the interpreter it runs on",
            hint="'wheelhouse build --python-version V --platform P' writes a lock per "
            "target into the house (locks/<target>.requirements.txt and pylock.<target>.toml); "
            "or run 'wheelhouse lock' under that Python on that platform",
        )
    paths = [Path(s) for s in sources]
    if not paths:
        raise InvalidInputError("nothing to lock", hint="name a requirements.in file")
    scan = scan_requirement_files(paths, constraints=[Path(c) for c in constraint_files])
    # (A lock that is a symbolic link is written where it points.)
    out = Path(os.path.realpath(output))
    # pip-tools writes a scratch copy (it may hold what must not reach the lock: a
    # password in an index URL), readable by the user alone and left by no run
    # (one killed before it removed its own is removed by the next); the lock
    # itself is written once, atomically. It starts from the lock as it is:
    # pip-tools keeps its pins unless --upgrade.
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, scratch_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    scratch = Path(scratch_name)
    if out.is_file():
        shutil.copyfile(out, scratch)
    argv = [sys.executable, "-m", "piptools", "compile", "--generate-hashes", "--allow-unsafe",
            "--strip-extras", "--quiet", "--no-header", "--output-file", str(scratch)]
    if upgrade:
        argv.append("--upgrade")
    for c in constraint_files:
        argv += ["-c", str(c)]
    argv += list(pip_options)
    argv += [str(p) for p in paths]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        text = scratch.read_text(encoding="utf-8") if proc.returncode == 0 else ""
    finally:
        scratch.unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = [line for line in _without_tracebacks(proc.stderr.strip().splitlines())
                 if line.strip()]
        tail = "\n".join(lines[-_TAIL:])
        what = f"pip-tools could not lock {', '.join(map(str, paths))}:\n{tail}"
        if any(s in proc.stderr for s in _UNREACHABLE):
            raise NetworkError(what, hint="check the index URL and the network "
                               "(pip config list shows what pip uses)")
        raise ResolutionError(what, hint="check the names and versions above and the index "
                              "pip-tools used")
    kept = _only_named_sources(text, pip_options,
                               from_files=[*scan.index_options, *scan.find_links],
                               trusted=scan.trusted_hosts)
    write_atomic(out, kept.encode())
    pins = sum(1 for line in kept.splitlines()
               if "==" in line and not line.startswith((" ", "#", "-")))
    return LockResult(out, pins)


#: Nothing but ``${NAME}`` references (pip's variables: capitals, digits, "_").
_VARIABLES = re.compile(r"(?:\$\{[A-Z0-9_]+\})+")

#: The source lines pip-tools writes at the top of a lock, and their option.
_SOURCE_LINE = re.compile(r"(--index-url|--extra-index-url|--find-links|--trusted-host)\s+(\S+)\s*\Z")


def _only_named_sources(text: str, named: Sequence[str], *, from_files: Sequence[str] = (),
                        trusted: Sequence[str] = ()) -> str:
    """*text* without the index and find-links lines only pip's configuration gave.

    pip-tools writes into the lock every source pip used, those of this
    machine's configuration (``pip.conf``, ``PIP_*``) too: local paths and
    private mirrors that mean nothing to whoever installs from a committed
    lock. Sources *named* on the command line or given *from_files* (the
    requirement files) stay, as they were written: a ``${TOKEN}`` pip expanded
    in a file goes back in unexpanded (the secret stays out of the lock). pip
    expands ``${NAME}`` in requirement files only, so a command-line value is
    matched as typed. A trusted host stays when it was named or is the host of
    a source that stays.
    """
    as_written: dict[str, str] = {}
    for word, expand in [*((w, False) for w in named), *((w, True) for w in from_files)]:
        # ("--index-url=URL" on a command line names URL.)
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        as_written.setdefault(location_key(expand_variables(value) if expand else value), value)
    out = []
    hosts: set[str] = set(trusted)
    trust_lines: list[tuple[int, str, str]] = []
    for line in text.splitlines(keepends=True):
        m = _SOURCE_LINE.match(line.strip())
        if m is None:
            out.append(line)
            continue
        option, value = m.groups()
        if option == "--trusted-host":
            trust_lines.append((len(out), value, line))
            out.append("")  # decided below, once every kept source is known
            continue
        written = as_written.get(location_key(value))
        if written is None:
            continue
        url = urllib.parse.urlsplit(value)
        if url.hostname:
            hosts.update({url.hostname, url.netloc.rpartition("@")[2]})
        shown = written if "${" in written else value
        parts = urllib.parse.urlsplit(shown)
        userinfo, has_userinfo, netloc = parts.netloc.rpartition("@")
        # The secret is the password, or a lone user name (a token); a ${TOKEN}
        # elsewhere in the URL does not make one typed into it a variable.
        if has_userinfo and not _VARIABLES.fullmatch(userinfo.partition(":")[2] or userinfo):
            # Credentials written into the URL: never into a lock people commit.
            bare = parts._replace(netloc=netloc).geturl()
            log.warning("the credentials in %s were left out of the lock (%s): give them as "
                        "${VARIABLE} in the URL, or in a .netrc or keyring", option, bare)
            out.append(line.replace(value, bare))
        else:
            out.append(line.replace(value, shown))
    for at, value, line in trust_lines:
        if value in hosts:
            out[at] = line
    return "".join(out)


#: What pip says when it cannot reach an index at all.
_UNREACHABLE = ("Failed to establish a new connection", "NewConnectionError",
                "Name or service not known", "Temporary failure in name resolution",
                "Connection refused")


def _without_tracebacks(lines: list[str]) -> list[str]:
    """*lines* without Python tracebacks: each one shrinks to its last line (the error).

    pip-tools lets some of pip's errors (no such distribution) escape as
    tracebacks; the user needs the error, not the frames.
    """
    out: list[str] = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback:
            if not line.strip() or line.startswith((" ", "\t")):
                continue
            in_traceback = False
            # "pip._internal.exceptions.DistributionNotFound: No matching ..." -> the message.
            name, sep, message = line.partition(": ")
            out.append(message if sep and "." in name and " " not in name else line)
            continue
        if line.startswith(("During handling of the above exception",
                            "The above exception was the direct cause")):
            continue
        out.append(line)
    return out
