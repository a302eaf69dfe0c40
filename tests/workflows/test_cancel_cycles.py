"""``cancel_cycles`` (UnprotectVM's step after the schedule is deleted) against a real Temporal server:
it cancels every running cycle of the VM, waits until each has closed, and also catches a cycle whose
start reached visibility only after its first listing (the schedule fired just before it was deleted),
and one that visibility does not show at all but whose id is one the schedule gives its starts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.cycle_stop import CycleStopActivities, scheduled_cycle_ids, scheduled_group_cycle_ids
from seawall.contract.messages import VMRef, VMsRef
from seawall.contract.names import Workflow, group_schedule_id, group_search_value
from seawall.contract.search import SA_VM
from seawall.model import Inventory
from seawall.model.protection import ConsistencyGroup, ReplicationPolicy
from tests.workflows.conftest import WAIT_S


@workflow.defn(name=Workflow.REPLICATION_CYCLE)
class HeldCycle:
    """A cycle holding its snapshot until cancelled; its compensation (the release) takes a second."""

    def __init__(self) -> None:
        self._cancelled = False

    @workflow.query
    def cancelled(self) -> bool:
        return self._cancelled

    @workflow.run
    async def run(self) -> None:
        try:
            await workflow.wait_condition(lambda: False)
        except asyncio.CancelledError:
            self._cancelled = True
            await workflow.sleep(timedelta(seconds=1))
            raise


@workflow.defn(name=Workflow.GROUP_REPLICATION_CYCLE)
class HeldGroupCycle(HeldCycle):
    """A consistency group's cycle, holding every member's snapshot until cancelled."""

    @workflow.query
    def cancelled(self) -> bool:
        return self._cancelled

    @workflow.run
    async def run(self) -> None:
        await super().run()


@workflow.defn(name="DriveCancelFailoverCycles")
class DriveCancelFailoverCycles:
    @workflow.run
    async def run(self, vms: list[str]) -> list[str]:
        return await workflow.execute_activity_method(
            CycleStopActivities.cancel_failover_cycles,
            VMsRef(vms=vms),
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
        )


@workflow.defn(name="DriveCancelCycles")
class DriveCancelCycles:
    @workflow.run
    async def run(self, vm: str) -> int:
        return await workflow.execute_activity_method(
            CycleStopActivities.cancel_cycles,
            VMRef(vm=vm),
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
        )


INTERVAL = timedelta(seconds=30)


def _stopper(groups: list[ConsistencyGroup] | None = None, patience_s: float = 120.0) -> CycleStopActivities:
    policy = ReplicationPolicy(name="p30", interval=INTERVAL, key_ref="env:UNUSED", retention_count=2)
    return CycleStopActivities(
        lambda: Inventory(policies=[policy], consistency_groups=groups or []), patience_s
    )


def _worker(
    client: Client, queue: str, groups: list[ConsistencyGroup] | None = None, patience_s: float = 120.0
) -> Worker:
    stopper = _stopper(groups, patience_s)
    return Worker(
        client,
        task_queue=queue,
        workflows=[HeldCycle, HeldGroupCycle, DriveCancelCycles, DriveCancelFailoverCycles],
        activities=[stopper.cancel_cycles, stopper.cancel_failover_cycles],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def _start_cycle(
    client: Client, vm: str, queue: str, *, wf_id: str | None = None, listed: bool = True
) -> WorkflowHandle[HeldCycle, None]:
    return await client.start_workflow(
        HeldCycle.run,
        id=wf_id or f"replicate/{vm}-{uuid.uuid4().hex[:6]}",
        task_queue=queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_VM, vm)] if listed else []),
    )


async def _visible(
    client: Client, vm: str, count: int, workflow_type: str = Workflow.REPLICATION_CYCLE
) -> None:
    query = f'WorkflowType = "{workflow_type}" AND {SA_VM.name} = "{vm}"'
    async with asyncio.timeout(WAIT_S):
        while len([w async for w in client.list_workflows(query)]) < count:
            await asyncio.sleep(0.1)


async def test_cancel_cycles_closes_every_cycle_including_one_listed_late(env: WorkflowEnvironment) -> None:
    client = env.client
    tag = uuid.uuid4().hex[:8]
    vm, queue = f"vm-{tag}", f"cancel-cycles-{tag}"
    async with _worker(client, queue):
        first = await _start_cycle(client, vm, queue)
        await _visible(client, vm, 1)
        driver = await client.start_workflow(DriveCancelCycles.run, vm, id=f"drive-{tag}", task_queue=queue)
        # The first cycle is being cancelled, so the first listing is behind us: a cycle started now
        # is one that listing could not have seen.
        async with asyncio.timeout(WAIT_S):
            while not await first.query(HeldCycle.cancelled):
                await asyncio.sleep(0.05)
        late = await _start_cycle(client, vm, queue)
        assert await driver.result() == 2
        for handle in (first, late):
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


def test_scheduled_ids_are_the_nominal_start_times_of_the_interval_spec() -> None:
    # The ids the lab's server gave db-01's 30 s schedule (its offset is 7 s): read off a real run.
    ids = scheduled_cycle_ids("db-01", [INTERVAL], datetime(2026, 12, 2, 9, 39, 20, tzinfo=UTC))
    assert ids == [
        "replicate/db-01-2026-12-02T09:39:37Z",
        "replicate/db-01-2026-12-02T09:39:07Z",
        "replicate/db-01-2026-12-02T09:38:37Z",
        "replicate/db-01-2026-12-02T09:38:07Z",
    ]
    # Another policy's interval adds its own nominal times; a duplicate interval adds nothing.
    both = scheduled_cycle_ids("db-01", [INTERVAL, INTERVAL, timedelta(minutes=5)], datetime.now(UTC))
    assert len(both) == len(set(both)) and len(both) > 4


async def test_cancel_cycles_finds_a_scheduled_cycle_that_visibility_does_not_show(
    env: WorkflowEnvironment,
) -> None:
    client = env.client
    tag = uuid.uuid4().hex[:8]
    vm, queue = f"vm-{tag}", f"cancel-cycles-{tag}"
    async with _worker(client, queue):
        # As a schedule fires: its id is the action's id and the nominal time. Without the VM's search
        # attribute no listing finds it, as none would while a loaded server's visibility lags.
        nominal = scheduled_cycle_ids(vm, [INTERVAL], datetime.now(UTC))[1]
        hidden = await _start_cycle(client, vm, queue, wf_id=nominal, listed=False)
        async with asyncio.timeout(WAIT_S):
            while (await hidden.describe()).history_length < 3:
                await asyncio.sleep(0.05)
        driver = await client.start_workflow(DriveCancelCycles.run, vm, id=f"drive-{tag}", task_queue=queue)
        assert await driver.result() == 1
        assert (await hidden.describe()).status == WorkflowExecutionStatus.CANCELED
        assert await hidden.query(HeldCycle.cancelled)


async def test_a_planned_failover_stops_its_vms_and_their_groups_cycles_and_no_other(
    env: WorkflowEnvironment,
) -> None:
    client = env.client
    tag = uuid.uuid4().hex[:8]
    vm, member, other, group = f"vm-{tag}", f"member-{tag}", f"other-{tag}", f"g-{tag}"
    queue = f"cancel-cycles-{tag}"
    erp = ConsistencyGroup(name=group, policy="p30", vms=[member, f"peer-{tag}"])
    async with _worker(client, queue, [erp]):
        mine = await _start_cycle(client, vm, queue)
        theirs = await _start_cycle(client, other, queue)
        listed_group = await client.start_workflow(
            HeldGroupCycle.run,
            id=f"{group_schedule_id(group)}-manual-{tag}",
            task_queue=queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SA_VM, group_search_value(group))]),
        )
        # As the group's schedule fires, before visibility shows it: found by the id it is given.
        nominal = scheduled_group_cycle_ids(group, [INTERVAL], datetime.now(UTC))[1]
        hidden_group = await client.start_workflow(HeldGroupCycle.run, id=nominal, task_queue=queue)
        await _visible(client, vm, 1)
        await _visible(client, group_search_value(group), 1, Workflow.GROUP_REPLICATION_CYCLE)
        async with asyncio.timeout(WAIT_S):
            while (await hidden_group.describe()).history_length < 3:
                await asyncio.sleep(0.05)
        driver = await client.start_workflow(
            DriveCancelFailoverCycles.run, [vm, member], id=f"drive-{tag}", task_queue=queue
        )
        assert await driver.result() == []
        for handle in (mine, listed_group, hidden_group):
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        # A VM the failover does not move keeps replicating.
        assert (await theirs.describe()).status == WorkflowExecutionStatus.RUNNING
        assert not await theirs.query(HeldCycle.cancelled)
        await theirs.cancel()


async def test_a_cycle_whose_worker_is_gone_does_not_hold_the_failover(env: WorkflowEnvironment) -> None:
    client = env.client
    tag = uuid.uuid4().hex[:8]
    vm, queue = f"vm-{tag}", f"cancel-cycles-{tag}"
    async with _worker(client, queue, patience_s=10.0):
        mine = await _start_cycle(client, vm, queue)
        # On a queue no worker polls: cancelled, it never closes.
        stranded = await _start_cycle(client, vm, f"gone-{tag}")
        await _visible(client, vm, 2)
        driver = await client.start_workflow(
            DriveCancelFailoverCycles.run, [vm], id=f"drive-{tag}", task_queue=queue
        )
        assert await asyncio.wait_for(driver.result(), timeout=60) == [stranded.id]
        assert (await mine.describe()).status == WorkflowExecutionStatus.CANCELED
        assert (await stranded.describe()).status == WorkflowExecutionStatus.RUNNING
        await stranded.terminate()
