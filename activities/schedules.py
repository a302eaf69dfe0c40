"""Temporal Schedules for protected VMs: one per VM, overlap SKIP, so two cycles never run at once."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import activity
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.messages import (
    CycleInput,
    GcInput,
    GcScheduleRequest,
    GroupCycleInput,
    GroupScheduleRequest,
    ScheduleRequest,
    VMRef,
)
from seawall.contract.names import (
    Activity,
    Workflow,
    gc_schedule_id,
    group_schedule_id,
    group_search_value,
    schedule_id,
)
from seawall.contract.queues import site_queue
from seawall.contract.search import SA_SITE, SA_VM
from seawall.model import Inventory


def groups_of_vms(load: Callable[[], Inventory], vms: list[str], otherwise: str) -> list[str]:
    """The consistency groups of ``vms``; none, with a warning ending in ``otherwise``, when the
    inventory cannot be read (a plan's run read it moments ago: what it does for the VMs alone still
    counts)."""
    try:
        inventory = load()
    except Exception as exc:
        activity.logger.warning("inventory unreadable, %s: %s", otherwise, exc)
        return []
    return inventory.groups_of(vms)


def spread_offset(vm: str, every: timedelta) -> timedelta:
    """A stable per-VM offset inside the interval, so a fleet's cycles do not all fire on the minute."""
    seconds = int(every.total_seconds())
    if seconds <= 1:
        return timedelta(0)
    digest = hashlib.blake2b(vm.encode(), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % seconds)


def catchup_window(every: timedelta) -> timedelta:
    """How late a VM's schedule still starts a cycle it missed (a server or worker outage)."""
    return max(every, timedelta(minutes=1))


def cycle_schedule(req: ScheduleRequest) -> Schedule:
    every = timedelta(seconds=req.interval_s)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            Workflow.REPLICATION_CYCLE,
            CycleInput(vm=req.vm, source_site=req.source_site if req.reverse else None),
            # The schedule appends the start time, so each cycle has its own id under this prefix.
            id=schedule_id(req.vm),
            task_queue=site_queue(req.source_site),
            typed_search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SA_VM, req.vm), SearchAttributePair(SA_SITE, req.source_site)]
            ),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every, offset=spread_offset(req.vm, every))]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            # After an outage one cycle catches up; replaying every missed interval would only queue
            # work behind SKIP anyway.
            catchup_window=catchup_window(every),
        ),
        state=ScheduleState(note=f"Seawall replication of {req.vm} every {req.interval_s:g}s"),
    )


@activity.defn(name=Activity.ENSURE_SCHEDULE)
async def ensure_schedule(req: ScheduleRequest) -> str:
    """Create the VM's schedule, or bring an existing one to the current policy (idempotent)."""
    client = activity.client()
    sid = schedule_id(req.vm)
    schedule = cycle_schedule(req)
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(sid).update(update)
    return sid


@activity.defn(name=Activity.DELETE_SCHEDULE)
async def delete_schedule(req: VMRef) -> bool:
    """Delete the VM's schedule; one already gone is success. Returns whether one existed."""
    try:
        await activity.client().get_schedule_handle(schedule_id(req.vm)).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


@activity.defn(name=Activity.ENSURE_GC_SCHEDULE)
async def ensure_gc_schedule(req: GcScheduleRequest) -> str:
    """One garbage-collection schedule per replica store, run by a worker of a site that reaches it."""
    client = activity.client()
    sid = gc_schedule_id(req.store)
    every = timedelta(seconds=req.interval_s)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            Workflow.COLLECT_GARBAGE,
            GcInput(store=req.store, site=req.site),
            id=sid,
            task_queue=site_queue(req.site),
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(SA_SITE, req.site)]),
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=every, offset=spread_offset(req.store, every))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
        state=ScheduleState(note=f"Seawall garbage collection of replica store {req.store}"),
    )
    # One per store, whichever VM's protection made it first: its site reaches the store.
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(sid, schedule)
    return sid


@activity.defn(name=Activity.ENSURE_GROUP_SCHEDULE)
async def ensure_group_schedule(req: GroupScheduleRequest) -> str:
    """A consistency group's one schedule (overlap SKIP). Its members have no schedule of their own
    (``ProtectGroup`` deletes any left from before they were grouped), so no member is snapshotted
    outside the group's barrier."""
    client = activity.client()
    sid = group_schedule_id(req.group)
    every = timedelta(seconds=req.interval_s)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            Workflow.GROUP_REPLICATION_CYCLE,
            GroupCycleInput(group=req.group),
            id=sid,
            task_queue=site_queue(req.source_site),
            typed_search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_VM, group_search_value(req.group)),
                    SearchAttributePair(SA_SITE, req.source_site),
                ]
            ),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every, offset=spread_offset(sid, every))]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, timedelta(minutes=1))
        ),
        state=ScheduleState(note=f"Seawall consistency group {req.group} every {req.interval_s:g}s"),
    )
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(sid).update(update)
    return sid
