"""Benchmark: ingest + index, full re-render and one-project updates, against the peers.

Usage::

    python benchmarks/index_bench.py [--sizes 1000,10000,50000] [--runs 3]
                                     [--where disk,shm] [--disk-dir DIR] [--settle 20]

Tasks, each on the same synthetic wheels (generated here, never committed):

(a) ingest + full index: ``wheelhouse add DIR`` (hash, copy into the store,
    extract METADATA, link, manifest, HTML+JSON pages) vs ``simple503 -e``
    (hashes, PEP 658 metadata, HTML pages; in place, no store), and the
    floor of any store-based add: the file operations alone (``_floor.py``:
    read, hash, write each wheel and a METADATA-sized file into a store,
    link both into a house, one flush), with nothing else;
(b) full re-render from the manifest: ``wheelhouse index`` (HTML + JSON pages
    with hashes, requires-python, metadata, and the find-links page) vs
    ``piprepo build`` and ``dir2pi`` (file names only, no hashes);
(c) one new wheel, the first of a new project (so the root pages change
    too): ``wheelhouse add ONE.whl`` (whole command; its index phase is
    reported separately) vs ``dumb-pypi`` with
    ``--previous-package-list`` (incremental) and without (cold).

Following ../shared/BENCHMARKING.md: the scratch area is emptied once at the
start, every run gets its own fresh directory (hard-linked copies), nothing is
deleted until the end, medians of --runs with min-max, peak memory per command
(from wait4), and runs on disk and in memory (/dev/shm) reported apart.

In memory (/dev/shm, shared by the whole machine) the rules differ, because
deleting there costs nothing and filling it breaks other programs: before each
size, the free inodes and bytes are checked against an estimate and a size that
would not fit is skipped with a message; runs after the first (whose house the
later runs copy) are removed as they finish, each size when it is done, and the
whole tree in a ``finally:`` -- on errors, Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import make_corpus, write_wheel
from _scratch import fits, fresh_bytecode, fresh_disk_scratch, remove, shm_scratch

PEERS = {
    "simple503": "simple503",
    "piprepo": "piprepo",
    "dir2pi": "dir2pi",
    "dumb-pypi": "dumb-pypi",
}

# What one run creates per wheel, measured on tmpfs (where every directory entry,
# hard links included, takes an inode): 21.4 entries and ~30 kB (4 kB pages) at
# 1,000 wheels, all tools, and 4.1 entries and 8 kB more for the floor of (a).
# Rounded up.
INODES_PER_WHEEL_RUN = 28
BYTES_PER_WHEEL_RUN = 43_000


def shm_need(n: int, runs: int) -> tuple[int, int]:
    """Inodes and bytes one size needs in memory: the corpus, and at most two runs at once."""
    kept = min(runs, 2)  # run 0 is kept (later runs copy its house); others removed when done
    return (n * (INODES_PER_WHEEL_RUN * kept + 2) + 10_000,
            n * (BYTES_PER_WHEEL_RUN * kept + 6_000) + 50_000_000)


@dataclass
class Result:
    """Timings of one tool on one task."""

    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)  # e.g. the index phase of `add`

    def summary(self) -> str:
        """Median and range."""
        med = statistics.median(self.seconds)
        return f"{med:.3f} ({min(self.seconds):.3f}-{max(self.seconds):.3f})"


def timed(argv: list[str], *, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> tuple[float, float, str]:
    """Run a command; return wall seconds, peak RSS in MB, and its stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C, SIGTERM: stop the child before its tree is removed
        proc.kill()
        proc.wait()
        raise
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024, stderr


