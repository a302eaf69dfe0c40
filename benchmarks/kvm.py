"""KVM changed-block tracking: one cycle at 1 % change of a 1 GiB guest disk through libvirt's dirty
bitmap vs a full hash compare of the same disk, side by side in one run.

    python -m benchmarks.kvm --json [--size-mib 1024] [--change-pct 1] [--uri URI] [--workdir DIR]

A throwaway domain (no OS: it idles in its BIOS) is defined at the lab's ``kvm-a`` (or ``--uri``) with
one qcow2 disk of ``--size-mib`` filled with random bytes, and started. The seed point ships it whole
through ``KvmAdapter`` (pull-mode backup job over NBD) into a directory repository. Then ``change-pct``
% of the disk's 64 KiB clusters, chosen at random, are overwritten inside the running domain (QEMU's
qemu-io over the monitor, as a guest's writes would land), and one point is taken:

- ``cbt``: the cycle as Seawall runs it: backup job + checkpoint, ship of the dirty extents the job's
  bitmap reports, commit, job ended;
- ``hash_compare``: the same export shipped once more as a source without change tracking (a lost or
  foreign checkpoint): every block read and hashed against the seed, then committed.

Both read the same export of the same job (same bytes, warm page cache for both). ``cbt_vs_hash_compare``
is the CBT cycle's time over the hash-compare cycle's (target: <= 0.2). Both points are restored and
compared with the export's SHA-256. One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
CLUSTER = 64 * 1024
TARGET = 0.2
BACKEND = "/machine/peripheral/virtio-disk0/virtio-backend"  # the domain's one virtio disk


@dataclass
class Measured:
    size_bytes: int
    changed_bytes: int
    bitmap_dirty_bytes: int
    seed_s: float
    cbt_cycle_s: float
    cbt_ship_s: float
    cbt_bytes_read: int
    cbt_change_path: str
    hash_cycle_s: float
    hash_ship_s: float
    hash_bytes_read: int
    hash_change_path: str
    restore_identical: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kvm", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--json", action="store_true", help="print one JSON object on one line (default: indented)"
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="the guest disk's size (>= 16)")
    ap.add_argument("--change-pct", type=float, default=1.0, help="%% of 64 KiB clusters overwritten (0-100]")
    ap.add_argument("--uri", default=None, help="libvirt URI (default: the lab's kvm-a)")
    ap.add_argument("--workdir", type=Path, default=None, help="kept after the run when given")
    ap.add_argument("--seed", type=int, default=20261201)
    args = ap.parse_args(argv)
    if args.size_mib < 16:
        ap.error("--size-mib must be at least 16")
    if not 0 < args.change_pct <= 100:
        ap.error("--change-pct must be in (0, 100]")
    return args


def report(m: Measured, args: argparse.Namespace) -> dict[str, Any]:
    ratio = m.cbt_cycle_s / m.hash_cycle_s if m.hash_cycle_s > 0 else None
    return {
        "benchmark": "kvm-cbt",
        "size_bytes": m.size_bytes,
        "change_pct": args.change_pct,
        "changed_bytes": m.changed_bytes,
        "bitmap_dirty_bytes": m.bitmap_dirty_bytes,
        "seed_s": round(m.seed_s, 3),
        "cbt": {
            "cycle_s": round(m.cbt_cycle_s, 3),
            "ship_s": round(m.cbt_ship_s, 3),
            "bytes_read": m.cbt_bytes_read,
            "change_path": m.cbt_change_path,
        },
        "hash_compare": {
            "cycle_s": round(m.hash_cycle_s, 3),
            "ship_s": round(m.hash_ship_s, 3),
            "bytes_read": m.hash_bytes_read,
            "change_path": m.hash_change_path,
        },
        "cbt_vs_hash_compare": round(ratio, 4) if ratio is not None else None,
        "bytes_read_vs_dirty": round(m.cbt_bytes_read / m.bitmap_dirty_bytes, 4)
        if m.bitmap_dirty_bytes
        else None,
        "target": {"cbt_vs_hash_compare": ["<=", TARGET]},
        "target_met": ratio is not None and ratio <= TARGET,
        "restore_identical": m.restore_identical,
    }


class _NoTracking:
    """The same export without change tracking: what a lost or foreign checkpoint leaves the ship."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def size(self) -> int:
        return int(self._inner.size)

    @property
    def change_id(self) -> str | None:
        return self._inner.change_id  # type: ignore[no-any-return]

    def changed_areas(self, since_change_id: str) -> None:
        return None


