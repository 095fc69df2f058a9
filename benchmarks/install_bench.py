"""Benchmark: `wheelhouse install` against pip and uv, from the same house, into fresh venvs.

Usage: python benchmarks/install_bench.py [--runs 3] [--where disk,shm] [--house DIR]

Needs the network once, to build the house (a ~40-wheel, ~45 MB requirement set:
numpy, django, cryptography, pydantic, sqlalchemy, ...) unless --house names one.
Then, offline, for each run and each place (disk: /var/tmp, shm: /dev/shm), into
fresh copies of one empty venv, at equal work:

- with bytecode: ``wheelhouse install``, ``pip install --no-index --find-links``,
  ``uv pip install --offline --no-index --find-links --compile-bytecode``;
- without: the same with ``--no-compile`` (wheelhouse, pip) and uv's default;
  and wheelhouse once more with zlib-ng hidden, as it runs without its
  ``fast`` extra (inflating with Python's zlib);
- the physical limit: reading and inflating every member of every wheel once
  (one thread, one call per member, no writes; with zlib, and with zlib-ng
  when it is installed), and ``unzip`` of every wheel into one directory.

uv starts with an empty cache every run (it hard-links from a warm cache). The
machine's pip configuration is not used. Medians of --runs with min-max; ratios
are of medians. On disk, the scratch directory is emptied once at the start,
never between runs (deleting trees slows this disk for minutes), and left at the
end. In memory (/dev/shm, shared by the whole machine), the free inodes and
bytes are checked first against an estimate made from the house's wheels (the
place is skipped, with a message, if it would not fit), each run is removed
when it is done, and the whole tree in a ``finally:`` -- on errors, Ctrl-C and
SIGTERM too.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _scratch import fits, fresh_bytecode, fresh_disk_scratch, remove, shm_scratch

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
"""

TOOLS = ("wheelhouse", "pip", "uv")
#: wheelhouse without the 'fast' extra (zlib-ng hidden): inflating with zlib.
WITHOUT_FAST = "wheelhouse, zlib"
_HIDE_ZLIB_NG = ("import sys; sys.modules['zlib_ng'] = None; sys.argv[0] = 'wheelhouse';"
                 "from wheelhouse.cli import run; run()")

try:
    from zlib_ng import zlib_ng
except ImportError:  # the 'fast' extra is not installed: wheelhouse uses zlib
    zlib_ng = None


