"""How many replication cycles per second one worker and the dev server sustain with zero RPO misses.

    python -m benchmarks.schedules --vms 100 --interval-s 30 --duration-s 120 --json

Needs the lab's Temporal dev server (``seawall lab up``). Protects N raw-image VMs on a directory site
(real snapshots, ships, commits, verifies into a real store: only the hypervisor is left out), lets
their schedules run for the duration while a writer dirties blocks, and reports from Temporal's own
records: cycles completed, RPO misses, latency from scheduled time to verified point, activities per
cycle (regular and local), and the sustained rate. 1,000 VMs at a 5-minute RPO need 3.3 cycles/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from benchmarks.fleet import touch_blocks, vm_name, write_fleet
from seawall.contract.names import Workflow, gc_schedule_id, schedule_id
from seawall.contract.search import SA_SITE
from seawall.control import replication
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect
from workers.main import build_workers


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def _scheduled_time(workflow_id: str) -> datetime | None:
    # Schedules name each run "<action id>-<scheduled time, RFC 3339>".
    tail = workflow_id.rsplit("-", 3)
    try:
        return datetime.fromisoformat("-".join(tail[-3:]).replace("Z", "+00:00"))
    except ValueError:
        return None


async def _activity_counts(client: Client, workflow_id: str, run_id: str) -> dict[str, int]:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    regular = sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    local = sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED)
    tasks = sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    return {"regular": regular, "local": local, "workflow_tasks": tasks, "events": len(history.events)}


async def _stop_fleet(client: Client, site: str, vms: list[str]) -> tuple[int, int]:
    """Delete the fleet's schedules (counting the actions they skipped for overlap and missed for the
    catch-up window), cancel cycles still running, and delete the store's GC schedule."""
    skipped = missed_catchup = 0
    for vm in vms:
        desc = await client.get_schedule_handle(schedule_id(vm)).describe()
        skipped += desc.info.num_actions_skipped_overlap
        missed_catchup += desc.info.num_actions_missed_catchup_window
        await client.get_schedule_handle(schedule_id(vm)).delete()
    # Cycles already started would otherwise wait on the fleet's queue for the next worker.
    running = (
        f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_SITE.name} = "{site}" '
        'AND ExecutionStatus = "Running"'
    )
    async for wf in client.list_workflows(running):
        await client.get_workflow_handle(wf.id, run_id=wf.run_id).cancel()
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).result()
    with contextlib.suppress(RPCError):
        await client.get_schedule_handle(gc_schedule_id(f"{site}-store")).delete()
    return skipped, missed_catchup


async def _cycles_in_window(
    client: Client, site: str, vms: list[str], window_start: datetime, window_end: datetime
) -> tuple[list[float], dict[str, list[datetime]], int, tuple[str, str] | None]:
    """Every cycle scheduled inside the window, from Temporal's visibility records: latencies of the
    completed ones, their scheduled times per VM, how many failed, and one completed run to count."""
    query = f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_SITE.name} = "{site}"'
    latencies: list[float] = []
    completed: dict[str, list[datetime]] = {vm: [] for vm in vms}
    failed = 0
    sample: tuple[str, str] | None = None
    async for wf in client.list_workflows(query):
        scheduled = _scheduled_time(wf.id)
        if scheduled is None or not (window_start <= scheduled < window_end):
            continue
        vm = wf.id.split("/", 1)[1][: len(vm_name(0, site))]
        if wf.status == WorkflowExecutionStatus.COMPLETED and wf.close_time is not None:
            latencies.append((wf.close_time - scheduled).total_seconds())
            if vm in completed:
                completed[vm].append(scheduled)
            sample = sample or (wf.id, wf.run_id)
        elif wf.status != WorkflowExecutionStatus.RUNNING:
            failed += 1
    return latencies, completed, failed, sample


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seawall-bench-schedules-"))
    site = f"bench-{uuid.uuid4().hex[:8]}"  # its own task queue: no other worker takes its tasks
    inventory = write_fleet(
        workdir, args.vms, disk_bytes=args.disk_kib * 1024, interval_s=args.interval_s, site=site, prefix=site
    )
    vms = [vm_name(i, site) for i in range(args.vms)]
    settings = Settings(
        temporal_address=args.temporal,
        inventory=inventory,
        orchestration_queue=f"bench-orchestration-{uuid.uuid4().hex[:8]}",
        max_concurrent_activities=args.slots,
        graceful_shutdown_s=5,
    )
    client = await connect(settings)
    rng = random.Random(11)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
        workers = build_workers(client, [site], settings, pool, identity="bench")
        runs = asyncio.gather(*(w.run() for w in workers))
        try:
            t_seed = time.perf_counter()
            queue = settings.orchestration_queue
            await asyncio.gather(*(replication.protect(client, queue, vm) for vm in vms))
            seed_s = time.perf_counter() - t_seed
            window_start = datetime.now(UTC)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.duration_s:
                # A guest writer: every VM gets a few scattered writes per interval.
                for vm in rng.sample(vms, max(1, len(vms) // 10)):
                    touch_blocks(workdir, vm, rng, blocks=2)
                await asyncio.sleep(min(1.0, args.interval_s / 10))
            window_end = datetime.now(UTC)
            skipped, missed_catchup = await _stop_fleet(client, site, vms)
        finally:
            for w in workers:
                await w.shutdown()
            await runs

    latencies, completed, failed, sample = await _cycles_in_window(
        client, site, vms, window_start, window_end
    )
    # A miss: an interval of the window in which a VM got no verified point.
    slots = int((window_end - window_start).total_seconds() // args.interval_s)
    misses = sum(max(0, slots - len(times)) for times in completed.values())
    cycles = sum(len(times) for times in completed.values())
    per_cycle = await _activity_counts(client, *sample) if sample else {}
    return {
        "vms": args.vms,
        "interval_s": args.interval_s,
        "duration_s": args.duration_s,
        "disk_bytes": args.disk_kib * 1024,
        "worker_activity_slots": args.slots,
        "seed_all_s": round(seed_s, 3),
        "cycles_completed": cycles,
        "cycles_failed": failed,
        "cycles_expected": slots * args.vms,
        "missed_rpo": misses,
        "skipped_overlap": skipped,
        "missed_catchup_window": missed_catchup,
        "latency_s": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99),
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "temporal_per_cycle": per_cycle,
        "offered_cycles_per_s": round(args.vms / args.interval_s, 3),
        "sustained_cycles_per_s": round(cycles / (window_end - window_start).total_seconds(), 3),
        "window": [window_start.isoformat(), (window_start + timedelta(seconds=args.duration_s)).isoformat()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--interval-s", type=int, default=30, help="RPO interval (>= 30 s)")
    parser.add_argument("--duration-s", type=float, default=120)
    parser.add_argument("--disk-kib", type=int, default=256)
    parser.add_argument("--slots", type=int, default=32, help="worker max_concurrent_activities")
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.interval_s < 30:
        parser.error("--interval-s: policies allow 30 s at the least")
    result = asyncio.run(run(args))
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["missed_rpo"] == 0 and result["cycles_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
