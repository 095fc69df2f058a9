"""The one place that runs pip: a subprocess, never an import.

A resolution (``pip install --dry-run --report``) downloads every wheel it
considers when the index offers no PEP 658 metadata (mirrors often do not),
and reads every project's index page; then it deletes them all. A build would
fetch both again: the files to keep, the pages for upload times and yank
state. :meth:`SubprocessPip.keeping` runs pip so that it leaves copies of
both behind (see ``_KEEPING``); :func:`read_kept` reads them back. Only a
speed-up: with a pip whose internals differ, pip runs as usual and nothing is
kept. Whatever is kept is hashed again before it is used (wheels and sdists
alike); a file whose bytes are not the ones the resolution names is an
integrity error, never a reason to fetch it again.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wheelhouse.errors import PipError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Kept", "KeptReader", "PipResult", "PipRunner", "SubprocessPip", "read_kept"]

log = logging.getLogger(__name__)

_TAIL_LINES = 25

#: Run as ``python -c`` in place of ``python -m pip``: pip, with two of its
#: functions wrapped so that each file it downloads (with a sha256 in its URL)
#: and each index page it reads is hard-linked or written into
#: $WHEELHOUSE_PIP_KEEP, listed in ``kept.jsonl``; and with
#: $WHEELHOUSE_PIP_TRIM, JSON index pages lose the wheels whose tags the
#: target cannot use before pip reads them (pip would reject each one, at a
#: cost: see ``_trim``). Any surprise in pip's internals leaves pip unwrapped.
_KEEPING = r"""
import os, sys
if sys.path and sys.path[0] in ("", os.getcwd()):
    sys.path.pop(0)  # as pip's __main__ does

def _keep(keep):
    import itertools, json, shutil, threading
    from pip._internal.index import collector
    from pip._internal.operations import prepare
    get_http_url, get_index_content = prepare.get_http_url, collector._get_index_content
    numbers, lock = itertools.count(), threading.Lock()
    listing = open(os.path.join(keep, "kept.jsonl"), "a", encoding="utf-8")

    def note(record):
        with lock:
            listing.write(json.dumps(record) + "\n")
            listing.flush()

    def safe(name):
        # One plain path component, or nothing is kept (older pips do not
        # clean the name they take from a URL).
        return (bool(name) and name not in (".", "..") and "/" not in name
                and "\\" not in name and "\0" not in name and os.path.basename(name) == name)

    def kept_get_http_url(link, *args, **kwargs):
        got = get_http_url(link, *args, **kwargs)
        try:
            name = link.filename
            if link.hash_name == "sha256" and link.hash and safe(name):
                folder = os.path.join(keep, str(next(numbers)))
                os.mkdir(folder)
                dest = os.path.join(folder, name)
                try:
                    os.link(got.path, dest)
                except OSError:
                    with open(got.path, "rb") as src, open(dest, "xb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                # A PEP 658 .metadata file is what pip resolved with, in place
                # of the wheel's own METADATA: kept, to be compared with it.
                kind = "metadata" if name.endswith(".metadata") else "file"
                note({kind: name, "sha256": link.hash.lower(), "path": dest})
        except Exception:
            pass
        return got

    def kept_get_index_content(link, *args, **kwargs):
        page = get_index_content(link, *args, **kwargs)
        try:
            if page is not None:
                dest = os.path.join(keep, str(next(numbers)))
                with open(dest, "wb") as f:
                    f.write(page.content)
                note({"page": link.url.split("#", 1)[0], "url": page.url,
                      "content_type": page.content_type, "path": dest})
        except Exception:
            pass
        return page

    prepare.get_http_url = kept_get_http_url
    collector._get_index_content = kept_get_index_content

    # pip gives up on an index page it cannot reach and goes on without it,
    # saying so at debug level only: said on stderr here (SKIPPED_MARK), for
    # the caller. A 404 (a project an extra index does not have) is ordinary.
    handle_fail = collector._handle_get_simple_fail

    def said_handle_fail(link, reason, *args, **kwargs):
        try:
            status = getattr(getattr(reason, "response", None), "status_code", None)
            if isinstance(reason, str) or type(reason).__name__ == "RetryError" or (
                    isinstance(status, int) and status >= 500):
                from pip._internal.utils.misc import redact_auth_from_url
                sys.stderr.write("wheelhouse: pip skipped %s: %s\n" % (
                    redact_auth_from_url(link.url.split("#", 1)[0]),
                    str(reason).splitlines()[0] if str(reason) else type(reason).__name__))
        except Exception:
            pass
        return handle_fail(link, reason, *args, **kwargs)

    collector._handle_get_simple_fail = said_handle_fail

def _trim():
    # pip turns every file of a project's JSON page into a Link and then
    # rejects each wheel none of whose tags the target supports: for numpy,
    # thousands of links, most of pip's CPU in a resolution. Those wheels are
    # dropped from the page first (the kept copy above is the whole page),
    # with the target's own tags from pip; anything unexpected leaves the page
    # as it was.
    import dataclasses, json
    from pip._internal.index.collector import LinkCollector
    from pip._internal.index.package_finder import PackageFinder
    process_project_url, fetch_response = (PackageFinder.process_project_url,
                                           LinkCollector.fetch_response)
    current, tags = [], {}

    def fits(filename, supported):
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return True  # pip's to judge
        for x in parts[-3].lower().split("."):
            for y in parts[-2].lower().split("."):
                for z in parts[-1].lower().split("."):
                    if (x, y, z) in supported:
                        return True
        return False

    def trimmed(page, supported):
        if page is None or not page.content_type.lower().startswith(
                "application/vnd.pypi.simple.v1+json"):
            return page
        data = json.loads(page.content)
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, list):
            return page
        keep = [f for f in files
                if not (isinstance(f, dict) and isinstance(f.get("filename"), str)
                        and f["filename"].lower().endswith(".whl")
                        and not fits(f["filename"], supported))]
        if len(keep) == len(files):
            return page
        data["files"] = keep
        return dataclasses.replace(page, content=json.dumps(data).encode())

    def trimming_fetch_response(self, *args, **kwargs):
        page = fetch_response(self, *args, **kwargs)
        if current and current[-1] is not None:
            try:
                return trimmed(page, current[-1])
            except Exception:
                pass
        return page

    def trimming_process_project_url(self, *args, **kwargs):
        try:
            target = self._target_python
            known = tags.get(id(target))
            if known is None or known[0] is not target:
                known = tags[id(target)] = (target, {(t.interpreter, t.abi, t.platform)
                                                     for t in target.get_unsorted_tags()})
            supported = known[1]
        except Exception:
            supported = None
        current.append(supported)
        try:
            return process_project_url(self, *args, **kwargs)
        finally:
            current.pop()

    PackageFinder.process_project_url = trimming_process_project_url
    LinkCollector.fetch_response = trimming_fetch_response

