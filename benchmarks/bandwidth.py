"""Bandwidth-limit benchmark: a seed shipped under a site limit vs the same seed with none.

    python -m benchmarks.bandwidth --json [--size-mib 256] [--limit-mb-s 20] [--ships 2] [--workdir DIR]

One disk of ``size-mib`` random bytes (incompressible: every byte goes over the "link") is split
into ``ships`` equal disks shipped concurrently by one process, as a worker ships the disks of its
VMs, into a directory store: first through one shared token bucket of ``limit-mb-s`` MB/s (10^6
bytes), then unthrottled. Reported: each run's seconds and rate, ``rate_vs_limit`` (the shipped
bytes per second under the limit, over the limit; the issue's target is 1.0 +- 0.1) and
``unlimited_vs_limited`` (how much faster the same work runs without the limit). The limit is per
worker process; several worker processes of one site each draw their own bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from seawall.blockstore.bandwidth import ThrottledStore, TokenBucket
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.repository import Repository
from seawall.blockstore.source import ChangedArea
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.stores.directory import DirectoryStore

MiB = 1024 * 1024


class BytesSource:
    """A disk in memory (a DiskSource without change tracking)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def change_id(self) -> str | None:
        return None

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        return None

    def describe(self) -> str:
        return "memory:"

    def close(self) -> None:
        pass


def _ship_all(stores: list[ObjectStore], disks: list[bytes]) -> float:
    key = KeyMaterial(key_id="bench", key=bytes(range(32)))
    errors: list[BaseException] = []

    def ship(store: ObjectStore, i: int) -> None:
        try:
            repo = Repository(store, key)
            shipped = repo.ship(BytesSource(disks[i]), f"vm-{i}", "disk0", dedup=False)
            repo.commit_point(f"vm-{i}", "p0", [shipped])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ship, args=(s, i)) for i, s in enumerate(stores)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - start


def run(size_mib: int, limit_mb_s: float, ships: int, workdir: Path) -> dict[str, Any]:
    limit = limit_mb_s * 1e6
    per = size_mib * MiB // ships
    disks = [os.urandom(per) for _ in range(ships)]
    bucket = TokenBucket(limit)
    limited_dir = DirectoryStore(workdir / "limited")
    limited_s = _ship_all([ThrottledStore(limited_dir, bucket) for _ in range(ships)], disks)
    free = DirectoryStore(workdir / "free")
    unlimited_s = _ship_all([free] * ships, disks)
    rate = bucket.taken / limited_s
    return {
        "size_bytes": per * ships,
        "ships": ships,
        "limit_bytes_per_s": limit,
        "limited_s": round(limited_s, 3),
        "limited_shipped_bytes": bucket.taken,
        "limited_bytes_per_s": round(rate),
        "unlimited_s": round(unlimited_s, 3),
        "unlimited_bytes_per_s": round(per * ships / unlimited_s),
        "rate_vs_limit": round(rate / limit, 3),
        "unlimited_vs_limited": round(limited_s / unlimited_s, 2),
        "within_10pct": abs(rate / limit - 1.0) <= 0.10,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--limit-mb-s", type=float, default=20.0)
    parser.add_argument("--ships", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.ships < 1 or args.limit_mb_s <= 0:
        parser.error("--size-mib and --ships must be >= 1, --limit-mb-s > 0")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seawall-bw-"))
    try:
        result = run(args.size_mib, args.limit_mb_s, args.ships, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["within_10pct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
