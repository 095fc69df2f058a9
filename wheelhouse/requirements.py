"""Requirement files: checked line by line before pip sees them, and digested for caching."""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelhouse.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "RequirementLine",
    "RequirementProblem",
    "RequirementsScan",
    "location_key",
    "refuse_requirements_file_as_requirement",
    "requirements_from_pyproject",
    "scan_requirement_files",
    "split_direct_requirement",
]

# Options a requirements file may hold (pip's). Those that take a value, and
# whether the value names another requirements file to read.
_NESTED = {"-r": "requirement", "--requirement": "requirement",
           "-c": "constraint", "--constraint": "constraint"}
_WITH_VALUE = {"-i", "--index-url", "--pypi-url", "--extra-index-url", "-f", "--find-links",
               "--trusted-host", "--only-binary", "--no-binary", "--use-feature",
               "--all-releases", "--only-final",
               "--config-settings", "-C", "--global-option", "--hash"}
_FLAGS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes", "--no-require-hashes"}
#: pip 26.3's per-project pre-release switches, by the name of the set each adds to.
_RELEASE_OPTIONS = {"--all-releases": "all_releases", "--only-final": "only_final"}
_EDITABLE = {"-e", "--editable"}
#: Short options that take a value, which may be written right after them ("-rfile").
_SHORT_WITH_VALUE = {"-r", "-c", "-i", "-f", "-e", "-C"}
#: Every long option of a requirements file (a unique prefix names one, as in pip).
_LONG = sorted(o for o in (*_NESTED, *_WITH_VALUE, *_FLAGS, *_EDITABLE) if o.startswith("--"))
_HASH = re.compile(r"(sha256|sha384|sha512):[0-9a-fA-F]+\Z")
_COMMENT = re.compile(r"(^|\s+)#.*$")


@dataclass(frozen=True, slots=True)
class RequirementProblem:
    """One bad line."""

    #: The file.
    path: str
    #: Its 1-based line number.
    line_number: int
    #: The line as written.
    line: str
    #: What is wrong.
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.reason}: {self.line.strip()!r}"


@dataclass(frozen=True, slots=True)
class RequirementLine:
    """One requirement (or constraint) as a file states it."""

    #: The requirement as written, without options.
    text: str
    #: ``--hash`` values on the line (``sha256:<hex>``).
    hashes: tuple[str, ...]
    #: Where it was read: ``file:line``.
    where: str
    #: True when it came from a constraints file (``-c``).
    constraint: bool = False


@dataclass(slots=True)
class RequirementsScan:
    """Every requirements file read (nested ones too) and what they ask for."""

    #: Every file read, in order.
    files: list[Path] = field(default_factory=list)
    #: Requirement lines found (without options), for reporting.
    requirements: list[str] = field(default_factory=list)
    #: True when any line carries ``--hash`` (pip's hash-checking mode).
    hashes: bool = False
    #: Every requirement and constraint line, in order.
    lines: list[RequirementLine] = field(default_factory=list)
    #: True when a file says ``--pre``.
    pre: bool = False
    #: True when a file says ``--require-hashes``.
    require_hashes: bool = False
    #: True when a file says ``--no-require-hashes`` (pip: a ``--hash`` on a
    #: line checks that requirement's files, without hash-checking mode).
    no_require_hashes: bool = False
    #: The files' pre-release switches, in the order pip applies them:
    #: ``("pre", "")`` for ``--pre``, ``("all_releases", VALUE)`` for
    #: ``--all-releases VALUE``, ``("only_final", VALUE)`` for ``--only-final VALUE``.
    release_control: list[tuple[str, str]] = field(default_factory=list)
    #: Index options the files give (``--index-url U``, ``--extra-index-url U``, ``--no-index``).
    index_options: list[str] = field(default_factory=list)
    #: ``--find-links`` locations the files give, as written, and a relative
    #: one also as pip reads it (from the file's directory, when it is there).
    find_links: list[str] = field(default_factory=list)
    #: ``--trusted-host`` values the files give.
    trusted_hosts: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """sha256 over every file's path and bytes: the same inputs, the same digest."""
        h = hashlib.sha256()
        for path in self.files:
            h.update(str(path).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
        return h.hexdigest()


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw)
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            out.append((start, buffer))
        buffer = ""
    if buffer.strip():
        out.append((start, buffer))
    return out


