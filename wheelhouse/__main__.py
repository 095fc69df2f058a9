"""``python -m wheelhouse``."""

from wheelhouse.cli import run

run()
