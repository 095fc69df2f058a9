"""The quick-start demo: build a house from examples/requirements.txt and install from it offline.

Usage: python examples/demo.py [OUTPUT_DIR]

1. ``wheelhouse build`` resolves the requirements with pip (through your own pip
   configuration: your index, proxy and CA bundle), downloads the wheels into the
   content-addressed store, and writes a house with an index, a report and a lock;
2. ``wheelhouse build`` again: nothing changed, so it answers from the store
   without touching the network;
3. ``wheelhouse verify`` re-hashes every file;
4. a fresh virtual environment installs from the house alone, ignoring every
   pip configuration (``pip --isolated install --no-index --find-links HOUSE/files``),
   then again in hash-checking mode from the house's lock.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).parent


def step(argv: list[str]) -> None:
    """Print and run one step; stop the demo if it fails."""
    print(f"\n$ {shlex.join(argv)}", flush=True)  # quoted: it pastes into a shell as is
    subprocess.run(argv, check=True)


def main() -> int:
    """Run the demo."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-house").absolute()
    house = out / "house"
    requirements = HERE / "requirements.txt"
    wh = [sys.executable, "-m", "wheelhouse"]
    step([*wh, "build", "-r", str(requirements), "-o", str(house)])
    step([*wh, "build", "-r", str(requirements), "-o", str(house)])
    step([*wh, "ls", str(house)])
    step([*wh, "verify", str(house)])
    # Prove it installs from the house alone, before the network goes away.
    step([*wh, "check", str(house), "-r", str(requirements)])
    with tempfile.TemporaryDirectory() as tmp:
        # Without pip: wheelhouse installs from the house itself.
        env_dir = Path(tmp) / "venv-wh"
        venv.create(env_dir, with_pip=False)
        python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
        step([*wh, "install", str(house), "-r", str(requirements), "--python", str(python)])
        step([str(python), "-c",
              "import requests; print('requests', requests.__version__, 'works offline')"])
        for n, extra in enumerate((
            ["-r", str(requirements)],
            ["--require-hashes", "-r", str(house / "locks" / "host.requirements.txt")],
        )):
            env_dir = Path(tmp) / f"venv{n}"
            venv.create(env_dir, with_pip=False)
            python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
            step([sys.executable, "-m", "pip", "--isolated", "--python", str(python), "install",
                  "--no-index", "--find-links", str(house / "files"), *extra])
            step([str(python), "-c",
                  "import requests; print('requests', requests.__version__, 'works offline')"])
    print(f"\nThe house is in {house}. Copy it anywhere and install with\n"
          f"  pip install --no-index --find-links {shlex.quote(str(house / 'files'))} "
          "-r requirements.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
