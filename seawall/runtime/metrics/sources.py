"""What the worker metrics read from Temporal: a VM's schedule and cycles, and a site queue's pollers.

Everything here is a read; nothing is inferred from the inventory. The policy a VM is *really*
replicated with is its schedule's interval (``ProtectVM`` may have been given another policy than the
inventory's, and ``Reprotect`` moves the cycles to another site's queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.messages import CycleResult
from seawall.contract.names import Workflow, schedule_id
from seawall.contract.queues import SEED_QUEUE_PREFIX, site_queue
from seawall.contract.search import SA_VM


def site_of_queue(task_queue: str) -> str:
    """The site a task queue belongs to (its seeds' queue too); "orchestration" for any other."""
    for prefix in (site_queue(""), SEED_QUEUE_PREFIX):
        if task_queue.startswith(prefix):
            return task_queue[len(prefix) :]
    return "orchestration"


def point_time(point_id: str) -> datetime | None:
    """A point id starts with its cycle's start time (``20250101T120000Z-<run tail>``)."""
    try:
        return datetime.strptime(point_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class ScheduleSeen:
    """The VM's ``replicate/<vm>`` schedule as Temporal holds it."""

    paused: bool
    interval_s: float | None
    site: str | None  # the site whose queue its cycles run on
    created_at: datetime | None


@dataclass(frozen=True)
class Replication:
    """One VM's replication as read from Temporal at one moment."""

    schedule: ScheduleSeen | None  # None: not protected (no schedule)
    point_at: datetime | None  # the newest verified point among the cycles scanned
    # The last sign of work by a worker: a cycle closing with a verified point, or an activity of a
    # running cycle starting or heartbeating. A cycle merely *started* by the schedule is not progress.
    progress_at: datetime | None
    # Points of the VM a full verify found damaged and no cycle has repaired, per the newest cycle.
    corrupt_points: int = 0
    # Verified points the store's mirror lacks, per the newest cycle (None: the store has no mirror).
    mirror_lag: int | None = None


async def read_schedule(client: Client, vm: str, sid: str | None = None) -> ScheduleSeen | None:
    """The VM's replication schedule (``sid``: another schedule that replicates it, its group's)."""
    try:
        desc = await client.get_schedule_handle(sid or schedule_id(vm)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    intervals = desc.schedule.spec.intervals
    action = desc.schedule.action
    queue = action.task_queue if isinstance(action, ScheduleActionStartWorkflow) else None
    return ScheduleSeen(
        paused=desc.schedule.state.paused,
        interval_s=intervals[0].every.total_seconds() if intervals else None,
        site=site_of_queue(queue) if queue else None,
        created_at=desc.info.created_at,
    )


class CycleReader:
    """Reads a VM's newest cycles; a completed cycle's result never changes, so it is fetched once."""

    def __init__(self, scan: int = 6) -> None:
        self.scan = scan
        self._verified: dict[tuple[str, str], datetime | None] = {}
        self._corrupt: dict[tuple[str, str], int] = {}
        self._mirror_lag: dict[tuple[str, str], int | None] = {}
        self._newest_corrupt = 0
        self._newest_mirror_lag: int | None = None

    async def replication(self, client: Client, vm: str) -> Replication:
        schedule = await read_schedule(client, vm)
        point_at, progress_at = await self.cycles(client, vm)
        return Replication(
            schedule=schedule,
            point_at=point_at,
            progress_at=progress_at,
            corrupt_points=self._newest_corrupt,
            mirror_lag=self._newest_mirror_lag,
        )

    async def cycles(self, client: Client, vm: str) -> tuple[datetime | None, datetime | None]:
        """(newest verified point, last progress) over the VM's ``scan`` newest cycles."""
        query = f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_VM.name} = "{vm}"'
        runs = [wf async for wf in client.list_workflows(query, limit=self.scan)]
        point_at: datetime | None = None
        progress_at: datetime | None = None
        self._newest_corrupt = 0
        self._newest_mirror_lag = None
        newest_done = True
        for wf in sorted(runs, key=lambda w: w.start_time, reverse=True):
            if wf.status == WorkflowExecutionStatus.RUNNING:
                progress_at = _later(progress_at, await running_progress(client, wf.id, wf.run_id))
            elif wf.status == WorkflowExecutionStatus.COMPLETED:
                verified_at = await self._verified_point(client, wf)
                if newest_done:
                    self._newest_corrupt = self._corrupt.get((wf.id, wf.run_id), 0)
                    self._newest_mirror_lag = self._mirror_lag.get((wf.id, wf.run_id))
                    newest_done = False
                if verified_at is not None:
                    point_at = _later(point_at, verified_at)
                    progress_at = _later(progress_at, wf.close_time)
        return point_at, progress_at

    async def _verified_point(self, client: Client, wf: WorkflowExecution) -> datetime | None:
        key = (wf.id, wf.run_id)
        if key not in self._verified:
            if len(self._verified) > 50_000:
                self._verified.clear()
            if len(self._corrupt) > 50_000:
                self._corrupt.clear()
                self._mirror_lag.clear()
            handle = client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=CycleResult)
            result = await handle.result()
            self._corrupt[key] = len(result.corrupt_points)
            self._mirror_lag[key] = result.mirror_lag
            # From the point id, as the verifying worker records it (whole seconds), so the two
            # sources agree and a refresh never moves the gauge by a fraction of a second.
            self._verified[key] = (
                (point_time(result.point_id) or datetime.fromisoformat(result.started_at))
                if result.verified
                else None
            )
        return self._verified[key]


async def running_progress(client: Client, workflow_id: str, run_id: str | None) -> datetime | None:
    """When an activity of a running cycle last started or heartbeated (None: none has)."""
    return progress_at(await client.get_workflow_handle(workflow_id, run_id=run_id).describe())


def progress_at(desc: Any) -> datetime | None:
    """``running_progress`` from a running cycle's ``describe()`` already in hand."""
    newest: datetime | None = None
    for pending in desc.raw_description.pending_activities:
        for field in ("last_heartbeat_time", "last_started_time"):
            if pending.HasField(field):
                newest = _later(newest, getattr(pending, field).ToDatetime(tzinfo=UTC))
    return newest


@dataclass(frozen=True)
class PollersSeen:
    count: int  # distinct worker identities polling the site's queue (workflow or activity tasks)
    newest_poll: datetime | None


# A poller the server last saw longer ago than this is gone (a live one re-polls within a long-poll,
# ~60-70 s): the metrics and `seawall status --sites` judge by the same figure.
POLLER_FRESH_S = 90.0

# The two kinds of task a queue hands out; a worker of role `all` polls both, a split pair one each.
TASK_KINDS: dict[str, TaskQueueType.ValueType] = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}

