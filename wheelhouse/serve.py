"""Serving a house over HTTP: a safe static server, one-shot around a command or long-running."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import html
import ipaddress
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from packaging.utils import canonicalize_name

from wheelhouse._fs import open_files_limit
from wheelhouse.errors import HouseError, InvalidInputError, NetworkError, WheelhouseError
from wheelhouse.filenames import is_safe_component
from wheelhouse.house import FILES_DIR, METADATA_SUFFIX, House
from wheelhouse.index import FIND_LINKS_PAGE, JSON_CONTENT_TYPE, SIMPLE_DIR

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from wheelhouse.house import FileEntry, Manifest

__all__ = ["HouseServer", "base_url", "environment_for", "run_command", "serving"]

log = logging.getLogger(__name__)

_HTML_V1 = "application/vnd.pypi.simple.v1+html"
# What the server offers, most preferred first: HTML for clients that say nothing
# precise (old clients send */*), JSON for those that ask for it.
_OFFERS = [
    ("text/html", "text/html", "html"),
    (_HTML_V1, _HTML_V1, "html"),
    ("application/vnd.pypi.simple.latest+html", _HTML_V1, "html"),
    (JSON_CONTENT_TYPE, JSON_CONTENT_TYPE, "json"),
    ("application/vnd.pypi.simple.latest+json", JSON_CONTENT_TYPE, "json"),
]
_CHUNK = 1 << 20
_MAX_RANGES = 16
# Per-connection socket timeout: a stalled client holds one thread, for a while.
_TIMEOUT = 30.0
# From the start of waiting for a request to the end of its headers, at most:
# a client that sends its head a byte at a time is cut off then (and an idle
# keep-alive connection closed).
_HEAD_DEADLINE = 30.0
# Connections served at once, at most (a thread each); more are answered 503.
_MAX_CONNECTIONS = 512
# At that cap, a new connection takes the place of the one that has waited
# longest for a request head (an idle keep-alive connection, or one that
# connected and said nothing), once it has waited this long ...
_EVICT_AFTER = 1.0
# ... while no more than this many such evicted connections are still closing.
_EVICT_SLACK = 16
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 25\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
         b"too many connections now\n")


def _max_connections() -> int:
    """:data:`_MAX_CONNECTIONS`, or fewer: two descriptors each must fit the process's limit."""
    soft = open_files_limit()
    return 64 if soft is None else min(_MAX_CONNECTIONS, max(8, (soft - 64) // 2))


_CONTROLS = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))})


@functools.lru_cache(maxsize=64)  # clients send the same few headers again and again
def negotiate(accept: str | None) -> tuple[str, str] | None:
    """Pick the PEP 691 representation for an Accept header: ``(content_type, kind)``.

    None means nothing offered is acceptable (406). No header means HTML.

    >>> negotiate("application/vnd.pypi.simple.v1+json")
    ('application/vnd.pypi.simple.v1+json', 'json')
    >>> negotiate("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9")[1]
    'json'
    >>> negotiate(None)
    ('text/html', 'html')
    """
    if not accept or not accept.strip():
        return ("text/html", "html")
    best: tuple[tuple[float, int, int], str, str] | None = None
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        for preference, (offer, respond_as, kind) in enumerate(_OFFERS):
            if media == offer:
                specificity = 2
            elif media == offer.split("/")[0] + "/*":
                specificity = 1
            elif media == "*/*":
                specificity = 0
            else:
                continue
            key = (q, specificity, -preference)
            if best is None or key > best[0]:
                best = (key, respond_as, kind)
    if best is None:
        return None
    return best[1], best[2]


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Parse a ``Range: bytes=…`` header into inclusive ``(start, end)`` pairs.

    Returns None for an unsatisfiable set (416), [] to ignore the header (the
    whole file, 200): a malformed one, as RFC 9110 (14.2) asks, and one of
    more than a few ranges. Overlapping and adjacent ranges are merged, so a
    response is never longer than the file and its part headers.

    >>> parse_ranges("bytes=0-99", 1000)
    [(0, 99)]
    >>> parse_ranges("bytes=-100", 1000)
    [(900, 999)]
    >>> parse_ranges("bytes=0-,0-,0-", 1000)
    [(0, 999)]
    >>> parse_ranges("bytes=2000-", 1000) is None
    True
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return []
    wanted: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"([0-9]{0,18})-([0-9]{0,18})", part)  # (longer: no file is that big)
        if m is None or (not m.group(1) and not m.group(2)):
            return []
        if m.group(1):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            if m.group(2) and end < start:
                return []
            if start >= size:
                continue
            wanted.append((start, min(end, size - 1)))
        else:
            length = int(m.group(2))
            if length == 0:
                continue
            wanted.append((max(0, size - length), size - 1))
    if not wanted:
        return None
    out: list[tuple[int, int]] = []
    for start, end in sorted(wanted):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out if len(out) <= _MAX_RANGES else []


