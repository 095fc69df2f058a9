"""The server: real pip and uv through `run`, HTTP semantics, and the security table."""

from __future__ import annotations

import http.client
import ipaddress
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import Venv, isolated_env, run, wheelhouse
from wheelhouse.add import add_paths
from wheelhouse.house import House
from wheelhouse.serve import base_url, negotiate, parse_ranges, serving
from wheelhouse.store import Store

UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> House:
    tmp = tmp_path_factory.mktemp("serve")
    d = tmp / "dists"
    build_wheel(d, "app", "1.0", requires_dist=["lib"])
    build_wheel(d, "lib", "1.0")
    build_wheel(d, "Big.Thing", "1.0", padding=3 * 1024 * 1024)
    build_sdist(d, "srconly", "1.0")
    h = House.open(tmp / "house", create=True)
    add_paths(h, Store.open(tmp / "store"), [d])
    (tmp / "secret.txt").write_text("outside the house")
    (h.files_dir / "evil-1.0-py3-none-any.whl").symlink_to(tmp / "secret.txt")
    return h


def _get(url: str, path: str, *, method: str = "GET",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_run_pip_installs_from_the_house_only(house: House, venv: Venv, tmp_path: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text("app\nsrconly\n")
    # A pip configuration naming another index must not matter.
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nextra-index-url = http://127.0.0.1:9/simple/\n")
    env = isolated_env({"PIP_CONFIG_FILE": str(conf)})
    proc = run([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--",
                sys.executable, "-m", "pip", "--python", str(venv.python), "install",
                "-r", str(req)], env=env)
    assert proc.returncode == 0
    assert venv.installed() == {"app": "1.0", "lib": "1.0", "srconly": "1.0"}


def test_run_uv_installs_from_the_house(house: House, venv: Venv) -> None:
    assert UV is not None
    run([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--", UV, "pip",
         "install", "--python", str(venv.python), "app"], env=isolated_env())
    assert venv.installed() == {"app": "1.0", "lib": "1.0"}


def test_run_pip_and_uv_skip_a_yanked_file_and_take_only_the_house(
    tmp_path: Path, venv: Venv
) -> None:
    assert UV is not None
    d = tmp_path / "dists"
    build_wheel(d, "lib", "1.0")
    build_wheel(d, "lib", "2.0")
    h = House.open(tmp_path / "house", create=True)
    add_paths(h, Store.open(tmp_path / "store"), [d])
    h.yank("lib==2.0", reason="broken")
    # Settings that would add another source (all unreachable) are not taken:
    # variables, a uv.toml named by one, and the user's own uv.toml (found
    # unless run says not to: the environment here does not).
    (tmp_path / "uv.toml").write_text('find-links = ["http://127.0.0.1:9/links/"]\n')
    (tmp_path / "config" / "uv").mkdir(parents=True)
    (tmp_path / "config" / "uv" / "uv.toml").write_text(
        'extra-index-url = ["http://127.0.0.1:9/simple/"]\n')
    env = isolated_env({"UV_FIND_LINKS": "http://127.0.0.1:9/links/", "UV_NO_INDEX": "1",
                        "UV_CONFIG_FILE": str(tmp_path / "uv.toml"),
                        "XDG_CONFIG_HOME": str(tmp_path / "config")})
    del env["UV_NO_CONFIG"]
    for installer in ([UV, "pip", "install", "--python", str(venv.python)],
                      [sys.executable, "-m", "pip", "--python", str(venv.python), "install"]):
        run([sys.executable, "-m", "wheelhouse", "run", str(h.root), "--", *installer, "lib"],
            env=env)
        assert venv.installed() == {"lib": "1.0"}  # not the yanked 2.0
        run([sys.executable, "-m", "pip", "--python", str(venv.python), "uninstall", "-y",
             "lib"], env=isolated_env())


def _unshare_net() -> list[str] | None:
    """A command prefix running its command in a new network namespace (loopback down)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if probe.returncode == 0 else None


def test_run_where_loopback_is_down_says_so_and_runs_nothing(
    house: House, tmp_path: Path
) -> None:
    prefix = _unshare_net()
    if prefix is None:
        pytest.skip("no unprivileged network namespaces here (unshare -rn)")
    marker = tmp_path / "ran"
    proc = run([*prefix, sys.executable, "-m", "wheelhouse", "run", str(house.root), "--",
                "touch", str(marker)], env=isolated_env(), check=False)
    assert proc.returncode == 4  # a network failure
    assert "cannot connect to the house's own server at http://127.0.0.1:" in proc.stderr
    assert "loopback interface" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_run_exits_with_the_command_status_and_stops_the_server(house: House) -> None:
    code = ("import os, urllib.request, sys;"
            "urllib.request.urlopen(os.environ['WHEELHOUSE_URL'] + '/simple/').read();"
            "print(os.environ['WHEELHOUSE_URL']); sys.exit(7)")
    proc = run([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--",
                sys.executable, "-c", code], env=isolated_env(), check=False)
    assert proc.returncode == 7
    port = int(proc.stdout.strip().rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def test_run_command_not_found_is_127(house: House) -> None:
    proc = run([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--",
                "no-such-command-xyz"], env=isolated_env(), check=False)
    assert proc.returncode == 127
    assert "command not found" in proc.stderr and "Traceback" not in proc.stderr


def test_run_command_not_executable_is_126_and_says_so(house: House, tmp_path: Path) -> None:
    script = tmp_path / "notes.txt"
    script.write_text("not a program\n")
    proc = run([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--", str(script)],
               env=isolated_env(), check=False)
    assert proc.returncode == 126
    assert f"cannot run {script}: permission denied" in proc.stderr
    # A command that runs and exits 126 itself is not second-guessed.
    own = run([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--",
               sys.executable, "-c", "raise SystemExit(126)"], env=isolated_env(), check=False)
    assert own.returncode == 126 and "cannot run" not in own.stderr


def test_run_forwards_sigterm(house: House) -> None:
    code = "import time, sys\nprint('ready', flush=True)\ntime.sleep(30)"
    with subprocess.Popen([sys.executable, "-m", "wheelhouse", "run", str(house.root), "--",
                           sys.executable, "-c", code], env=isolated_env(),
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM


def test_missing_house_is_a_clear_error(tmp_path: Path) -> None:
    proc = wheelhouse("run", str(tmp_path / "nope"), "--", "true", env=isolated_env(),
                      check=False)
    assert proc.returncode == 1 and "no house at" in proc.stderr


def test_port_in_use_is_named(house: House) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = wheelhouse("serve", str(house.root), "--port", str(port), env=isolated_env(),
                          check=False)
    assert proc.returncode == 1 and str(port) in proc.stderr


def test_pep691_negotiation_and_redirects(house: House) -> None:
    with serving(house) as url:
        status, headers, body = _get(url, "/simple/app/", headers={
            "Accept": "application/vnd.pypi.simple.v1+json"})
        assert status == 200 and headers["content-type"] == "application/vnd.pypi.simple.v1+json"
        assert body == (house.root / "simple" / "app" / "index.json").read_bytes()
        status, headers, body = _get(url, "/simple/app/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert body == (house.root / "simple" / "app" / "index.html").read_bytes()
        assert headers["vary"] == "Accept"
        status, headers, _ = _get(url, "/simple/Big.Thing/")
        assert status == 301 and headers["location"] == "/simple/big-thing/"
        status, headers, _ = _get(url, "/simple/app")
        assert status == 301 and headers["location"] == "/simple/app/"
        status, _, _ = _get(url, "/simple/app/", headers={"Accept": "application/json"})
        assert status == 406


def test_etag_range_and_head(house: House) -> None:
    entry = house.read_manifest().by_filename()["big_thing-1.0-py3-none-any.whl"]
    data = house.file_path(entry.filename).read_bytes()
    path = f"/files/{entry.filename}"
    with serving(house) as url:
        status, headers, body = _get(url, path)
        assert status == 200 and body == data and headers["etag"] == f'"{entry.sha256}"'
        assert headers["content-length"] == str(len(data))
        status, _, body = _get(url, path, headers={"If-None-Match": f'"{entry.sha256}"'})
        assert status == 304 and body == b""
        status, headers, body = _get(url, path, headers={"Range": "bytes=100-199"})
        assert status == 206 and body == data[100:200]
        assert headers["content-range"] == f"bytes 100-199/{len(data)}"
        status, _, body = _get(url, path, headers={"Range": "bytes=-50"})
        assert status == 206 and body == data[-50:]
        status, headers, body = _get(url, path, headers={"Range": "bytes=0-9,20-29"})
        assert status == 206 and headers["content-type"].startswith("multipart/byteranges")
        assert data[0:10] in body and data[20:30] in body
        status, headers, _ = _get(url, path, headers={"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
        status, headers, body = _get(url, path, method="HEAD")
        assert status == 200 and body == b"" and headers["content-length"] == str(len(data))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/files/../wheelhouse.json", 404, id="dotdot"),
        pytest.param("/files/%2e%2e/wheelhouse.json", 404, id="encoded-dotdot"),
        pytest.param("/files/..%2fwheelhouse.json", 404, id="encoded-slash"),
        pytest.param("/files/%2Fetc%2Fpasswd", 404, id="encoded-absolute"),
        pytest.param("//etc/passwd", 404, id="absolute"),
        pytest.param("/files/app-1.0-py3-none-any.whl%00.txt", 404, id="nul"),
        pytest.param("/files/evil-1.0-py3-none-any.whl", 404, id="symlink-out"),
        pytest.param("/wheelhouse.json", 404, id="manifest-not-served"),
        pytest.param("/.wheelhouse.lock", 404, id="lock-not-served"),
        pytest.param("/simple/.manifest-sha256", 404, id="state-not-served"),
        pytest.param("/files/", 404, id="no-listing"),
        pytest.param("/files/app-1.0-py3-none-any.whl", 200, id="a-real-file"),
        pytest.param("/files/app-1.0-py3-none-any.whl.metadata", 200, id="metadata"),
    ],
)
def test_nothing_outside_the_house_is_served(house: House, path: str, status: int) -> None:
    with serving(house) as url:
        got, _, body = _get(url, path)
    assert got == status
    assert b"outside the house" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_only_get_and_head(house: House, method: str) -> None:
    with serving(house) as url:
        status, headers, _ = _get(url, "/simple/", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_malformed_request_gets_400_and_others_are_still_served(house: House) -> None:
    with serving(house) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GARBAGE\r\n\r\n")
            assert b" 400 " in s.recv(1024)
        slow = socket.create_connection((host, int(port)), timeout=5)  # says nothing
        try:
            status, _, _ = _get(url, "/simple/")
            assert status == 200
        finally:
            slow.close()


def test_pip_download_of_a_large_file_through_the_server(
    house: House, tmp_path: Path
) -> None:
    with serving(house) as url:
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--index-url",
             f"{url}/simple/", "-d", str(tmp_path), "big.thing"], env=isolated_env())
    got = tmp_path / "big_thing-1.0-py3-none-any.whl"
    assert got.read_bytes() == house.file_path(got.name).read_bytes()


def test_serve_stops_on_sigterm(house: House) -> None:
    with subprocess.Popen([sys.executable, "-m", "wheelhouse", "serve", str(house.root),
                           "--port", "0"], env=isolated_env(), stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving" in line and "127.0.0.1" in line
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (None, "html"), ("*/*", "html"), ("text/html", "html"),
        ("application/vnd.pypi.simple.v1+json", "json"),
        ("application/vnd.pypi.simple.latest+json", "json"),
        ("application/vnd.pypi.simple.v1+json, text/html;q=0.01", "json"),
        ("text/html;q=0.9, application/vnd.pypi.simple.v1+json;q=0.8", "html"),
        ("application/vnd.pypi.simple.v1+json;q=0", "html"),
    ],
)
def test_negotiate(accept: str | None, kind: str) -> None:
    choice = negotiate(accept)
    if accept == "application/vnd.pypi.simple.v1+json;q=0":
        assert choice is None
    else:
        assert choice is not None and choice[1] == kind


def test_parse_ranges_edge_cases() -> None:
    assert parse_ranges("bytes=0-0", 10) == [(0, 0)]
    assert parse_ranges("bytes=5-100", 10) == [(5, 9)]
    # Malformed: ignored (the whole file), as RFC 9110 14.2 asks, not 416.
    assert parse_ranges("bytes=9-5", 10) == []
    assert parse_ranges("bytes=abc", 10) == []
    assert parse_ranges("bytes=\u00b2-", 10) == []
    assert parse_ranges("items=0-1", 10) == []
    assert parse_ranges("bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(17)), 100) == []
    # Unsatisfiable (answered 416).
    assert parse_ranges("bytes=10-", 10) is None
    assert parse_ranges("bytes=-0", 10) is None
    # Overlapping and adjacent ranges merge: never longer than the file.
    assert parse_ranges("bytes=" + ",".join(["0-"] * 16), 10) == [(0, 9)]
    assert parse_ranges("bytes=5-7,0-2,3-4,8-8", 10) == [(0, 8)]
    assert parse_ranges("bytes=0-1,4-5,-2", 10) == [(0, 1), (4, 5), (8, 9)]


def test_a_house_changed_while_serving_is_served_as_it_now_is(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    h = House.open(tmp_path / "house", create=True)
    add_paths(h, store, [build_wheel(tmp_path / "d", "first", "1.0")])
    with serving(h) as url:
        assert _get(url, "/simple/second/")[0] == 404
        add_paths(h, store, [build_wheel(tmp_path / "d", "second", "1.0")])
        status, _, body = _get(url, "/simple/second/")
        assert status == 200 and b"second-1.0-py3-none-any.whl" in body


def _print_env_lines(house: House, host: str = "127.0.0.1") -> list[str]:
    """What ``wheelhouse serve --host HOST --port 0 --print-env`` prints before it waits."""
    with subprocess.Popen([sys.executable, "-m", "wheelhouse", "serve", str(house.root),
                           "--host", host, "--port", "0", "--print-env"], env=isolated_env(),
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("export WHEELHOUSE_URL="):  # the last
            lines.append(proc.stdout.readline())
            assert lines[-1], "--print-env ended early"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    return lines


def _print_env(house: House, host: str) -> dict[str, str]:
    """The ``export`` lines of ``serve --print-env``: name -> value as written for a shell."""
    return dict(line.removeprefix("export ").strip().split("=", 1)
                for line in _print_env_lines(house, host) if line.startswith("export "))


def test_print_env(house: House) -> None:
    lines = _print_env_lines(house)
    unsets = {line.removeprefix("unset ").strip() for line in lines if line.startswith("unset ")}
    assert {"UV_FIND_LINKS", "UV_CONFIG_FILE", "UV_INDEX", "PIP_EXTRA_INDEX_URL"} <= unsets
    exports = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines
                   if line.startswith("export "))
    assert exports["PIP_NO_INDEX"] == "1"
    assert exports["PIP_INDEX_URL"].endswith("/simple/")
    assert exports["PIP_FIND_LINKS"].endswith("/find-links.html")
    assert exports["UV_DEFAULT_INDEX"] == exports["PIP_INDEX_URL"]
    assert exports["UV_NO_CONFIG"] == "1" and "UV_FIND_LINKS" not in exports


def _serve_says(house: House, host: str) -> str:
    """What ``wheelhouse serve --host HOST --port 0`` prints before it waits (stdout)."""
    with subprocess.Popen([sys.executable, "-m", "wheelhouse", "serve", str(house.root),
                           "--host", host, "--port", "0"], env=isolated_env(),
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Ctrl-C"):  # the last
            lines.append(proc.stdout.readline())
            assert lines[-1], f"serve ended early: {lines}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    return "".join(lines)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


_NEEDS_IPV6_LOOPBACK = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


@pytest.mark.parametrize(("host", "local"), [
    pytest.param("0.0.0.0", "127.0.0.1", id="ipv4"),
    pytest.param("::", "[::1]", id="ipv6",
                 marks=_NEEDS_IPV6_LOOPBACK),
])
def test_serve_on_every_interface_says_so_and_gives_a_url_for_this_machine(
    house: House, host: str, local: str
) -> None:
    said = _serve_says(house, host)
    m = re.search(rf"^serving {re.escape(str(house.root))} on every interface "
                  rf"\({re.escape(host)}\) at port (\d+)$", said, re.MULTILINE)
    assert m is not None, said
    url = f"http://{local}:{m.group(1)}"
    assert f"  from this machine: {url} (" in said
    assert f"  pip install --index-url {url}/simple/ PACKAGE\n" in said


@pytest.mark.parametrize(("host", "url"), [
    pytest.param("127.0.0.2", "http://127.0.0.2", id="ipv4"),
    pytest.param("::1", "http://[::1]", id="ipv6",
                 marks=_NEEDS_IPV6_LOOPBACK),
    # As a URL writes it: brackets taken off, not looked up as a name.
    pytest.param("[::1]", "http://[::1]", id="ipv6-bracketed",
                 marks=_NEEDS_IPV6_LOOPBACK),
])
def test_serve_on_one_address_gives_that_addresss_url(
    house: House, host: str, url: str
) -> None:
    said = _serve_says(house, host)
    m = re.search(rf"^serving {re.escape(str(house.root))} at {re.escape(url)}:(\d+)$",
                  said, re.MULTILINE)
    assert m is not None, said
    assert f"  pip install --index-url {url}:{m.group(1)}/simple/ PACKAGE\n" in said
    assert "every interface" not in said


@pytest.mark.parametrize(("host", "zone", "url"), [
    pytest.param("127.0.0.2", "", "http://127.0.0.2:8080", id="ipv4"),
    pytest.param("0.0.0.0", "", "http://127.0.0.1:8080", id="ipv4-every-interface"),
    pytest.param("::1", "", "http://[::1]:8080", id="ipv6"),
    pytest.param("::", "", "http://[::1]:8080", id="ipv6-every-interface"),
    # RFC 6874: the zone follows "%25" (a "%" is quoted in a URL).
    pytest.param("fe80::1", "eth0", "http://[fe80::1%25eth0]:8080", id="zone"),
    pytest.param("fe80::1%eth0", "", "http://[fe80::1%25eth0]:8080", id="zone-in-host"),
    pytest.param("fe80::1", "3", "http://[fe80::1%253]:8080", id="zone-index"),
    pytest.param("fe80::1", "my net", "http://[fe80::1%25my%20net]:8080", id="zone-quoted"),
])
def test_base_url_brackets_an_ipv6_host_and_quotes_its_zone(
    host: str, zone: str, url: str
) -> None:
    assert base_url(host, 8080, zone=zone) == url


def _link_local_host() -> str | None:
    """A link-local IPv6 address of this machine with its zone (``fe80::1%eth0``), if bindable."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # Address (32 hex digits), interface index, prefix length, scope (20: link), flags, name.
        fields = line.split()
        if len(fields) != 6 or fields[3] != "20":
            continue
        host = f"{ipaddress.IPv6Address(int(fields[0], 16))}%{fields[5]}"
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(socket.getaddrinfo(host, 0, socket.AF_INET6, socket.SOCK_STREAM)[0][4])
        except OSError:
            continue
        return host
    return None


LINK_LOCAL = _link_local_host()


@pytest.mark.parametrize("host", [
    pytest.param("::1", id="loopback",
                 marks=_NEEDS_IPV6_LOOPBACK),
    pytest.param(LINK_LOCAL, id="link-local-zone",
                 marks=pytest.mark.skipif(LINK_LOCAL is None,
                                          reason="no link-local IPv6 address to bind")),
])
def test_port_in_use_on_ipv6_names_the_address_in_brackets(
    house: House, host: str | None
) -> None:
    assert host is not None
    with socket.socket(socket.AF_INET6) as s:
        s.bind(socket.getaddrinfo(host, 0, socket.AF_INET6, socket.SOCK_STREAM)[0][4])
        s.listen()
        port = s.getsockname()[1]
        proc = wheelhouse("serve", str(house.root), "--host", host, "--port", str(port),
                          env=isolated_env(), check=False)
    assert proc.returncode == 1
    # A host:port pair as people write one: "[fe80::1%eth0]:8080", not "fe80::1%eth0:8080".
    assert proc.stderr.startswith(f"error: cannot listen on [{host}]:{port}: "), proc.stderr
    assert "choose another --port" in proc.stderr


@pytest.mark.skipif(LINK_LOCAL is None, reason="no link-local IPv6 address to bind")
def test_serve_and_run_on_a_link_local_address_give_urls_with_its_zone(house: House) -> None:
    assert LINK_LOCAL is not None
    address, _, zone = LINK_LOCAL.partition("%")
    url = f"http://[{address}%25{zone}]"
    said = _serve_says(house, LINK_LOCAL)
    m = re.search(rf"^serving {re.escape(str(house.root))} at {re.escape(url)}:(\d+)$",
                  said, re.MULTILINE)
    assert m is not None, said
    here = f"{url}:{m.group(1)}".removeprefix("http://")
    assert (f"  pip install --trusted-host '{here}' --index-url {url}:{m.group(1)}/simple/ "
            "PACKAGE\n") in said
    # run reaches its own server there, and gives the command that URL.
    done = wheelhouse("run", str(house.root), "--host", LINK_LOCAL, "--", sys.executable, "-c",
                      "import os; print(os.environ['PIP_INDEX_URL'])", env=isolated_env())
    assert re.fullmatch(rf"{re.escape(url)}:\d+/simple/", done.stdout.strip()), done.stdout


def _non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback and can be bound, if there is one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            # Connecting a UDP socket sends nothing: it only picks the address a
            # packet to there would leave from (TEST-NET-3, RFC 5737).
            s.connect(("203.0.113.1", 9))
            address = str(s.getsockname()[0])
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


NON_LOOPBACK = _non_loopback_ipv4()


@pytest.mark.skipif(NON_LOOPBACK is None, reason="this machine has no non-loopback IPv4 "
                    "address to bind (no default route)")
def test_run_and_serve_on_a_non_loopback_address_let_pip_use_plain_http(
    house: House, venv: Venv
) -> None:
    assert NON_LOOPBACK is not None
    # pip ignores a plain-http index on a host that is not loopback unless it is
    # trusted: run trusts the one it serves on, keeping the user's own.
    env = isolated_env({"PIP_TRUSTED_HOST": "pypi.example.org"})
    done = wheelhouse("run", str(house.root), "--host", NON_LOOPBACK, "--", sys.executable,
                      "-m", "pip", "--python", str(venv.python), "install", "app", env=env)
    assert venv.installed() == {"app": "1.0", "lib": "1.0"}, done.stdout + done.stderr
    shown = wheelhouse("run", str(house.root), "--host", NON_LOOPBACK, "--", sys.executable,
                       "-c", "import os; print(os.environ['PIP_INDEX_URL'], "
                       "os.environ['PIP_TRUSTED_HOST'])", env=env).stdout.split()
    m = re.fullmatch(rf"http://({re.escape(NON_LOOPBACK)}:\d+)/simple/", shown[0])
    assert m is not None, shown
    assert shown[1:] == ["pypi.example.org", m.group(1)]
    # uv takes plain http from any host as it is (UV_INSECURE_HOST is about TLS).
    assert UV is not None
    venv2 = Venv(venv.root.with_name("venv-uv"))
    run([UV, "venv", "--quiet", "--python", sys.executable, str(venv2.root)])
    wheelhouse("run", str(house.root), "--host", NON_LOOPBACK, "--", UV, "pip", "install",
               "--python", str(venv2.python), "app", env=isolated_env())
    assert venv2.installed() == {"app": "1.0", "lib": "1.0"}
    # serve says the same, in its hints and in --print-env (which adds to the
    # value of the shell that reads it).
    said = _serve_says(house, NON_LOOPBACK)
    m = re.search(rf"^serving {re.escape(str(house.root))} at "
                  rf"http://({re.escape(NON_LOOPBACK)}:\d+)$", said, re.MULTILINE)
    assert m is not None, said
    assert (f"  pip install --trusted-host {m.group(1)} --index-url http://{m.group(1)}/simple/ "
            "PACKAGE\n") in said
    exports = _print_env(house, NON_LOOPBACK)
    here = exports["WHEELHOUSE_URL"].removeprefix("http://")
    sh = shutil.which("sh")
    assert sh is not None
    for before, after in [("", here), ("pypi.example.org", f"pypi.example.org {here}")]:
        script = "\n".join(f"export {k}={v}" for k, v in exports.items())
        got = run([sh, "-c", f'{script}\nprintf "%s" "$PIP_TRUSTED_HOST"'],
                  env={"PATH": "/usr/bin:/bin", "PIP_TRUSTED_HOST": before}).stdout
        assert got == after


def test_run_on_loopback_trusts_no_host(house: House) -> None:
    for host in ("127.0.0.1", "0.0.0.0"):
        shown = wheelhouse("run", str(house.root), "--host", host, "--", sys.executable, "-c",
                           "import os; print(os.environ.get('PIP_TRUSTED_HOST'))",
                           env=isolated_env())
        assert shown.stdout.strip() == "None"
    assert "PIP_TRUSTED_HOST" not in _print_env(house, "127.0.0.1")


def _exchange(url: str, request: bytes) -> bytes:
    """Send raw bytes; read until the server closes the connection (or 5 s pass)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<still open>")
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /simple/ HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b" 400 "),
        (b"GET /simple/ HTTP/1.1\r\nNoColonHere\r\n\r\n", b" 400 "),
        (b"GET /simple/ HTTP/1.1\r\nBad Name : x\r\n\r\n", b" 400 "),
        (b"GET /simple/ HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101))
         + b"\r\n", b" 431 "),
        (b"GET /simple/ HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", b" 431 "),
        (b"GET /simple/ HTTP/2.0\r\n\r\n", b" 505 "),
        (b"GET /simple/ FTP/1.1\r\n\r\n", b" 400 "),
        (b"GET /simple/\r\n\r\n", b" 400 "),
    ],
    ids=["folded", "no-colon", "space-in-name", "101-headers", "long-line", "http2", "bad-version",
         "http0.9"],
)
def test_bad_request_heads_are_refused(house: House, request_bytes: bytes, status: bytes) -> None:
    with serving(house) as url:
        reply = _exchange(url, request_bytes)
        assert reply.startswith(b"HTTP/1.1" + status), reply[:200]
        assert b"<still open>" not in reply  # and the connection is closed


def test_header_names_any_case_and_connection_handling(house: House) -> None:
    with serving(house) as url:
        # Names are case-insensitive; HTTP/1.0 closes after one response.
        reply = _exchange(url, b"GET /simple/app/ HTTP/1.0\r\n"
                          b"aCCePT: application/vnd.pypi.simple.v1+json\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert b"Content-Type: application/vnd.pypi.simple.v1+json" in reply
        # Two pipelined HTTP/1.1 requests, the second asking to close: two answers, then closed.
        reply = _exchange(url, b"GET /simple/app/ HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"HEAD /simple/lib/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply.count(b"HTTP/1.1 200 ") == 2
        assert b"<still open>" not in reply
        # HTTP/1.1 stays open by default.
        assert _exchange(url, b"HEAD /simple/ HTTP/1.1\r\nHost: x\r\n\r\n").endswith(
            b"<still open>")
        # Connection is a list of tokens.
        reply = _exchange(url, b"HEAD /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close, TE\r\n"
                          b"TE: trailers\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 ") and b"<still open>" not in reply
        # An HTTP/1.0 client that asks to keep the connection is told it is kept.
        reply = _exchange(url, b"HEAD /simple/ HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        assert b"\r\nConnection: keep-alive\r\n" in reply and reply.endswith(b"<still open>")
        # A 304 for a negotiated page says what it varies by, as its 200 does.
        status, headers, _ = _get(url, "/simple/app/")
        status, headers304, _ = _get(url, "/simple/app/",
                                     headers={"If-None-Match": headers["etag"]})
        assert status == 304 and headers304["vary"] == headers["vary"] == "Accept"


def test_cached_page_replaced_by_a_symlink_is_not_served(tmp_path: Path) -> None:
    h = House.open(tmp_path / "house", create=True)
    add_paths(h, Store.open(tmp_path / "store"), [build_wheel(tmp_path / "d", "app", "1.0")])
    page = h.root / "simple" / "app" / "index.html"
    (tmp_path / "secret.html").write_text("outside the house")
    with serving(h) as url:
        assert _get(url, "/simple/app/")[0] == 200  # now cached
        page.unlink()
        page.symlink_to(tmp_path / "secret.html")
        status, _, body = _get(url, "/simple/app/")
        assert status == 404 and b"outside" not in body


def test_clients_that_go_away_leave_no_traceback(house: House) -> None:
    # Clients reset connections, close them mid-download or between requests
    # all the time; the server says nothing about it and goes on serving.
    import struct

    with subprocess.Popen([sys.executable, "-m", "wheelhouse", "serve", str(house.root),
                           "--port", "0"], env=isolated_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().split(" at ")[1].strip()
        host, port = url.removeprefix("http://").split(":")
        request = (b"GET /files/big_thing-1.0-py3-none-any.whl HTTP/1.1\r\n"
                   b"Host: x\r\n\r\n")
        for abort in ("reset mid-response", "close mid-response", "reset when idle"):
            with socket.create_connection((host, int(port))) as s:
                if abort != "reset when idle":
                    s.sendall(request)
                    assert s.recv(1024).startswith(b"HTTP/1.1 200")
                if abort.startswith("reset"):
                    # SO_LINGER 0: close() sends RST instead of FIN.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
        time.sleep(0.5)
        status, _headers, body = _get(url, "/simple/")
        assert status == 200 and b"big-thing" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read()
    assert "Traceback" not in err and "Exception" not in err, err


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        ((b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 41\r\n\r\n"
         b"GET /nonexistent-smuggled HTTP/1.1\r\n\r\n\r\n"), b" 400 "),
        ((b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"25\r\nGET /nonexistent-smuggled HTTP/1.1\r\n\r\n0\r\n\r\n"), b" 400 "),
        ((b"POST /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 41\r\n\r\n"
         b"GET /nonexistent-smuggled HTTP/1.1\r\n\r\n\r\n"), b" 405 "),
    ],
    ids=["get-with-length", "get-chunked", "post-with-body"],
)
def test_a_request_body_is_never_taken_for_the_next_request(
    house: House, request_bytes: bytes, status: bytes
) -> None:
    # The server reads no bodies: one left on the connection would be parsed
    # as a second request (smuggling, behind a proxy). One answer, then closed.
    with serving(house) as url:
        reply = _exchange(url, request_bytes)
    assert reply.startswith(b"HTTP/1.1" + status), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1, reply
    assert b"<still open>" not in reply


def test_an_index_left_behind_by_a_killed_change_is_said_and_put_right(
    tmp_path: Path, store: Store
) -> None:
    d = tmp_path / "dists"
    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [build_wheel(d, "lib", "1.0")])
    # A change killed (SIGKILL cannot wait) after its manifest, before its index.
    other = House.open(tmp_path / "other", create=True)
    add_paths(other, store, [build_wheel(d, "newer", "1.0")])
    (entry,) = other.read_manifest().files
    house.link_from_store(store, entry)
    house.write_manifest(house.read_manifest().with_files([entry]))
    assert [p.path for p in House.open(house.root).verify()] == ["simple/"]
    # Serving it rewrites the index first, and says so.
    with serving(house.root) as url:
        status, _headers, body = _get(url, "/simple/")
    assert status == 200 and b"newer" in body
    assert House.open(house.root).verify() == []


def test_a_host_that_is_not_this_machines_is_named_as_the_problem(house: House) -> None:
    out = wheelhouse("serve", str(house.root), "--host", "999.1.1.1", "--port", "0",
                     env=isolated_env(), check=False)
    assert out.returncode == 1
    assert "999.1.1.1" in out.stderr and "--host must be" in out.stderr
    assert "--port" not in out.stderr.split("hint:")[1]


def test_run_takes_its_options_after_the_house_too(house: House) -> None:
    port = 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = wheelhouse("run", str(house.root), "--port", str(port), "--", sys.executable, "-c",
                     "import os; print(os.environ['PIP_FIND_LINKS'])", env=isolated_env())
    assert out.stdout.strip() == f"http://127.0.0.1:{port}/find-links.html"
    bad = wheelhouse("run", str(house.root), "--verbose", "--", "true", env=isolated_env(),
                     check=False)
    assert bad.returncode == 2 and "only --host and --port" in bad.stderr
    # A command of its own with a '--' in it is the command, as before.
    out = wheelhouse("run", str(house.root), sys.executable, "-c",
                     "import sys; print(sys.argv[1:])", "--", "x", env=isolated_env())
    assert out.stdout.strip() == "['--', 'x']"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 30\r\n\r\n",
        b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n",
        (b"GET /simple/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: identity\r\n\r\n"),
    ],
    ids=["two-lengths", "signed-length", "two-encodings"],
)
def test_ambiguous_message_framing_is_refused(house: House, request_bytes: bytes) -> None:
    with serving(house) as url:
        reply = _exchange(url, request_bytes)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1 and b"<still open>" not in reply


def test_run_options_after_the_house_without_the_separator_are_refused(house: House) -> None:
    out = wheelhouse("run", str(house.root), "--port", "0", "echo", "hi", env=isolated_env(),
                     check=False)
    assert out.returncode == 2 and "put run's options before HOUSE" in out.stderr


def _copy_house(house: House, tmp_path: Path) -> House:
    # A private copy (files copied, not linked): the module's house is shared.
    shutil.copytree(house.root, tmp_path / "house", symlinks=True)
    return House.open(tmp_path / "house")


def test_a_file_whose_bytes_changed_is_not_served(
    house: House, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = _copy_house(house, tmp_path)
    entry = h.read_manifest().by_filename()["lib-1.0-py3-none-any.whl"]
    path = h.file_path(entry.filename)
    good = path.read_bytes()
    with serving(h) as url:
        assert _get(url, f"/files/{entry.filename}")[0] == 200
        # The same size, edited in place (a hard-linked copy edited elsewhere).
        path.chmod(0o644)
        with path.open("r+b") as f:
            f.seek(20)
            f.write(bytes([good[20] ^ 1]))
        status, _, body = _get(url, f"/files/{entry.filename}")
        assert status == 404 and b"does not match the manifest" in body
        assert f"the manifest says sha256={entry.sha256}" in caplog.text
        # Longer, then right again.
        path.write_bytes(good + b"x")
        assert _get(url, f"/files/{entry.filename}")[0] == 404
        assert f"{len(good) + 1} bytes, the manifest says {len(good)}" in caplog.text
        path.write_bytes(good)
        status, headers, body = _get(url, f"/files/{entry.filename}")
        assert status == 200 and body == good and headers["etag"] == f'"{entry.sha256}"'
        # A metadata file is checked against the manifest's metadata digest too.
        meta = h.file_path(entry.filename + ".metadata")
        meta.chmod(0o644)
        meta.write_bytes(meta.read_bytes() + b"Extra: header\n")
        assert _get(url, f"/files/{entry.filename}.metadata")[0] == 404


def test_files_the_manifest_does_not_name_are_not_served(house: House, tmp_path: Path) -> None:
    import os

    h = _copy_house(house, tmp_path)
    (h.files_dir / "stray-1.0-py3-none-any.whl").write_bytes(b"not in the manifest")
    (h.files_dir / "srconly-1.0.tar.gz.metadata").write_bytes(b"Name: srconly\n")
    fifo = h.files_dir / "fifo-1.0-py3-none-any.whl"
    os.mkfifo(fifo)
    with serving(h) as url:
        assert _get(url, "/files/stray-1.0-py3-none-any.whl")[0] == 404
        assert _get(url, "/files/srconly-1.0.tar.gz.metadata")[0] == 404
        assert _get(url, "/files/srconly-1.0.tar.gz")[0] == 200
    # A FIFO in the manifest's place never holds a thread in open().
    entry = h.read_manifest().by_filename()["lib-1.0-py3-none-any.whl"]
    h.file_path(entry.filename).unlink()
    os.mkfifo(h.file_path(entry.filename))
    with serving(h) as url:
        started = time.monotonic()
        assert _get(url, f"/files/{entry.filename}")[0] == 404
        assert time.monotonic() - started < 5


def test_too_many_connections_are_answered_503_and_slow_heads_cut_off(
    house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelhouse import serve

    monkeypatch.setattr(serve, "_MAX_CONNECTIONS", 3)
    monkeypatch.setattr(serve, "_HEAD_DEADLINE", 1.0)
    with serving(house) as url:
        host, port = url.removeprefix("http://").split(":")
        # Three clients that send their request a byte at a time hold every place.
        slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
        for s in slow:
            s.sendall(b"G")
        time.sleep(0.2)
        reply = _exchange(url, b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 "), reply[:100]
        # Cut off when the head is not in by the deadline, however it trickles.
        started = time.monotonic()
        for s in slow:
            try:
                while s.recv(1024):
                    pass
            except OSError:
                pass
        assert time.monotonic() - started < 5
        for s in slow:
            s.close()
        time.sleep(0.2)
        status, _, body = _get(url, "/simple/")
        assert status == 200 and b"big-thing" in body


def test_an_empty_host_is_refused_and_every_interface_is_said(house: House) -> None:
    # bind("") listens on every interface: an unset shell variable must not do that.
    for host in ("", " "):
        done = wheelhouse("serve", str(house.root), "--host", host, "--port", "0",
                          env=isolated_env(), check=False)
        assert done.returncode == 1 and "--host is empty" in done.stderr
    done = wheelhouse("run", str(house.root), "--host", "0.0.0.0", "--", sys.executable, "-c",
                      "import os; print(os.environ['PIP_FIND_LINKS'])", env=isolated_env())
    assert "listening on every interface of this machine (0.0.0.0)" in done.stderr
    assert "127.0.0.1" in done.stdout


def test_request_lines_are_logged_without_terminal_escapes(
    house: House, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="wheelhouse.serve")
    with serving(house) as url:
        _exchange(url, b"GET /\x1b]0;pwned\x07\x1b[2J HTTP/1.1\r\nConnection: close\r\n\r\n")
        time.sleep(0.1)
    assert "\x1b" not in caplog.text and "\x07" not in caplog.text
    assert "\\x1b]0;pwned\\x07" in caplog.text


def test_a_content_length_of_other_digits_is_refused(house: House) -> None:
    with serving(house) as url:
        reply = _exchange(url, "GET / HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"))
    assert reply.startswith(b"HTTP/1.1 400 ")


def test_an_index_of_an_older_rendering_is_said_so_and_rewritten(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from wheelhouse.index import RENDERING

    house = House.open(tmp_path / "house", create=True)
    add_paths(house, store, [build_wheel(tmp_path / "d", "lib", "1.0")])
    state = house.root / "simple" / ".manifest-sha256"
    words = state.read_text().split()
    words[0] = words[0].replace(f"r{RENDERING}-", f"r{RENDERING - 1}-", 1)
    state.write_text(" ".join(words) + "\n")
    with serving(house.root) as url:
        assert _get(url, "/simple/lib/")[0] == 200
    assert "was rendered by an older wheelhouse: rewritten" in caplog.text
    assert "interrupted" not in caplog.text
    assert House.open(house.root).index_is_current()


def test_an_error_answer_says_close_once_and_long_numbers_are_no_trouble(house: House) -> None:
    with serving(house) as url:
        reply = _exchange(url, b"FOO / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 501 ")
        head = reply.split(b"\r\n\r\n", 1)[0].lower()
        assert head.count(b"\r\nconnection:") == 1 and b"connection: close" in head
        # Numbers longer than Python reads by default (4,300 digits): no error.
        reply = _exchange(url, b"GET / HTTP/1.1\r\nContent-Length: " + b"9" * 5000
                          + b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        status, _, body = _get(url, "/files/lib-1.0-py3-none-any.whl",
                               headers={"Range": "bytes=" + "1" * 5000 + "-"})
        assert status == 200 and body == house.file_path("lib-1.0-py3-none-any.whl").read_bytes()


def test_at_the_cap_a_new_client_takes_the_place_of_the_longest_idle_connection(
    house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle keep-alive connections (or sockets opened and left silent) held
    # every place for the whole head deadline, and new clients got 503. Now a
    # new client closes the one that has waited longest for a request head; a
    # connection in the middle of a request is never closed for it.
    from wheelhouse import serve

    monkeypatch.setattr(serve, "_MAX_CONNECTIONS", 3)
    with serving(house) as url:
        host, port = url.removeprefix("http://").split(":")
        # One client in the middle of a download it reads slowly.
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        busy.settimeout(10)
        busy.connect((host, int(port)))
        busy.sendall(b"GET /files/big_thing-1.0-py3-none-any.whl HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        reply = busy.recv(1024)
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
        time.sleep(0.2)
        # Nothing has waited a second yet: a new client is still turned away.
        assert _exchange(url, b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 503 ")
        time.sleep(1.2)
        # Two new clients that keep their connections: each takes the place of
        # the connection that has waited longest (the first idle one, then the
        # second), not of the other new client, which has not waited a second.
        clients = [http.client.HTTPConnection(host, int(port), timeout=10) for _ in range(2)]
        for client in clients:
            client.request("GET", "/simple/")
            response = client.getresponse()
            assert response.status == 200 and b"big-thing" in response.read()
        for s in idle:
            assert s.recv(1024) == b""
            s.close()
        for client in clients:  # still open, both
            client.request("GET", "/simple/lib/")
            response = client.getresponse()
            assert response.status == 200 and b"lib-1.0" in response.read()
            client.close()
        # The busy one finishes its download.
        while chunk := busy.recv(65536):
            reply += chunk
        busy.close()
        size = (house.files_dir / "big_thing-1.0-py3-none-any.whl").stat().st_size
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(
            (house.files_dir / "big_thing-1.0-py3-none-any.whl").read_bytes()[-1000:])
        assert len(reply) > size
