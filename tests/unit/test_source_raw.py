"""The raw file / block device DiskSource."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seawall.blockstore.source import DiskSource, SourceError
from seawall.sites.directory.source import RawSource, _device_size


def test_file_size_and_reads(tmp_path: Path) -> None:
    p = tmp_path / "disk.raw"
    data = os.urandom(100_000)
    p.write_bytes(data)
    with RawSource(p, change_id="c1") as s:
        assert isinstance(s, DiskSource)
        assert s.size == 100_000 and s.change_id == "c1"
        assert s.read(0, 10) == data[:10]
        assert s.read(99_990, 100) == data[99_990:]  # shorter only at the end
        assert s.read(200_000, 10) == b""
        assert s.changed_areas("c0") is None  # hash-compare
        assert s.describe() == f"raw:{p}"
    with pytest.raises(SourceError, match="closed"):
        s.read(0, 1)


def test_sparse_file_size(tmp_path: Path) -> None:
    p = tmp_path / "sparse.raw"
    with open(p, "wb") as f:
        f.truncate(1 << 30)
    with RawSource(p) as s:
        assert s.size == 1 << 30
        assert s.read((1 << 30) - 4, 8) == bytes(4)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open"):
        RawSource(tmp_path / "missing")
    with pytest.raises(SourceError, match="neither"):
        RawSource("/dev/null")  # a character device is not a disk
    with RawSource(__file__) as s, pytest.raises(ValueError):
        s.read(-1, 1)


def test_device_size_falls_back_to_seek_end(tmp_path: Path) -> None:
    # On a regular file the BLKGETSIZE64 ioctl fails (ENOTTY); the fallback seeks to the end.
    p = tmp_path / "f"
    p.write_bytes(b"x" * 12345)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert _device_size(fd) == 12345
    finally:
        os.close(fd)


def test_file_that_shrinks_under_the_reader(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 10000)
    with RawSource(p) as s:
        os.truncate(p, 100)
        with pytest.raises(SourceError, match="unexpected end"):
            s.read(0, 10000)


def test_readinto_fills_a_callers_buffer(tmp_path: Path) -> None:
    p = tmp_path / "disk.raw"
    data = os.urandom(10_000)
    p.write_bytes(data)
    buf = bytearray(4096)
    with RawSource(p) as s:
        assert s.readinto(100, buf) == 4096 and bytes(buf) == data[100:4196]
        assert s.readinto(8_000, memoryview(buf)[:3000]) == 2000  # short only at the end
        assert bytes(buf[:2000]) == data[8000:]


def test_block_device_size_and_restore_onto_it(tmp_path: Path) -> None:
    """BLKGETSIZE64 on a real block device, via a loop device when this machine allows one."""
    import shutil
    import subprocess

    from seawall.blockstore.keys import KeyMaterial
    from seawall.blockstore.repository import Repository
    from tests.datapath_scenario import MemoryStore

    backing = tmp_path / "loop.img"
    backing.write_bytes(os.urandom(3 * 1024 * 1024))
    # The suite runs as root (make test installs with apt): a machine that cannot make a loop device
    # fails here and says why, rather than passing a test that did not run.
    if shutil.which("losetup") is None or os.geteuid() != 0:
        pytest.fail("needs root and losetup for a loop device")
    proc = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"no loop device here: {proc.stderr.strip()}")
    dev = proc.stdout.strip()
    try:
        with RawSource(dev) as s:
            assert s.size == 3 * 1024 * 1024
            data = s.read(0, s.size)
            repo = Repository(MemoryStore(), KeyMaterial("k", bytes(32)))
            shipped = repo.ship(s, "vm", "d0")
        repo.commit_point("vm", "p0", [shipped])
        with open(dev, "r+b") as f:  # scribble, then restore onto the device itself
            f.write(b"\xff" * 1024 * 1024)
        res = repo.restore_disk("vm", "p0", "d0", dev)
        assert res.zero_bytes_skipped == 0  # a device is never assumed to read back zeros
        with open(dev, "rb") as f:
            assert f.read() == data
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
