"""Stopping a VM's cycles when its protection ends (UnprotectVM's step after the schedule is deleted).

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

from activities.schedules import catchup_window, spread_offset
from seawall.contract.messages import VMRef
from seawall.contract.names import Activity, Workflow, schedule_id
from seawall.contract.search import SA_VM
from seawall.model import Inventory

__all__ = ["MAX_SCHEDULED_IDS", "VISIBILITY_SETTLE_S", "CycleStopActivities", "scheduled_cycle_ids"]

# How long after its first listing the VM's cycles are listed again: a start reaches visibility
# within it on a healthy server (the ids looked up directly cover a slower one).
VISIBILITY_SETTLE_S = 3.0
# The most nominal start times looked up per interval (a very short interval's catch-up window holds
# many): the newest ones, where a start racing the deletion can be.
MAX_SCHEDULED_IDS = 40


def scheduled_cycle_ids(vm: str, intervals: Iterable[timedelta], now: datetime) -> list[str]:
    """The workflow ids the VM's schedule, at any of ``intervals``, may have given a start that is
    still running now: every nominal time from one catch-up window and one interval back to one
    interval ahead (clock skew between this worker and the server), newest first."""
    ids: list[str] = []
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for every in sorted(set(intervals)):
        step = every.total_seconds()
        if step < 1:
            continue
        offset = spread_offset(vm, every).total_seconds()
        latest = now + every
        # Temporal's interval spec: the times whose distance from the epoch, less the offset, is a
        # whole number of intervals.
        k = (latest - epoch).total_seconds() - offset
        nominal = epoch + timedelta(seconds=offset + (k // step) * step)
        earliest = now - catchup_window(every) - every
        for _ in range(MAX_SCHEDULED_IDS):
            if nominal < earliest:
                break
            ids.append(f"{schedule_id(vm)}-{nominal.strftime('%Y-%m-%dT%H:%M:%SZ')}")
            nominal -= every
    return list(dict.fromkeys(ids))


class CycleStopActivities:
    def __init__(self, load: Callable[[], Inventory]) -> None:
        self._load = load

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
        client = activity.client()
        vm = req.vm
        direct = scheduled_cycle_ids(vm, self._intervals(), datetime.now(UTC))
        cancelled: set[tuple[str, str]] = set()
        first = time.monotonic()
        while True:
            running = await _listed(client, vm)
            if direct:
                running += await _running_by_id(client, direct)
                direct = []  # the schedule is gone: no id it gives can appear later
            new = list(dict.fromkeys(run for run in running if run not in cancelled))
            if not new and time.monotonic() - first >= VISIBILITY_SETTLE_S:
                return len(cancelled)
            for wf_id, run_id in new:
                with contextlib.suppress(RPCError):  # it may have finished meanwhile
                    await client.get_workflow_handle(wf_id, run_id=run_id).cancel()
                cancelled.add((wf_id, run_id))
            for wf_id, run_id in new:
                handle = client.get_workflow_handle(wf_id, run_id=run_id)
                while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    activity.heartbeat(wf_id)
                    await asyncio.sleep(1.0)
            activity.heartbeat(len(cancelled))
            await asyncio.sleep(1.0)


async def _listed(client: Client, vm: str) -> list[tuple[str, str]]:
    query = (
        f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_VM.name} = "{vm}"'
        ' AND ExecutionStatus = "Running"'
    )
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
