"""The quick-start demo: make a house from examples/requirements.txt and install from it offline.

Usage: python examples/demo.py [OUTPUT_DIR]

1. downloads the wheels the example needs (this step uses the internet, through
   your own pip configuration);
2. ``wheelhouse add`` puts them in the content-addressed store and writes a house;
3. ``wheelhouse verify`` re-hashes every file;
4. a fresh virtual environment installs from the house with the network unused
   (``pip install --no-index --find-links HOUSE/files``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).parent


def step(title: str, argv: list[str]) -> None:
    """Print and run one step; stop the demo if it fails."""
    print(f"\n$ {' '.join(argv)}", flush=True)
    subprocess.run(argv, check=True)


def main() -> int:
    """Run the demo."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-house").absolute()
    house = out / "house"
    with tempfile.TemporaryDirectory() as tmp:
        downloads = Path(tmp) / "downloads"
        step("download", [sys.executable, "-m", "pip", "download", "--only-binary=:all:",
                          "--dest", str(downloads), "-r", str(HERE / "requirements.txt")])
        step("add", [sys.executable, "-m", "wheelhouse", "add", str(downloads), "-o", str(house)])
        step("ls", [sys.executable, "-m", "wheelhouse", "ls", str(house)])
        step("verify", [sys.executable, "-m", "wheelhouse", "verify", str(house)])
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=False)
        python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
        # --isolated: ignore pip configuration, so the house alone must suffice.
        step("offline install", [sys.executable, "-m", "pip", "--isolated",
                                 "--python", str(python), "install",
                                 "--no-index", "--find-links", str(house / "files"),
                                 "-r", str(HERE / "requirements.txt")])
        step("import", [str(python), "-c",
                        "import requests; print('requests', requests.__version__, 'works')"])
    print(f"\nThe house is in {house}; copy it anywhere and install with\n"
          f"  pip install --no-index --find-links {house / 'files'} -r requirements.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
