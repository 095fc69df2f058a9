"""Benchmark: bundle export and import of a large house, against `tar` and `sha256sum`.

Usage::

    python benchmarks/bundle_bench.py [--size 2G] [--runs 3] [--where disk,shm]
                                      [--disk-dir DIR] [--settle 20]

The house is made here (never committed): valid wheels of incompressible bytes,
sizes spread from 20 kB to 40 MB as in a real house, adding up to --size.

Measured side by side in one run, on the same files:

- export: ``wheelhouse export HOUSE -o B.tar`` (reads every file, checks it
  against its sha256 while writing the tar, and hashes the whole bundle for
  the digest it prints) against ``tar -cf`` of the same files, ``sha256sum`` of
  them (the physical limit: reading and hashing the bytes once), and the sum
  of the two (what a careful person does by hand: tar, then a checksum).
  coreutils' ``sha256sum`` does not use the CPU's SHA instructions where
  OpenSSL does (4-5x faster here), so ``openssl dgst -sha256`` is measured
  too: it is the honest physical limit;
- import: ``wheelhouse import B.tar -o HOUSE`` into an empty store (hashes
  every member into the store, publishes, links the house, writes the index)
  against ``tar -xf`` and ``sha256sum`` of the extracted files, and their sum;
- verify: ``wheelhouse verify B.tar`` against ``sha256sum B.tar``.

Following ../shared/BENCHMARKING.md: the scratch area is emptied once at the
start, every run writes into its own fresh directory, nothing is deleted
until the end on disk (in memory, /dev/shm, runs are removed as they finish:
that costs nothing there and the memory is needed), medians of --runs with
min-max, peak memory of each wheelhouse command, disk and memory reported apart.

/dev/shm is shared by the whole machine: before a run there, the free bytes
(and memory) and inodes are checked against what it will hold at its peak --
the house plus one run, about 7x the house's size -- keeping a reserve; without
--shm-size the size is reduced to fit, an explicit --shm-size that does not fit
is skipped with a message. The tree there is removed in a ``finally:``, on
errors, Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _scratch import fits, fresh_bytecode, fresh_disk_scratch, room, shm_scratch, waited_out

# At its peak a location holds the house (store blobs; the house's files are hard
# links to them) and one run: the bundle, two plain tars, an imported store and two
# extractions -- 7x the house's bytes. Inodes per wheel: 2 files (.whl, .metadata)
# in each of the house, the store, the imported house and store and two
# extractions, plus pages; 24 leaves room.
SHM_BYTES_FACTOR = 7
SHM_INODES_PER_WHEEL = 24


def _record(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_big_wheel(directory: Path, i: int, size: int) -> int:
    """Write a valid wheel of about *size* incompressible bytes; return its real size."""
    project, version = f"bulk_pkg_{i:05d}", "1.0.0"
    dist_info = f"{project}-{version}.dist-info"
    payload = hashlib.shake_256(f"bulk-{i}".encode()).digest(max(size - 2000, 1))
    files = {
        f"{project}/__init__.py": f"VALUE = {i}\n".encode(),
        f"{project}/data.bin": payload,
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
                                  "Requires-Python: >=3.8\n").encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n",
    }
    record = [_record(p, d) for p, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{project}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return path.stat().st_size


def plan_sizes(total: int) -> list[int]:
    """Sizes of wheels adding up to *total* bytes (log-uniform 20 kB-40 MB, seeded)."""
    rng = random.Random(7)
    sizes = []
    planned = 0
    while planned < total:
        size = max(int(min(total - planned + 2500, 20_000 * (2000 ** rng.random()))), 5000)
        sizes.append(size)
        planned += size
    return sizes


def shm_need(size: int) -> tuple[int, int]:
    """Inodes and bytes a house of *size* bytes needs in memory at its peak."""
    return (len(plan_sizes(size)) * SHM_INODES_PER_WHEEL + 5_000,
            size * SHM_BYTES_FACTOR + 100_000_000)


def make_corpus(directory: Path, total: int) -> tuple[int, int]:
    """Wheels adding up to *total* bytes (log-uniform 20 kB-40 MB); (count, bytes).

    Written by worker processes: this one stays small, so the peak memory a
    measured command reports is its own (a child's peak RSS counts what it
    shared with its parent before exec).
    """
    directory.mkdir(parents=True)
    sizes = plan_sizes(total)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        written = sum(pool.map(write_big_wheel, [directory] * len(sizes), range(len(sizes)),
                               sizes))
    return len(sizes), written


def parse_size(text: str) -> int:
    """500M, 2G (powers of 1024)."""
    units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    text = text.strip().lower().rstrip("b").rstrip("i")
    unit = text[-1] if text[-1] in units else ""
    return int(float(text[: len(text) - len(unit)]) * units[unit])


@dataclass
class Timing:
    """Wall seconds (and peak RSS of our own commands) over the runs."""

    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds)

    def cell(self) -> str:
        """Median (min-max)."""
        return f"{self.median():.2f} ({min(self.seconds):.2f}-{max(self.seconds):.2f})"


def timed(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
          stdout: int | None = subprocess.DEVNULL) -> tuple[float, float]:
    """Run a command that must succeed; wall seconds and peak RSS (MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C, SIGTERM: stop the child before its tree is removed
        proc.kill()
        proc.wait()
        raise
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed:\n{err.decode(errors='replace')[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024


def settle(seconds: float) -> None:
    """Flush and let the disk go quiet."""
    os.sync()
    time.sleep(seconds)


def bench(root: Path, size: int, runs: int, settle_s: float, *, cleanup_runs: bool) -> None:
    """Everything at one location (*root*: an existing, empty directory); prints a table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "WHEELHOUSE_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    wh = [sys.executable, "-m", "wheelhouse"]
    count, total = make_corpus(root / "dists", size)
    house = root / "house"
    timed([*wh, "--store", str(root / "store"), "add", str(root / "dists"), "-o", str(house)],
          env=env)
    shutil.rmtree(root / "dists")
    waited_out(root)  # (on disk, the deletion would slow the imports timed below)
    files = sorted(str(p) for p in (house / "files").iterdir())
    print(f"\n### {root}: {count} wheels + {count} .metadata files, {total / 1e9:.2f} GB\n",
          flush=True)
    settle(settle_s)

    t: dict[str, Timing] = {}

    def record(label: str, result: tuple[float, float]) -> None:
        t.setdefault(label, Timing()).seconds.append(result[0])
        t[label].peak_mb.append(result[1])

    for n in range(runs):
        run = root / f"run{n}"
        run.mkdir()
        bundle = run / "bundle.tar"
        record("wheelhouse export", timed([*wh, "export", str(house), "-o", str(bundle)],
                                          env=env))
        record("tar -cf", timed(["tar", "-cf", str(run / "plain.tar"), "-C", str(house),
                                 "wheelhouse.json", "files"]))
        # export fsyncs the bundle before naming it: the same, done by hand.
        script = 'tar -cf "$1" -C "$2" wheelhouse.json files && sync "$1"'
        record("tar -cf && sync", timed(["sh", "-c", script, "sh", str(run / "plain2.tar"),
                                         str(house)]))
        record("sha256sum (files)", timed(["sha256sum", *files]))
        record("openssl sha256 (files)", timed(["openssl", "dgst", "-sha256", *files]))
        settle(settle_s / 4)
        record("wheelhouse verify BUNDLE", timed([*wh, "verify", str(bundle)], env=env))
        record("sha256sum BUNDLE", timed(["sha256sum", str(bundle)]))
        record("openssl sha256 BUNDLE", timed(["openssl", "dgst", "-sha256", str(bundle)]))
        settle(settle_s / 4)
        record("wheelhouse import", timed([*wh, "--store", str(run / "store"), "import",
                                           str(bundle), "-o", str(run / "imported")], env=env))
        (run / "extract").mkdir()
        record("tar -xf", timed(["tar", "-xf", str(bundle), "-C", str(run / "extract")]))
        # import makes every blob durable (one syncfs) before naming it: the same by hand.
        (run / "extract2").mkdir()
        record("tar -xf && sync", timed(["sh", "-c", 'tar -xf "$1" -C "$2" && sync -f "$2"',
                                         "sh", str(bundle), str(run / "extract2")]))
        extracted = sorted(str(p) for p in (run / "extract" / "files").iterdir())
        record("sha256sum (extracted)", timed(["sha256sum", *extracted]))
        record("openssl sha256 (extracted)", timed(["openssl", "dgst", "-sha256", *extracted]))
        if cleanup_runs:
            shutil.rmtree(run)
        settle(settle_s / 4)

    gb = total / 1e9
    med = {label: timing.median() for label, timing in t.items()}
    med["tar -cf + sha256sum"] = med["tar -cf"] + med["sha256sum (files)"]
    med["tar -cf + openssl sha256"] = med["tar -cf"] + med["openssl sha256 (files)"]
    med["tar -xf + sha256sum"] = med["tar -xf"] + med["sha256sum (extracted)"]
    med["tar -xf + openssl sha256"] = med["tar -xf"] + med["openssl sha256 (extracted)"]
    med["tar -cf && sync + openssl sha256"] = (med["tar -cf && sync"]
                                               + med["openssl sha256 (files)"])
    med["tar -xf && sync + openssl sha256"] = (med["tar -xf && sync"]
                                               + med["openssl sha256 (extracted)"])

    def line(label: str, refs: tuple[str, str] | None = None, synced: str | None = None
             ) -> str:
        cell = t[label].cell() if label in t else f"{med[label]:.2f} (sum of medians)"
        peak = f"{max(t[label].peak_mb):.0f}" if label.startswith("wheelhouse") else ""
        ratios = (f"{med[label] / med[refs[0]]:.2f}x | {med[label] / med[refs[1]]:.2f}x"
                  if refs else " | ")
        sync_ratio = f"{med[label] / med[synced]:.2f}x" if synced else ""
        return (f"| {label} | {cell} | {gb / med[label]:.2f} | {peak} | {ratios} | "
                f"{sync_ratio} |")

    print(f"medians of {runs} (min-max), seconds; GB/s of house bytes; peak RSS MB; "
          "ratios: ours / (tar + a hash of the same bytes)\n")
    print("| step | seconds | GB/s | peak MB | vs tar + sha256sum | vs tar + openssl sha256 "
          "| vs tar && sync + openssl sha256 |")
    print("|---|---|---|---|---|---|---|")
    print(line("wheelhouse export", ("tar -cf + sha256sum", "tar -cf + openssl sha256"),
               "tar -cf && sync + openssl sha256"))
    for label in ("tar -cf", "tar -cf && sync", "sha256sum (files)", "openssl sha256 (files)",
                  "tar -cf + sha256sum", "tar -cf + openssl sha256",
                  "tar -cf && sync + openssl sha256"):
        print(line(label))
    print(line("wheelhouse import", ("tar -xf + sha256sum", "tar -xf + openssl sha256"),
               "tar -xf && sync + openssl sha256"))
    for label in ("tar -xf", "tar -xf && sync", "sha256sum (extracted)",
                  "openssl sha256 (extracted)", "tar -xf + sha256sum", "tar -xf + openssl sha256",
                  "tar -xf && sync + openssl sha256"):
        print(line(label))
    print(line("wheelhouse verify BUNDLE", ("sha256sum BUNDLE", "openssl sha256 BUNDLE")))
    print(line("sha256sum BUNDLE"))
    print(line("openssl sha256 BUNDLE"))
    e, i = med["wheelhouse export"], med["wheelhouse import"]
    print(f"\nexport vs tar -cf alone {e / med['tar -cf']:.2f}x; import vs tar -xf alone "
          f"{i / med['tar -xf']:.2f}x", flush=True)


def main() -> int:
    """Parse options and run at each location."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2G", help="house size (default 2G)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--where", default="disk,shm")
    parser.add_argument("--disk-dir", type=Path,
                        default=Path("/var/tmp/wheelhouse-bundle-bench"))
    parser.add_argument("--shm-size", default=None,
                        help="house size in /dev/shm (default: --size, capped to fit memory)")
    parser.add_argument("--settle", type=float, default=20.0)
    args = parser.parse_args()
    fresh_bytecode()
    size = parse_size(args.size)
    for where in args.where.split(","):
        if where == "disk":
            free = shutil.disk_usage(args.disk_dir.parent).free
            need = size * (2 + 6 * args.runs)
            if free < need:
                raise SystemExit(f"need {need / 1e9:.1f} GB free under {args.disk_dir.parent}")
            fresh_disk_scratch(args.disk_dir)  # deleted once, at the start, and waited out
            bench(args.disk_dir, size, args.runs, args.settle, cleanup_runs=False)
        elif where == "shm":
            root = Path("/dev/shm/wheelhouse-bundle-bench")
            if args.shm_size:
                shm_size = parse_size(args.shm_size)
            else:  # --size, reduced to what fits beside the reserve
                spare = room(root)[1] - 100_000_000
                shm_size = min(size, max(spare // SHM_BYTES_FACTOR, 0))
                if shm_size < size:
                    print(f"{root}: house reduced from {size / 1e9:.2f} GB to "
                          f"{shm_size / 1e9:.2f} GB to fit in memory", flush=True)
            if shm_size < 2**20:
                print(f"skipped: {root}: no room for a house of any useful size", flush=True)
                continue
            if not fits(root, *shm_need(shm_size), f"a {shm_size / 1e9:.2f} GB house"):
                continue
            with shm_scratch(root):
                bench(root, shm_size, args.runs, 2.0, cleanup_runs=True)
        else:
            raise SystemExit(f"unknown --where {where!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