def looks_like_path_or_url(text: str) -> bool:
    """True for a requirement that is a path or URL rather than a name."""
    return (
        "://" in text
        or text.startswith((".", "/", "~", "file:"))
        or text.endswith((".whl", ".tar.gz", ".zip"))
        or "/" in text.split(";")[0]
    )


def location_key(text: str) -> str:
    """A path or URL as a comparable string: file URLs and paths as absolute paths."""
    import os
    import urllib.parse

    text = text.strip().split("#", 1)[0]
    if text.startswith("file:"):
        return os.path.normpath(urllib.parse.unquote(urllib.parse.urlsplit(text).path))
    if "://" in text:
        return text
    return os.path.normpath(str(Path(text).expanduser().absolute()))


# pip's ``_strip_extras``: extras written after a local path (``./project[fast]``).
_PATH_EXTRAS = re.compile(r"(.+)(\[[^\]]+\])\Z")


def split_direct_requirement(text: str) -> tuple[str, str, str]:
    """A path or URL requirement, split as pip splits it: (location, extras, marker).

    ``name[x] @ URL ; marker`` gives the URL, ``[x]`` and the marker; a bare path
    (``./project[x] ; marker``) its extras and marker too (pip takes a ``;``
    after a path, ``"; "`` after a URL). Extras come back as written, with
    their brackets, or empty; so does the marker.

    >>> split_direct_requirement("./mine[fast]; python_version >= '3.10'")
    ('./mine', '[fast]', "python_version >= '3.10'")
    >>> split_direct_requirement("mine[a,b] @ file:///src/mine ; os_name == 'posix'")
    ('file:///src/mine', '[a,b]', "os_name == 'posix'")
    """
    name_part, at, rest = text.partition(" @ ")
    if at:
        # pip: a line that is not a bare URL ends its requirement at the first ";".
        location, _, marker = rest.partition(";")
        extras = "[" + name_part.split("[", 1)[1].split("]", 1)[0] + "]" if "[" in name_part else ""
        return location.strip(), extras.replace(" ", ""), marker.strip()
    is_url = "://" in text or text.startswith("file:")
    location, _, marker = text.partition("; " if is_url else ";")
    location, extras = location.strip(), ""
    # (pip normalises the path first: "./project[fast]/" has its extras too.)
    if not is_url and (m := _PATH_EXTRAS.match(location.rstrip("/") or location)):
        location, extras = m.group(1), m.group(2).replace(" ", "")
    return location, extras, marker.strip()


def refuse_requirements_file_as_requirement(texts: Sequence[str]) -> None:
    """A requirement argument naming a requirements file means a forgotten ``-r``: say so.

    (pip would look for a project called ``requirements.txt`` on the index.)
    """
    for text in texts:
        if text.endswith((".txt", ".in", ".toml")) and Path(text).is_file():
            raise InvalidInputError(
                f"{text!r} is a file, given as a requirement",
                hint=f"to read the requirements in it, pass it with -r: -r {text}")


