"""Do a burst of seeds starve the cycles of VMs already protected? A quiet window against a burst window.

    python -m benchmarks.seedburst --vms 20 --burst 24 --slots 8 --seeds 4 --json

Needs the lab's Temporal dev server (``seawall lab up``). N raw-image VMs on a directory site are
protected and cycle on their schedules while a writer dirties blocks. For ``--duration-s`` nothing else
runs (the quiet window, the baseline); then B more VMs, with bigger disks and a seed bandwidth limit
that makes each seed last tens of seconds, are protected all at once, and the fleet goes on for another
``--duration-s`` (the burst window). From Temporal's records, per window: the fleet's cycles completed,
RPO misses and latency (scheduled time to verified point); and how long the burst's protections took.

A site's worker takes ``--slots`` activity tasks at once on its queue, and ``--seeds`` seeds at once on
its seed queue. More seeds than slots is the case this measures: were the seeds to share the slots,
the cycles would wait for them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks import workerproc
from benchmarks.fleet import touch_blocks, vm_name, write_fleet
from benchmarks.output import emit
from benchmarks.schedules import _cycles_in_window, _lab_temporal, _percentile, _stop_fleet
from seawall.control import replication
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect

MIB = 1024 * 1024


def add_burst(inventory: Path, root: Path, names: list[str], disk_bytes: int, seed_bytes_per_s: int) -> None:
    """Give the burst's VMs (already in the inventory) full random disks and a seed bandwidth limit."""
    data = yaml.safe_load(inventory.read_text())
    rng = random.Random(7)
    for entry in data["protected_vms"]:
        if entry["name"] in names:
            (root / "site" / entry["name"] / "disk0.img").write_bytes(rng.randbytes(disk_bytes))
            entry["bandwidth_limit"] = {"seed_bytes_per_s": seed_bytes_per_s}
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))


async def _window(
    workdir: Path, fleet: list[str], rng: random.Random, seconds: float, interval_s: int
) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for vm in rng.sample(fleet, max(1, len(fleet) // 10)):
            touch_blocks(workdir, vm, rng, blocks=2)
        await asyncio.sleep(min(1.0, interval_s / 10))


def _figures(
    latencies: list[float], completed: dict[str, list[datetime]], seconds: float, interval_s: int
) -> dict[str, Any]:
    slots = int(seconds // interval_s)
    return {
        "cycles_completed": sum(len(t) for t in completed.values()),
        "cycles_expected": slots * len(completed),
        "missed_rpo": sum(max(0, slots - len(t)) for t in completed.values()),
        "latency_s": {"p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99)},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seawall-bench-seedburst-"))
    site = f"burst-{uuid.uuid4().hex[:8]}"
    total = args.vms + args.burst
    inventory = write_fleet(
        workdir, total, disk_bytes=args.disk_kib * 1024, interval_s=args.interval_s, site=site, prefix=site
    )
    fleet = [vm_name(i, site) for i in range(args.vms)]
    burst = [vm_name(i, site) for i in range(args.vms, total)]
    add_burst(inventory, workdir, burst, args.burst_disk_mib * MIB, args.seed_limit_kib * 1024)
    settings = Settings(
        temporal_address=args.temporal,
        inventory=inventory,
        orchestration_queue=f"bench-orchestration-{uuid.uuid4().hex[:8]}",
        max_concurrent_activities=args.slots,
        max_concurrent_seeds=args.seeds,
        graceful_shutdown_s=5,
    )
    client = await connect(settings)
    rng = random.Random(11)
    queue = settings.orchestration_queue
    async with workerproc.running(client, [site], settings, split=args.split, niceness=0, identity="burst"):
        await asyncio.gather(*(replication.protect(client, queue, vm) for vm in fleet))
        quiet = datetime.now(UTC)
        await _window(workdir, fleet, rng, args.duration_s, args.interval_s)
        loud = datetime.now(UTC)
        t_burst = time.perf_counter()
        done: list[float] = []

        async def protect(vm: str) -> None:
            await replication.protect(client, queue, vm)
            done.append(time.perf_counter() - t_burst)

        protections = [asyncio.create_task(protect(vm)) for vm in burst]
        await _window(workdir, fleet, rng, args.duration_s, args.interval_s)
        end = datetime.now(UTC)
        await asyncio.gather(*protections)
        await _stop_fleet(client, site, fleet + burst)
    windows: dict[str, Any] = {}
    for name, start, stop in (("quiet", quiet, loud), ("burst", loud, end)):
        latencies, completed, _failed, _sample = await _cycles_in_window(client, site, fleet, start, stop)
        windows[name] = _figures(latencies, completed, (stop - start).total_seconds(), args.interval_s)
    seed_s = args.burst_disk_mib * MIB / (args.seed_limit_kib * 1024)
    return {
        "vms": args.vms,
        "interval_s": args.interval_s,
        "window_s": args.duration_s,
        "activity_slots": args.slots,
        "seed_slots": args.seeds,
        "burst": args.burst,
        "burst_disk_mib": args.burst_disk_mib,
        "seed_limit_kib_per_s": args.seed_limit_kib,
        "split": bool(args.split),
        "quiet": windows["quiet"],
        "during_burst": windows["burst"],
        # What the burst's seeds cost the fleet, against the quiet window of the same run.
        "missed_rpo_added": windows["burst"]["missed_rpo"] - windows["quiet"]["missed_rpo"],
        "p99_ratio": (
            round(windows["burst"]["latency_s"]["p99"] / windows["quiet"]["latency_s"]["p99"], 2)
            if windows["burst"]["latency_s"]["p99"] and windows["quiet"]["latency_s"]["p99"]
            else None
        ),
        # From the burst's start: when its first and its last VM were protected (seeded, verified).
        "burst_protected_first_last_s": [round(min(done), 1), round(max(done), 1)] if done else None,
        # Each seed is held to its limit: with S seed slots, B seeds take at least ceil(B / S) of these.
        "one_seed_at_its_limit_s": round(seed_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=20, help="the protected fleet")
    parser.add_argument("--burst", type=int, default=24, help="VMs protected at once in the second window")
    parser.add_argument("--interval-s", type=int, default=30, help="RPO interval (>= 30 s)")
    parser.add_argument("--duration-s", type=float, default=90, help="each window")
    parser.add_argument("--disk-kib", type=int, default=256, help="the fleet's disks")
    parser.add_argument("--burst-disk-mib", type=int, default=4, help="the burst's disks (random)")
    parser.add_argument("--seed-limit-kib", type=int, default=256, help="each burst seed's KiB/s")
    parser.add_argument("--slots", type=int, default=8, help="worker max_concurrent_activities")
    parser.add_argument("--seeds", type=int, default=4, help="worker max_concurrent_seeds")
    parser.add_argument("--temporal", default=None, help="host:port (default: the lab's)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="activity tasks in a `seawall worker --role activities` (default), as deployed",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.temporal = args.temporal or _lab_temporal()
    if args.interval_s < 30:
        parser.error("--interval-s: policies allow 30 s at the least")
    if args.vms < 1 or args.burst < 1:
        parser.error("--vms and --burst: at least 1")
    result = asyncio.run(run(args))
    emit(result, args.json)
    # Failed: the burst cost the fleet an interval the quiet window did not miss.
    return 0 if result["missed_rpo_added"] <= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
