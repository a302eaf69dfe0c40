"""Replication status read from Temporal alone: schedules, cycle results, live progress.

The CLI and the API need no access to the replica stores or their credentials: every completed cycle's
result names its point, its time and its bytes, and a running transfer's heartbeat carries its progress.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from seawall.contract.heartbeats import ShipHeartbeat
from seawall.contract.messages import CycleResult, GroupCycleResult
from seawall.contract.names import Activity, Workflow, group_schedule_id, group_search_value
from seawall.contract.search import SA_VM
from seawall.contract.verify import VerifyReport
from seawall.control.capacity import WINDOW, vm_capacity
from seawall.control.results import closed_failure, completed_result, listed_result
from seawall.model import Inventory
from seawall.runtime.metrics.core import STALL_INTERVALS, grace_for
from seawall.runtime.metrics.sources import ScheduleSeen, progress_at, read_schedule


class CycleRun(BaseModel):
    workflow_id: str
    run_id: str
    status: str
    started_at: datetime
    closed_at: datetime | None
    result: CycleResult | None = None

    @property
    def duration_s(self) -> float | None:
        return (self.closed_at - self.started_at).total_seconds() if self.closed_at else None


class SeedProgress(BaseModel):
    workflow_id: str
    disk: str | None
    fraction: float
    bytes_read: int
    bytes_shipped: int
    # This attempt: seconds shipping and seconds its writes waited on a bandwidth limit.
    shipping_s: float = 0.0
    throttled_s: float = 0.0


class VMStatus(BaseModel):
    vm: str
    source_site: str
    policy: str
    rpo_s: float
    threshold_s: float
    scheduled: bool
    paused: bool
    # Protected, not paused, and no worker made progress (a verified cycle, an activity starting or
    # heartbeating) for two intervals: not merely late, nobody is working on it (a site without a
    # worker, a worker stuck).
    stalled: bool = False
    # A running ship waits on a bandwidth limit (site, store or VM; a seed limit) a tenth of its time
    # or more: it is slower than the link, by configuration.
    throttled: bool = False
    last_point: str | None
    last_point_at: datetime | None
    age_s: float | None
    breach: bool
    last_bytes_shipped: int | None
    last_change_path: str | None
    # How long the newest completed cycle took (start to close).
    last_cycle_s: float | None = None
    running: str | None
    progress: SeedProgress | None
    # Why the newest point may be getting old: the newest cycle's failure, or the error a running
    # cycle's activity is retrying on (a replica store that does not answer says so here).
    problem: str | None = None
    # Points a full verify found damaged and no cycle has repaired yet (never used for recovery).
    corrupt_points: list[str] = []
    healed_points: list[str] = []
    # A member of a consistency group replicates by the group's schedule and group points.
    group: str | None = None
    # With a mirrored store (from the newest cycle): verified points the mirror lacks, and why the
    # mirror step failed; None without a mirror.
    mirror: str | None = None
    mirror_lag: int | None = None
    mirror_error: str | None = None


async def cycle_run(client: Client, wf: WorkflowExecution) -> CycleRun:
    """A listed ``ReplicationCycle`` as a run, with its result when it completed."""
    result: CycleResult | None = None
    if wf.status == WorkflowExecutionStatus.COMPLETED:
        result = await listed_result(client, wf, CycleResult)
    return CycleRun(
        workflow_id=wf.id,
        run_id=wf.run_id,
        status=wf.status.name if wf.status else "UNKNOWN",
        started_at=wf.start_time,
        closed_at=wf.close_time,
        result=result,
    )


async def group_cycle_run(client: Client, wf: WorkflowExecution, vm: str) -> CycleRun:
    """A listed ``GroupReplicationCycle`` as a run of its member ``vm``."""
    result: CycleResult | None = None
    if wf.status == WorkflowExecutionStatus.COMPLETED:
        done = await listed_result(client, wf, GroupCycleResult)
        result = CycleResult(
            vm=vm,
            point_id=done.point_id,
            parent=None,
            started_at=done.started_at,
            finished_at=done.finished_at,
            change_path="app-consistent" if done.app_consistent else "crash-consistent",
            bytes_read=0,
            bytes_shipped=done.bytes_shipped,
            verified=True,
            retention_deleted=done.retention_deleted.get(vm, []),
            mirror=done.mirror,
            mirror_lag=done.mirror_lags.get(vm),
            mirror_error=done.mirror_errors.get(vm),
        )
    return CycleRun(
        workflow_id=wf.id,
        run_id=wf.run_id,
        status=wf.status.name if wf.status else "UNKNOWN",
        started_at=wf.start_time,
        closed_at=wf.close_time,
        result=result,
    )


async def cycle_history(client: Client, vm: str, limit: int = 20) -> list[CycleRun]:
    """The newest cycles of ``vm`` (newest first), with results for the completed ones."""
    query = f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_VM.name} = "{vm}"'
    runs = [await cycle_run(client, wf) async for wf in client.list_workflows(query, limit=limit)]
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return runs


async def group_cycle_history(client: Client, group: str, vm: str, limit: int = 20) -> list[CycleRun]:
    """The newest cycles of ``vm``'s consistency group, as ``vm``'s own (newest first)."""
    query = (
        f'WorkflowType = "{Workflow.GROUP_REPLICATION_CYCLE}"'
        f' AND {SA_VM.name} = "{group_search_value(group)}"'
    )
    runs = [await group_cycle_run(client, wf, vm) async for wf in client.list_workflows(query, limit=limit)]
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return runs


async def ship_progress(client: Client, desc: Any, workflow_id: str) -> SeedProgress | None:
    """The running ship's last heartbeat (disk, block of blocks), from the cycle's ``describe()``."""
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name != Activity.SHIP_DISKS or not pending.heartbeat_details.payloads:
            continue
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED and pending.attempt == 1:
            continue
        beat = (
            await client.data_converter.decode(list(pending.heartbeat_details.payloads), [ShipHeartbeat])
        )[0]
        progress = beat.progress
        timing = {"shipping_s": beat.shipping_s, "throttled_s": beat.throttled_s}
        if progress is None:
            return SeedProgress(
                workflow_id=workflow_id, disk=None, fraction=0.0, bytes_read=0, bytes_shipped=0, **timing
            )
        return SeedProgress(
            workflow_id=workflow_id,
            disk=progress.disk,
            fraction=progress.fraction,
            bytes_read=progress.bytes_read,
            bytes_shipped=progress.bytes_shipped,
            **timing,
        )
    return None


def policy_of(inventory: Inventory, vm: str, interval_s: float | None) -> tuple[str, float, float]:
    """(policy name, interval, breach threshold) of the policy the VM is *replicated* with.

    The schedule is the truth (``protect --policy`` may have chosen another policy than the
    inventory's); without a schedule, the inventory's policy says what protection would be.
    """
    pvm = inventory.protected_vm(vm)
    own = inventory.policy(pvm.policy)
    if interval_s is None or own.interval.total_seconds() == interval_s:
        interval = own.interval.total_seconds()
        return own.name, interval, interval + grace_for(inventory, vm, interval)
    named = next((p.name for p in inventory.policies if p.interval.total_seconds() == interval_s), None)
    return named or f"every {interval_s:g}s", interval_s, interval_s + grace_for(inventory, vm, interval_s)


@dataclass
class Observed:
    """What Temporal says of one VM's replication, gathered per VM (``observe``) or for a whole fleet
    at once (``seawall.control.fleet``); ``judge`` turns it into a status either way."""

    schedule: ScheduleSeen | None
    history: list[CycleRun]  # newest first; at least every cycle since the newest verified point
    # The newest completed full verify of the VM, when it may be newer than its last completed cycle.
    verify: VerifyReport | None = None
    verify_at: datetime | None = None
    # ``describe()`` of each running cycle in ``history`` by run id: heartbeats, retries, progress.
    running: dict[str, Any] = field(default_factory=dict)


async def newest_verify(client: Client, vm: str) -> tuple[VerifyReport | None, datetime | None]:
    query = f'WorkflowType = "{Workflow.VERIFY_REPLICA}" AND {SA_VM.name} = "{vm}"'
    async for wf in client.list_workflows(query, limit=1):
        if wf.status == WorkflowExecutionStatus.COMPLETED:
            return await completed_result(client, wf.id, wf.run_id, VerifyReport), wf.close_time
    return None, None


async def describe_running(client: Client, history: list[CycleRun]) -> dict[str, Any]:
    running = [r for r in history if r.status == "RUNNING"]
    found = await asyncio.gather(
        *(client.get_workflow_handle(r.workflow_id, run_id=r.run_id).describe() for r in running)
    )
    return {r.run_id: desc for r, desc in zip(running, found, strict=True)}


async def observe(client: Client, inventory: Inventory, vm: str) -> Observed:
    """One VM's schedule, newest cycles (the capacity window), newest verify and running cycles."""
    group = inventory.group_of(vm)
    schedule = await read_schedule(client, vm, group_schedule_id(group.name) if group else None)
    history = (
        await group_cycle_history(client, group.name, vm, limit=WINDOW)
        if group
        else await cycle_history(client, vm, limit=WINDOW)
    )
    verify, verify_at = await newest_verify(client, vm)
    return Observed(schedule, history, verify, verify_at, await describe_running(client, history))


async def _problem(client: Client, seen: Observed) -> str | None:
    """Why no newer point: what a running cycle's step keeps failing on, else the newest closed cycle's
    failure (when no cycle succeeded after it)."""
    for run in seen.history:  # newest first
        if run.status == "RUNNING":
            desc = seen.running.get(run.run_id)
            for pending in desc.raw_description.pending_activities if desc else []:
                if pending.attempt > 1 and pending.last_failure.message:
                    return (
                        f"{pending.activity_type.name} retrying (attempt {pending.attempt}): "
                        f"{_innermost(pending.last_failure).message}"
                    )
            continue
        if run.result is not None or run.status == "COMPLETED":
            return None
        reason = await closed_failure(client, run.workflow_id, run.run_id)
        return f"last cycle {run.status.lower()}: {reason}" if reason is not None else None
    return None


def _innermost(failure: Any) -> Any:
    while failure.HasField("cause"):
        failure = failure.cause
    return failure


def _scrub_verdict(seen: Observed) -> tuple[list[str], list[str]]:
    """(corrupt points, healed points) from the newer of: the last full verify, the last cycle."""
    last_cycle = next((r for r in seen.history if r.result is not None), None)
    verify, verify_at = seen.verify, seen.verify_at
    if verify is not None and (last_cycle is None or (verify_at and verify_at > last_cycle.started_at)):
        return verify.corrupt_points, []
    if last_cycle is not None and last_cycle.result is not None:
        return last_cycle.result.corrupt_points, last_cycle.result.healed_points
    return [], []


def usable_runs(seen: Observed) -> list[CycleRun]:
    """Completed cycles with a verified point that no full verify has since found damaged."""
    corrupt, _ = _scrub_verdict(seen)
    return [
        r
        for r in seen.history
        if r.result is not None and r.result.verified and r.result.point_id not in corrupt
    ]


async def judge(
    client: Client, inventory: Inventory, vm: str, seen: Observed, now: datetime | None = None
) -> VMStatus:
    """The status of ``vm`` from what was observed (reads only closed-run failures, cached)."""
    now = now or datetime.now(UTC)
    pvm = inventory.protected_vm(vm)
    group = inventory.group_of(vm)
    schedule, history = seen.schedule, seen.history
    scheduled = schedule is not None
    paused = schedule.paused if schedule else False
    policy, interval_s, threshold_s = policy_of(inventory, vm, schedule.interval_s if schedule else None)
    # The capacity window: the newest cycles also say whether the bandwidth limit keeps up.
    capacity = vm_capacity(inventory, vm, interval_s, history, schedule.site if schedule else None)
    corrupt, healed = _scrub_verdict(seen)
    # A point a full verify found damaged is not a recovery point, whatever its cycle said at the time.
    usable = [r for r in history if r.result is not None and r.result.verified]
    last = next((r for r in usable if r.result is not None and r.result.point_id not in corrupt), None)
    running = next((r for r in history if r.status == "RUNNING"), None)
    running_desc = seen.running.get(running.run_id) if running else None
    point_at = datetime.fromisoformat(last.result.started_at) if last and last.result else None
    age = (now - point_at).total_seconds() if point_at else None
    stalled = False
    if scheduled and not paused and schedule is not None:
        progress = [schedule.created_at] + [r.closed_at for r in usable]
        if running_desc is not None:
            progress.append(progress_at(running_desc))
        newest = max((at for at in progress if at is not None), default=None)
        stalled = newest is not None and (now - newest).total_seconds() > STALL_INTERVALS * interval_s
    progress_now = (
        await ship_progress(client, running_desc, running.workflow_id)
        if running and running_desc is not None
        else None
    )
    done = next((r for r in history if r.status == "COMPLETED"), None)
    return VMStatus(
        vm=vm,
        source_site=pvm.source_site,
        policy=policy,
        rpo_s=interval_s,
        threshold_s=threshold_s,
        scheduled=scheduled,
        paused=paused,
        stalled=stalled,
        last_point=last.result.point_id if last and last.result else None,
        last_point_at=point_at,
        age_s=age,
        # No verified point at all is the worst breach there is, once the VM is meant to be protected.
        breach=scheduled and (age is None or age > threshold_s),
        last_bytes_shipped=last.result.bytes_shipped if last and last.result else None,
        last_change_path=last.result.change_path if last and last.result else None,
        last_cycle_s=done.duration_s if done else None,
        running=running.workflow_id if running else None,
        progress=progress_now,
        throttled=progress_now is not None
        and ShipHeartbeat(shipping_s=progress_now.shipping_s, throttled_s=progress_now.throttled_s).throttled,
        # A failing cycle is the more urgent; else a limit below the need says why a breach is coming.
        problem=await _problem(client, seen) or (capacity.reason if scheduled else None),
        corrupt_points=corrupt,
        healed_points=healed,
        group=group.name if group else None,
        mirror=last.result.mirror if last and last.result else None,
        mirror_lag=last.result.mirror_lag if last and last.result else None,
        mirror_error=last.result.mirror_error if last and last.result else None,
    )


async def vm_status(client: Client, inventory: Inventory, vm: str, now: datetime | None = None) -> VMStatus:
    """One VM's status, asked of Temporal for it alone (``seawall.control.fleet`` asks for many)."""
    return await judge(client, inventory, vm, await observe(client, inventory, vm), now)


def vm_state(status: VMStatus) -> str:
    """One word for the table and its filter. Order matters: a paused schedule is not a breach to chase,
    and a VM with no point yet that is shipping is seeding, not in breach."""
    if not status.scheduled:
        return "not-protected"
    if status.paused:
        return "paused"
    if status.stalled:
        return "stalled"
    if status.last_point is None:
        return "seeding" if status.running else "breach"
    if status.breach:
        return "breach"
    if status.running:
        return "throttled" if status.throttled else "replicating"
    return "protected"
