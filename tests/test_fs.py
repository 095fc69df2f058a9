"""Small file-system and process helpers (wheelhouse._fs)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from wheelhouse._fs import gc_paused

if TYPE_CHECKING:
    from pathlib import Path


def test_gc_paused_pauses_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the outer block still owns the pause
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_the_caller_turned_off_alone() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def _fake_syncfs(monkeypatch: pytest.MonkeyPatch, *, failing_call: int = 0,
                 error: int = 0) -> list[int]:
    """Stand in for syncfs: the descriptors it is called with; call *failing_call* fails."""
    import wheelhouse._fs as fs

    calls: list[int] = []

    def syncfs(fd: int) -> int:
        calls.append(fd)
        return error if len(calls) == failing_call else 0

    monkeypatch.setattr(fs, "_load_syncfs", lambda: syncfs)
    return calls


def test_flushing_flushes_in_the_background_until_the_block_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import wheelhouse._fs as fs

    calls = _fake_syncfs(monkeypatch)
    before = threading.active_count()
    with pytest.raises(ZeroDivisionError), fs.flushing(tmp_path, every=0.001):
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert threading.active_count() == before + 1
        1 / 0  # noqa: B018
    assert len(calls) >= 3
    assert threading.active_count() == before  # stopped, even after an error
    stopped = len(calls)
    time.sleep(0.01)
    assert len(calls) == stopped


def test_flushing_does_nothing_without_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import wheelhouse._fs as fs

    monkeypatch.setattr(fs, "_load_syncfs", lambda: None)
    before = threading.active_count()
    with fs.flushing(tmp_path):
        assert threading.active_count() == before


def test_flushing_raises_an_error_a_background_flush_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # syncfs reports a writeback error once per file system to descriptors
    # opened before it: one the background flush saw is not seen by the
    # final flush (a descriptor opened later), so it must not be dropped.
    import errno
    import time

    import wheelhouse._fs as fs

    calls = _fake_syncfs(monkeypatch, failing_call=2, error=errno.EIO)
    with pytest.raises(OSError, match="Input/output error") as info, \
            fs.flushing(tmp_path, every=0.001):
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
    assert info.value.errno == errno.EIO
