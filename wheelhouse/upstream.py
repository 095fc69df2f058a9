"""What the upstream index says about the files a build took: upload time and yank state.

pip's report names each file's URL and hash but not when it was uploaded (PEP 700)
or whether it is yanked (PEP 592). Both matter downstream: ``pip
--uploaded-prior-to`` and uv's ``exclude-newer`` need upload times, and a house
should tell the truth about yanked files. So after a build resolves, each
project's page is read from the same indexes pip used (the command line's, the
requirement files', the user's pip configuration), asking for PEP 691 JSON and
reading HTML when that is all there is. A file's facts are taken only from a
page that lists the same file name *and* the same sha256.

This is best effort by design: an index that is down or slow, or a page without
the fields, leaves the fields unknown, never fails the build.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html.parser
import http.client
import json
import logging
import netrc
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelhouse.errors import HashMismatchError
from wheelhouse.index import html_carryable
from wheelhouse.requirements import expand_variables, redact_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "FileFacts",
    "PageFacts",
    "direct_fetcher",
    "fetch_file_facts",
    "index_urls",
    "parse_saved_page",
    "unreachable",
]

log = logging.getLogger(__name__)

PYPI = "https://pypi.org/simple/"
_ACCEPT = ("application/vnd.pypi.simple.v1+json, "
           "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01")
_MAX_PAGE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What an index page says about one file."""

    #: ISO 8601 upload time (PEP 700), if the page gives one.
    upload_time: str | None
    #: ``None`` if not yanked, else the reason (possibly empty).
    yanked: str | None