def scan_requirement_files(
    paths: list[Path], *, validate: bool = True, constraints: Sequence[Path] = ()
) -> RequirementsScan:
    """Read requirements files (and the files they nest) and check every line.

    Raises InvalidInputError naming file:line for each malformed line, each
    ``-e`` line (an editable install has no wheel to keep) and each missing file.
    With *validate* false, requirement strings are not parsed (a cheap scan that
    still finds every nested file, for a cache key). Files in *constraints* are
    read as ``-c`` files: their lines are recorded as constraints.
    """
    if validate:
        from packaging.requirements import InvalidRequirement, Requirement

    scan = RequirementsScan()
    problems: list[str] = []
    seen: set[tuple[Path, bool]] = set()

    def read(path: Path, via: str | None, constraint: bool = False) -> None:
        resolved = path.resolve()
        if (resolved, constraint) in seen:
            return
        seen.add((resolved, constraint))
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM, as pip allows
        except FileNotFoundError:
            problems.append(f"{via + ': ' if via else ''}no such requirements file: {str(path)!r}")
            return
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"cannot read requirements file {str(path)!r}: {e}")
            return
        scan.files.append(path)
        for number, line in _logical_lines(text):
            where = f"{path}:{number}"
            # As pip does: the requirement runs up to the first word that
            # starts with "-"; the rest are options (and may be quoted).
            tokens = line.split()
            cut = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
            try:
                option_words = shlex.split(" ".join(tokens[cut:]), posix=True)
            except ValueError as e:
                problems.append(str(RequirementProblem(str(path), number, line, str(e))))
                continue
            words = [" ".join(tokens[:cut])] if cut else []
            words += option_words
            first = words[0]
            name, eq, value = first.partition("=")
            if first[:2] in _SHORT_WITH_VALUE and len(first) > 2:
                # As optparse reads it (pip's parser): "-rother.txt" is "-r other.txt".
                name, eq, value = first[:2], "=", first[2:]
            elif name.startswith("--") and name not in _LONG:
                # A unique prefix of a long option, as optparse takes it ("--find").
                matches = [o for o in _LONG if o.startswith(name)]
                name = matches[0] if len(matches) == 1 else name
            option = name if first.startswith("-") else None
            # An option's value: "--opt=VALUE" or "--opt VALUE".
            argument = value if eq else (words[1] if len(words) > 1 else "")
            if option in _EDITABLE:
                problems.append(str(RequirementProblem(
                    str(path), number, line,
                    "editable requirements have no wheel to keep; list the project's path "
                    "without -e")))
                continue
            if option in _NESTED:
                if not argument:
                    problems.append(str(RequirementProblem(str(path), number, line,
                                                           f"{option} needs a file name")))
                    continue
                read(path.parent / argument, where,
                     constraint or _NESTED[option] == "constraint")
                continue
            if option is not None:
                scan.pre |= option == "--pre"
                if option == "--pre":
                    scan.release_control.append(("pre", ""))
                elif option in _RELEASE_OPTIONS:
                    if not argument or argument.startswith("-"):
                        problems.append(str(RequirementProblem(
                            str(path), number, line,
                            f"{option} needs a value: :all:, :none: or project names "
                            "with commas between them")))
                        continue
                    scan.release_control.append((_RELEASE_OPTIONS[option], argument))
                if option in ("-i", "--index-url", "--pypi-url", "--extra-index-url"):
                    scan.index_options += [
                        "--index-url" if option == "--pypi-url" else option, argument]
                elif option == "--no-index":
                    scan.index_options.append(option)
                elif option in ("-f", "--find-links"):
                    scan.find_links.append(argument)
                    if "://" not in argument and (path.parent / argument).exists():
                        scan.find_links.append(str(path.parent / argument))
                elif option == "--trusted-host":
                    scan.trusted_hosts.append(argument)
                scan.require_hashes |= option == "--require-hashes"
                scan.no_require_hashes |= option == "--no-require-hashes"
                if option in _WITH_VALUE or option in _FLAGS:
                    continue
                problems.append(str(RequirementProblem(str(path), number, line,
                                                       f"unknown option {option}")))
                continue
            requirement, hashes = words[0], _hashes(words[1:])
            for h in hashes:
                if not _HASH.match(h):
                    problems.append(str(RequirementProblem(
                        str(path), number, line, f"invalid --hash {h!r} (use sha256:<hex>)")))
            scan.hashes |= bool(hashes)
            if not requirement:
                problems.append(str(RequirementProblem(str(path), number, line,
                                                       "no requirement before the options")))
                continue
            scan.requirements.append(requirement)
            scan.lines.append(RequirementLine(requirement, tuple(hashes), where, constraint))
            if not validate or looks_like_path_or_url(requirement) or "${" in requirement:
                continue
            try:
                Requirement(requirement)
            except InvalidRequirement as e:
                reason = str(e).splitlines()[0]
                problems.append(str(RequirementProblem(str(path), number, line,
                                                       f"invalid requirement ({reason})")))

    for p in paths:
        read(p, None)
    for p in constraints:
        read(p, None, True)
    if scan.require_hashes and scan.no_require_hashes:
        problems.append("--require-hashes and --no-require-hashes are mutually exclusive "
                        f"(in {', '.join(str(f) for f in scan.files)})")
    if problems:
        only_missing = all(p.startswith("no such requirements file") for p in problems)
        raise InvalidInputError(
            f"{len(problems)} problem(s) in the requirements:\n  " + "\n  ".join(problems),
            hint="check the file names (and the directory you run from)" if only_missing
            else "fix the lines above; see 'pip help install' for the file format",
        )
    return scan


