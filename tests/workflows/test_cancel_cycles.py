"""``cancel_cycles`` (UnprotectVM's step after the schedule is deleted) against a real Temporal server:
it cancels every running cycle of the VM, waits until each has closed, and also catches a cycle whose
start reached visibility only after its first listing (the schedule fired just before it was deleted)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.schedules import cancel_cycles
from seawall.contract.messages import VMRef
from seawall.contract.names import Workflow
from seawall.contract.search import SA_VM


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


@workflow.defn(name="DriveCancelCycles")
class DriveCancelCycles:
    @workflow.run
    async def run(self, vm: str) -> int:
        return await workflow.execute_activity(
            cancel_cycles,
            VMRef(vm=vm),
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
        )


async def _start_cycle(client: Client, vm: str, queue: str) -> WorkflowHandle[HeldCycle, None]:
    return await client.start_workflow(
        HeldCycle.run,
        id=f"replicate/{vm}-{uuid.uuid4().hex[:6]}",
        task_queue=queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_VM, vm)]),
    )


async def _visible(client: Client, vm: str, count: int) -> None:
    query = f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_VM.name} = "{vm}"'
    async with asyncio.timeout(30):
        while len([w async for w in client.list_workflows(query)]) < count:
            await asyncio.sleep(0.1)


async def test_cancel_cycles_closes_every_cycle_including_one_listed_late(env: WorkflowEnvironment) -> None:
    client = env.client
    tag = uuid.uuid4().hex[:8]
    vm, queue = f"vm-{tag}", f"cancel-cycles-{tag}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[HeldCycle, DriveCancelCycles],
        activities=[cancel_cycles],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        first = await _start_cycle(client, vm, queue)
        await _visible(client, vm, 1)
        driver = await client.start_workflow(DriveCancelCycles.run, vm, id=f"drive-{tag}", task_queue=queue)
        # The first cycle is being cancelled, so the first listing is behind us: a cycle started now
        # is one that listing could not have seen.
        async with asyncio.timeout(30):
            while not await first.query(HeldCycle.cancelled):
                await asyncio.sleep(0.05)
        late = await _start_cycle(client, vm, queue)
        assert await driver.result() == 2
        for handle in (first, late):
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