def _split(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


def _pip_config(isolated: bool) -> dict[str, str]:
    """``pip config list`` as a dict (empty when isolated or pip cannot say)."""
    if isolated:
        return {}
    # What pip's configuration depends on: asked once per process for the same.
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PIP_") or k in (
        "HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "VIRTUAL_ENV", "APPDATA")))
    return dict(_pip_config_for(key))


@functools.lru_cache(maxsize=8)
def _pip_config_for(_environment: tuple[tuple[str, str], ...]) -> dict[str, str]:
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip("'\"").encode().decode("unicode_escape")
    return out


def index_urls(pip_options: Sequence[str], file_options: Sequence[str] = (), *,
               isolated: bool = False) -> list[str]:
    """The indexes pip reads, in its order.

    First the command line, the ``PIP_*`` variables and the configuration
    (an index URL, else PyPI, then the extra ones). Then the requirement
    files' lines, in order, as pip's ``handle_option_line`` applies them:
    ``--no-index`` empties the list for good, an ``--index-url`` replaces the
    whole list (the last one wins), an ``--extra-index-url`` is added. A
    ``${VARIABLE}`` in a file's URL is expanded, as pip expands it.
    """
    primary: str | None = None
    extra: list[str] = []
    no_index = False
    it = iter(pip_options)
    for word in it:
        name, eq, value = word.partition("=")
        if name in ("-i", "--index-url"):
            primary = primary or (value if eq else next(it, ""))
        elif name == "--extra-index-url":
            extra.append(value if eq else next(it, ""))
        elif name == "--no-index":
            no_index = True
    if not isolated and not no_index:
        env = os.environ
        config = _pip_config(isolated)
        no_index = env.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on")
        primary = (primary or env.get("PIP_INDEX_URL")
                   or config.get("global.index-url") or config.get("install.index-url")
                   or config.get("download.index-url"))
        extra += _split(env.get("PIP_EXTRA_INDEX_URL", ""))
        for key in ("global.extra-index-url", "install.extra-index-url",
                    "download.extra-index-url"):
            extra += _split(config.get(key, ""))
    urls = [] if no_index else [primary or PYPI, *extra]
    it = iter(file_options)
    for word in it:
        if word == "--no-index":
            no_index, urls = True, []
        elif word in ("--index-url", "--extra-index-url"):
            url = expand_variables(next(it, ""))
            if not no_index and url:
                urls = [*urls, url] if word == "--extra-index-url" else [url]
    return list(dict.fromkeys(u if u.endswith("/") else u + "/" for u in urls if u))


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.files.append(dict(attrs))


#: What one index page says: ``{filename: (sha256, facts)}``.
PageFacts = dict[str, tuple[str, FileFacts]]


def parse_saved_page(final_url: str, content_type: str, path: Path) -> PageFacts | None:
    """:func:`_parse_page` of a page saved in *path* (None if it cannot be read)."""
    try:
        return _parse_page(path.read_bytes(), content_type, final_url)
    except Exception as e:  # noqa: BLE001 - best effort, like every page
        log.debug("cannot read the page pip saved from %s: %s", final_url, e)
        return None


def _parse_page(data: bytes, content_type: str, page_url: str) -> PageFacts:
    """``{filename: (sha256, facts)}`` from a PEP 691 JSON or PEP 503 HTML page."""
    out: dict[str, tuple[str, FileFacts]] = {}
    if "json" in content_type:
        raw = json.loads(data)
        for f in raw.get("files", []):
            sha = (f.get("hashes") or {}).get("sha256")
            if not isinstance(sha, str) or not isinstance(f.get("filename"), str):
                continue
            yanked = f.get("yanked", False)
            reason = (None if yanked is False
                      else "" if yanked is True else html_carryable(str(yanked)))
            upload = f.get("upload-time")
            out[f["filename"]] = (sha.lower(), FileFacts(
                upload if isinstance(upload, str) else None, reason))
        return out
    parser = _Anchors()
    parser.feed(data.decode("utf-8", "replace"))
    for attrs in parser.files:
        href = attrs.get("href") or ""
        url = urllib.parse.urljoin(page_url, href)
        parts = urllib.parse.urlsplit(url)
        filename = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        frag = urllib.parse.parse_qs(parts.fragment)
        sha = (frag.get("sha256") or [""])[0]
        if not sha:
            continue
        yanked = attrs.get("data-yanked")
        out[filename] = (sha.lower(), FileFacts(None, None if "data-yanked" not in attrs
                                                 else html_carryable(yanked or "")))
    return out


def _ssl_context(isolated: bool) -> ssl.SSLContext:
    cafile = os.environ.get("PIP_CERT") if not isolated else None
    if not cafile and not isolated:
        cafile = _pip_config(isolated).get("global.cert")
    return ssl.create_default_context(cafile=cafile or None)


def pip_proxies(isolated: bool, pip_options: Sequence[str] = ()) -> dict[str, str] | None:
    """The proxy pip's configuration or options name (for http and https), or None."""
    proxy = None
    for option in pip_options:
        if option.startswith("--proxy="):
            proxy = option.split("=", 1)[1]
    if "--proxy" in pip_options[:-1]:
        proxy = pip_options[list(pip_options).index("--proxy") + 1]
    if proxy is None:
        config = _pip_config(isolated)
        proxy = next((v for k, v in config.items() if k.rsplit(".", 1)[-1] == "proxy" and v),
                     None)
    if not proxy:
        return None
    if "://" not in proxy:  # pip accepts [user:passwd@]proxy.server:port
        proxy = "http://" + proxy
    return {"http": proxy, "https": proxy}


def _open(url: str, context: ssl.SSLContext, timeout: float,
          proxies: dict[str, str] | None = None) -> tuple[bytes, str, str]:
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": _ACCEPT, "User-Agent": "wheelhouse"}
    if parts.scheme == "file":
        path = Path(urllib.parse.unquote(parts.path))
        for candidate in (path / "index.json", path / "index.html", path):
            if candidate.is_file():
                ctype = "application/json" if candidate.suffix == ".json" else "text/html"
                return candidate.read_bytes()[:_MAX_PAGE], ctype, url
        raise FileNotFoundError(path)
    auth = _auth_header(parts)
    if auth:
        headers["Authorization"] = auth
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(proxies) if proxies is not None
        else urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=timeout) as response:
        return response.read(_MAX_PAGE), response.headers.get("Content-Type", ""), response.url


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _auth_header(parts: urllib.parse.SplitResult) -> str | None:
    if parts.username or parts.password:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
    else:
        try:
            auth = netrc.netrc().authenticators(parts.hostname or "")
        except (OSError, netrc.NetrcParseError):
            return None
        if not auth:
            return None
        user, password = auth[0], auth[2] or ""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _dial(addresses: list[tuple[int, int, int, str, tuple[object, ...]]],
          timeout: float | None) -> socket.socket:
    error: OSError = OSError("no address")
    for family, kind, proto, _name, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error


