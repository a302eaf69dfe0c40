"""VSphereDiskSource against the lab's primary vcsim: a snapshot's disk read over HTTP ranges equals
the datastore file the lab wrote, and no snapshot is left behind."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from seawall.blockstore.source import DiskSource, SourceError
from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.source import VSphereDiskSource

pytestmark = pytest.mark.lab


@pytest.fixture
def conn(lab: LabInfo) -> Iterator[VSphereConnection]:
    site = lab.primary
    connection = VSphereConnection(
        site.host, site.user, site.password, port=site.port, protocol=site.protocol
    )
    yield connection
    connection.disconnect()


@pytest.fixture
def snapshot_name(conn: VSphereConnection, lab: LabInfo) -> Iterator[str]:
    name = f"seawall-test-{uuid.uuid4().hex[:10]}"
    yield name
    left = [vm.name for vm in lab.primary.vms if name in conn.snapshot_names(conn.find_vm(vm.name))]
    assert left == [], f"snapshot {name!r} left behind on {left}"


def stable_compare(file: Path, read_all: Callable[[], bytes]) -> None:
    """Compare what the source reads with the file on disk. vcsim's base disk stays live under a
    snapshot, so another test writing blocks meanwhile would make a one-shot comparison flaky: accept
    the read only when the file did not change around it."""
    for _ in range(5):
        before = file.read_bytes()
        got = read_all()
        if file.read_bytes() == before:
            assert got == before
            return
    pytest.fail(f"{file} kept changing during five reads")


def test_reads_the_snapshot_disk_over_http(
    conn: VSphereConnection, lab: LabInfo, snapshot_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    vm = conn.find_vm("web-01")
    lab_disk = lab.primary.vm("web-01").disks[0]
    disk = conn.vm_disks(vm)[0]
    try:
        conn.create_snapshot(vm, snapshot_name)
        conn.create_snapshot(vm, snapshot_name)
        assert len(conn.find_snapshots(vm, snapshot_name)) == 1
        with VSphereDiskSource(conn, vm, snapshot_name, disk.key, readahead=256 * 1024) as source:
            assert isinstance(source, DiskSource)
            assert source.size == lab_disk.capacity_bytes == lab.disk_size
            assert source.change_id is None  # vcsim keeps no CBT change ids
            assert source.url == lab.primary.datastore_url(lab_disk.flat_name)
            assert "web-01" in source.describe() and lab.primary.password not in source.describe()

            def sequential() -> bytes:
                return b"".join(source.read(off, 64 * 1024) for off in range(0, source.size, 64 * 1024))

            def uneven() -> bytes:
                rng = random.Random(7)
                out, off = bytearray(), 0
                while off < source.size:
                    n = rng.choice([1, 511, 4096, 70_000, 1_048_576, 3_000_000])
                    out += source.read(off, n)
                    off += n
                return bytes(out)

            def parallel() -> bytes:
                block = 512 * 1024
                with ThreadPoolExecutor(4) as pool:
                    parts = pool.map(lambda off: source.read(off, block), range(0, source.size, block))
                    return b"".join(parts)

            def ranged() -> bytes:
                block = 32 * 1024
                ranges = [(off, block) for off in range(0, source.size, block)]
                random.Random(3).shuffle(ranges)
                return b"".join(data for _, data in source.read_ranges(ranges, max_request=1024 * 1024))

            for read_all in (sequential, uneven, parallel, ranged):
                stable_compare(lab_disk.file, read_all)
            assert source.read(source.size, 10) == b""
            assert source.read(source.size - 3, 10) == lab_disk.file.read_bytes()[-3:]

            # CBT on: the source asks the server, and vcsim answers "not implemented" -> None.
            assert conn.enable_cbt(vm).enabled
        with VSphereDiskSource(conn, vm, snapshot_name, disk.key) as tracked:
            with caplog.at_level(logging.INFO, logger="seawall.sites.vsphere.client"):
                assert tracked.changed_areas("*") is None
            assert "does not implement QueryChangedDiskAreas" in caplog.text
    finally:
        assert conn.remove_snapshot(vm, snapshot_name) == 1
    assert conn.remove_snapshot(vm, snapshot_name) == 0
    assert conn.find_snapshot(vm, snapshot_name) is None


def test_reads_every_disk_of_a_two_disk_vm(conn: VSphereConnection, lab: LabInfo, snapshot_name: str) -> None:
    lab_vm = lab.primary.vm("db-01")
    assert len(lab_vm.disks) == 2
    vm = conn.find_vm("db-01")
    try:
        snap = conn.create_snapshot(vm, snapshot_name)
        disks = conn.snapshot_disks(snap)
        assert len(disks) == 2
        for disk, lab_disk in zip(disks, lab_vm.disks, strict=True):
            with VSphereDiskSource(conn, vm, snapshot_name, disk.key) as source:
                assert source.disk.file_name == lab_disk.datastore_path

                def whole(src: VSphereDiskSource = source) -> bytes:
                    return b"".join(d for _, d in src.read_ranges([(0, src.size)], max_request=1024 * 1024))

                stable_compare(lab_disk.file, whole)
    finally:
        conn.remove_snapshot(vm, snapshot_name)
    assert conn.find_snapshot(vm, snapshot_name) is None


def test_refuses_a_missing_snapshot_or_disk(conn: VSphereConnection, snapshot_name: str) -> None:
    vm = conn.find_vm("web-01")
    with pytest.raises(SourceError, match=f"no snapshot named '{snapshot_name}'"):
        VSphereDiskSource(conn, vm, snapshot_name, 2000)
    try:
        conn.create_snapshot(vm, snapshot_name)
        with pytest.raises(SourceError, match="no disk with device key 999999"):
            VSphereDiskSource(conn, vm, snapshot_name, 999999)
    finally:
        conn.remove_snapshot(vm, snapshot_name)