def copy_tree(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """Cheap fresh copy: hard links for files, new directories; flushed to disk.

    Flushed here, before any tool is timed on it: the copy's 50,000 new
    directory entries are the benchmark's own writes, and a tool that makes
    its output durable (``syncfs``, as wheelhouse does) would otherwise pay for
    flushing them too, while one that flushes nothing would not.
    """
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name in skip:
            continue
        subprocess.run(["cp", "-al", str(entry), str(dst / entry.name)], check=True)
    os.sync()
    return dst


def tool(name: str) -> str:
    """The peer's executable, next to this interpreter or on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the peers (nox -s benchmarks does)")
    return found


def settle(seconds: float) -> None:
    """Flush and let the disk go quiet before measuring."""
    os.sync()
    time.sleep(seconds)


def bench_location(root: Path, sizes: list[int], runs: int, settle_s: float,
                   table: list[str], *, shm: bool) -> None:
    """Run every task at every size under *root* (an existing, empty directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "WHEELHOUSE_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package runs
    wh = [sys.executable, "-m", "wheelhouse"]
    notes: list[str] = []
    for n in sizes:
        if shm and not fits(root, *shm_need(n, runs), f"{n:,} wheels x {runs} runs"):
            continue
        corpus = make_corpus(root / f"corpus-{n}", n)
        extra_dir = root / f"extra-{n}"
        extra_dir.mkdir()
        # One more wheel for the one-project update: index n continues the
        # sequence, which makes it the first version of a new project (the root
        # pages change too, the harder case for an incremental update).
        new_wheel = write_wheel(extra_dir, n)
        names = sorted(p.name for p in corpus.glob("*.whl"))
        settle(settle_s)
        results: dict[tuple[str, str], Result] = {}

        def record(task: str, name: str, secs: float, mb: float, extra: float | None = None,
                   results: dict[tuple[str, str], Result] = results) -> None:
            r = results.setdefault((task, name), Result())
            r.seconds.append(secs)
            r.peak_mb.append(mb)
            if extra is not None:
                r.extra.append(extra)

        built_house: Path | None = None
        for run in range(runs):
            rd = root / f"run-{n}-{run}"
            rd.mkdir()
            # (a) ingest + full index
            inp = copy_tree(corpus, rd / "wh-in", skip=(".complete",))
            house = rd / "wh-house"
            secs, mb, _ = timed([*wh, "--store", str(rd / "store"), "add", str(inp),
                                 "-o", str(house)], env=env)
            record("a", "wheelhouse add", secs, mb)
            built_house = built_house or house
            s503 = copy_tree(corpus, rd / "s503", skip=(".complete",))
            secs, mb, _ = timed([tool("simple503"), "-e", str(s503)], env=env)
            record("a", "simple503 -e", secs, mb)
            secs, mb, _ = timed([sys.executable, str(Path(__file__).parent / "_floor.py"),
                                 str(inp), str(rd / "floor")], env=env)
            record("a", "floor: file operations alone", secs, mb)
            settle(settle_s / 4)

            # (b) full re-render from the manifest
            h = copy_tree(built_house, rd / "wh-reindex", skip=("simple", "find-links.html"))
            secs, mb, _ = timed([*wh, "index", str(h)], env=env)
            record("b", "wheelhouse index", secs, mb)
            p = copy_tree(corpus, rd / "piprepo", skip=(".complete",))
            secs, mb, _ = timed([tool("piprepo"), "build", str(p)], env=env)
            record("b", "piprepo build", secs, mb)
            d = copy_tree(corpus, rd / "dir2pi", skip=(".complete",))
            secs, mb, _ = timed([tool("dir2pi"), str(d)], env=env)
            record("b", "dir2pi", secs, mb)
            settle(settle_s / 4)

            # (c) one-project update
            h = copy_tree(built_house, rd / "wh-update")
            secs, mb, err = timed([*wh, "-vv", "--store", str(rd / "store"), "add",
                                   str(new_wheel), "-o", str(h)], env=env)
            m = re.search(r"^index: ([0-9.]+) s$", err, re.MULTILINE)
            record("c", "wheelhouse add (one file)", secs, mb, float(m.group(1)) if m else None)
            lists = rd / "lists"
            lists.mkdir()
            (lists / "old.txt").write_text("\n".join(names) + "\n")
            (lists / "new.txt").write_text("\n".join([*names, new_wheel.name]) + "\n")
            dp = rd / "dumb-pypi"
            secs, mb, _ = timed([tool("dumb-pypi"), "--package-list", str(lists / "old.txt"),
                                 "--output-dir", str(dp), "--packages-url", "../../files/",
                                 "--no-generate-timestamp"], env=env)
            record("c", "dumb-pypi (cold)", secs, mb)
            secs, mb, _ = timed([tool("dumb-pypi"), "--package-list", str(lists / "new.txt"),
                                 "--previous-package-list", str(lists / "old.txt"),
                                 "--output-dir", str(dp), "--packages-url", "../../files/",
                                 "--no-generate-timestamp"], env=env)
            record("c", "dumb-pypi (incremental)", secs, mb)
            if shm and run > 0:
                remove(rd)  # free memory; run 0 holds the house later runs copy
            settle(settle_s / 4)

        for task in ("a", "b", "c"):
            ours = next(r for (t, name), r in results.items() if t == task
                        and name.startswith("wheelhouse"))
            base = statistics.median(ours.seconds)
            for (t, name), r in results.items():
                if t != task:
                    continue
                ratio = statistics.median(r.seconds) / base
                extra = (f"; index phase {statistics.median(r.extra) * 1000:.0f} ms"
                         if r.extra else "")
                table.append(
                    f"| {n:,} | ({task}) | {name} | "
                    f"{r.summary()} | {max(r.peak_mb):.0f} | {ratio:.2f}x{extra} |"
                )
        print("\n".join(table[-len(results):]), flush=True)
        floor = statistics.median(results[("a", "floor: file operations alone")].seconds)
        peer = statistics.median(results[("a", "simple503 -e")].seconds)
        notes.append(f"- {n:,} wheels: simple503 / floor = {peer / floor:.2f}x: about as far "
                     "as an add built as wheelhouse's (a copy into the store, METADATA a blob "
                     "of its own, both linked) could get ahead of simple503 here")
        if shm:
            for d in [corpus, extra_dir, *root.glob(f"run-{n}-*")]:
                remove(d)
    print("\n" + "\n".join(notes), flush=True)
    table.extend(["", *notes])
    if not shm:
        print(f"(scratch left in {root}; delete it when the disk is idle)", flush=True)


def main() -> int:
    """Parse options and run the chosen locations."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--where", default="disk,shm")
    parser.add_argument("--disk-dir", default="/var/tmp/wheelhouse-bench")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds to let the disk settle before measuring")
    args = parser.parse_args()
    fresh_bytecode()
    sizes = [int(s) for s in args.sizes.split(",")]
    for where in args.where.split(","):
        if where not in ("disk", "shm"):
            raise SystemExit(f"unknown --where {where!r}")
        root = Path(args.disk_dir) if where == "disk" else Path("/dev/shm/wheelhouse-bench")
        table = [
            f"\n### {where} ({root})\n",
            "| wheels | task | tool | median s (min-max) | peak MB | time vs wheelhouse |",
            "|---|---|---|---|---|---|",
        ]
        print("\n".join(table), flush=True)
        if where == "shm":
            with shm_scratch(root):
                bench_location(root, sizes, args.runs, 0.0, table, shm=True)
        else:
            fresh_disk_scratch(root)  # deleted once, at the start, and waited out
            bench_location(root, sizes, args.runs, args.settle, table, shm=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
