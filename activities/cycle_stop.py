"""Stopping cycles: a VM's when its protection ends (UnprotectVM's step after the schedule is deleted),
and every cycle of a planned failover's VMs and of their consistency groups before the final one.

A cycle the schedule started just before it was deleted must not run on: it would take a snapshot
after unprotect returned (a delta disk growing at the source) and write a point nobody asked for.
Visibility alone cannot be trusted to show it: on a loaded server a start reaches the visibility
store seconds late. So the cycles are found two ways: by listing (any cycle of the VM: seeds, manual
runs, long cycles started hours ago), and by the ids the schedule gives its starts, which Temporal
derives from the action's id and the nominal start time (``replicate/<vm>-2026-12-02T09:39:07Z``):
every nominal time the schedule could still have been starting is looked up directly, which is
strongly consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.schedules import catchup_window, groups_of_vms, spread_offset
from seawall.contract.messages import VMRef, VMsRef
from seawall.contract.names import Activity, Workflow, group_schedule_id, group_search_value, schedule_id
from seawall.contract.search import SA_VM
from seawall.model import Inventory

__all__ = [
    "FAILOVER_PATIENCE_S",
    "MAX_SCHEDULED_IDS",
    "VISIBILITY_SETTLE_S",
    "CycleStopActivities",
    "scheduled_cycle_ids",
    "scheduled_group_cycle_ids",
]

# How long after its first listing the VM's cycles are listed again: a start reaches visibility
# within it on a healthy server (the ids looked up directly cover a slower one).
VISIBILITY_SETTLE_S = 3.0
# How long a planned failover waits for the cycles it cancelled to close: one whose site worker is gone
# never does, and the failover goes on (with a warning) rather than wait for it.
FAILOVER_PATIENCE_S = 120.0
# The most nominal start times looked up per interval (a very short interval's catch-up window holds
# many): the newest ones, where a start racing the deletion can be.
MAX_SCHEDULED_IDS = 40


def scheduled_cycle_ids(vm: str, intervals: Iterable[timedelta], now: datetime) -> list[str]:
    """The workflow ids the VM's schedule, at any of ``intervals``, may have given a start that is
    still running now: every nominal time from one catch-up window and one interval back to one
    interval ahead (clock skew between this worker and the server), newest first."""
    return _scheduled_ids(schedule_id(vm), vm, intervals, now)


def scheduled_group_cycle_ids(group: str, intervals: Iterable[timedelta], now: datetime) -> list[str]:
    """The same for a consistency group's schedule (its offset is spread by the schedule's id)."""
    sid = group_schedule_id(group)
    return _scheduled_ids(sid, sid, intervals, now)


def _scheduled_ids(sid: str, spread_by: str, intervals: Iterable[timedelta], now: datetime) -> list[str]:
    ids: list[str] = []
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for every in sorted(set(intervals)):
        step = every.total_seconds()
        if step < 1:
            continue
        offset = spread_offset(spread_by, every).total_seconds()
        latest = now + every
        # Temporal's interval spec: the times whose distance from the epoch, less the offset, is a
        # whole number of intervals.
        k = (latest - epoch).total_seconds() - offset
        nominal = epoch + timedelta(seconds=offset + (k // step) * step)
        earliest = now - catchup_window(every) - every
        for _ in range(MAX_SCHEDULED_IDS):
            if nominal < earliest:
                break
            ids.append(f"{sid}-{nominal.strftime('%Y-%m-%dT%H:%M:%SZ')}")
            nominal -= every
    return list(dict.fromkeys(ids))


class CycleStopActivities:
    def __init__(
        self, load: Callable[[], Inventory], failover_patience_s: float = FAILOVER_PATIENCE_S
    ) -> None:
        self._load = load
        self._patience_s = failover_patience_s

    def _intervals(self) -> set[timedelta]:
        # Every policy's interval, not only the VM's: the schedule being deleted may have been made
        # under a policy the VM has since left.
        try:
            return {p.interval for p in self._load().policies}
        except Exception as exc:  # an unreadable inventory must not stop a protection from ending
            activity.logger.warning("inventory unreadable, cycles found by listing only: %s", exc)
            return set()

    @activity.defn(name=Activity.CANCEL_CYCLES)
    async def cancel_cycles(self, req: VMRef) -> int:
        """Cancel the VM's running cycles and wait until they have closed (their snapshots released).

        Cancel, not terminate: a cancelled cycle still runs its compensation and releases its snapshot.
        """
        direct = scheduled_cycle_ids(req.vm, self._intervals(), datetime.now(UTC))
        cancelled, _ = await _cancel_all(activity.client(), [_cycles_of(req.vm)], direct)
        return cancelled

    @activity.defn(name=Activity.CANCEL_FAILOVER_CYCLES)
    async def cancel_failover_cycles(self, req: VMsRef) -> list[str]:
        """A planned failover's step once the schedules are paused, before the sources are fenced:
        cancel every running cycle of its VMs and of their consistency groups, and wait until each
        has closed (its snapshots released). Returns the ids of those still running after the
        patience (``FAILOVER_PATIENCE_S``): a cycle whose worker is gone never closes, and must not hold the
        failover.

        The final replication must run alone: a cycle still holding its snapshot would make the final
        snapshot's disk a delta (which a vSphere source refuses to read) or end the final cycle's backup
        job (a KVM source holds one at a time), and the failover would stop after fencing.
        """
        now = datetime.now(UTC)
        intervals = self._intervals()
        queries = [_cycles_of(vm) for vm in req.vms]
        direct = [i for vm in req.vms for i in scheduled_cycle_ids(vm, intervals, now)]
        for group in groups_of_vms(self._load, req.vms, "consistency groups' cycles not stopped"):
            queries.append(_group_cycles_of(group))
            direct += scheduled_group_cycle_ids(group, intervals, now)
        _, left = await _cancel_all(activity.client(), queries, direct, patience_s=self._patience_s)
        return left


async def _cancel_all(
    client: Client,
    queries: list[str],
    direct: list[str],
    *,
    patience_s: float | None = None,
) -> tuple[int, list[str]]:
    """Cancel what the listing ``queries`` and the ``direct`` ids find running, until a listing a
    settling time after the first finds nothing new; wait for each to close (at most ``patience_s``
    after the first listing, when given). How many were cancelled, and the ids of those still
    running when the patience ran out."""
    cancelled: set[tuple[str, str]] = set()
    left: list[str] = []
    first = time.monotonic()
    deadline = None if patience_s is None else first + patience_s
    while True:
        running = [run for query in queries for run in await _listed(client, query)]
        if direct:
            running += await _running_by_id(client, direct)
            direct = []  # the schedule is gone or paused: no id it gives can appear later
        new = list(dict.fromkeys(run for run in running if run not in cancelled))
        if not new and time.monotonic() - first >= VISIBILITY_SETTLE_S:
            return len(cancelled), left
        for wf_id, run_id in new:
            with contextlib.suppress(RPCError):  # it may have finished meanwhile
                await client.get_workflow_handle(wf_id, run_id=run_id).cancel()
            cancelled.add((wf_id, run_id))
        for wf_id, run_id in new:
            handle = client.get_workflow_handle(wf_id, run_id=run_id)
            while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                if deadline is not None and time.monotonic() >= deadline:
                    left.append(wf_id)
                    break
                activity.heartbeat(wf_id)
                await asyncio.sleep(1.0)
        if deadline is not None and time.monotonic() >= deadline:
            return len(cancelled), left
        activity.heartbeat(len(cancelled))
        await asyncio.sleep(1.0)


def _running(workflow_type: str, vm_value: str) -> str:
    return f'WorkflowType = "{workflow_type}" AND {SA_VM.name} = "{vm_value}" AND ExecutionStatus = "Running"'


def _cycles_of(vm: str) -> str:
    return _running(Workflow.REPLICATION_CYCLE, vm)


def _group_cycles_of(group: str) -> str:
    return _running(Workflow.GROUP_REPLICATION_CYCLE, group_search_value(group))


async def _listed(client: Client, query: str) -> list[tuple[str, str]]:
    return [(wf.id, wf.run_id or "") async for wf in client.list_workflows(query)]


async def _running_by_id(client: Client, ids: list[str]) -> list[tuple[str, str]]:
    """The ones of ``ids`` that name a running workflow, read from the server's own record."""
    found: list[tuple[str, str]] = []
    for wf_id in ids:
        try:
            desc = await client.get_workflow_handle(wf_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        if desc.status == WorkflowExecutionStatus.RUNNING:
            found.append((wf_id, desc.run_id))
    return found