#: Pages kept in memory (a project page is a few kB; the cache is cleared when full).
_PAGE_CACHE_ENTRIES = 2048
#: Files remembered as hashed and right (cleared when full).
_CHECKED_ENTRIES = 65536


class HouseServer(ThreadingHTTPServer):
    """An HTTP server over one house: the index, the files, nothing else."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, house: House, host: str = "127.0.0.1", port: int = 0) -> None:
        #: The house served.
        self.house = house
        #: Recently served pages: path -> (stat signature, bytes, ETag).
        self.page_cache: dict[str, tuple[tuple[int, int, int, int], bytes, str]] = {}
        #: Files hashed and found right: stat signature -> sha256 (see _Handler._check).
        self.checked: dict[tuple[int, ...], str] = {}
        #: Connections served at once, at most (more are answered 503 at once).
        self.max_connections = _max_connections()
        self._active = 0
        self._active_lock = threading.Lock()
        # Connections waiting for a request head: socket -> since when (monotonic).
        self._waiting: dict[socket.socket, float] = {}
        self._closing = threading.Event()
        self._reaper: threading.Thread | None = None
        self._by_name: tuple[Manifest, dict[str, FileEntry]] | None = None
        if not host.strip():
            # bind("") listens on every interface: never by accident (an unset
            # shell variable), only when asked for by name.
            raise InvalidInputError("--host is empty",
                                    hint="name an address: 127.0.0.1 (the default), or "
                                    "0.0.0.0 to listen on every interface")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # an IPv6 address as a URL writes it: "[::1]"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        try:
            address: tuple[Any, ...] = (host, port)
            if family == socket.AF_INET6:
                # The full socket address, zone included: bind() given ("fe80::1%eth0",
                # port) drops the zone (scope id 0), and a link-local address needs it.
                address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0,
                                             socket.AI_NUMERICHOST)[0][4]
            super().__init__(address, _Handler)
        except OSError as e:
            import errno

            in_use = e.errno in (errno.EADDRINUSE, errno.EACCES)
            # An IPv6 host in brackets: "[fe80::1%eth0]:8080" reads as host and port.
            where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            raise InvalidInputError(
                f"cannot listen on {where}: {e.strerror or e}",
                hint="choose another --port (0 picks a free one)" if in_use else
                "--host must be an address of this machine (127.0.0.1, 0.0.0.0, ::1, ...)",
            ) from e
        if self.all_interfaces:
            log.warning("listening on every interface of this machine (%s): anyone who can "
                        "reach it can download the house", self.server_address[0])

    @property
    def all_interfaces(self) -> bool:
        """True when the server listens on every interface (0.0.0.0, ::), not one address."""
        import ipaddress

        try:
            return ipaddress.ip_address(str(self.server_address[0])).is_unspecified
        except ValueError:
            return False

    # -- connections: how many, and how long a request head may take ------

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a new connection in a thread, or answer 503 when too many are open."""
        with self._active_lock:
            full = self._active >= self.max_connections
            if full and self._active < self.max_connections + _EVICT_SLACK:
                full = not self._evict_longest_waiting()
            if not full:
                self._active += 1
        if full:
            log.debug("%d connections open: %s answered 503", self._active, client_address)
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection (in its thread); its place is free again after."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection; out of descriptors, wait a moment rather than spin."""
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                # Out of descriptors: the listening socket stays readable, and
                # the loop would spin. A pause lets connections finish.
                log.warning("out of file descriptors: no new connection for a moment")
                time.sleep(0.1)
            raise

    def _evict_longest_waiting(self) -> bool:
        """Close the connection waiting longest for a request head, if it waited long enough.

        So that idle connections (a client's keep-alive pool, or sockets opened
        and left silent) cannot keep a new client out for the whole head
        deadline. A connection in the middle of a request is never chosen.
        Called under ``_active_lock``; the closed one's thread frees its place
        when it sees the end.
        """
        limit = time.monotonic() - _EVICT_AFTER
        oldest = min(list(self._waiting.items()), key=lambda item: item[1], default=None)
        if oldest is None or oldest[1] > limit or self._waiting.pop(oldest[0], None) is None:
            return False
        log.debug("%d connections open: an idle one is closed for a new one", self._active)
        with contextlib.suppress(OSError):
            oldest[0].shutdown(socket.SHUT_RDWR)  # its reader sees the end
        return True

    def watch(self, conn: socket.socket) -> None:
        """Cut *conn* off if its request head is not in within the deadline."""
        self._waiting[conn] = time.monotonic()
        if self._reaper is None:
            with self._active_lock:
                if self._reaper is None:
                    self._reaper = threading.Thread(target=self._reap, daemon=True,
                                                    name="wheelhouse-serve-deadlines")
                    self._reaper.start()

    def unwatch(self, conn: socket.socket) -> None:
        """The request head of *conn* is in (or the connection is done)."""
        self._waiting.pop(conn, None)

    def _reap(self) -> None:
        while not self._closing.wait(min(1.0, _HEAD_DEADLINE / 4)):
            cutoff = time.monotonic() - _HEAD_DEADLINE
            for conn, since in list(self._waiting.items()):
                if since < cutoff and self._waiting.pop(conn, None) is not None:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)  # its reader sees the end

    def server_close(self) -> None:
        """Close the listening socket, and stop watching request heads."""
        self._closing.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Say nothing of a client that went away; one line for anything else.

        A client that resets, closes mid-response or times out is normal for a
        server. Any other error is one log line, with its traceback only at
        debug level: never a traceback on the terminal.
        """
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, error)
            return
        log.warning("error while answering %s: %s: %s", client_address,
                    type(error).__name__, error)
        log.debug("the error's traceback", exc_info=error)

    def files_by_name(self) -> dict[str, FileEntry]:
        """The manifest's entries by file name, built once per manifest read."""
        manifest = self.house.read_manifest()  # cached by the house until the file changes
        cached = self._by_name
        if cached is None or cached[0] is not manifest:
            cached = self._by_name = (manifest, manifest.by_filename())
        return cached[1]

    @property
    def url(self) -> str:
        """The base URL clients on this machine use: :func:`base_url` of the bound address."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        scope = self.server_address[3] if len(self.server_address) > 3 else 0
        zone = ""
        if scope:
            try:
                zone = socket.if_indextoname(scope)
            except OSError:
                zone = str(scope)  # (an interface index is a zone too, RFC 4007)
        return base_url(name, port, zone=zone)


def base_url(host: str, port: int, *, zone: str = "") -> str:
    """The base URL of a server on *host* and *port*, as a client on this machine writes it.

    An IPv6 address goes in brackets, and its *zone* (the interface of a
    link-local address: ``fe80::1%eth0``, given here or in *host*) follows
    ``%25``, RFC 6874's way (a ``%`` in a URL is quoted, and so is any
    character of the zone a URL does not allow). On every interface
    (0.0.0.0, ::) the host is the loopback address: the one address sure to
    reach the server from here.

    >>> base_url("0.0.0.0", 8080)
    'http://127.0.0.1:8080'
    >>> base_url("::", 8080)
    'http://[::1]:8080'
    >>> base_url("fe80::1", 8080, zone="eth0")
    'http://[fe80::1%25eth0]:8080'
    """
    address, _, written_zone = host.partition("%")
    zone = zone or written_zone
    if address == "0.0.0.0":
        address = "127.0.0.1"
    elif address == "::":
        address = "::1"  # (127.0.0.1 only answers where the socket is dual-stack)
    if ":" in address:
        zone = "%25" + urllib.parse.quote(zone, safe="") if zone else ""
        address = f"[{address}{zone}]"
    return f"http://{address}:{port}"


_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Headers(dict[str, str]):
    """Request headers by lower-cased name (the first of repeated ones)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        import email.utils

        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wheelhouse"
    sys_version = ""
    timeout = _TIMEOUT
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
    # algorithm meets the client's delayed ACK and every keep-alive response
    # waits ~40 ms.
    disable_nagle_algorithm = True
    server: HouseServer
    raw_requestline: bytes

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            # A request line is the client's: no terminal escape reaches the log raw.
            log.debug("%s %s", self.address_string(), (format % args).translate(_CONTROLS))

    def handle_one_request(self) -> None:
        # The wait for a request and its head are under the server's deadline
        # (parse_request lifts it once the head is in).
        self.server.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.unwatch(self.connection)

    def parse_request(self) -> bool:
        """:meth:`_parse_request`; the head is in, so the deadline is lifted."""
        try:
            return self._parse_request()
        finally:
            self.server.unwatch(self.connection)

    def _parse_request(self) -> bool:
        """Parse the request line and headers.

        Several times faster than http.server's own (``http.client.parse_headers``
        is an email parser), and stricter: HTTP/1.0 and 1.1 only (no HTTP/0.9
        answers without headers), no header without a name, no obsolete line
        folding. The limits are http.server's: 64 KiB a line, 100 headers.
        """
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        self.requestline = line
        self.command = ""
        self.request_version = "HTTP/1.1"  # so that errors carry a status line
        self.close_connection = True
        if not words:
            return False
        if len(words) != 3 or not re.fullmatch(r"HTTP/\d\.\d", words[2]):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request line")
            return False
        if words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.0 or 1.1 only")
            return False
        self.command, path, self.request_version = words
        self.close_connection = words[2] != "HTTP/1.1"
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        headers = _Headers()
        readline = self.rfile.readline
        for _ in range(_MAX_HEADERS + 1):
            raw = readline(_MAX_LINE + 1)
            if len(raw) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("iso-8859-1").partition(":")
            if not sep or not name or name != name.strip() or raw[:1] in (b" ", b"\t"):
                # No name, whitespace around it, or obsolete line folding (RFC 9112 5.2).
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            key = name.lower()
            if key in ("content-length", "transfer-encoding") and key in headers:
                # Two framings for one message: which one a proxy in front
                # believed is anybody's guess (request smuggling, RFC 9112 6.3).
                self.send_error(HTTPStatus.BAD_REQUEST, f"More than one {name}")
                return False
            headers.setdefault(key, value.strip())
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = cast("Any", headers)
        # A list of tokens ("close, TE"), case-insensitive.
        connection = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        if "close" in connection:
            self.close_connection = True
        elif "keep-alive" in connection:
            self.close_connection = False
        length = headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()
                                       and len(length) <= 18):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad Content-Length")
            return False
        if "transfer-encoding" in headers or (length is not None and int(length) != 0):
            # A body, which this server never reads: left on the connection it
            # would be taken for the next request (request smuggling behind a
            # proxy). The connection closes after the answer; GET and HEAD
            # carry no body, so they are refused.
            self.close_connection = True
            if self.command in ("GET", "HEAD"):
                self.send_error(HTTPStatus.BAD_REQUEST, "A GET or HEAD request has no body")
                return False
            return True
        if (headers.get("expect", "").lower() == "100-continue"
                and self.request_version == "HTTP/1.1"):
            return self.handle_expect_100()
        return True

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's error response, on a connection that closes after it."""
        self.close_connection = True  # (before the status line: no "keep-alive" header)
        super().send_error(code, message, explain)

    def send_response(self, code: int, message: str | None = None) -> None:
        """The status line, Server and Date (formatted once a second)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.server_version)
        self.send_header("Date", _http_date())
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            # An HTTP/1.0 client that asked to keep the connection is told it is kept.
            self.send_header("Connection", "keep-alive")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    # Only GET and HEAD; everything else is 405.
    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _not_allowed(self) -> None:
        self._send_simple(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed",
                          extra={"Allow": "GET, HEAD"})

    # http.server's naming: do_<METHOD>.
    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815
    do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    # -- routing ----------------------------------------------------------

    def _segments(self) -> list[str] | None:
        raw = urllib.parse.urlsplit(self.path).path
        if not raw.startswith("/"):
            return None
        parts = raw.split("/")[1:]
        out = []
        for i, part in enumerate(parts):
            decoded = urllib.parse.unquote(part, errors="strict") if "%" in part else part
            if "/" in decoded or "\\" in decoded or "\x00" in decoded or decoded in {".", ".."}:
                return None
            if decoded == "" and i != len(parts) - 1:
                return None  # "//" inside a path
            out.append(decoded)
        return out

    def _respond(self, *, head: bool) -> None:
        try:
            segments = self._segments()
        except UnicodeDecodeError:
            segments = None
        if segments is None:
            self._send_simple(HTTPStatus.NOT_FOUND, "not found", head=head)
            return
        root = self.server.house.root
        if segments == [""]:
            self._send_bytes(_landing_page(), "text/html; charset=utf-8", head=head)
        elif segments == [FIND_LINKS_PAGE]:
            self._send_page(root / FIND_LINKS_PAGE, "text/html; charset=utf-8", head=head)
        elif segments[0] == SIMPLE_DIR:
            self._route_simple(segments[1:], head=head)
        elif segments[0] == FILES_DIR and len(segments) == 2 and segments[1]:
            self._send_file(segments[1], head=head)
        else:
            self._send_simple(HTTPStatus.NOT_FOUND, "not found", head=head)

    def _route_simple(self, rest: list[str], *, head: bool) -> None:
        root = self.server.house.root / SIMPLE_DIR
        if rest == []:
            self._redirect(f"/{SIMPLE_DIR}/", head=head)
            return
        if rest == [""]:
            page_dir = root
        elif len(rest) == 1 or (len(rest) == 2 and rest[1] == ""):
            name = rest[0]
            canonical = canonicalize_name(name)
            if name != canonical or len(rest) == 1:
                # PEP 503: normalised names, with the trailing slash.
                if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", canonical):
                    self._send_simple(HTTPStatus.NOT_FOUND, "not found", head=head)
                    return
                self._redirect(f"/{SIMPLE_DIR}/{canonical}/", head=head)
                return
            page_dir = root / canonical
        else:
            self._send_simple(HTTPStatus.NOT_FOUND, "not found", head=head)
            return
        choice = negotiate(self.headers.get("Accept"))
        if choice is None:
            self._send_simple(HTTPStatus.NOT_ACCEPTABLE, "not acceptable", head=head,
                              extra={"Vary": "Accept"})
            return
        content_type, kind = choice
        if kind == "html":
            content_type += "; charset=utf-8" if content_type == "text/html" else ""
        self._send_page(page_dir / f"index.{kind}", content_type, head=head,
                        extra={"Vary": "Accept"})

    # -- responses --------------------------------------------------------

    def _redirect(self, location: str, *, head: bool) -> None:
        self._send_simple(HTTPStatus.MOVED_PERMANENTLY, f"moved to {location}", head=head,
                          extra={"Location": location})

    def _send_simple(self, status: HTTPStatus, text: str, *, head: bool = False,
                     extra: dict[str, str] | None = None) -> None:
        body = (html.escape(text) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _open_inside(self, path: Path) -> tuple[BinaryIO, os.stat_result] | None:
        # Nothing outside the house: no symlink anywhere from the house root down.
        root = self.server.house.root
        rel = path.relative_to(root)
        current = root
        for part in rel.parts[:-1]:
            current = current / part
            try:
                if stat.S_ISLNK(current.lstat().st_mode):
                    return None
            except OSError:
                return None
        try:
            # O_NONBLOCK: a FIFO put in the house must not hold the thread in open().
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st

    def _send_page(self, path: Path, content_type: str, *, head: bool,
                   extra: dict[str, str] | None = None) -> None:
        key = str(path)
        hit = self.server.page_cache.get(key)
        if hit is not None:
            # One lstat: the same regular file (device, inode, size, mtime) as the
            # one opened and checked before is the same bytes.
            try:
                st = os.lstat(key)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode) and hit[0] == (
                    st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
                self._send_bytes(hit[1], content_type, head=head, extra=extra, etag=hit[2])
                return
        opened = self._open_inside(path)
        if opened is None:
            self._send_simple(HTTPStatus.NOT_FOUND, "not found", head=head)
            return
        f, st = opened
        # Pages are replaced by rename, never edited: the same inode, size and
        # mtime are the same bytes, so a page is read and hashed once.
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cache = self.server.page_cache
        with f:
            if hit is not None and hit[0] == signature:
                data, etag = hit[1], hit[2]
            else:
                data = f.read()
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                if len(cache) >= _PAGE_CACHE_ENTRIES:
                    cache.clear()
                cache[str(path)] = (signature, data, etag)
        self._send_bytes(data, content_type, head=head, extra=extra, etag=etag)

    def _send_bytes(self, data: bytes, content_type: str, *, head: bool,
                    extra: dict[str, str] | None = None, etag: str | None = None) -> None:
        etag = etag or f'"{hashlib.sha256(data).hexdigest()}"'
        if self._not_modified(etag):
            self._send_304(etag, extra)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", etag)
        self.send_header("Cache-Control", "no-cache")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _not_modified(self, etag: str) -> bool:
        header = self.headers.get("If-None-Match")
        if not header:
            return False
        tags = [t.strip() for t in header.split(",")]
        return "*" in tags or etag in tags or f"W/{etag}" in tags

    def _send_304(self, etag: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(HTTPStatus.NOT_MODIFIED)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", "0")
        for key, value in (extra or {}).items():  # (Vary, as the 200 would have it)
            self.send_header(key, value)
        self.end_headers()

    def _send_file(self, name: str, *, head: bool) -> None:
        # Only what the manifest names, and only bytes that hash to what it says.
        expected = self._expected(name) if is_safe_component(name) else None
        opened = None if expected is None else self._open_inside(
            self.server.house.files_dir / name)
        if expected is None or opened is None:
            self._send_simple(HTTPStatus.NOT_FOUND, "not found", head=head)
            return
        f, st = opened
        with f:
            if not self._check(name, f, st, *expected):
                self._send_simple(HTTPStatus.NOT_FOUND, f"not found: files/{name} does not "
                                  "match the manifest", head=head)
                return
            size = st.st_size
            etag = f'"{expected[0]}"'
            if self._not_modified(etag):
                self._send_304(etag)
                return
            content_type = _content_type(name)
            ranges: list[tuple[int, int]] | None = []
            range_header = self.headers.get("Range")
            if range_header and self.headers.get("If-Range", etag) == etag:
                ranges = parse_ranges(range_header, size)
            if ranges is None:
                self._send_simple(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                                  "range not satisfiable", head=head,
                                  extra={"Content-Range": f"bytes */{size}"})
                return
            if not ranges:
                self.send_response(HTTPStatus.OK)
                self._file_headers(content_type, size, etag)
                self.end_headers()
                if not head:
                    self._copy(f, 0, size)
            elif len(ranges) == 1:
                start, end = ranges[0]
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self._file_headers(content_type, end - start + 1, etag)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not head:
                    self._copy(f, start, end - start + 1)
            else:
                boundary = hashlib.sha256(f"{etag}{ranges}".encode()).hexdigest()[:32]
                parts = [
                    (f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Range: bytes {s}-{e}/{size}\r\n\r\n").encode()
                    for s, e in ranges
                ]
                closing = f"\r\n--{boundary}--\r\n".encode()
                length = sum(len(p) for p in parts) + sum(e - s + 1 for s, e in ranges)
                length += len(closing)
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self._file_headers(f"multipart/byteranges; boundary={boundary}", length, etag)
                self.end_headers()
                if not head:
                    for part, (s, e) in zip(parts, ranges, strict=True):
                        self.wfile.write(part)
                        self._copy(f, s, e - s + 1)
                    self.wfile.write(closing)

    def _file_headers(self, content_type: str, length: int, etag: str) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "max-age=31536000, immutable")

    def _expected(self, name: str) -> tuple[str, int | None] | None:
        """The sha256 (and size) the manifest gives *name*: a wheel, sdist or metadata file."""
        manifest = self.server.files_by_name()
        entry = manifest.get(name)
        if entry is not None:
            return entry.sha256, entry.size
        if name.endswith(METADATA_SUFFIX):
            entry = manifest.get(name[: -len(METADATA_SUFFIX)])
            if entry is not None and entry.metadata_sha256:
                return entry.metadata_sha256, None
        return None

    def _check(self, name: str, f: BinaryIO, st: os.stat_result, sha256: str,
               size: int | None) -> bool:
        """Whether the open file's bytes are the manifest's (hashed once per change).

        A file is hashed the first time it is asked for, and again only when
        its inode, size, mtime or ctime changed (an edit in place changes them).
        """
        if size is not None and st.st_size != size:
            log.warning("files/%s is %d bytes, the manifest says %d: not served (run "
                        "'wheelhouse verify %s')", name, st.st_size, size,
                        self.server.house.root)
            return False
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        checked = self.server.checked
        if checked.get(key) == sha256:
            return True
        h = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        f.seek(0)
        if h.hexdigest() != sha256:
            log.warning("files/%s hashes to sha256=%s, the manifest says sha256=%s: not "
                        "served (run 'wheelhouse verify %s')", name, h.hexdigest(), sha256,
                        self.server.house.root)
            return False
        if len(checked) >= _CHECKED_ENTRIES:
            checked.clear()
        checked[key] = sha256
        return True

    def _copy(self, f: BinaryIO, offset: int, count: int) -> None:
        self.wfile.flush()
        try:
            # sendfile: the kernel copies; the file is never read whole into memory.
            self.connection.sendfile(f, offset, count)
        except (AttributeError, OSError, ValueError):
            f.seek(offset)
            remaining = count
            while remaining > 0:
                chunk = f.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


def _content_type(name: str) -> str:
    if name.endswith(".whl"):
        return "application/zip"
    if name.endswith(".tar.gz"):
        return "application/gzip"
    if name.endswith(".zip"):
        return "application/zip"
    if name.endswith(".metadata"):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _landing_page() -> bytes:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>wheelhouse</title></head>"
        f"<body><a href=\"/{SIMPLE_DIR}/\">simple index</a><br>"
        f"<a href=\"/{FIND_LINKS_PAGE}\">find-links page</a></body></html>\n"
    ).encode()


def _open_house(path: Path | str) -> House:
    house = House.open(path)
    if not (house.root / SIMPLE_DIR / "index.html").is_file():
        raise HouseError(f"{house.root} has no index", hint=f"run 'wheelhouse index {path}'")
    if not house.index_is_current():
        # A change killed between the manifest and the index: the index would
        # show another house. Or an older wheelhouse rendered its pages.
        # Rewritten here if the house is writable.
        why = ("was rendered by an older wheelhouse" if house.index_rendered_before()
               else "does not match its manifest (a change was interrupted)")
        try:
            house.reindex()
            log.warning("the index of %s %s: rewritten", house.root, why)
        except (OSError, WheelhouseError) as e:
            log.warning("the index of %s %s, and cannot be rewritten here (%s): run "
                        "'wheelhouse index %s' where it can", house.root, why, e, house.root)
    return house


#: How often the serving loop checks for a stop request (it sleeps in select() meanwhile).
_STOP_POLL_SECONDS = 0.02


@contextlib.contextmanager
def serving(house: Path | str | House, *, host: str = "127.0.0.1",
            port: int = 0) -> Iterator[str]:
    """Serve *house* in a background thread; yield its base URL; stop on exit.

    >>> # with wheelhouse.serving("./house") as url: pip install --index-url f"{url}/simple/" …
    """
    house_obj = house if isinstance(house, House) else _open_house(house)
    server = HouseServer(house_obj, host, port)
    # The loop looks for a stop request between waits: socketserver's default
    # wait of 0.5 s would add half a second to every `wheelhouse run`.
    thread = threading.Thread(target=server.serve_forever, args=(_STOP_POLL_SECONDS,),
                              name="wheelhouse-serve", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


#: Variables that would add another source for pip or uv (or make uv ignore the
#: house), taken out of the command's environment.
DROPPED_ENV = ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_FIND_LINKS",
               "UV_NO_INDEX", "UV_CONFIG_FILE", "UV_TORCH_BACKEND")


def _pip_trusted_host(url: str) -> str | None:
    """The ``host:port`` pip must trust to use plain-http *url*; None on loopback.

    pip ignores a plain-http index or find-links page whose host is not
    loopback ("not a trusted or secure host") unless ``--trusted-host`` names
    it; uv takes plain http from any host (its ``UV_INSECURE_HOST`` is about
    TLS certificates), so it needs nothing.

    >>> _pip_trusted_host("http://192.0.2.7:8080")
    '192.0.2.7:8080'
    >>> _pip_trusted_host("http://[2001:db8::7]:8080")
    '[2001:db8::7]:8080'
    >>> _pip_trusted_host("http://127.0.0.1:8080") is None
    True
    """
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").partition("%")[0]  # (a zone: "fe80::1%25eth0")
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a name: trusted as written
    return parts.netloc


def environment_for(url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that makes pip and uv install from the house at *url*, and nothing else.

    pip reads the find-links page (it honours yanks there) and no index; uv
    reads the house as its one index and no configuration file (which could
    add indexes or find-links): uv honours yanks from an index page, not from
    a find-links page. On a host that is not loopback, pip is told to trust
    the server's ``host:port`` (added to any ``PIP_TRUSTED_HOST`` in *base*):
    it ignores plain http elsewhere.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in DROPPED_ENV}
    trusted = _pip_trusted_host(url)
    if trusted is not None:
        # pip splits PIP_TRUSTED_HOST on whitespace.
        hosts = env.get("PIP_TRUSTED_HOST", "").split()
        env["PIP_TRUSTED_HOST"] = " ".join(hosts if trusted in hosts else [*hosts, trusted])
    env.update({
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{url}/{FIND_LINKS_PAGE}",
        "PIP_INDEX_URL": f"{url}/{SIMPLE_DIR}/",
        # An empty value overrides any extra index a pip configuration file names.
        "PIP_EXTRA_INDEX_URL": "",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_INDEX_URL": f"{url}/{SIMPLE_DIR}/",
        "UV_DEFAULT_INDEX": f"{url}/{SIMPLE_DIR}/",
        "WHEELHOUSE_URL": url,
    })
    return env


def _check_reachable(url: str) -> None:
    """Connect to the server at *url* once, as the command will: a clear error if it cannot.

    In a network namespace whose loopback interface is down (``unshare -n``,
    some build sandboxes) the server listens, but no one can connect to it;
    pip would only say that no file was found.
    """
    host, _, port = url.removeprefix("http://").rpartition(":")
    try:
        # ("[fe80::1%25eth0]" in a URL is the address "fe80::1%eth0", RFC 6874.)
        address = urllib.parse.unquote(host.strip("[]"))
        with socket.create_connection((address, int(port)), timeout=10):
            pass
    except OSError as e:
        down = e.errno in (errno.ENETUNREACH, errno.EADDRNOTAVAIL)
        raise NetworkError(
            f"cannot connect to the house's own server at {url}: {e.strerror or e}",
            hint=("the loopback interface is down here (a sandbox without a network?): "
                  "bring it up ('ip link set lo up'), or " if down else "")
            + "install from the house's files without a server: "
            "pip install --no-index --find-links HOUSE/files ...",
        ) from None


def run_command(house: Path | str, command: Sequence[str], *, host: str = "127.0.0.1",
                port: int = 0) -> int:
    """Serve *house*, run *command* with :func:`environment_for`, stop; return its status.

    SIGINT and SIGTERM are forwarded to the command; the server stops however
    the command ends. A command that cannot be started returns 127, like a shell.
    """
    if not command:
        raise InvalidInputError("no command to run", hint="wheelhouse run HOUSE -- COMMAND ...")
    with serving(house, host=host, port=port) as url:
        _check_reachable(url)
        env = environment_for(url)
        try:
            proc = subprocess.Popen(list(command), env=env)
        except FileNotFoundError:
            return 127  # the CLI says so
        except PermissionError:
            return 126

        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, forward)
        try:
            # Waited for in short steps: a signal the kernel gives to another
            # thread (the server's) is handled only when this one runs Python
            # again, and a plain wait() would sit until the command ends.
            while True:
                try:
                    code = proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code if code >= 0 else 128 - code
