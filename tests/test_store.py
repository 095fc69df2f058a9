from __future__ import annotations

import errno
import hashlib
import io
import json
import multiprocessing
import os
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wheelhouse.errors import FormatVersionError, HashMismatchError, StoreError
from wheelhouse.store import Store, parse_sha256, sha256_file

if TYPE_CHECKING:
    from collections.abc import Iterator


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_names_blob_by_sha256_and_makes_it_read_only(store: Store) -> None:
    data = b"hello wheelhouse\n" * 1000
    sha, size = store.put_stream(io.BytesIO(data))
    assert (sha, size) == (_sha(data), len(data))
    path = store.blob_path(sha)
    assert path == store.root / "blobs" / "sha256" / sha[:2] / sha
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0
    assert store.has(sha)
    assert list(store.tmp_dir.iterdir()) == []


def test_existing_blob_is_never_rewritten(store: Store) -> None:
    sha = store.put_bytes(b"same bytes")
    inode = store.blob_path(sha).stat().st_ino
    store.put_stream(io.BytesIO(b"same bytes"))
    assert store.blob_path(sha).stat().st_ino == inode


def test_expected_hash_mismatch_stores_nothing(store: Store) -> None:
    wrong = "0" * 64
    with pytest.raises(HashMismatchError) as info:
        store.put_stream(io.BytesIO(b"payload"), expected_sha256=wrong, source="payload.whl")
    message = str(info.value)
    assert "payload.whl" in message and wrong in message and _sha(b"payload") in message
    assert not store.has(_sha(b"payload"))
    assert list(store.tmp_dir.iterdir()) == []


def test_failed_check_leaves_no_blob(store: Store) -> None:
    def reject(tmp: Path, sha: str) -> None:
        raise StoreError("bad content")

    with pytest.raises(StoreError):
        store.put_stream(io.BytesIO(b"bad"), check=reject)
    assert not store.has(_sha(b"bad"))
    assert list(store.tmp_dir.iterdir()) == []


def test_store_format_marker_is_written(store: Store) -> None:
    marker = json.loads((store.root / "wheelhouse-store.json").read_text())
    assert marker == {"format": 1}


def test_unknown_store_format_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.open(root)
    (root / "wheelhouse-store.json").write_text('{"format": 99}')
    with pytest.raises(FormatVersionError) as info:
        Store.open(root)
    assert "99" in str(info.value) and "1" in str(info.value)


def test_refuses_non_empty_directory_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("do not touch")
    with pytest.raises(StoreError, match="not empty and is not a wheelhouse store"):
        Store.open(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_refuses_store_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        Store.open(path)


def test_open_without_create_names_the_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no wheelhouse store at"):
        Store.open(tmp_path / "missing", create=False)


def test_verify_finds_and_quarantines_flipped_byte(store: Store) -> None:
    good = store.put_bytes(b"good blob")
    bad = store.put_bytes(b"bad blob!")
    path = store.blob_path(bad)
    path.chmod(0o644)
    content = bytearray(path.read_bytes())
    content[3] ^= 0x01
    path.write_bytes(bytes(content))

    report = store.verify()
    assert report.checked == 2
    assert [(b.expected, b.actual) for b in report.bad] == [(bad, _sha(bytes(content)))]
    assert path.exists()  # reporting alone moves nothing

    report = store.verify(quarantine=True)
    assert not path.exists()
    moved = report.bad[0].quarantined_to
    assert moved is not None and moved.read_bytes() == bytes(content)
    assert store.has(good) and not store.has(bad)
    assert store.verify().ok


def test_clean_tmp_removes_debris_of_dead_writers(store: Store) -> None:
    # A pid that no longer exists: a finished child's.
    proc = subprocess.Popen(["true"])
    proc.wait()
    debris = store.tmp_dir / f"{proc.pid}.abc.part"
    debris.write_bytes(b"half a wheel")
    ours = store.tmp_dir / f"{os.getpid()}.xyz.part"
    ours.write_bytes(b"in flight")
    assert store.clean_tmp() == 1
    assert not debris.exists() and ours.exists()


def _put_many(root: str, seed: int) -> list[str]:
    store = Store.open(root)
    out: list[str] = []
    for i in range(30):
        data = f"blob {i % 10}".encode() * (1000 + i % 10)
        sha, _ = store.put_stream(io.BytesIO(data))
        out.append(sha)
    return out


def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "shared-store")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_put_many, [(root, i) for i in range(4)])
    store = Store.open(root)
    assert all(r == results[0] for r in results)
    report = store.verify()
    assert report.ok and report.checked == 10
    assert list(store.tmp_dir.iterdir()) == []


