"""The replication status of many VMs at once, in a few round trips whatever their number.

``vm_status`` asks Temporal about one VM: its schedule, its newest cycles, its newest verify, its
running cycle; at 500 VMs that is thousands of calls per page view. Here the fleet is read with three
listings (paged, 1000 a page): every schedule, every cycle of the inventory's sites running or closed
within the fleet's longest RPO threshold, every verify running or closed within a day more. A
completed cycle carries its result in its memo (``cycle-result-memo``; older cycles are fetched once
per client), so the listings answer for most VMs. One VM the listings cannot answer for certain is
asked on its own, a few at a time:

- its schedule is not listed (not protected, or created a moment ago: the listing lags a little);
- it has no verified point within the horizon (its newest point, if any, is older: a breach);
- a bandwidth limit applies to it (its capacity needs its last 20 cycles, not just the recent ones);
- it may be stalled (no progress within two intervals: the schedule's creation time then matters).

Each running cycle is described once (progress, retries, heartbeat), a few at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from seawall.contract.names import Workflow, group_schedule_id, group_search_value, schedule_id
from seawall.contract.search import SA_SITE, SA_VM
from seawall.contract.verify import VerifyReport
from seawall.control.results import completed_result
from seawall.control.status import (
    CycleRun,
    Observed,
    VMStatus,
    cycle_run,
    group_cycle_run,
    judge,
    policy_of,
    usable_runs,
    vm_status,
)
from seawall.model import Inventory
from seawall.runtime.metrics.core import STALL_INTERVALS
from seawall.runtime.metrics.sources import ScheduleSeen, progress_at

# VMs (or running cycles) asked one by one at once, when the listings cannot answer for them.
FAN_OUT = 8
# Past the longest RPO threshold of the fleet: the horizon of the cycle listing (a VM replicating on
# time has a verified point within its threshold; one that has not is asked on its own).
MARGIN = timedelta(minutes=2)
# A verify that closed before a cycle started does not change that cycle's verdict; cycles may run long.
VERIFY_MARGIN = timedelta(days=1)

T = TypeVar("T")


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _bounded(
    items: Iterable[T], work: Callable[[T], Awaitable[Any]], limit: int = FAN_OUT
) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def listed_schedules(client: Client) -> dict[str, ScheduleSeen]:
    """Every schedule by id: paused and interval as the listing has them (no site, no creation time)."""
    found: dict[str, ScheduleSeen] = {}
    async for entry in await client.list_schedules():
        spec = entry.schedule.spec if entry.schedule else None
        intervals = spec.intervals if spec else []
        found[entry.id] = ScheduleSeen(
            paused=bool(entry.schedule and entry.schedule.state.paused),
            interval_s=intervals[0].every.total_seconds() if intervals else None,
            site=None,
            created_at=None,
        )
    return found


async def _listed(client: Client, query: str) -> dict[str, list[WorkflowExecution]]:
    """Workflows of ``query`` grouped by their SeawallVM value (a VM, or ``@group``)."""
    out: dict[str, list[WorkflowExecution]] = {}
    async for wf in client.list_workflows(query):
        key = wf.typed_search_attributes.get(SA_VM)
        if key is not None:
            out.setdefault(key, []).append(wf)
    return out


def horizon(inventory: Inventory, vms: Sequence[str], now: datetime) -> datetime:
    """How far back the cycle listing reaches: long enough that a VM replicating on time shows its
    newest verified point and a sign of progress within it."""
    longest = max((policy_of(inventory, vm, None)[2] for vm in vms), default=0.0)
    return now - timedelta(seconds=longest) - MARGIN


def _newest_verify(runs: list[WorkflowExecution]) -> WorkflowExecution | None:
    # As ``newest_verify``: the newest run decides (running first); only a completed one has a verdict.
    newest = max(runs, key=lambda w: w.close_time or datetime.max.replace(tzinfo=UTC), default=None)
    return newest if newest is not None and newest.status == WorkflowExecutionStatus.COMPLETED else None


def _answers(inventory: Inventory, vm: str, seen: Observed, since: datetime, now: datetime) -> bool:
    """Whether the listings tell ``vm``'s status as its own queries would (see the module's list)."""
    if seen.schedule is None:
        return False
    pvm = inventory.protected_vm(vm)
    if inventory.replica_store(pvm.replica_store).bandwidth_limit is not None or any(
        s.bandwidth_limit is not None for s in inventory.sites
    ):
        return False
    usable = usable_runs(seen)
    if not usable:
        return False
    last_cycle = next((r for r in seen.history if r.result is not None), None)
    if last_cycle is not None and last_cycle.started_at < since:
        return False  # a verify newer than it might be older than the verify listing reaches
    if seen.schedule.paused:
        return True
    _, interval_s, _ = policy_of(inventory, vm, seen.schedule.interval_s)
    progress = [r.closed_at for r in usable] + [progress_at(d) for d in seen.running.values()]
    newest = max((at for at in progress if at is not None), default=None)
    return newest is not None and (now - newest).total_seconds() <= STALL_INTERVALS * interval_s


async def statuses(
    client: Client, inventory: Inventory, vms: Sequence[str], now: datetime | None = None
) -> list[VMStatus]:
    """The replication status of each of ``vms``, in their order: what ``vm_status`` says of each."""
    if not vms:
        return []
    now = now or datetime.now(UTC)
    since = horizon(inventory, vms, now)
    verify_since = since - VERIFY_MARGIN
    types = f'("{Workflow.REPLICATION_CYCLE}", "{Workflow.GROUP_REPLICATION_CYCLE}")'
    # A cycle names its VM and the site it ships from in one upsert: only this inventory's sites' cycles
    # are listed, not those of every fleet sharing the namespace.
    sites = "(" + ", ".join(f'"{site.name}"' for site in inventory.sites) + ")"
    schedules, cycles, verifies = await asyncio.gather(
        listed_schedules(client),
        _listed(
            client,
            f"WorkflowType IN {types} AND {SA_SITE.name} IN {sites} AND "
            f'(ExecutionStatus = "Running" OR CloseTime > "{_stamp(since)}")',
        ),
        _listed(
            client,
            f'WorkflowType = "{Workflow.VERIFY_REPLICA}" AND '
            f'(ExecutionStatus = "Running" OR CloseTime > "{_stamp(verify_since)}")',
        ),
    )

    async def observed(vm: str) -> Observed:
        group = inventory.group_of(vm)
        sid = group_schedule_id(group.name) if group else schedule_id(vm)
        listed = cycles.get(group_search_value(group.name) if group else vm, [])
        runs: list[CycleRun] = [
            await (group_cycle_run(client, wf, vm) if group else cycle_run(client, wf)) for wf in listed
        ]
        runs.sort(key=lambda r: r.started_at, reverse=True)
        verify = _newest_verify(verifies.get(vm, []))
        report = await completed_result(client, verify.id, verify.run_id, VerifyReport) if verify else None
        return Observed(schedules.get(sid), runs, report, verify.close_time if verify else None)

    seen = dict(zip(vms, await _bounded(vms, observed, limit=64), strict=True))
    running = [(vm, r) for vm, s in seen.items() for r in s.history if r.status == "RUNNING"]

    async def describe(item: tuple[str, CycleRun]) -> None:
        vm, run = item
        seen[vm].running[run.run_id] = await client.get_workflow_handle(
            run.workflow_id, run_id=run.run_id
        ).describe()

    await _bounded(running, describe)

    async def status(vm: str) -> VMStatus:
        if _answers(inventory, vm, seen[vm], verify_since, now):
            return await judge(client, inventory, vm, seen[vm], now)
        return await vm_status(client, inventory, vm, now)

    return await _bounded(vms, status)
