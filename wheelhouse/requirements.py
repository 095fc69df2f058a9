"""Requirement files: checked line by line before pip sees them, and digested for caching."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelhouse.errors import InvalidInputError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "RequirementLine",
    "RequirementProblem",
    "RequirementsScan",
    "expand_variables",
    "location_key",
    "redact_url",
    "refuse_requirements_file_as_requirement",
    "requirements_from_pyproject",
    "scan_requirement_files",
    "split_direct_requirement",
]

#: pip's ``${NAME}`` in a requirements file: upper-case letters, digits and "_".
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
#: pip's comment: a "#" at the start of a line or after whitespace.
_PIP_COMMENT = re.compile(r"(^|\s+)#.*$")
#: pip's PEP 263 coding line (in the first two lines, when they start with "#").
_CODING = re.compile(rb"coding[:=]\s*([-\w.]+)")
#: Byte-order marks pip honours, longest first where one is the other's prefix.
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xfe\xff", "utf-16-be"),
         (b"\xff\xfe", "utf-16-le"))
_HASH = re.compile(r"(sha256|sha384|sha512):[0-9a-fA-F]+\Z")


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

    #: The requirement, without options (``${NAME}`` expanded, as pip reads it).
    text: str
    #: ``--hash`` values on the line (``sha256:<hex>``).
    hashes: tuple[str, ...]
    #: Where it was read: ``file:line``.
    where: str
    #: True when it came from a constraints file (``-c``).
    constraint: bool = False
    #: The requirement as the file wrote it, when that differs from *text*
    #: (a ``${TOKEN}`` not expanded): what messages show.
    written: str = ""

    @property
    def shown(self) -> str:
        """The requirement for a message: as written, never an expanded variable's value."""
        return self.written or self.text


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

    #: ``${NAME}`` values pip expands in requirement lines and nested file
    #: names (not in index URLs): they change what is asked for.
    variables: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 over every file's path and bytes, and the variables that change a line."""
        h = hashlib.sha256()
        for path in self.files:
            h.update(str(path).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
        for name, value in sorted(self.variables.items()):
            h.update(f"${{{name}}}={value}".encode() + b"\0")
        return h.hexdigest()


def _decode(data: bytes, path: Path) -> str:
    """A requirements file's text, decoded as pip decodes it.

    A byte-order mark (UTF-8, UTF-16, UTF-32: what Windows PowerShell writes
    for ``pip freeze > requirements.txt``); else a PEP 263 coding line in the
    first two lines; else UTF-8; else the locale's encoding, with a warning.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding)
    for line in data.split(b"\n")[:2]:
        if line[:1] == b"#" and (m := _CODING.search(line)):
            try:
                return data.decode(m.group(1).decode("ascii"))
            except LookupError as e:
                raise UnicodeError(f"unknown encoding in its coding line: {e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        import locale

        fallback = locale.getpreferredencoding(False) or sys.getdefaultencoding()
        log.warning(
            "%s is not UTF-8: read as %s, as pip reads it (say which with a line "
            "'# -*- coding: ... -*-' at the top)", path, fallback)
        return data.decode(fallback)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    r"""The logical lines pip reads: continuations joined, comments and blank lines gone.

    As pip's ``join_lines`` and ``ignore_comments``: a line ending in "\" is
    joined to the next with nothing between (unless it is a comment line);
    comments go after the joining, so a comment that ends in "\" takes the
    next line with it; each line keeps the number of its first physical line.
    """
    joined: list[tuple[int, str]] = []
    parts: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        is_comment = _PIP_COMMENT.match(line) is not None
        if not line.endswith("\\") or is_comment:
            if is_comment:
                line = " " + line
            if parts:
                parts.append(line)
                joined.append((first, "".join(parts)))
                parts = []
            else:
                joined.append((number, line))
        else:
            if not parts:
                first = number
            parts.append(line.strip("\\"))
    if parts:
        joined.append((first, "".join(parts)))
    out: list[tuple[int, str]] = []
    for number, line in joined:
        line = _PIP_COMMENT.sub("", line).strip()
        if line:
            out.append((number, line))
    return out


def expand_variables(line: str, used: dict[str, str] | None = None) -> str:
    """``${NAME}`` replaced from the environment, as pip does (an unset or empty one stays).

    The variables replaced go into *used* (name: value), when given.
    """
    import os

    def value(m: re.Match[str]) -> str:
        got = os.environ.get(m.group(1))
        if not got:
            return m.group(0)
        if used is not None:
            used[m.group(1)] = got
        return got

    return _ENV_VAR.sub(value, line)


def _values(opts: Any, name: str) -> list[Any]:
    """An appended option's values on a line (none: an empty list)."""
    return list(getattr(opts, name, None) or [])


def _split_line(line: str) -> tuple[str, str]:
    """A line's requirement and its options, as pip's ``break_args_options`` cuts it.

    The requirement runs up to the first word (between single spaces) that
    starts with "-"; the rest are options.
    """
    tokens = line.split(" ")
    cut = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    return " ".join(tokens[:cut]), " ".join(tokens[cut:])


_SHELL_WHITESPACE = re.compile(r"[ \t\r\n]+")


def _split_options(text: str) -> list[str]:
    """``shlex.split``, as pip splits a line's options; quicker where nothing is quoted.

    (shlex reads a character at a time: four-fifths of reading a 5,000-line
    lock with hashes went there.)
    """
    if "'" in text or '"' in text or "\\" in text:
        return shlex.split(text)
    return [word for word in _SHELL_WHITESPACE.split(text) if word]


class _OptionError(Exception):
    """optparse's complaint about a line's options (pip's words)."""


def _line_parser() -> Any:
    """An optparse parser for one line, with the options pip's parser has (26.3).

    optparse is what pip uses, so its ways come with it: several options on a
    line, "--opt=VALUE" and "--opt VALUE", "-rFILE", unique prefixes of long
    options, and its errors (unknown, ambiguous, missing value).
    ``--global-option`` (gone in pip 25.3) is still taken, for older pips.
    Lists default to None (optparse's defaults are shared between parses):
    read them through :func:`_values`.
    """
    import optparse

    class Parser(optparse.OptionParser):
        def exit(self, status: int = 0, msg: str | None = None) -> Any:
            raise _OptionError((msg or "").strip())

        def error(self, msg: str) -> Any:
            raise _OptionError(msg)

    def release(option: Any, _opt: str, value: str, parser: Any) -> None:
        if value.startswith("-"):
            raise _OptionError("--all-releases / --only-final option requires 1 argument.")
        parser.values.release = [*(getattr(parser.values, "release", None) or []),
                                 (option.dest, value)]

    parser = Parser(add_help_option=False)
    add = parser.add_option
    add("-i", "--index-url", "--pypi-url", dest="index_url")
    add("--extra-index-url", dest="extra_index_urls", action="append")
    add("--no-index", action="store_true", default=False)
    add("-c", "--constraint", dest="constraints", action="append")
    add("-r", "--requirement", dest="requirements", action="append")
    add("-e", "--editable", dest="editables", action="append")
    add("-f", "--find-links", dest="find_links", action="append")
    add("--no-binary", action="append")
    add("--only-binary", action="append")
    add("--prefer-binary", action="store_true", default=False)
    add("--require-hashes", action="store_true", default=False)
    add("--no-require-hashes", action="store_true", default=False)
    add("--pre", action="store_true", default=False)
    add("--all-releases", dest="all_releases", action="callback", callback=release,
        type="str")
    add("--only-final", dest="only_final", action="callback", callback=release, type="str")
    add("--trusted-host", dest="trusted_hosts", action="append")
    add("--use-feature", dest="features", action="append")
    add("--hash", dest="hashes", action="append")
    def setting(_option: Any, opt: str, value: str, parser: Any) -> None:
        if "=" not in value:
            raise _OptionError(f"Arguments to {opt} must be of the form KEY=VAL")
        parser.values.config_settings = [*(getattr(parser.values, "config_settings", None)
                                           or []), value]

    add("-C", "--config-settings", dest="config_settings", action="callback",
        callback=setting, type="str")
    add("--global-option", dest="global_options", action="append")
    return parser


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
        return redact_url(text, "")
    return os.path.normpath(str(Path(text).expanduser().absolute()))


def redact_url(text: str, mask: str = "***") -> str:
    """*text* with every URL's user and password replaced by *mask* (removed when empty).

    >>> redact_url("foo @ https://user:s3cret@host.example/foo.whl")
    'foo @ https://***@host.example/foo.whl'
    """
    return re.sub(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@",
                  lambda m: m.group(1) + (mask + "@" if mask else ""), text)


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

    parser = _line_parser()
    variables = scan.variables

    def read(path: Path, via: str | None, constraint: bool = False,
             including: tuple[str, ...] = ()) -> None:
        # As pip: a file is read each time it is named (its --pre again, too),
        # but one that names itself, directly or not, is an error.
        import os

        key = os.path.normpath(os.path.abspath(path))  # noqa: PTH100
        if key in including or len(including) > 64:
            problems.append(f"{via}: {path} recursively references itself"
                            + (f" (through {', '.join(including[1:])})" if including[1:] else ""))
            return
        try:
            text = _decode(path.read_bytes(), path)
        except FileNotFoundError:
            problems.append(f"{via + ': ' if via else ''}no such requirements file: {str(path)!r}")
            return
        except (OSError, UnicodeError) as e:
            problems.append(f"cannot read requirements file {str(path)!r}: {e}")
            return
        scan.files.append(path)
        for number, written in _logical_lines(text):
            where = f"{path}:{number}"
            used: dict[str, str] = {}
            line = expand_variables(written, used)

            def problem(reason: str, written: str = written, number: int = number) -> None:
                # The line as written: an expanded ${TOKEN} never reaches a message.
                problems.append(str(RequirementProblem(str(path), number, written, reason)))

            def parse(options: str) -> Any:
                return parser.parse_args(_split_options(options), parser.get_default_values())[0]

            requirement, options = _split_line(line)
            try:
                opts = parse(options)
            except ValueError as e:  # shlex: an unclosed quote
                problem(f"cannot split the options: {e}")
                continue
            except _OptionError as e:
                problem(str(e))
                continue
            # The line as written, where a ${NAME} was expanded: what messages
            # show of it, and what is kept of its index and find-links locations
            # (a ${TOKEN} stays a variable there: a lock people commit).
            written_requirement, written_options = _split_line(written)
            as_written = opts
            if used:
                with contextlib.suppress(ValueError, _OptionError):
                    as_written = parse(written_options)
            # --all-releases / --only-final act wherever they are, as in pip
            # (its callbacks change the one shared setting even on a requirement line).
            scan.release_control += _values(opts, "release")
            if requirement:
                variables.update(used)
                bad = [h for h in _values(opts, "hashes") if not _HASH.match(h)]
                for h in bad:
                    problem(f"invalid --hash {h!r} (use sha256:<hex>)")
                hashes = [h.lower() if h in bad else h for h in _values(opts, "hashes")]
                scan.hashes |= bool(hashes)
                scan.requirements.append(requirement)
                scan.lines.append(RequirementLine(requirement, tuple(hashes), where, constraint,
                                                  written_requirement if used else ""))
                if not validate or looks_like_path_or_url(requirement) or "${" in requirement:
                    continue
                try:
                    Requirement(requirement)
                except InvalidRequirement as e:
                    problem(f"invalid requirement ({str(e).splitlines()[0]})")
                continue
            if _values(opts, "editables"):
                problem("editable requirements have no wheel to keep; list the project's "
                        "path without -e")
                continue
            nested_reqs, nested_cons = _values(opts, "requirements"), _values(opts, "constraints")
            if nested_reqs or nested_cons:
                variables.update(used)
                # pip takes the first -r (else the first -c) of a line; what a
                # nested -r holds is required, even inside a constraints file.
                nested = nested_reqs[0] if nested_reqs else nested_cons[0]
                target = _nested_path(path, nested)
                if isinstance(target, str):
                    if used:  # said of the name as written: never a variable's value
                        said = _nested_path(path, (_values(as_written, "requirements")
                                                   or _values(as_written, "constraints"))[0])
                        target = said if isinstance(said, str) else (
                            "the requirements file it names cannot be read")
                    problem(target)
                    continue
                read(target, where, not nested_reqs, (*including, key))
                continue
            # An option line, read as pip's handle_option_line reads it. Index
            # and find-links locations are kept as written.
            if opts.no_index:
                scan.index_options.append("--no-index")
            if opts.index_url:
                scan.index_options += ["--index-url", as_written.index_url or opts.index_url]
            extras = _values(as_written, "extra_index_urls")
            if len(extras) != len(_values(opts, "extra_index_urls")):
                extras = _values(opts, "extra_index_urls")
            for url in extras:
                scan.index_options += ["--extra-index-url", url]
            if links := _values(opts, "find_links"):  # pip takes the first of a line
                value = links[0]
                scan.find_links.append((_values(as_written, "find_links") or [value])[0])
                if "://" not in value and (path.parent / value).exists():
                    scan.find_links.append(str(path.parent / value))
            scan.trusted_hosts += _values(opts, "trusted_hosts")
            if opts.pre:
                scan.pre = True
                scan.release_control.append(("pre", ""))
            scan.require_hashes |= opts.require_hashes
            scan.no_require_hashes |= opts.no_require_hashes
            if _values(opts, "hashes"):
                log.warning("%s has --hash but no requirement: ignored (as pip ignores it)",
                            where)

    # pip reads the -c files first (their --pre and --only-final come first).
    for p in constraints:
        read(p, None, True)
    for p in paths:
        read(p, None)
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


def _nested_path(parent: Path, nested: str) -> Path | str:
    """Where a ``-r``/``-c`` of *parent* points, as pip finds it; or why it cannot be read.

    A relative path is taken from the parent's directory and normalised as
    pip normalises it (``..`` by name, not through a symlink); a ``file:`` URL
    names a local file; other URLs would need the network.
    """
    import os
    import urllib.parse
    import urllib.request

    try:
        parts = urllib.parse.urlsplit(nested)
    except ValueError as e:  # "http://[oops/": an unclosed IPv6 address
        return f"not a path or URL: {redact_url(nested)!r} ({e})"
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if scheme in ("http", "https"):
        return (f"a requirements file named by URL ({redact_url(nested)}) is not read: "
                "wheelhouse reads them from disk; download it next to this one and name its path")
    # (os.path: pip's abspath + join, which resolve ".." by name, not by the disk.)
    return Path(os.path.normpath(os.path.join(os.path.abspath(parent.parent), nested)))  # noqa: PTH100, PTH118


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
