"""Benchmark: `wheelhouse build` against `pip download` and `pip wheel`, cold and warm.

Usage: python benchmarks/build_bench.py [--runs 3] [--scratch DIR]

Needs the network (the public registry). A real requirement set of ~40 files
(web, data, crypto, CLI libraries) is resolved for this interpreter by:

- ``wheelhouse build -r req.txt -o HOUSE`` — cold (new store, new house), warm
  (same store and house, nothing changed), and "new house, warm store";
- ``pip download -r req.txt -d DIR`` into an empty folder and again into the filled one;
- ``pip wheel -r req.txt -w DIR`` the same way;
- ``pip download --no-index --find-links DIR -r req.txt -d DIR`` (the offline re-run).

Every run starts with its own empty pip cache (``PIP_CACHE_DIR``), shared by all
variants of that run in order, so "cold" means cold for both sides and later
variants may use what earlier ones cached, as on a real machine; the machine's own
pip configuration is not used (``PIP_CONFIG_FILE=/dev/null``). Each run gets fresh directories; medians of
--runs with min-max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _scratch import fresh_bytecode, fresh_disk_scratch

REQUIREMENTS = """\
requests
flask
django
pydantic
sqlalchemy
numpy
cryptography
rich
click
attrs
pyyaml
jinja2
python-dateutil
packaging
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> int:
    """Run every variant --runs times and print a table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", default="/var/tmp/wheelhouse-build-bench")
    args = parser.parse_args()
    fresh_bytecode()
    root = Path(args.scratch)
    fresh_disk_scratch(root)  # deleted once, at the start, and waited out
    req = root / "requirements.txt"
    req.write_text(REQUIREMENTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "WHEELHOUSE_"))}
    # As an installed package runs: with its bytecode cached.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    py = sys.executable
    wh = [py, "-m", "wheelhouse"]
    results: dict[str, list[float]] = {}
    last_cache: dict[str, Path] = {}
    files = 0
    for run in range(args.runs):
        d = root / f"run-{run}"
        d.mkdir()
        store = ["--store", str(d / "store")]
        cases = [
            ("wheelhouse build: cold (new store, new house)",
             [*wh, *store, "build", "-r", str(req), "-o", str(d / "house")]),
            ("wheelhouse build: warm, nothing changed",
             [*wh, *store, "build", "-r", str(req), "-o", str(d / "house")]),
            ("wheelhouse build: new house, warm store",
             [*wh, *store, "build", "-r", str(req), "-o", str(d / "house2")]),
            ("pip download: empty folder",
             [py, "-m", "pip", "download", "-q", "-r", str(req), "-d", str(d / "dl")]),
            ("pip download: filled folder",
             [py, "-m", "pip", "download", "-q", "-r", str(req), "-d", str(d / "dl")]),
            ("pip download --no-index --find-links: filled folder",
             [py, "-m", "pip", "download", "-q", "--no-index", "--find-links", str(d / "dl"),
              "-r", str(req), "-d", str(d / "dl")]),
            ("pip wheel: empty folder",
             [py, "-m", "pip", "wheel", "-q", "-r", str(req), "-w", str(d / "wh")]),
            ("pip wheel: filled folder",
             [py, "-m", "pip", "wheel", "-q", "-r", str(req), "-w", str(d / "wh")]),
        ]
        for name, argv in cases:
            # pip download/wheel get an empty pip cache of their own, as the cold build did.
            fresh = ("wheelhouse" in name and "cold" in name) or name.endswith("empty folder")
            cache = d / f"pip-cache-{len(results.get(name, []))}-{abs(hash(name))}"
            if fresh:
                run_env = dict(env, PIP_CACHE_DIR=str(cache))
                last_cache[name.split(":")[0]] = cache
            else:
                run_env = dict(env, PIP_CACHE_DIR=str(last_cache.get(name.split(":")[0], cache)))
            results.setdefault(name, []).append(timed(argv, run_env))
        files = len([p for p in (d / "house" / "files").iterdir()
                     if not p.name.endswith(".metadata")])
    warm = statistics.median(results["wheelhouse build: warm, nothing changed"])
    cold = statistics.median(results["wheelhouse build: cold (new store, new house)"])
    print(f"\n{files} files; medians of {args.runs} runs (min-max), seconds\n")
    print("| variant | median s (min-max) | vs warm build | vs cold build |")
    print("|---|---|---|---|")
    for name, secs in results.items():
        med = statistics.median(secs)
        print(f"| {name} | {med:.2f} ({min(secs):.2f}-{max(secs):.2f}) | "
              f"{med / warm:.1f}x | {med / cold:.2f}x |")
    print(f"\n(scratch left in {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