class _PlainConnection(http.client.HTTPConnection):
    """An HTTP connection that dials the addresses *resolve* gives (one lookup per host)."""

    resolve: Callable[[str, int], list[Any]]

    def connect(self) -> None:
        self.sock = _dial(self.resolve(self.host, self.port), self.timeout)


class _TLSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that dials the addresses *resolve* gives (one lookup per host)."""

    resolve: Callable[[str, int], list[Any]]

    def __init__(self, host: str, port: int, *, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context

    def connect(self) -> None:
        raw = _dial(self.resolve(self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class _Pages:
    """Reads index pages over kept-alive connections, one per thread and host.

    Each host name is looked up once for all threads: a TLS handshake and a
    DNS query per page cost more than the page, and some resolvers drop
    queries that arrive together (seen here: 5 s stalls). Through a proxy, or
    for ``file:`` URLs, it falls back to urllib (which knows the proxy settings).
    """

    def __init__(self, context: ssl.SSLContext, timeout: float,
                 proxies: dict[str, str] | None = None) -> None:
        self.context = context
        self.timeout = timeout
        #: pip's own proxy, which urllib does not know of, if it names one.
        self._pip_proxies = proxies
        self._lock = threading.Lock()
        self._addresses: dict[tuple[str, int], list[Any]] = {}
        self._local = threading.local()
        self._proxies = proxies if proxies is not None else urllib.request.getproxies()
        self._opened: list[http.client.HTTPConnection] = []

    def _resolve(self, host: str, port: int) -> list[Any]:
        with self._lock:
            found = self._addresses.get((host, port))
            if found is None:
                found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                self._addresses[(host, port)] = found
            return found

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str, int], http.client.HTTPConnection] = getattr(
            self._local, "pool", None) or {}
        self._local.pool = pool
        conn = pool.get((scheme, host, port))
        if conn is None:
            if scheme == "https":
                conn = _TLSConnection(host, port, timeout=self.timeout, context=self.context)
            else:
                conn = _PlainConnection(host, port, timeout=self.timeout)
            conn.resolve = self._resolve
            pool[(scheme, host, port)] = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection opened (once the threads that used them are done)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    def proxied(self, url: str) -> bool:
        """True when *url* goes through a proxy (urllib's settings), or is not HTTP(S)."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        return parts.scheme not in ("http", "https") or not host or bool(
            self._proxies.get(parts.scheme) and (
                self._pip_proxies is not None or not urllib.request.proxy_bypass(host)))

    def _fetch(self, url: str, accept: str, sink: Callable[[bytes], None],
               limit: int) -> tuple[str, str]:
        """GET *url*, following redirects; feed the body to *sink* (up to *limit* bytes).

        Returns the Content-Type and the final URL. Raises OSError for anything
        but a 200 answer. The caller checks :meth:`proxied` first.
        """
        for _ in range(6):
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            headers = {"Accept": accept, "User-Agent": "wheelhouse",
                       "Accept-Encoding": "identity"}
            auth = _auth_header(parts)
            if auth:
                headers["Authorization"] = auth
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            for attempt in (1, 2):  # a kept-alive connection the server closed: once more
                conn = self._connection(parts.scheme, host, port)
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                        http.client.CannotSendRequest, http.client.ResponseNotReady):
                    conn.close()
                    if attempt == 2:
                        raise
            location = response.getheader("Location")
            if response.status != 200:
                response.read()  # the rest, so the connection can be used again
                if response.status in _REDIRECTS and location:
                    url = urllib.parse.urljoin(url, location)
                    continue
                raise OSError(f"HTTP {response.status} from {url}")
            left = limit
            while left > 0 and (chunk := response.read(min(left, 1 << 20))):
                sink(chunk)
                left -= len(chunk)
            if left <= 0 and not response.isclosed():
                conn.close()  # more than asked for: never read it, drop the connection
            return response.getheader("Content-Type", ""), url
        raise OSError(f"too many redirects from {url}")

    def get(self, url: str) -> tuple[bytes, str, str]:
        """The page at *url*: its bytes, Content-Type and final URL (after redirects)."""
        if self.proxied(url):
            return _open(url, self.context, self.timeout, self._pip_proxies)
        parts: list[bytes] = []
        ctype, final = self._fetch(url, _ACCEPT, parts.append, _MAX_PAGE)
        return b"".join(parts), ctype, final

    def download(self, url: str, dest: Path, sha256: str) -> None:
        """Stream the file at *url* into *dest*, checking its sha256 on the way.

        Raises HashMismatchError when the bytes are not the expected ones (the
        partial file is removed), OSError for anything else.
        """
        h = hashlib.sha256()
        with dest.open("wb") as f:

            def sink(chunk: bytes) -> None:
                h.update(chunk)
                f.write(chunk)

            try:
                self._fetch(url, "*/*", sink, 1 << 40)
            except BaseException:
                f.close()
                dest.unlink(missing_ok=True)
                raise
        if h.hexdigest() != sha256.lower():
            dest.unlink(missing_ok=True)
            raise HashMismatchError(url, sha256.lower(), h.hexdigest())