def _hashes(words: list[str]) -> list[str]:
    hashes: list[str] = []
    for i, word in enumerate(words):
        if word.startswith("--hash="):
            hashes.append(word.split("=", 1)[1])
        elif word == "--hash" and i + 1 < len(words):
            hashes.append(words[i + 1])
    return hashes


def requirements_from_pyproject(
    path: Path, *, extras: Sequence[str] = (), groups: Sequence[str] = ()
) -> list[str]:
    """The requirements a ``pyproject.toml`` declares.

    That is its PEP 621 dependencies, the named optional-dependency *extras*,
    and the named PEP 735 dependency *groups*. Raises InvalidInputError naming the file for anything missing or dynamic.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"no such file: {str(path)!r}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InvalidInputError(f"{path}: not a readable pyproject.toml ({e})") from e

    def table(value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidInputError(f"{path}: {where} must be a table, not {value!r}")
        return value

    def strings(value: object, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInputError(f"{path}: {where} must be a list of strings, not {value!r}",
                                    hint='for example: dependencies = ["requests>=2"]')
        return value

    project = table(data.get("project", {}), "[project]")
    out: list[str] = []
    if "dependencies" in strings(project.get("dynamic", []), "[project] dynamic"):
        raise InvalidInputError(
            f"{path}: [project] dependencies are dynamic, so they cannot be read statically",
            hint="build the project itself (wheelhouse build ./project) or list the "
            "dependencies in a requirements file",
        )
    out += strings(project.get("dependencies", []), "[project] dependencies")
    optional = table(project.get("optional-dependencies", {}),
                     "[project.optional-dependencies]")
    for extra in extras:
        if extra not in optional:
            raise InvalidInputError(
                f"{path}: no optional-dependencies extra {extra!r}",
                hint="extras here: " + (", ".join(sorted(optional)) or "none"),
            )
        out += strings(optional[extra], f"optional-dependencies {extra!r}")
    all_groups = table(data.get("dependency-groups", {}), "[dependency-groups]")

    def expand(group: str, seen: tuple[str, ...]) -> list[str]:
        if group in seen:
            raise InvalidInputError(f"{path}: dependency group {group!r} includes itself")
        if group not in all_groups:
            raise InvalidInputError(
                f"{path}: no dependency group {group!r}",
                hint="groups here: " + (", ".join(sorted(all_groups)) or "none"),
            )
        entries = all_groups[group]
        if not isinstance(entries, list):
            raise InvalidInputError(
                f"{path}: dependency group {group!r} must be a list, not {entries!r}")
        items: list[str] = []
        for item in entries:
            if isinstance(item, dict) and "include-group" in item:
                items += expand(str(item["include-group"]), (*seen, group))
            elif isinstance(item, str):
                items.append(item)
            else:
                raise InvalidInputError(
                    f"{path}: dependency group {group!r} holds {item!r}, which is neither "
                    "a requirement string nor an include-group table")
        return items

    for group in groups:
        out += expand(group, ())
    problems = []
    for text in out:
        try:
            Requirement(text)
        except InvalidRequirement as e:
            problems.append(f"{path}: invalid requirement {text!r} ({str(e).splitlines()[0]})")
    if problems:
        raise InvalidInputError("\n".join(problems))
    return out