try:
    _keep(os.environ.pop("WHEELHOUSE_PIP_KEEP"))
except Exception:
    pass
try:
    if os.environ.pop("WHEELHOUSE_PIP_TRIM", "") == "1":
        _trim()
except Exception:
    pass
import runpy
runpy.run_module("pip", run_name="__main__", alter_sys=True)  # as python -m pip
"""


#: How a keeping pip says on stderr that it went on without a source it could not reach.
SKIPPED_MARK = "wheelhouse: pip skipped "


@dataclass(frozen=True, slots=True)
class Kept:
    """What a :meth:`SubprocessPip.keeping` run of pip left behind."""

    #: ``(filename, sha256)`` -> a copy of the file pip downloaded, under its own name.
    files: dict[tuple[str, str], Path]
    #: Index page URL (as pip asked for it) -> (final URL, content type, a copy of the page).
    pages: dict[str, tuple[str, str, Path]]
    #: Wheel file name -> a copy of the PEP 658 metadata pip resolved it with.
    metadata: dict[str, Path] = field(default_factory=dict)


class KeptReader:
    """Reads what a keeping pip lists in *folder*, as it goes.

    Call :meth:`read` again for what was added since. Files and pages outside
    *folder* are never taken.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offset = 0

    def read(self) -> Kept:
        """What was listed since the last call (a line not yet ended waits for the next)."""
        import json

        files: dict[tuple[str, str], Path] = {}
        pages: dict[str, tuple[str, str, Path]] = {}
        metadata: dict[str, Path] = {}
        try:
            with (self.folder / "kept.jsonl").open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            data = b""
        whole = data[: data.rfind(b"\n") + 1]
        self._offset += len(whole)
        for line in whole.splitlines():
            try:
                record = json.loads(line)
                path = Path(record["path"])
                if "file" in record or "metadata" in record:
                    name = str(record["file"] if "file" in record else record["metadata"])
                    if path.parent.parent != self.folder or path.name != name:
                        continue  # never a path elsewhere
                    if "file" in record:
                        files[(name, str(record["sha256"]))] = path
                    else:
                        metadata[name.removesuffix(".metadata")] = path
                elif path.parent == self.folder:
                    pages[str(record["page"])] = (str(record["url"]),
                                                  str(record["content_type"]), path)
            except Exception:  # noqa: BLE001, S112 - a line that is not a record of ours
                continue
        return Kept(files, pages, metadata)


