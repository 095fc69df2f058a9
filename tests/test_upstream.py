"""Reading upstream index pages for upload times and yank state (PEP 700, PEP 592)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path  # noqa: TC003 - pytest fixtures resolve annotations
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from wheelhouse.upstream import FileFacts, fetch_file_facts

if TYPE_CHECKING:
    from collections.abc import Iterator

Seen = list[tuple[int, str, "str | None"]]
Index = tuple[str, Seen, str]
SHA = {"alpha": "a" * 64, "beta": "b" * 64, "gamma": "c" * 64}


class _Index(http.server.BaseHTTPRequestHandler):
    """PEP 691 JSON pages for three projects; records who asked for what."""

    seen: ClassVar[Seen] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.client_address[1], self.path, self.headers.get("Authorization")))
        name = self.path.strip("/").split("/")[-1]
        if name == "Beta":  # not normalised: redirected, as PyPI does
            self.send_response(301)
            self.send_header("Location", "/simple/beta/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if name not in SHA:
            body = b"not found"
            self.send_response(404)
        else:
            body = json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": [{
                "filename": f"{name}-1.0-py3-none-any.whl",
                "url": f"../../files/{name}-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA[name]},
                "upload-time": "2025-01-02T03:04:05Z",
                "yanked": "bad build" if name == "gamma" else False,
            }]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(params=["HTTP/1.1", "HTTP/1.0"])
def index(request: pytest.FixtureRequest) -> Iterator[Index]:
    seen: Seen = []
    handler = type("H", (_Index,), {"seen": seen, "protocol_version": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", seen, request.param
    finally:
        server.shutdown()
        server.server_close()


def _wanted(*names: str) -> dict[str, list[tuple[str, str]]]:
    return {n: [(f"{n.lower()}-1.0-py3-none-any.whl", SHA[n.lower()])] for n in names}


def test_facts_over_one_kept_alive_connection(
    index: Index,
) -> None:
    url, seen, protocol = index
    facts = fetch_file_facts([url], _wanted("alpha", "Beta", "gamma"), jobs=1, isolated=True)
    assert facts == {
        "alpha-1.0-py3-none-any.whl": FileFacts("2025-01-02T03:04:05Z", None),
        "beta-1.0-py3-none-any.whl": FileFacts("2025-01-02T03:04:05Z", None),
        "gamma-1.0-py3-none-any.whl": FileFacts("2025-01-02T03:04:05Z", "bad build"),
    }
    assert [path for _, path, _ in seen] == [
        "/simple/alpha/", "/simple/Beta/", "/simple/beta/", "/simple/gamma/"]
    ports = {port for port, _, _ in seen}
    # HTTP/1.1 keeps the connection: one for all four requests. An HTTP/1.0
    # server closes it after each answer, and the client opens the next one.
    assert len(ports) == (1 if protocol == "HTTP/1.1" else 4)


def test_credentials_in_the_url_are_sent_and_errors_leave_facts_unknown(
    index: Index,
) -> None:
    url, seen, _ = index
    with_auth = url.replace("http://", "http://user:s%3Acret@")
    wanted = _wanted("alpha") | {"missing": [("missing-1.0-py3-none-any.whl", "d" * 64)]}
    facts = fetch_file_facts([with_auth], wanted, jobs=2, isolated=True)
    assert set(facts) == {"alpha-1.0-py3-none-any.whl"}  # a 404 is not an error
    assert {auth for _, _, auth in seen} == {"Basic dXNlcjpzOmNyZXQ="}  # user:s:cret


def test_a_file_whose_hash_differs_gets_no_facts(
    index: Index,
) -> None:
    url, _, _ = index
    wanted = {"alpha": [("alpha-1.0-py3-none-any.whl", "e" * 64)]}
    assert fetch_file_facts([url], wanted, jobs=1, isolated=True) == {}


def test_a_url_whose_last_segment_is_not_one_file_name_is_left_to_pip(tmp_path: Path) -> None:
    from wheelhouse.acquire import _fetch_directly
    from wheelhouse.resolve import Resolved

    class Recorder:
        asked: ClassVar[list[str]] = []

        def proxied(self, url: str) -> bool:
            return False

        def download(self, url: str, dest: Path, sha256: str) -> None:
            self.asked.append(url)
            dest.write_bytes(b"x")

        def close(self) -> None:
            pass

    evil = Resolved("evil", "1.0", "http://127.0.0.1:9/files/..%2F..%2Fevil-1.0-py3-none-any.whl",
                    "wheel", "a" * 64)
    fine = Resolved("fine", "1.0", "http://127.0.0.1:9/files/fine-1.0-py3-none-any.whl",
                    "wheel", "b" * 64)
    result: dict[str, Path] = {}
    left = _fetch_directly(Recorder(), [evil, fine], tmp_path / "d", 2, result)
    assert left == [evil]
    assert Recorder.asked == [fine.url]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "fine-1.0-py3-none-any.whl"]
