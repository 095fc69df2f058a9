"""Resolution: requirements to the exact files one target needs, as pip decides them."""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from wheelhouse._fs import scratch_dir
from wheelhouse.errors import (
    BuildError,
    IntegrityError,
    InvalidInputError,
    PipError,
    ResolutionError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wheelhouse._pip import PipRunner
    from wheelhouse.targets import Target

log = logging.getLogger(__name__)

__all__ = ["Resolved", "parse_report", "resolve_target", "target_pip_options"]


@dataclass(frozen=True, slots=True)
class Resolved:
    """One distribution pip chose for a target."""

    #: Normalised project name.
    name: str
    #: Version.
    version: str
    #: Where it comes from (an index file URL, a direct URL, a local path's file: URL).
    url: str
    #: ``"wheel"``, ``"sdist"`` or ``"source"`` (a local directory or a VCS checkout).
    kind: str
    #: The index's sha256 for the file, when it gave one.
    sha256: str | None = None
    #: True when the user asked for it (not only a dependency).
    requested: bool = False
    #: A requirement ``pip wheel`` accepts for ``"source"`` items (``git+…@commit``, a path).
    source_spec: str | None = None

    @property
    def filename(self) -> str:
        """The file name at the end of the URL (empty for sources)."""
        path = urllib.parse.urlsplit(self.url).path
        return urllib.parse.unquote(path.rsplit("/", 1)[-1]) if self.kind != "source" else ""


def parse_report(data: dict[str, Any]) -> list[Resolved]:
    """Turn ``pip install --dry-run --report`` JSON into :class:`Resolved` items."""
    if str(data.get("version")) != "1":
        raise ResolutionError(f"unsupported pip report version {data.get('version')!r}")
    out = []
    for item in data.get("install", []):
        meta = item.get("metadata", {})
        info = item.get("download_info", {})
        url = info.get("url", "")
        name = canonicalize_name(meta.get("name", ""))
        version = str(meta.get("version", ""))
        if "archive_info" in info:
            hashes = info["archive_info"].get("hashes") or {}
            sha = hashes.get("sha256")
            if sha is None and str(info["archive_info"].get("hash", "")).startswith("sha256="):
                sha = info["archive_info"]["hash"].split("=", 1)[1]
            path = urllib.parse.urlsplit(url).path
            kind = "wheel" if path.endswith(".whl") else "sdist"
            out.append(Resolved(name, version, url, kind, sha, bool(item.get("requested"))))
        elif "dir_info" in info:
            spec = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
            out.append(Resolved(name, version, url, "source", None,
                                bool(item.get("requested")), spec))
        elif "vcs_info" in info:
            vcs = info["vcs_info"]
            spec = f"{vcs['vcs']}+{url}@{vcs['commit_id']}"
            out.append(Resolved(name, version, url, "source", None,
                                bool(item.get("requested")), spec))
        else:
            raise ResolutionError(f"pip chose {name} {version} from {url!r}, which we cannot keep")
    return sorted(out, key=lambda r: (r.name, r.version))


def target_pip_options(target: Target) -> list[str]:
    """The pip options that make it choose files for *target*: wheels only, every tag."""
    version = ("{}.{}".format(*target.python_version) if target.micro is None
               else target.full_version)
    args = ["--only-binary=:all:", "--python-version", version,
            "--implementation", target.implementation]
    for abi in target.abis or [a for a in target.abi_tags() if target.implementation == "pp"]:
        args += ["--abi", abi]
    # A pure-only target: "any" (without --platform pip takes this machine's).
    for platform in target.platform_tags() or ["any"]:
        args += ["--platform", platform]
    return args


def resolve_target(
    pip: PipRunner,
    target: Target | None,
    requirement_args: Sequence[str],
    *,
    pip_options: Sequence[str] = (),
    find_links: Sequence[str] = (),
    keep: Path | None = None,
) -> list[Resolved]:
    """Ask pip which distributions *target* needs (``None``: this interpreter).

    For a foreign target pip may only consider wheels (``--only-binary=:all:``);
    wheels we built from sdists are offered through *find_links*. With *keep*
    (a folder that does not exist yet), the files and index pages pip fetched
    while it resolved are left there (:func:`wheelhouse._pip.read_kept`).
    """
    from wheelhouse._pip import SubprocessPip

    if keep is not None and isinstance(pip, SubprocessPip):
        pip = pip.keeping(keep)
    with scratch_dir("wheelhouse-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                str(report), *pip_options]
        for link in find_links:
            args += ["--find-links", link]
        if target is not None:
            args += ["--target", str(Path(tmp) / "target"), *target_pip_options(target)]
        args += list(requirement_args)
        where = f"for {target}" if target is not None else "for this interpreter"
        try:
            result = pip(args)
        except PipError as e:
            if "DO NOT MATCH THE HASHES" in e.stderr:
                # pip downloaded a file to read its metadata (the index offers no
                # PEP 658 metadata) and its bytes are not the ones a hash names.
                raise IntegrityError(
                    f"a downloaded file does not match its hash; nothing entered the store:\n"
                    f"{e.stderr_tail}",
                    hint="either a --hash in your requirements is out of date, or the index "
                    "or a proxy served different bytes; do not trust them until you know which",
                ) from e
            if "metadata-generation-failed" in e.stderr or (
                "subprocess-exited-with-error" in e.stderr
            ):
                # pip ran a package's build code to learn its metadata, and it failed.
                raise BuildError(
                    f"a package's build failed while resolving {where}:\n{e.stderr_tail}",
                    hint="the build needs its compilers and build dependencies; "
                    "the package is named above",
                ) from e
            raise ResolutionError(
                f"pip could not resolve the requirements {where}:\n{e.stderr_tail}",
                hint="check the names and versions above and the index pip used "
                "(pip config list)",
            ) from e
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"pip wrote no readable report: {e}") from e
    _warn_if_a_source_was_skipped(result.stderr, where)
    return parse_report(data)


def _warn_if_a_source_was_skipped(stderr: str, where: str) -> None:
    """Say so when pip resolved without a source it could not reach.

    pip retries a failing index, then goes on with the others, saying so at
    debug level only: with a mirror that answers and a main index that does
    not, it picks older versions and succeeds. A keeping pip (the one
    ``build`` runs) says so on stderr (:data:`wheelhouse._pip.SKIPPED_MARK`).
    """
    from wheelhouse._pip import SKIPPED_MARK

    urls = [line.removeprefix(SKIPPED_MARK).split(": ", 1)[0]
            for line in stderr.splitlines() if line.startswith(SKIPPED_MARK)]
    hosts = list(dict.fromkeys(urllib.parse.urlsplit(url).hostname or url for url in urls))
    if not hosts:
        return
    log.warning(
        "pip could not reach %s while resolving %s and went on with the sources that "
        "answered: what it chose may be older than the newest release; build again with "
        "--refresh once it answers ('pip config list' shows the indexes)",
        ", ".join(hosts), where)
