"""The simple index: PEP 503/691 pages (with PEP 592, 629, 658/714, 700) rendered from a manifest.

Every function here is pure: data in, bytes out. Writing the pages is
:meth:`wheelhouse.house.House.write_index`'s job.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import re
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from wheelhouse.house import FileEntry, Manifest

__all__ = [
    "API_VERSION",
    "FIND_LINKS_PAGE",
    "JSON_CONTENT_TYPE",
    "SIMPLE_DIR",
    "iter_index_pages",
    "project_page_paths",
    "render_find_links",
    "render_index",
    "render_project_html",
    "render_project_json",
    "render_project_pages",
    "render_root_html",
    "render_root_json",
    "splice_find_links",
]

#: Repository API version (PEP 629 meta tag, PEP 691 ``meta.api-version``).
#: 1.1 is PEP 700 (``versions``, ``size``, ``upload-time``).
API_VERSION = "1.1"
#: The PEP 691 JSON media type.
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
#: Directory of the index inside a house.
SIMPLE_DIR = "simple"

#: Bumped whenever the pages change for the same manifest, so that a house
#: indexed by an older wheelhouse gets every page rewritten, not just the
#: changed ones. 2: PEP 658 metadata under the PEP 714 names only; 3: none on
#: the find-links page; 4: CR and LF as references, other control characters
#: and C1 and noncharacters as they are (see encode_html).
RENDERING = 4
#: The flat page listing every file, for ``pip --find-links URL``.
FIND_LINKS_PAGE = "find-links.html"
#: From ``simple/<project>/``, the way to ``files/``.
_FILES_FROM_PROJECT = "../../files/"


_SPECIAL = re.compile(r"[&<>\"'\r\n]")
# Line breaks go as character references, which every HTML parser gives back
# as they were (an HTML5 parser reads a raw CR LF as LF), and a page keeps one
# link a line. Other control characters stay raw: Python's parser (pip's)
# drops them when they come as references.
_CONTROL = re.compile(r"[\r\n]")


def _escape(value: str) -> str:
    """``html.escape(value, quote=True)``, without importing ``html``; CR and LF too.

    (Its entity table costs every command a millisecond at start-up.)
    """
    out = (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
           .replace('"', "&quot;").replace("'", "&#x27;"))
    if _CONTROL.search(out):
        out = _CONTROL.sub(lambda m: f"&#{ord(m.group())};", out)
    return out


# Non-ASCII characters that a character reference would not bring back: HTML
# parsers read &#128;-&#159; as Windows-1252 (&#128; is the euro sign) and
# Python's drops noncharacters (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF). These go
# as UTF-8 bytes (the pages say charset=utf-8); every other non-ASCII
# character as a reference, and a lone surrogate (no UTF-8 for it) too.
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_RAW = re.compile(r"[\x80-\x9f\ufdd0-\ufdef]|[\ufffe\uffff]"
                  r"|[\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff"
                  r"\U0004fffe\U0004ffff\U0005fffe\U0005ffff\U0006fffe\U0006ffff"
                  r"\U0007fffe\U0007ffff\U0008fffe\U0008ffff\U0009fffe\U0009ffff"
                  r"\U000afffe\U000affff\U000bfffe\U000bffff\U000cfffe\U000cffff"
                  r"\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff"
                  r"\U0010fffe\U0010ffff]")


def _reference(m: re.Match[str]) -> str:
    c = m.group()
    return c if _RAW.match(c) else f"&#{ord(c)};"


_NOT_CARRIED = re.compile(r"[\x00\ud800-\udfff]")


def html_carryable(text: str) -> str:
    """*text* with what no HTML page can carry (NUL, a lone surrogate) as U+FFFD.

    An HTML parser reads NUL as U+FFFD; a lone surrogate has no UTF-8 at all.
    """
    return _NOT_CARRIED.sub("\ufffd", text) if _NOT_CARRIED.search(text) else text


def encode_html(text: str) -> bytes:
    """HTML text as bytes: ASCII, with each non-ASCII character as a parser reads it back."""
    if text.isascii():
        return text.encode("ascii")
    return _NON_ASCII.sub(_reference, text).encode("utf-8")


def _attr(value: str) -> str:
    # Most strings (file names, digests) hold nothing to escape: skip the work.
    return _escape(value) if _SPECIAL.search(value) else value


# Requires-Python values, escaped: a few of them recur on thousands of links
# (and ">=3.8" always needs its escape).
_ESCAPED: dict[str, str] = {}


def _attr_recurring(value: str) -> str:
    """:func:`_attr`, remembered (up to a few thousand values)."""
    found = _ESCAPED.get(value)
    if found is None:
        found = _attr(value)
        if len(_ESCAPED) < 4096:
            _ESCAPED[value] = found
    return found


def _page(title: str, body: Iterable[str]) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta charset="utf-8">',
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>{_escape(title)}</title>",
        "  </head>",
        "  <body>",
        *(f"    {line}" for line in body),
        "  </body>",
        "</html>",
        "",
    ]
    # Non-ASCII text travels as character references (see encode_html).
    return encode_html("\n".join(lines))


#: A JSON string, non-ASCII as \\u escapes (json.dumps' own encoder for ensure_ascii).
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _json(data: Mapping[str, Any]) -> bytes:
    # ensure_ascii: any string from a package travels as \\u escapes, never raw.
    return json.dumps(
        data, sort_keys=True, ensure_ascii=True, separators=(",", ":")
    ).encode() + b"\n"


def _anchor(entry: FileEntry, prefix: str, *, metadata: bool = True) -> str:
    # Assembled from fragments: *prefix* holds nothing to escape, so the
    # name is looked at once for both places it appears.
    name = _attr(entry.filename)
    out = f'<a href="{prefix}{name}#sha256={entry.sha256}"'
    if entry.requires_python:
        out += f' data-requires-python="{_attr_recurring(entry.requires_python)}"'
    digest = entry.metadata_sha256
    if digest and metadata:
        # The PEP 714 name only: pip 22.3-23.0 read the PEP 658 name and then fail
        # on a metadata file whose Name differs from the link's in '-', '_' or '.'
        # (pypa/pip#12038), and fail on the JSON key outright (PEP 714).
        out += f' data-core-metadata="sha256={digest}"'
    if entry.yanked is not None:
        out += f' data-yanked="{_attr(entry.yanked)}"'
    return f"{out}>{name}</a><br>"


def render_root_html(projects: Iterable[str]) -> bytes:
    """The PEP 503 root page listing every (normalised) project name.

    >>> b'<a href="demo-pkg/">demo-pkg</a>' in render_root_html(["demo-pkg"])
    True
    """
    body = [f'<a href="{_attr(p)}/">{_escape(p)}</a><br>' for p in sorted(projects)]
    return _page("Simple index", body)


def render_root_json(projects: Iterable[str]) -> bytes:
    """The PEP 691 root: ``{"meta": …, "projects": [{"name": …}]}``.

    >>> json.loads(render_root_json(["b", "a"]))["projects"]
    [{'name': 'a'}, {'name': 'b'}]
    """
    return _json(
        {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in sorted(projects)]}
    )


def _sorted_files(files: Iterable[FileEntry]) -> list[FileEntry]:
    return sorted(files, key=lambda e: e.filename)


def render_project_html(project: str, files: Sequence[FileEntry]) -> bytes:
    """The PEP 503 page of one project: one anchor per file, relative to the page.

    Each anchor carries ``#sha256=``, and where they apply
    ``data-requires-python`` (escaped), ``data-core-metadata`` (PEP 714/658;
    never the old ``data-dist-info-metadata`` name), ``data-yanked`` (PEP 592).
    """
    body = [f"<h1>Links for {_escape(project)}</h1>"]
    body.extend(_anchor(e, _FILES_FROM_PROJECT) for e in _sorted_files(files))
    return _page(f"Links for {project}", body)


@functools.lru_cache(maxsize=4096)
def _parsed_version(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _sorted_versions(versions: Iterable[str]) -> list[str]:
    """Versions in PEP 440 order (strings that are none first, as strings sort).

    Equal versions spelt apart (``1.0``, ``1.0.0``) keep the order of their
    spellings: the same page whatever order the set gave them in.
    """
    valid: list[str] = []
    invalid: list[str] = []
    for v in sorted(versions):
        (valid if _parsed_version(v) is not None else invalid).append(v)
    # The key is the Version alone (no tuple): one comparison per step.
    valid.sort(key=_parsed_version)  # type: ignore[arg-type]
    return invalid + valid


def render_project_json(project: str, files: Sequence[FileEntry]) -> bytes:
    """The PEP 691 JSON page of one project, with the PEP 700 fields.

    The bytes ``json.dumps(page, sort_keys=True, ensure_ascii=True,
    separators=(",", ":"))`` would give, assembled directly with the C string
    encoder (a house may have 10,000 of these pages to write).
    """
    q = _json_string
    items = []
    for e in _sorted_files(files):
        meta = e.metadata_sha256
        requires = e.requires_python
        yanked = e.yanked
        # "core-metadata" (PEP 714) only: the old name breaks pip 22.3-23.0.
        item = ('{"core-metadata":' + ('{"sha256":' + q(meta) + "}" if meta else "false")
                + ',"filename":' + q(e.filename)
                + ',"hashes":{"sha256":' + q(e.sha256) + "}"
                + ',"requires-python":' + ("null" if requires is None else q(requires))
                + ',"size":' + str(int(e.size)))
        if e.upload_time is not None:
            item += ',"upload-time":' + q(e.upload_time)
        item += (',"url":' + q(_FILES_FROM_PROJECT + e.filename)
                 + ',"yanked":' + (q(yanked) if yanked else "false" if yanked is None else "true")
                 + "}")
        items.append(item)
    versions = _sorted_versions({e.version for e in files})
    return ('{"files":[' + ",".join(items) + '],"meta":{"api-version":' + q(API_VERSION)
            + '},"name":' + q(project) + ',"versions":[' + ",".join(map(q, versions))
            + "]}\n").encode()


def render_find_links(files: Iterable[FileEntry]) -> bytes:
    """A flat page linking every file, for ``pip --find-links``; it sits at the house's root.

    Its links carry hashes, requires-python and yank state but no PEP 658
    metadata: a find-links install downloads the wheels it picks anyway, and
    with the metadata advertised pip fetches a ``.metadata`` file first for
    every one of them (40 extra requests, 0.15 s of pip's time for a
    40-package install through ``wheelhouse run``). Resolvers that look at
    many candidates use ``simple/``, whose pages carry it.
    """
    body = [_anchor(e, "files/", metadata=False) for e in _sorted_files(files)]
    return _page("Links", body)


# A page is its head (8 lines), one line per link, and its tail (3 lines, the
# last empty): see _page.
_HEAD_LINES = 8
_TAIL_LINES = 3


def _link_name(line: bytes) -> bytes:
    # The file name in one link line: between 'href="files/' and '#'. File
    # names never hold '#' or anything HTML escapes (see validate_component).
    start = line.index(b'href="files/') + 12
    return line[start : line.index(b"#", start)]


def splice_find_links(
    old_page: bytes,
    old_count: int,
    removed: Iterable[str],
    added: Iterable[FileEntry],
) -> bytes | None:
    """The find-links page of a changed house, edited from the previous one.

    *old_page* is the page as :func:`render_find_links` rendered it for
    *old_count* files; *removed* names files whose links go, *added* the
    entries whose links come (a changed file is in both). Each edit finds its
    place by bisection, so the result equals ``render_find_links`` of the new
    list, byte for byte, at the cost of a few list edits instead of one anchor
    per file. Returns None when *old_page* does not have the shape of such a
    page.
    """
    lines = old_page.split(b"\n")
    if len(lines) != old_count + _HEAD_LINES + _TAIL_LINES:
        return None
    head, links, tail = (lines[:_HEAD_LINES], lines[_HEAD_LINES:-_TAIL_LINES],
                         lines[-_TAIL_LINES:])
    try:
        drop = set()
        for name in removed:
            key = name.encode("ascii")
            i = bisect_left(links, key, key=_link_name)
            if i >= len(links) or _link_name(links[i]) != key:
                return None  # not on the old page
            drop.add(i)
        for i in sorted(drop, reverse=True):
            del links[i]
        for entry in sorted(added, key=lambda e: e.filename):
            key = entry.filename.encode("ascii")
            i = bisect_left(links, key, key=_link_name)
            if i < len(links) and _link_name(links[i]) == key:
                return None  # a link that was not removed first
            links.insert(i, encode_html("    " + _anchor(entry, "files/", metadata=False)))
    except (ValueError, UnicodeEncodeError):
        return None  # a line that is no link, or a name that needs escaping
    return b"\n".join([*head, *links, *tail])


def project_page_paths(project: str) -> tuple[str, str]:
    """Paths (relative to the house) of a project's HTML and JSON pages."""
    return (f"{SIMPLE_DIR}/{project}/index.html", f"{SIMPLE_DIR}/{project}/index.json")


def render_project_pages(project: str, files: Sequence[FileEntry]) -> dict[str, bytes]:
    """Both pages of one project, keyed by their path relative to the house."""
    html_path, json_path = project_page_paths(project)
    return {
        html_path: render_project_html(project, files),
        json_path: render_project_json(project, files),
    }


def iter_index_pages(manifest: Manifest) -> Iterator[tuple[str, bytes]]:
    """Every index page of a house as ``(path relative to the house, bytes)``.

    Project pages come first, then the root pages and the find-links page, so
    a writer that follows this order never links to a page not yet written.
    Same manifest, same bytes: pages are sorted and carry no clock.
    """
    projects = manifest.projects()
    for project in sorted(projects):
        yield from render_project_pages(project, projects[project]).items()
    yield f"{SIMPLE_DIR}/index.html", render_root_html(projects)
    yield f"{SIMPLE_DIR}/index.json", render_root_json(projects)
    yield FIND_LINKS_PAGE, render_find_links(manifest.files)


def render_index(manifest: Manifest) -> dict[str, bytes]:
    """Every index page of a house, keyed by path relative to the house."""
    return dict(iter_index_pages(manifest))
