"""Replication status read from Temporal alone: schedules, cycle results, live progress.

The CLI and the API need no access to the replica stores or their credentials: every completed cycle's
result names its point, its time and its bytes, and a running transfer's heartbeat carries its progress.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.heartbeats import ShipHeartbeat
from seawall.contract.messages import CycleResult
from seawall.contract.names import Activity, Workflow, schedule_id
from seawall.contract.search import SA_VM
from seawall.model import Inventory


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


class VMStatus(BaseModel):
    vm: str
    source_site: str
    policy: str
    rpo_s: float
    threshold_s: float
    scheduled: bool
    paused: bool
    last_point: str | None
    last_point_at: datetime | None
    age_s: float | None
    breach: bool
    last_bytes_shipped: int | None
    last_change_path: str | None
    running: str | None
    progress: SeedProgress | None
    # With a mirrored store (from the newest cycle): verified points the mirror lacks, and why the
    # mirror step failed; None without a mirror.
    mirror: str | None = None
    mirror_lag: int | None = None
    mirror_error: str | None = None


async def cycle_history(client: Client, vm: str, limit: int = 20) -> list[CycleRun]:
    """The newest cycles of ``vm`` (newest first), with results for the completed ones."""
    query = f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_VM.name} = "{vm}"'
    runs: list[CycleRun] = []
    async for wf in client.list_workflows(query, limit=limit):
        result: CycleResult | None = None
        if wf.status == WorkflowExecutionStatus.COMPLETED:
            handle = client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=CycleResult)
            result = await handle.result()
        runs.append(
            CycleRun(
                workflow_id=wf.id,
                run_id=wf.run_id,
                status=wf.status.name if wf.status else "UNKNOWN",
                started_at=wf.start_time,
                closed_at=wf.close_time,
                result=result,
            )
        )
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return runs


async def ship_progress(client: Client, workflow_id: str) -> SeedProgress | None:
    """The running ship's last heartbeat (disk, block of blocks), if one is in flight."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name != Activity.SHIP_DISKS or not pending.heartbeat_details.payloads:
            continue
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED and pending.attempt == 1:
            continue
        beat = (
            await client.data_converter.decode(list(pending.heartbeat_details.payloads), [ShipHeartbeat])
        )[0]
        progress = beat.progress
        if progress is None:
            return SeedProgress(
                workflow_id=workflow_id, disk=None, fraction=0.0, bytes_read=0, bytes_shipped=0
            )
        return SeedProgress(
            workflow_id=workflow_id,
            disk=progress.disk,
            fraction=progress.fraction,
            bytes_read=progress.bytes_read,
            bytes_shipped=progress.bytes_shipped,
        )
    return None


async def vm_status(client: Client, inventory: Inventory, vm: str, now: datetime | None = None) -> VMStatus:
    now = now or datetime.now(UTC)
    pvm = inventory.protected_vm(vm)
    policy = inventory.policy(pvm.policy)
    threshold = policy.interval + (policy.rpo_grace or timedelta(0))
    scheduled = paused = False
    try:
        desc = await client.get_schedule_handle(schedule_id(vm)).describe()
        scheduled = True
        paused = desc.schedule.state.paused
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    history = await cycle_history(client, vm, limit=10)
    last = next((r for r in history if r.result is not None and r.result.verified), None)
    running = next((r for r in history if r.status == "RUNNING"), None)
    point_at = datetime.fromisoformat(last.result.started_at) if last and last.result else None
    age = (now - point_at).total_seconds() if point_at else None
    return VMStatus(
        vm=vm,
        source_site=pvm.source_site,
        policy=policy.name,
        rpo_s=policy.interval.total_seconds(),
        threshold_s=threshold.total_seconds(),
        scheduled=scheduled,
        paused=paused,
        last_point=last.result.point_id if last and last.result else None,
        last_point_at=point_at,
        age_s=age,
        # No verified point at all is the worst breach there is, once the VM is meant to be protected.
        breach=scheduled and (age is None or age > threshold.total_seconds()),
        last_bytes_shipped=last.result.bytes_shipped if last and last.result else None,
        last_change_path=last.result.change_path if last and last.result else None,
        running=running.workflow_id if running else None,
        progress=await ship_progress(client, running.workflow_id) if running else None,
        mirror=last.result.mirror if last and last.result else None,
        mirror_lag=last.result.mirror_lag if last and last.result else None,
        mirror_error=last.result.mirror_error if last and last.result else None,
    )