# Per kind of task: each worker identity the server lists polling it, with its last poll.
Pollers = dict[str, dict[str, datetime]]


def live_workers(pollers: Pollers, *, now: datetime, fresh_s: float) -> int:
    """The worker identities that polled the queue, for either kind of task, within ``fresh_s``."""
    return len(
        {i for seen in pollers.values() for i, at in seen.items() if (now - at).total_seconds() <= fresh_s}
    )


def idle_kinds(pollers: Pollers, *, now: datetime, fresh_s: float) -> list[str]:
    """The kinds of task nobody polled within ``fresh_s``.

    Not proof of a dead worker: a process whose every slot is taken (a burst of long seeds) stops
    polling until one frees, and a seed can last hours. So it is reported beside the count, which
    stays the live identities of either kind; whether the site answers is the probe's to say (its
    activity runs on the site's queue, so it fails when no process takes activity tasks).
    """
    return [
        kind
        for kind in TASK_KINDS
        if not any((now - at).total_seconds() <= fresh_s for at in pollers.get(kind, {}).values())
    ]


async def site_pollers(
    client: Client, site: str, *, fresh_s: float, now: datetime | None = None
) -> PollersSeen:
    """The workers polling ``seawall-site-<site>``, as the Temporal server saw them.

    The server lists a poller for minutes after its last poll, so only those seen within ``fresh_s``
    count (a live worker re-polls at least once per long-poll, about a minute).
    """
    now = now or datetime.now(UTC)
    pollers = await queue_pollers(client, site_queue(site))
    newest = max((at for seen in pollers.values() for at in seen.values()), default=None)
    return PollersSeen(count=live_workers(pollers, now=now, fresh_s=fresh_s), newest_poll=newest)


async def site_workers(client: Client, site: str) -> Pollers:
    """``queue_pollers`` of the site's queue."""
    return await queue_pollers(client, site_queue(site))


async def queue_pollers(client: Client, queue: str) -> Pollers:
    """Every worker identity the server lists on ``queue``, per kind of task it polls, with when it
    last polled; stale ones included (the caller decides what is fresh)."""
    found: Pollers = {}
    for name, kind in TASK_KINDS.items():
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
            )
        )
        seen = found.setdefault(name, {})
        for poller in response.pollers:
            if not poller.HasField("last_access_time"):
                continue
            at = poller.last_access_time.ToDatetime(tzinfo=UTC)
            seen[poller.identity] = max(at, seen.get(poller.identity, at))
    return found
