"""A fleet of raw-image "VMs" on a directory site, with its inventory: for benchmarks and tests.

Real files, real snapshots (copies), real replica store; only the hypervisor is left out, so what is
measured is Seawall and Temporal, not vcsim.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import yaml


def vm_name(i: int, prefix: str = "vm") -> str:
    return f"{prefix}-{i:04d}"


def write_fleet(
    root: Path,
    count: int,
    *,
    disk_bytes: int = 256 * 1024,
    interval_s: int = 30,
    seed: int = 1,
    site: str = "fleet",
    prefix: str = "vm",
) -> Path:
    """Make ``count`` VM folders with one image each, a key, and an inventory; returns its path.

    ``site`` names the source site, and so its task queue: give concurrent runs different names.
    """
    rng = random.Random(seed)
    site_dir = root / "site"
    for i in range(count):
        folder = site_dir / vm_name(i, prefix)
        folder.mkdir(parents=True, exist_ok=True)
        half = disk_bytes // 2
        # Half random (incompressible), half zero (a sparse tail): the shape of a lightly used disk.
        (folder / "disk0.img").write_bytes(rng.randbytes(half) + bytes(disk_bytes - half))
    key = root / "replica.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    inventory = {
        "kind": "Inventory",
        "sites": [
            {"name": site, "kind": "directory", "path": str(site_dir)},
            {"name": f"{site}-dr", "kind": "directory", "path": str(root / "dr")},
        ],
        "replica_stores": [{"name": f"{site}-store", "kind": "directory", "path": str(root / "replica")}],
        "policies": [
            {
                "name": "fleet-rpo",
                "interval": f"{interval_s}s",
                "retention_count": 3,
                "compression_level": 1,
                "key_ref": f"file:{key}",
            }
        ],
        "protected_vms": [
            {
                "name": vm_name(i, prefix),
                "source_site": site,
                "policy": "fleet-rpo",
                "replica_store": f"{site}-store",
                "target_sites": [f"{site}-dr"],
            }
            for i in range(count)
        ],
    }
    path = root / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def touch_blocks(root: Path, vm: str, rng: random.Random, blocks: int = 4) -> None:
    """A guest's scattered 4 KiB writes into the VM's image."""
    image = root / "site" / vm / "disk0.img"
    size = image.stat().st_size
    with image.open("r+b") as f:
        for _ in range(blocks):
            f.seek(rng.randrange(size // 4096) * 4096)
            f.write(rng.randbytes(4096))
