"""Benchmark: serving a house, against `python -m http.server` and pypiserver.

Usage: python benchmarks/serve_bench.py [--house HOUSE] [--seconds 5] [--runs 3]

HOUSE is a built house; without --house one is built (this needs the network
once) from a 40-distribution requirement set. Needs `wrk` (Debian's package)
for the load, 8 concurrent keep-alive connections on loopback, bounded in time;
pypiserver from the benchmarks dependency group. A synthetic 10,000-wheel house
is generated too, for page rates over a large directory.

Measured, side by side in one run:

- requests/s for one project page (`/simple/<project>/`) and for one wheel of
  about a megabyte, with MB/s;
- a `pip install` of the whole house into a fresh venv through `wheelhouse run`
  against `pip install --no-index --find-links DIR`, and the same with
  `uv pip install` (cold cache) against `uv pip install --offline --find-links DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


REQUIREMENTS = """\
numpy
django
cryptography
pydantic
sqlalchemy
requests
flask
rich
pyyaml
attrs
httpx
python-dateutil
pytz
tzdata
six
tomli
"""


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(argv: list[str], port: int, cwd: Path | None = None) -> Iterator[str]:
    """Run a server process until the block ends; yield its base URL."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):  # up to 20 s on a loaded machine
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wrk(url: str, seconds: float) -> tuple[float, float]:
    """Requests/s and MB/s from wrk with 8 keep-alive connections."""
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds:g}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    assert m is not None
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[m.group(2)]
    return rps, float(m.group(1)) * scale


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of a command that must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    """Run the load and install comparisons and print tables."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--house", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp/wheelhouse-serve-bench"))
    args, _unknown = parser.parse_known_args()  # nox passes every script the same posargs
    sys.path.insert(0, str(Path(__file__).parent))
    from _scratch import fresh_bytecode, fresh_disk_scratch

    fresh_bytecode()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    scratch: Path = args.scratch
    fresh_disk_scratch(scratch)  # deleted once, at the start (never between runs), waited out
    if args.house:
        house = args.house.absolute()
    else:
        req = scratch / "requirements.txt"
        req.write_text(REQUIREMENTS)
        house = scratch / "house"
        build_env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELHOUSE_")}
        build_env["WHEELHOUSE_STORE"] = str(scratch / "store")
        subprocess.run([sys.executable, "-m", "wheelhouse", "build", "-r", str(req), "-o",
                        str(house)], env=build_env, check=True, capture_output=True)
    from _corpus import make_corpus

    big_house = scratch / "house-10k"
    subprocess.run([sys.executable, "-m", "wheelhouse", "--store", str(scratch / "store-10k"),
                    "add", str(make_corpus(scratch / "corpus-10k", 10_000)), "-o",
                    str(big_house)], check=True, capture_output=True)
    os.sync()
    time.sleep(2)
    manifest = json.loads((house / "wheelhouse.json").read_text())
    wheels = [f for f in manifest["files"] if f["kind"] == "wheel"]
    big = min(wheels, key=lambda f: abs(f["size"] - 1_250_000))
    project = big["project"]
    py = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "UV_NO_CONFIG": "1"})
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    servers = {
        "wheelhouse serve": lambda port, h: ([py, "-m", "wheelhouse", "serve", str(h),
                                              "--port", str(port)], None, "/simple/", "/files/"),
        "python -m http.server": lambda port, h: ([py, "-m", "http.server", str(port), "--bind",
                                                   "127.0.0.1"], h, "/simple/", "/files/"),
        "pypiserver": lambda port, h: ([py, "-m", "pypiserver", "run", "-p", str(port), "-i",
                                        "127.0.0.1", str(h / "files")], None, "/simple/",
                                       "/packages/"),
    }
    print(f"\nload: 8 keep-alive connections, {args.seconds:g} s each, wrk; "
          f"page /simple/{project}/, file {big['filename']} ({big['size'] / 1e6:.2f} MB); "
          "page over 10,000 files: /simple/bench-pkg-00042/ of a synthetic house\n")
    print("| server | page req/s | file req/s | file MB/s | page req/s, 10k-file house |")
    print("|---|---:|---:|---:|---:|")
    for name, make in servers.items():
        port = free_port()
        argv, cwd, simple, files = make(port, house)
        with server(argv, port, cwd) as url:
            page_rps, _ = wrk(f"{url}{simple}{project}/", args.seconds)
            file_rps, mbps = wrk(f"{url}{files}{big['filename']}", args.seconds)
        port = free_port()
        argv, cwd, simple, files = make(port, big_house)
        with server(argv, port, cwd) as url:
            big_rps, _ = wrk(f"{url}{simple}bench-pkg-00042/", args.seconds)
        print(f"| {name} | {page_rps:,.0f} | {file_rps:,.0f} | {mbps:,.0f} | {big_rps:,.0f} |",
              flush=True)

    requirement_names = sorted({f["project"] for f in wheels})
    uv = shutil.which("uv", path=str(Path(py).parent)) or shutil.which("uv")
    results: dict[str, list[float]] = {}
    for run_number in range(args.runs):
        tmp = scratch / f"run-{run_number}"
        tmp.mkdir()
        variants = [
            ("pip via wheelhouse run",
             [py, "-m", "wheelhouse", "run", str(house), "--", py, "-m", "pip", "--python",
              "{venv}", "install", *requirement_names]),
            ("pip --no-index --find-links DIR",
             [py, "-m", "pip", "--python", "{venv}", "install", "--no-index", "--find-links",
              str(house / "files"), *requirement_names]),
            *(() if uv is None else (
                ("uv via wheelhouse run (cold cache)",
                 [py, "-m", "wheelhouse", "run", str(house), "--", uv, "pip", "install",
                  "--python", "{venv}", "--cache-dir", "{cache}", *requirement_names]),
                ("uv --offline --find-links DIR (cold cache)",
                 [uv, "pip", "install", "--python", "{venv}", "--offline", "--no-index",
                  "--find-links", str(house / "files"), "--cache-dir", "{cache}",
                  *requirement_names]),
            )),
        ]
        # The order rotates from run to run: no variant always goes first (or
        # always follows the one that left the disk busiest).
        shift = run_number % len(variants)
        for label, cmd in variants[shift:] + variants[:shift]:
            venv = Path(tmp) / f"venv-{len(results.get(label, []))}-{abs(hash(label))}"
            subprocess.run([py, "-m", "venv", "--without-pip", str(venv)], check=True)
            cache = Path(tmp) / f"cache-{abs(hash(label))}"
            argv = [a.replace("{venv}", str(venv / "bin" / "python"))
                    .replace("{cache}", str(cache)) for a in cmd]
            results.setdefault(label, []).append(timed(argv, env))
    print(f"\ninstall of {len(requirement_names)} projects into a fresh venv, "
          f"medians of {args.runs} (min-max), seconds\n")
    print("| variant | seconds |")
    print("|---|---|")
    for label, _cmd in variants:
        secs = results[label]
        print(f"| {label} | {statistics.median(secs):.2f} ({min(secs):.2f}-{max(secs):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