def run(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def shm_need(wheels: list[Path]) -> tuple[int, int]:
    """Inodes and bytes one run creates in memory, estimated from the wheels' members.

    Per run: six venvs (three tools, with and without bytecode), two uv caches and
    one unzip, each counted as a full copy of every member (tmpfs rounds each file
    up to 4 kB pages), plus a .pyc per .py in the three venvs that compile; 25% on
    top for directories and what the tools add (measured: the estimate is ~4% above
    what one run made on disk with 1.25; 1.4 leaves room). The house is counted too.
    """
    members = py_members = 0
    nbytes = py_bytes = 0
    for path in wheels:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                rounded = math.ceil(info.file_size / 4096) * 4096
                members += 1
                nbytes += rounded
                if info.filename.endswith(".py"):
                    py_members += 1
                    py_bytes += rounded
    house_bytes = sum(w.stat().st_size for w in wheels)
    inodes = int((9 * members + 3 * py_members) * 1.4) + 4 * len(wheels) + 10_000
    return inodes, int((9 * nbytes + 3 * py_bytes) * 1.4) + house_bytes + 100_000_000


def inflate_all(files: list[Path], inflater: Any = zlib) -> float:
    """Read and inflate every member of every wheel once with *inflater*; return seconds.

    Each wheel is read whole and each member inflated in one zlib call (as
    ``wheelhouse install`` does), not through ``zipfile``'s streams, whose own
    overhead is no part of the limit.
    """
    start = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        view = memoryview(data)
        for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
            offset = info.header_offset
            name_len, extra_len = struct.unpack_from("<HH", data, offset + 26)
            begin = offset + 30 + name_len + extra_len
            raw = view[begin:begin + info.compress_size]
            if info.compress_type == zipfile.ZIP_DEFLATED:
                inflater.decompress(raw, -15)
            else:
                bytes(raw)
    return time.perf_counter() - start


def command(tool: str, house: Path, req: Path, venv: Path, cache: Path,
            bytecode: bool) -> list[str]:
    """The install command for *tool*."""
    py = str(venv / "bin" / "python")
    if tool in ("wheelhouse", WITHOUT_FAST):
        start = ["-m", "wheelhouse"] if tool == "wheelhouse" else ["-c", _HIDE_ZLIB_NG]
        argv = [sys.executable, *start, "install", str(house), "-r", str(req), "--python", py]
        return argv if bytecode else [*argv, "--no-compile"]
    if tool == "pip":
        argv = [sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-index",
                "--find-links", str(house / "files"), "-r", str(req)]
        return argv if bytecode else [*argv, "--no-compile"]
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    argv = [uv, "pip", "install", "--quiet", "--python", py, "--offline", "--no-index",
            "--find-links", str(house / "files"), "-r", str(req), "--cache-dir", str(cache)]
    return [*argv, "--compile-bytecode"] if bytecode else argv


def bench_place(root: Path, where: str, args: argparse.Namespace, env: dict[str, str]) -> None:
    """Every run at one place (*root*: an existing, empty directory); prints a table."""
    req = root / "requirements.txt"
    req.write_text(REQUIREMENTS)
    house = root / "house"
    if args.house:
        shutil.copytree(args.house, house)
    else:
        # Needs the network: the machine's own pip configuration reaches the registry.
        build_env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELHOUSE_")}
        build_env["WHEELHOUSE_STORE"] = str(root / "store")
        run([sys.executable, "-m", "wheelhouse", "build", "-r", str(req), "-o", str(house)],
            build_env)
    wheels = sorted((house / "files").glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    if where == "shm" and not fits(root, *shm_need(wheels), f"install runs, {len(wheels)} wheels"):
        return
    template = root / "template"
    run([sys.executable, "-m", "venv", "--without-pip", str(template)], env)
    os.sync()
    time.sleep(2)
    results: dict[str, list[float]] = {}
    for i in range(args.runs):
        run_dir = root / f"run-{i}"
        run_dir.mkdir()
        order = TOOLS[i % 3:] + TOOLS[: i % 3]  # rotate who goes first
        for bytecode in (True, False):
            # zlib against zlib-ng matters without bytecode, where inflating is most of it.
            extra = (WITHOUT_FAST,) if zlib_ng is not None and not bytecode else ()
            for tool in order + extra:
                label = f"{tool} {'bytecode' if bytecode else 'no bytecode'}"
                venv = run_dir / f"{tool}-{int(bytecode)}"
                shutil.copytree(template, venv, symlinks=True)
                cache = run_dir / f"uv-cache-{int(bytecode)}"
                argv = command(tool, house, req, venv, cache, bytecode)
                results.setdefault(label, []).append(run(argv, env))
        results.setdefault("limit: read + inflate (1 thread)", []).append(inflate_all(wheels))
        if zlib_ng is not None:
            results.setdefault("limit: read + inflate with zlib-ng (1 thread)", []).append(
                inflate_all(wheels, zlib_ng))
        unzip_dir = run_dir / "unzip"
        unzip_dir.mkdir()
        start = time.perf_counter()
        for w in wheels:
            subprocess.run(["unzip", "-q", "-o", str(w), "-d", str(unzip_dir)], check=True)
        results.setdefault("limit: unzip to files (1 process)", []).append(
            time.perf_counter() - start)
        if where == "shm":
            remove(run_dir)  # free memory; on disk nothing is deleted between runs
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n## install: {len(wheels)} wheels, {size / 1e6:.1f} MB, on {where} "
          f"({root}), {args.runs} runs\n")
    print("| variant | median s | min-max s | vs pip | vs uv |")
    print("|---|---:|---:|---:|---:|")
    for label, values in results.items():
        mode = "no bytecode" if "no bytecode" in label else "bytecode"
        vs_pip = med.get(f"pip {mode}")
        vs_uv = med.get(f"uv {mode}")
        cells = [f"{med[label] / vs_pip:.2f}x" if vs_pip and "limit" not in label else "",
                 f"{med[label] / vs_uv:.2f}x" if vs_uv and "limit" not in label else ""]
        print(f"| {label} | {med[label]:.2f} | {min(values):.2f}-{max(values):.2f} | "
              + " | ".join(cells) + " |")
    fast = zlib_ng is not None
    limit = med["limit: read + inflate with zlib-ng (1 thread)" if fast
                else "limit: read + inflate (1 thread)"]
    ours = med["wheelhouse no bytecode"]
    print(f"\nwheelhouse ({'zlib-ng' if fast else 'zlib: no fast extra'}; no bytecode) is "
          f"{ours / limit:.1f}x the read+inflate limit with the same inflater and "
          f"{ours / med['limit: unzip to files (1 process)']:.2f}x unzip; "
          f"pip/wheelhouse = {med['pip no bytecode'] / ours:.1f}x (no bytecode), "
          f"{med['pip bytecode'] / med['wheelhouse bytecode']:.1f}x (bytecode)")


def main() -> int:
    """Run every variant --runs times per place and print a table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--where", default="disk,shm")
    parser.add_argument("--house", type=Path, help="An existing house to install from.")
    args = parser.parse_args()
    fresh_bytecode()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "WHEELHOUSE_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed tools run: bytecode cached
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never"})
    places = {"disk": Path("/var/tmp/wheelhouse-install-bench"),
              "shm": Path("/dev/shm/wheelhouse-install-bench")}
    for where in args.where.split(","):
        if where not in places:
            raise SystemExit(f"unknown --where {where!r}")
        root = places[where]
        if where == "shm":
            if args.house and not fits(root, *shm_need(sorted(
                    (args.house / "files").glob("*.whl"))), "install runs from --house"):
                continue
            # Building the house needs far less: the wheels, twice linked.
            if not args.house and not fits(root, 20_000, 500_000_000, "building the house"):
                continue
            with shm_scratch(root):
                bench_place(root, where, args, env)
        else:
            fresh_disk_scratch(root)  # deleted once, at the start, and waited out
            bench_place(root, where, args, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