def direct_fetcher(pip_options: Sequence[str], *, isolated: bool = False,
                   timeout: float = 60.0) -> _Pages | None:
    """A fetcher for the files pip chose, or None where only pip should fetch them.

    Downloading in this process, over kept-alive connections, saves a pip
    start-up per process; it is an optimisation, never the authority: a proxy
    set in pip's configuration or options (which this process would bypass)
    leaves it to pip, and the caller hands pip any file this fetch fails on.
    """
    config = _pip_config(isolated)
    if pip_proxies(isolated, pip_options) is not None or any(
            k.rsplit(".", 1)[-1] == "client-cert" for k in config) or any(
            o.split("=", 1)[0] == "--client-cert" for o in pip_options):
        return None
    return _Pages(_ssl_context(isolated), timeout)


def unreachable(indexes: Sequence[str], *, isolated: bool = False,
                timeout: float = 5.0) -> list[str]:
    """The *indexes* that cannot be reached at all (no HTTP answer, no such directory).

    Any HTTP answer, even an error status, means the index is reachable.
    """
    context = _ssl_context(isolated)
    proxies = pip_proxies(isolated)

    def dead(url: str) -> bool:
        try:
            _open(url, context, timeout, proxies)
        except urllib.error.HTTPError:
            return False
        except (OSError, ValueError):
            return True
        return False

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(indexes)))) as pool:
        verdicts = list(pool.map(dead, indexes))
    return [u for u, d in zip(indexes, verdicts, strict=True) if d]


def fetch_file_facts(
    indexes: Sequence[str],
    wanted: Mapping[str, Iterable[tuple[str, str]]],
    *,
    jobs: int = 8,
    timeout: float = 30.0,
    isolated: bool = False,
    read: Mapping[str, PageFacts] | None = None,
) -> dict[str, FileFacts]:
    """Facts for each ``(filename, sha256)`` in *wanted* (by project), from *indexes*.

    Indexes are asked in order; the first page listing a file with the same
    sha256 gives its facts. Failures are logged and leave files unknown.
    *read* holds pages already fetched (by pip, while it resolved) and parsed
    (:func:`parse_saved_page`), by the URL they were asked for; those are not
    fetched again.
    """
    if not indexes or not wanted:
        return {}
    read = read or {}
    pages = _Pages(_ssl_context(isolated), timeout, pip_proxies(isolated))

    def project(name: str, files: list[tuple[str, str]]) -> dict[str, FileFacts]:
        found: dict[str, FileFacts] = {}
        for index in indexes:
            remaining = [(f, s) for f, s in files if f not in found]
            if not remaining:
                break
            url = urllib.parse.urljoin(index, urllib.parse.quote(name) + "/")
            try:
                if url in read:
                    page = read[url]
                else:
                    data, ctype, final = pages.get(url)
                    page = _parse_page(data, ctype, final)
            except Exception as e:  # noqa: BLE001 - best effort: never fail the build
                log.debug("cannot read %s: %s", redact_url(url), e)
                continue
            for filename, sha in remaining:
                hit = page.get(filename)
                if hit is not None and hit[0] == sha.lower():
                    found[filename] = hit[1]
        return found

    out: dict[str, FileFacts] = {}
    items = [(n, list(f)) for n, f in wanted.items()]
    workers = max(1, min(jobs, len(items)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for facts in pool.map(lambda it: project(*it), items):
            out.update(facts)
    pages.close()
    return out
