"""How many replication cycles per second one worker and the dev server sustain with zero RPO misses.

    python -m benchmarks.schedules --vms 100 --interval-s 30 --duration-s 120 --json

Needs the lab's Temporal dev server (``seawall lab up``). Protects N raw-image VMs on a directory site
(real snapshots, ships, commits, verifies into a real store: only the hypervisor is left out), lets
their schedules run for the duration while a writer dirties blocks, and reports from Temporal's own
records: cycles completed, RPO misses, latency from scheduled time to verified point, activities per
cycle (regular and local), and the sustained rate. 1,000 VMs at a 5-minute RPO need 3.3 cycles/s.

``workflow_task_timeouts``: every fleet workflow of the run (cycles, protects) read back from its
history, counting the workflow tasks Temporal timed out — ``start_to_close`` (a worker took a task and
did not finish it in time: the overload the issue forbids) apart from ``schedule_to_start`` (a task on a
worker's sticky queue that no poll took in time, handed to the normal queue). ``--skip-history`` leaves
the count out (it reads one history per cycle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from benchmarks import workerproc
from benchmarks.fleet import touch_blocks, vm_name, write_fleet
from benchmarks.output import emit
from seawall.contract.names import Workflow, gc_schedule_id, schedule_id
from seawall.contract.search import SA_SITE
from seawall.control import replication
from seawall.lab.info import load_lab
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect

T = TypeVar("T")


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


async def _task_timeouts(
    client: Client, site: str, prefix: str, window_start: datetime, concurrency: int = 16
) -> dict[str, dict[str, int]]:
    """Workflow task timeouts, by kind, over every workflow of the fleet's (cycles on its site, and
    the ProtectVM runs of its VMs), from their histories: Temporal's record, not the worker's logs.
    ``setup``: workflows started before the window (the protect burst and its seeds); ``window``: the
    cycles the schedules started in it."""
    cycles = f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_SITE.name} = "{site}"'
    protects = f'WorkflowType = "{Workflow.PROTECT_VM}" AND WorkflowId STARTS_WITH "protect/{prefix}"'
    runs = [
        (wf.id, wf.run_id, "setup" if wf.start_time < window_start else "window")
        for query in (cycles, protects)
        async for wf in client.list_workflows(query)
    ]
    counts = {
        phase: {"workflows_read": 0, "start_to_close": 0, "schedule_to_start": 0}
        for phase in ("setup", "window")
    }
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str, run_id: str | None, phase: str) -> None:
        async with gate:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        counts[phase]["workflows_read"] += 1
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                kind = e.workflow_task_timed_out_event_attributes.timeout_type
                if kind == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START:
                    counts[phase]["schedule_to_start"] += 1
                else:
                    counts[phase]["start_to_close"] += 1

    await asyncio.gather(*(one(*run) for run in runs))
    return counts


async def _retrying(call: Callable[[], Awaitable[T]], tries: int = 6) -> T | None:
    """An RPC retried while an overloaded server times it out; None when its object is gone. (A run at
    300 VMs lost its cleanup to one ``describe_schedule`` timeout and left 300 schedules firing.)"""
    for attempt in range(tries):
        try:
            return await call()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            if attempt == tries - 1:
                raise
            await asyncio.sleep(min(10, 2**attempt))
    return None


async def _stop_fleet(client: Client, site: str, vms: list[str]) -> tuple[int, int, int]:
    """Delete the fleet's schedules (counting the actions they skipped for overlap and missed for the
    catch-up window), cancel cycles still running, and delete the store's GC schedule.

    A schedule's description is a query its scheduler answers: on an overloaded dev server it timed
    out again and again (two 300-VM runs died here) while 289 deletes took 7.4 s. So each describe gets
    one short try, the schedules that did not answer are counted, and the delete always follows.
    """
    skipped = missed_catchup = unanswered = 0
    gate = asyncio.Semaphore(8)

    async def stop(vm: str) -> None:
        nonlocal skipped, missed_catchup, unanswered
        handle = client.get_schedule_handle(schedule_id(vm))
        async with gate:
            try:
                desc = await handle.describe(rpc_timeout=timedelta(seconds=5))
            except RPCError:
                unanswered += 1
            else:
                skipped += desc.info.num_actions_skipped_overlap
                missed_catchup += desc.info.num_actions_missed_catchup_window
            await _retrying(handle.delete)

    await asyncio.gather(*(stop(vm) for vm in vms))
    # Cycles already started would otherwise wait on the fleet's queue for the next worker.
    running = (
        f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_SITE.name} = "{site}" '
        'AND ExecutionStatus = "Running"'
    )
    async for wf in client.list_workflows(running):
        await _retrying(client.get_workflow_handle(wf.id, run_id=wf.run_id).cancel)
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).result()
    await _retrying(client.get_schedule_handle(gc_schedule_id(f"{site}-store")).delete)
    return skipped, missed_catchup, unanswered


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
    if args.workflow_tasks is not None:
        settings = settings.model_copy(update={"max_concurrent_workflow_tasks": args.workflow_tasks})
    client = await connect(settings)
    rng = random.Random(11)
    cpu0 = _cpu_s()
    async with workerproc.running(
        client, [site], settings, split=args.split, niceness=args.activities_nice, identity="bench"
    ) as running:
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
        skipped, missed_catchup, unanswered = await _stop_fleet(client, site, vms)
    activities_cpu = running.activities_cpu_s
    worker_cpu = _cpu_s() - cpu0

    latencies, completed, failed, sample = await _cycles_in_window(
        client, site, vms, window_start, window_end
    )
    # A miss: an interval of the window in which a VM got no verified point.
    slots = int((window_end - window_start).total_seconds() // args.interval_s)
    misses = sum(max(0, slots - len(times)) for times in completed.values())
    cycles = sum(len(times) for times in completed.values())
    per_cycle = await _activity_counts(client, *sample) if sample else {}
    timeouts = None if args.skip_history else await _task_timeouts(client, site, site, window_start)
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
        # Schedules whose description timed out at the end: their skipped/missed are not in the sums.
        "schedules_not_described": unanswered,
        "latency_s": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99),
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "temporal_per_cycle": per_cycle,
        "workflow_task_timeouts": timeouts,
        # How the worker ran: one process, or workflow tasks here and activity tasks in another (niced).
        "split": bool(args.split),
        "max_concurrent_workflow_tasks": args.workflow_tasks,
        "worker_cpu_s": round(worker_cpu, 1),
        "activity_process_cpu_s": activities_cpu,
        "offered_cycles_per_s": round(args.vms / args.interval_s, 3),
        "sustained_cycles_per_s": round(cycles / (window_end - window_start).total_seconds(), 3),
        "window": [window_start.isoformat(), (window_start + timedelta(seconds=args.duration_s)).isoformat()],
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _lab_temporal() -> str:
    """The lab's Temporal (its port moves with ``SEAWALL_LAB_PORT_OFFSET``), else the default port."""
    with contextlib.suppress(Exception):
        return load_lab().temporal.address
    return "127.0.0.1:7233"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--interval-s", type=int, default=30, help="RPO interval (>= 30 s)")
    parser.add_argument("--duration-s", type=float, default=120)
    parser.add_argument("--disk-kib", type=int, default=256)
    parser.add_argument("--slots", type=int, default=32, help="worker max_concurrent_activities")
    parser.add_argument("--temporal", default=None, help="host:port (default: the lab's)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--skip-history", action="store_true", help="do not count workflow task timeouts")
    parser.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="workflow tasks in this process, activity tasks in a `seawall worker --role activities`, "
        "as every deploy file runs a site's worker (default); --no-split: both in this process",
    )
    parser.add_argument(
        "--activities-nice",
        type=int,
        default=0,
        help="the activity process's niceness (0, as the deploy files run it)",
    )
    parser.add_argument("--workflow-tasks", type=int, default=None, help="max_concurrent_workflow_tasks")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.temporal = args.temporal or _lab_temporal()
    if args.interval_s < 30:
        parser.error("--interval-s: policies allow 30 s at the least")
    result = asyncio.run(run(args))
    emit(result, args.json)
    return 0 if result["missed_rpo"] == 0 and result["cycles_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