def read_kept(folder: Path) -> Kept:
    """The files and pages a keeping pip left in *folder* (nothing, if it kept none)."""
    return KeptReader(folder).read()


#: How long pip may take to clean up after Ctrl-C (it got the same SIGINT) before it is killed.
_CLEAN_UP_SECONDS = 10.0


def _run_letting_pip_clean_up(argv: list[str], *, env: dict[str, str],
                              cwd: Path | None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with output captured, except on Ctrl-C.

    pip gets the terminal's SIGINT too, and removes its temp directories as it
    stops; ``subprocess.run`` would kill it 0.25 s later, half-way through
    (hundreds of ``pip-*`` folders left in the temp directory). It is given
    time to finish first.
    """
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=cwd, stdin=subprocess.DEVNULL) as proc:
        try:
            stdout, stderr = proc.communicate()
        except KeyboardInterrupt:
            try:
                proc.communicate(timeout=_CLEAN_UP_SECONDS)  # still reading its output
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@dataclass(frozen=True, slots=True)
class PipResult:
    """What a pip run printed."""

    #: The command that ran.
    argv: list[str]
    #: Its standard output.
    stdout: str
    #: Its standard error.
    stderr: str


class PipRunner(Protocol):
    """Runs ``pip ARGS``; a test can pass a fake that records argv."""

    def __call__(self, args: Sequence[str], *, cwd: Path | None = None) -> PipResult:
        """Run pip with *args*; raise PipError if it fails."""
        ...


@dataclass
class SubprocessPip:
    """``python -m pip`` in a subprocess, with the user's pip configuration.

    *isolated*: no pip configuration at all -- ``--isolated`` (no ``PIP_*``
    variables, no user configuration file), no ``PIP_*`` variables passed on
    either, and ``PIP_CONFIG_FILE`` set to the null device (which pip takes
    as "no configuration file", the machine-wide ones included, which
    ``--isolated`` alone still reads).
    *python* is the interpreter whose pip runs (default: ours).
    """

    isolated: bool = False
    python: str = field(default_factory=lambda: sys.executable)
    env: dict[str, str] | None = None
    #: A folder for copies of the files and index pages pip fetches (see the module's doc).
    keep: Path | None = None

    def keeping(self, folder: Path) -> SubprocessPip:
        """A copy of this runner that leaves what pip fetches in *folder*.

        Read it back with :func:`read_kept`. *folder* must not exist yet. pip's
        downloads are hard-linked there when pip's temp directory is on the
        same filesystem (wheelhouse's temp folders are in the same place), else
        copied.
        """
        folder.mkdir(parents=True)
        return replace(self, keep=folder)

    def __call__(self, args: Sequence[str], *, cwd: Path | None = None) -> PipResult:
        """Run pip; raise PipError with argv, exit code and the tail of stderr on failure."""
        start = ["-c", _KEEPING] if self.keep is not None else ["-m", "pip"]
        argv = [self.python, *start, *(["--isolated"] if self.isolated else []), *args]
        env = dict(self.env if self.env is not None else os.environ)
        if self.isolated:
            # (pip's own --isolated does not reach the pip it runs to install
            # build dependencies: that one would still read PIP_* variables.)
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.setdefault("PIP_NO_INPUT", "1")
        if self.keep is not None:
            env["WHEELHOUSE_PIP_KEEP"] = str(self.keep)
            env["WHEELHOUSE_PIP_TRIM"] = "1"
        # What pip was asked, as the user would have typed it (not the keeping wrapper).
        shown = [self.python, "-m", "pip", *argv[3:]]
        log.debug("running %s%s", " ".join(shown), " (keeping)" if self.keep else "")
        proc = _run_letting_pip_clean_up(argv, env=env, cwd=cwd)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-_TAIL_LINES:])
            raise PipError(shown, proc.returncode, tail, proc.stderr)
        return PipResult(shown, proc.stdout, proc.stderr)