def test_read_only_store_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    real_open = os.open

    def erofs(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if flags & os.O_CREAT and str(path).startswith(str(store.root)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", erofs)
    with pytest.raises(StoreError, match="Read-only file system") as info:
        store.put_stream(io.BytesIO(b"data"))
    assert "--store" in str(info.value)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A real read-only file system (tmpfs), where the machine lets us mount one."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(mnt)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("this machine does not allow mounting a read-only tmpfs")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_store_on_read_only_filesystem(read_only_mount: Path) -> None:
    with pytest.raises(StoreError, match="Read-only file system"):
        Store.open(read_only_mount / "store")


def test_parse_sha256_rejects_non_digests() -> None:
    for bad in ["", "ABC", "g" * 64, "a" * 63, "../" + "a" * 61]:
        with pytest.raises(StoreError):
            parse_sha256(bad)
    with pytest.raises(StoreError):
        Store(Path("/nonexistent")).blob_path("../../etc/passwd")


def test_sha256_file_streams(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    assert sha256_file(path) == (_sha(data), len(data))


def test_unnamed_temp_files_get_their_blob_name_whole_and_leave_nothing_in_tmp(
    store: Store,
) -> None:
    data = b"unnamed bytes" * 100
    sha = parse_sha256(hashlib.sha256(data).hexdigest())
    fd = store.stage(data, unnamed=True)
    assert isinstance(fd, int)  # this file system has O_TMPFILE (tmpfs, ext4)
    assert list(store.tmp_dir.iterdir()) == []
    assert not store.has(sha)

    store.publish_many([(fd, sha)])

    assert store.blob_path(sha).read_bytes() == data
    assert stat.S_IMODE(store.blob_path(sha).stat().st_mode) & 0o222 == 0  # read-only
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed once named
    assert list(store.tmp_dir.iterdir()) == []

    # Staged again: the blob already there is kept as it is.
    before = store.blob_path(sha).stat()
    store.publish_many([(store.stage(data, unnamed=True), sha)])
    assert os.path.samestat(before, store.blob_path(sha).stat())
    assert store.verify().ok


def test_a_forked_child_names_its_own_unnamed_files_not_the_parents(store: Store) -> None:
    # The parent has looked at its /proc/self/fd and holds an unnamed file
    # open; a child that named files through the parent's table would give
    # the child's blob name the parent's bytes.
    parent_data, child_data = b"the parent's bytes", b"the child's bytes"
    parent_fd = store.stage(parent_data, unnamed=True)
    assert isinstance(parent_fd, int)
    child_sha = parse_sha256(hashlib.sha256(child_data).hexdigest())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(parent_fd)  # its number is free for the child's own file
            fd = store.stage(child_data, unnamed=True)
            store.publish_many([(fd, child_sha)])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.blob_path(child_sha).read_bytes() == child_data
    store.publish_many([(parent_fd, parse_sha256(hashlib.sha256(parent_data).hexdigest()))])
    assert store.verify().ok


def test_unnamed_temp_files_fall_back_to_named_ones_where_there_are_none(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wheelhouse.store

    monkeypatch.setattr(wheelhouse.store, "open_unnamed", lambda directory, mode: None)
    data = b"named after all"
    sha = parse_sha256(hashlib.sha256(data).hexdigest())
    tmp = store.stage(data, unnamed=True)
    assert isinstance(tmp, str) and Path(tmp).parent == store.tmp_dir
    store.publish_many([(tmp, sha)])
    assert store.blob_path(sha).read_bytes() == data
    assert list(store.tmp_dir.iterdir()) == []


def test_a_file_system_without_unnamed_files_is_asked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelhouse import _fs

    store = Store.open(tmp_path / "nfs-like-store")
    real_open = os.open
    asked = []

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            asked.append(path)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")  # as NFS says
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    monkeypatch.setattr(_fs, "_NO_UNNAMED", set())
    temps = [store.stage(b"x%d" % i, unnamed=True) for i in range(3)]
    assert all(isinstance(t, str) for t in temps) and len(asked) == 1
    store.publish_many([(t, parse_sha256(hashlib.sha256(b"x%d" % i).hexdigest()))
                        for i, t in enumerate(temps)])
    assert store.verify().ok and list(store.tmp_dir.iterdir()) == []


def test_a_removed_tmp_directory_is_made_again_for_an_unnamed_temp(store: Store) -> None:
    store.tmp_dir.rmdir()
    tmp = store.stage(b"again", unnamed=True)
    assert isinstance(tmp, str) and store.tmp_dir.is_dir()
    store.publish_many([(tmp, parse_sha256(hashlib.sha256(b"again").hexdigest()))])
    assert store.verify().ok


def test_a_writer_gets_the_store_while_gc_runs_back_to_back(store: Store) -> None:
    # gc run in a loop (a cron job, a script) took the use lock again within
    # microseconds of leaving it, and a writer, polling, almost never got in:
    # a build waited out its 600 s. A waiting writer now goes first.
    import subprocess
    import sys
    import time

    loop = ("import sys, time\n"
            "from wheelhouse.store import Store\n"
            "store = Store.open(sys.argv[1])\n"
            "print('looping', flush=True)\n"
            "end = time.monotonic() + 30\n"
            "while time.monotonic() < end:\n"
            "    with store.exclusive_use():\n"
            "        time.sleep(0.03)\n")
    proc = subprocess.Popen([sys.executable, "-c", loop, str(store.root)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "looping"
        time.sleep(0.2)
        waits = []
        for _ in range(5):
            started = time.monotonic()
            with store.in_use(timeout=20):
                waits.append(time.monotonic() - started)
            time.sleep(0.05)
        assert max(waits) < 3.0, waits  # a gc pass or so (on a busy machine), not the loop
    finally:
        proc.kill()
        proc.communicate()
