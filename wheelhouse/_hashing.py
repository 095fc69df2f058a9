"""Hashing alongside I/O: sha256 on a worker thread, fed in order."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

__all__ = ["BackgroundHash"]


class BackgroundHash:
    """sha256 computed on another thread, in order, while this one reads and writes.

    hashlib releases the GIL on large buffers, so hashing here overlaps the
    caller's reads and writes. Small pieces are gathered into large ones; the
    queue is bounded (a few MB), so memory stays flat. *start* continues a
    hash already begun (the caller must not touch it again).
    """

    _BATCH = 1024 * 1024

    def __init__(self, start: hashlib._Hash | None = None) -> None:
        self._hash = start if start is not None else hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._pending = bytearray()
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()
        self._digest: str | None = None

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, data: Any) -> None:
        """Hash *data* next (copied if it is not immutable bytes)."""
        if len(data) >= self._BATCH and not self._pending:
            self._queue.put(data if isinstance(data, bytes) else bytes(data))
            return
        self._pending += data
        if len(self._pending) >= self._BATCH:
            self._queue.put(bytes(self._pending))
            self._pending.clear()

    def hexdigest(self) -> str:
        """Wait for the thread; the digest of everything given."""
        if self._digest is None:
            if self._pending:
                self._queue.put(bytes(self._pending))
                self._pending.clear()
            self._queue.put(None)
            self._thread.join()
            self._digest = self._hash.hexdigest()
        return self._digest

    def close(self) -> None:
        """Stop the thread (after an error: the digest is not wanted)."""
        if self._digest is None and self._thread.is_alive():
            self._pending.clear()
            self._queue.put(None)
            self._thread.join()
