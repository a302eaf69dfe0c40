"""Real bytes for the lab's virtual disks, and in-place block writes between replication cycles.

vcsim creates every disk as an empty ``-flat.vmdk``. A replication engine fed empty files proves
nothing, so the lab fills each primary disk with a deterministic image that looks like a used disk:
a boot-sector-like header, text regions (compressible), binary regions (incompressible), all-zero
regions (sparse), and regions that repeat an earlier one (dedupable). The same VM name, disk index and
size always give the same bytes, so a test can regenerate what the disk must contain.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from seawall.lab.info import LabDisk, LabInfo

REGION = 64 * 1024
SECTOR = 512

_WORDS = [
    "order",
    "invoice",
    "customer",
    "shipment",
    "ledger",
    "account",
    "balance",
    "replica",
    "snapshot",
    "volume",
    "block",
    "cluster",
    "datastore",
    "network",
    "gateway",
    "tenant",
    "session",
    "request",
    "response",
    "payload",
    "checksum",
    "journal",
    "commit",
    "rollback",
    "index",
    "table",
    "column",
    "primary",
    "backup",
    "restore",
    "failover",
    "region",
    "zone",
    "latency",
    "throughput",
    "error",
    "warning",
    "info",
    "debug",
    "started",
    "stopped",
    "healthy",
    "degraded",
    "user",
    "admin",
    "service",
    "queue",
    "worker",
]


def _seed(vm: str, disk: int) -> int:
    return int.from_bytes(hashlib.sha256(f"seawall-lab/{vm}/{disk}".encode()).digest()[:8], "big")


def _header(vm: str, disk: int, size: int) -> bytes:
    # Shaped like an MBR sector so tools that peek at disk 0 see something plausible.
    text = f"SEAWALL LAB DISK vm={vm} disk={disk} size={size}\n".encode()
    sector = bytearray(SECTOR)
    sector[: len(text)] = text
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def _text_region(rng: random.Random) -> bytes:
    lines = []
    for _ in range(48):
        n = rng.randint(4, 14)
        lines.append(f"{rng.randint(0, 10**9):010d} " + " ".join(rng.choices(_WORDS, k=n)) + "\n")
    out = "".join(rng.choices(lines, k=REGION // 40)).encode()
    return (out * (REGION // max(len(out), 1) + 1))[:REGION]


def _table_region(rng: random.Random) -> bytes:
    # Fixed-width records with incrementing ids: structured like a database page, half compressible.
    base = rng.getrandbits(32)
    records = bytearray()
    i = 0
    while len(records) < REGION:
        records += (base + i).to_bytes(8, "little") + rng.randbytes(8) + b"\x00" * 16
        i += 1
    return bytes(records[:REGION])


def disk_pattern(vm: str, size: int, disk: int = 0) -> bytes:
    """The deterministic image of disk ``disk`` of ``vm``, ``size`` bytes (a multiple of 64 KiB)."""
    if size % REGION:
        raise ValueError(f"disk size {size} is not a multiple of {REGION}")
    rng = random.Random(_seed(vm, disk))
    regions: list[bytes] = []
    for index in range(size // REGION):
        roll = rng.random()
        if index == 0:
            region = _header(vm, disk, size) + _text_region(rng)[SECTOR:]
        elif roll < 0.25:
            region = bytes(REGION)
        elif roll < 0.55:
            region = _text_region(rng)
        elif roll < 0.80:
            region = rng.randbytes(REGION)
        elif roll < 0.92 or len(regions) < 2:
            region = _table_region(rng)
        else:
            region = regions[rng.randrange(1, len(regions))]
        regions.append(region)
    return b"".join(regions)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def fill_disk(path: Path, vm: str, size: int, disk: int = 0) -> None:
    """Write the pattern over a disk file, replacing it whole (atomically: a reader never sees half)."""
    tmp = path.with_name(f".{path.name}.fill")
    tmp.write_bytes(disk_pattern(vm, size, disk))
    os.replace(tmp, path)


def _disk(lab: LabInfo, site: str, vm: str, disk: int) -> LabDisk:
    disks = lab.site(site).vm(vm).disks
    if not 0 <= disk < len(disks):
        raise IndexError(f"{vm} at {site} has {len(disks)} disk(s); no disk {disk}")
    return disks[disk]


def write_blocks(lab: LabInfo, site: str, vm: str, offset: int, data: bytes, disk: int = 0) -> None:
    """Overwrite ``data`` at ``offset`` of a lab VM's disk, in place, as a guest write would.

    Writes straight into the datastore's ``-flat.vmdk`` (the datastore is a local directory) rather
    than an HTTP PUT: vcsim's PUT replaces the whole file, so changing a few blocks would re-upload the
    disk and a concurrent reader could see it truncated. A positioned write changes only those bytes,
    which is exactly what changed-block detection has to find. The disk never grows.
    """
    target = _disk(lab, site, vm, disk)
    if offset < 0 or offset + len(data) > target.capacity_bytes:
        raise ValueError(
            f"write of {len(data)} bytes at {offset} is outside {vm} disk {disk} "
            f"({target.capacity_bytes} bytes)"
        )
    fd = os.open(target.file, os.O_WRONLY)
    try:
        written = os.pwrite(fd, data, offset)
        if written != len(data):
            raise OSError(f"short write to {target.file}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def restore_disk(lab: LabInfo, site: str, vm: str, disk: int = 0) -> None:
    """Put the lab's original image back (a test that changed blocks calls this when done)."""
    target = _disk(lab, site, vm, disk)
    write_blocks(lab, site, vm, 0, disk_pattern(vm, target.capacity_bytes, disk), disk)


def read_disk(lab: LabInfo, site: str, vm: str, disk: int = 0) -> bytes:
    """The current bytes of a lab VM's disk, from the datastore file."""
    return _disk(lab, site, vm, disk).file.read_bytes()