def _random_image(path: Path, size: int, rng: random.Random) -> None:
    raw = path.with_suffix(".raw")
    with raw.open("wb") as f:
        for _ in range(size // (4 * MiB)):
            f.write(rng.randbytes(4 * MiB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()


def _domain_xml(name: str, disk: Path) -> str:
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""


def _export_sha256(source: Any) -> str:
    digest = hashlib.sha256()
    for off in range(0, source.size, 8 * MiB):
        digest.update(source.read(off, min(8 * MiB, source.size - off)))
    return digest.hexdigest()


def _restored_sha256(repo: Any, vm: str, point: str, tmp: Path) -> str:
    out = tmp / f"restore-{point}.img"
    repo.restore_disk(vm, point, "disk0", out)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    out.unlink()
    return digest.hexdigest()


def run(args: argparse.Namespace, work: Path) -> Measured:
    import libvirt
    import libvirt_qemu

    from seawall.blockstore.keys import KeyMaterial
    from seawall.blockstore.manifest import PointRef
    from seawall.blockstore.repository import Repository
    from seawall.blockstore.stores.directory import DirectoryStore
    from seawall.model import KvmSite
    from seawall.sites.kvm.adapter import KvmAdapter

    uri = args.uri
    if uri is None:
        from seawall.lab import config as lab_config
        from seawall.lab.info import load_lab

        uri = load_lab(lab_config.state_dir()).kvm["kvm-a"].uri
    rng = random.Random(args.seed)
    size = args.size_mib * MiB
    disk = work / "bench.qcow2"
    _random_image(disk, size, rng)
    name = f"swbench-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(uri)
    dom = conn.defineXML(_domain_xml(name, disk))
    try:
        dom.create()
        adapter = KvmAdapter(KvmSite(name="bench", uri=uri, pool="unused", backup_dir=str(work / "b")))
        repo = Repository(DirectoryStore(work / "store"), KeyMaterial.generate("bench"))

        t0 = time.perf_counter()
        taken = adapter.create_snapshot(name, "seawall-p0-seed", quiesce=False, only=None)
        with adapter.open_disks(name, "seawall-p0-seed") as open_disk:
            src = open_disk(taken.disks[0])
            try:
                repo.commit_point(name, "p0-seed", [repo.ship(src, name, "disk0")])
            finally:
                src.close()
        adapter.release_snapshot(name, "seawall-p0-seed")
        adapter.settle_snapshot(name, "seawall-p0-seed", True)
        seed_s = time.perf_counter() - t0
        clusters = size // CLUSTER
        picked = rng.sample(range(clusters), max(1, round(clusters * args.change_pct / 100)))
        for index in picked:
            pattern = rng.randrange(1, 255)
            cmd = f'qemu-io -d {BACKEND} "write -P {pattern} {index * CLUSTER} {CLUSTER}"'
            libvirt_qemu.qemuMonitorCommand(dom, cmd, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)

        # One job, two ships of its export: first through the bitmap, then as a plain disk.
        snap = "seawall-p1-cbt"
        t0 = time.perf_counter()
        taken = adapter.create_snapshot(name, snap, quiesce=False, only=None)
        with adapter.open_disks(name, snap) as open_disk:
            src = open_disk(taken.disks[0])
            try:
                start_s = time.perf_counter() - t0
                areas = src.changed_areas(repo.read_manifest(name, "p0-seed").disks[0].change_id or "")
                dirty = sum(a.length for a in areas or [])
                t1 = time.perf_counter()
                cbt = repo.ship(src, name, "disk0", parent=PointRef(vm=name, point_id="p0-seed"))
                repo.commit_point(name, "p1-cbt", [cbt], parent="p0-seed")
                cbt_ship = time.perf_counter() - t1
                t2 = time.perf_counter()
                full = repo.ship(
                    _NoTracking(src), name, "disk0", parent=PointRef(vm=name, point_id="p0-seed")
                )
                repo.commit_point(name, "p1-hash", [full], parent="p0-seed")
                hash_ship = time.perf_counter() - t2
                sha = _export_sha256(src)
            finally:
                src.close()
        t3 = time.perf_counter()
        adapter.release_snapshot(name, snap)
        adapter.settle_snapshot(name, snap, True)
        end_s = time.perf_counter() - t3
        # Each cycle pays the job's start and end once: the CBT cycle also its bitmap query.
        cbt_cycle = start_s + cbt_ship + end_s
        hash_cycle = start_s + hash_ship + end_s
        identical = all(_restored_sha256(repo, name, p, work) == sha for p in ("p1-cbt", "p1-hash"))
        return Measured(
            size_bytes=size,
            changed_bytes=len(picked) * CLUSTER,
            bitmap_dirty_bytes=dirty,
            seed_s=seed_s,
            cbt_cycle_s=cbt_cycle,
            cbt_ship_s=cbt_ship,
            cbt_bytes_read=cbt.bytes_read,
            cbt_change_path=str(cbt.change_path),
            hash_cycle_s=hash_cycle,
            hash_ship_s=hash_ship,
            hash_bytes_read=full.bytes_read,
            hash_change_path=str(full.change_path),
            restore_identical=identical,
        )
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep = args.workdir is not None
    work = args.workdir or Path(tempfile.mkdtemp(prefix="swkvm-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = report(run(args, work), args)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
