"""Replication actions over a Temporal client: protect, unprotect, replicate now, status.

Written once for every door (the CLI, the API, the demo, the benchmarks); the refusals are
:mod:`seawall.control.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from temporalio.client import Client, ScheduleOverlapPolicy, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.failures import failure_reason
from seawall.contract.intents import SignedIntent
from seawall.contract.messages import (
    GroupCycleInput,
    ProtectGroupResult,
    ProtectInput,
    ProtectResult,
    UnprotectInput,
)
from seawall.contract.names import (
    Workflow,
    group_schedule_id,
    protect_group_id,
    protect_id,
    schedule_id,
    unprotect_id,
)
from seawall.control import fleet
from seawall.control.errors import Failed, NotProtected
from seawall.control.status import VMStatus
from seawall.model import Inventory


async def start_protect(
    client: Client, queue: str, vm: str, policy: str | None = None
) -> WorkflowHandle[Any, ProtectResult]:
    """Start ``ProtectVM``: enable CBT, seed a first verified point, create the VM's schedule.

    A fixed id per VM: protecting twice while a seed runs attaches to the running one.
    """
    return await client.start_workflow(
        Workflow.PROTECT_VM,
        ProtectInput(vm=vm, policy=policy),
        id=protect_id(vm),
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        result_type=ProtectResult,
    )


async def start_protect_group(
    client: Client, queue: str, group: str
) -> WorkflowHandle[Any, ProtectGroupResult]:
    """Start ``ProtectGroup``: CBT on every member, a first group point, the group's one schedule
    (members' own schedules go: they snapshot only behind the group's barrier)."""
    return await client.start_workflow(
        Workflow.PROTECT_GROUP,
        GroupCycleInput(group=group),
        id=protect_group_id(group),
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        result_type=ProtectGroupResult,
    )


async def protect_group(client: Client, queue: str, group: str) -> ProtectGroupResult:
    """Protect a consistency group and wait for its first group point and schedule."""
    handle = await start_protect_group(client, queue, group)
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        raise Failed(str(exc.cause or exc)) from None


async def replicate_group_now(client: Client, group: str) -> str:
    """Start a group cycle now through the group's schedule (after the running one, if any)."""
    try:
        await client.get_schedule_handle(group_schedule_id(group)).trigger(
            overlap=ScheduleOverlapPolicy.BUFFER_ONE
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotProtected(group) from None
        raise
    return group_schedule_id(group)


async def protect_result(handle: WorkflowHandle[Any, ProtectResult]) -> ProtectResult:
    """The result of a ``ProtectVM`` run; :class:`Failed` with its cause if it failed."""
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        raise Failed(failure_reason(exc)) from None


async def protect(client: Client, queue: str, vm: str, policy: str | None = None) -> ProtectResult:
    """Protect ``vm`` and wait for its seed and schedule."""
    return await protect_result(await start_protect(client, queue, vm, policy))


async def unprotect(
    client: Client,
    queue: str,
    vm: str,
    delete_replica: bool = False,
    intent: SignedIntent | None = None,
) -> int:
    """Stop replicating ``vm`` (its schedule goes); returns how many of its points were deleted.
    ``intent``: the door's signature (the workflow refuses without one when intents are enforced)."""
    try:
        return await client.execute_workflow(
            Workflow.UNPROTECT_VM,
            UnprotectInput(vm=vm, delete_replica=delete_replica, intent=intent),
            id=unprotect_id(vm),
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=int,
        )
    except WorkflowFailureError as exc:
        raise Failed(failure_reason(exc)) from None


async def replicate_now(client: Client, vm: str) -> str:
    """Start a cycle of ``vm`` now; returns its schedule's id. :class:`NotProtected` without one.

    Through the schedule, not a direct start, so one cycle runs at a time; and buffered, not skipped,
    when one is running: that one may have taken its snapshot before what the operator wants
    captured, so the cycle asked for starts when it ends.
    """
    try:
        await client.get_schedule_handle(schedule_id(vm)).trigger(overlap=ScheduleOverlapPolicy.BUFFER_ONE)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotProtected(vm) from None
        raise
    return schedule_id(vm)


async def statuses(client: Client, inventory: Inventory, vms: Iterable[str]) -> list[VMStatus]:
    """The replication status of each of ``vms``, in their order: the fleet's listings answer for most,
    and only the VMs they cannot answer for are asked one by one (``seawall.control.fleet``)."""
    return await fleet.statuses(client, inventory, list(vms))
