"""BandwidthCoordinator on a test server: shares over the live claimers, a silent claimer dropping out,
continue-as-new with the members carried over, the idle end and the restart by the next claim.

The coordinator is started (update-with-start, as the workers start it) with short timings in its
state, and the tests wait real seconds: time skipping is not applied to runs an update starts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from seawall.contract.bandwidth import BandwidthClaim, BandwidthGrant, CoordinatorState
from seawall.contract.names import bandwidth_coordinator_id
from seawall.runtime.bandwidth import claim_share
from tests.workflows.conftest import WAIT_S
from workflows.bandwidth import BandwidthCoordinatorWorkflow

LIMIT = 20e6
EXPIRE = 1.5
IDLE = 2.0


@pytest.fixture
async def scope(env: WorkflowEnvironment) -> AsyncIterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    queue = f"site-bw-{tag}"
    async with Worker(env.client, task_queue=queue, workflows=[BandwidthCoordinatorWorkflow]):
        yield f"site:bw-{tag}", queue


def claim(member: str, **kw: object) -> BandwidthClaim:
    return BandwidthClaim.model_validate({"member": member, "limit": LIMIT, **kw})


async def share(
    env: WorkflowEnvironment,
    scope: tuple[str, str],
    c: BandwidthClaim,
    *,
    max_claims: int = 1000,
    idle_s: float = 60.0,
) -> BandwidthGrant:
    name, queue = scope
    state = CoordinatorState(scope=name, max_claims=max_claims, expire_s=EXPIRE, idle_s=idle_s)
    return await claim_share(env.client, name, queue, c, state=state)


async def run_id(env: WorkflowEnvironment, scope: tuple[str, str]) -> str:
    return (await env.client.get_workflow_handle(bandwidth_coordinator_id(scope[0])).describe()).run_id


async def test_two_processes_share_the_limit_and_a_silent_one_drops_out(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    first = await share(env, scope, claim("p1@a"))
    assert first.share == LIMIT and first.members == 1
    second = await share(env, scope, claim("p2@b"))
    assert second.share == LIMIT / 2 and second.members == 2
    again = await share(env, scope, claim("p1@a"))
    assert again.share == LIMIT / 2
    started = await run_id(env, scope)
    # p2 stops renewing (killed); p1 keeps renewing: once p2's claim is older than EXPIRE, p1 has
    # the whole limit back, in the same run.
    for _ in range(4):
        await asyncio.sleep(EXPIRE / 2)
        last = await share(env, scope, claim("p1@a"))
    assert last.share == LIMIT and last.members == 1
    assert await run_id(env, scope) == started


async def test_a_stopping_process_hands_its_share_back_at_once(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    await share(env, scope, claim("p1", seeding=True, seed_limit=6e6))
    both = await share(env, scope, claim("p2", seeding=True, seed_limit=6e6))
    assert both.share == LIMIT / 2 and both.seed_share == 3e6
    await share(env, scope, claim("p2", shipping=False))
    alone = await share(env, scope, claim("p1", seeding=True, seed_limit=6e6))
    assert alone.share == LIMIT and alone.seed_share == 6e6


async def test_continue_as_new_keeps_the_members(env: WorkflowEnvironment, scope: tuple[str, str]) -> None:
    await share(env, scope, claim("p1"), max_claims=3)
    await share(env, scope, claim("p2"), max_claims=3)
    first_run = await run_id(env, scope)
    await share(env, scope, claim("p1"), max_claims=3)  # the third: continue-as-new once answered
    grant = await share(env, scope, claim("p2"), max_claims=3)
    assert grant.members == 2 and grant.share == LIMIT / 2  # p1 carried into the new run
    assert await run_id(env, scope) != first_run
    # ...with the timings it was started with: p1 expires after EXPIRE, not the default.
    await asyncio.sleep(EXPIRE + 0.5)
    alone = await share(env, scope, claim("p2"), max_claims=3)
    assert alone.members == 1 and alone.share == LIMIT


async def test_an_idle_coordinator_ends_and_the_next_claim_starts_it_again(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    await share(env, scope, claim("p1"), idle_s=2.0)
    await share(env, scope, claim("p1", shipping=False), idle_s=2.0)
    handle = env.client.get_workflow_handle(bandwidth_coordinator_id(scope[0]), result_type=CoordinatorState)
    ended = await asyncio.wait_for(handle.result(), timeout=WAIT_S)
    assert ended.scope == scope[0] and ended.members == []
    grant = await share(env, scope, claim("p3"), idle_s=2.0)
    assert grant.share == LIMIT and grant.members == 1
    assert await run_id(env, scope) != handle.result_run_id


async def test_a_shipping_claim_without_any_limit_is_refused(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    await share(env, scope, claim("p1"))
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await share(env, scope, BandwidthClaim(member="p2"))
    assert "limit" in str(caught.value.cause)
    still = await share(env, scope, claim("p1"))
    assert still.members == 1
