"""BandwidthCoordinator on a test server: shares over the live claimers, a silent claimer dropping out,
continue-as-new with the members carried over, the idle end and the restart by the next claim."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from seawall.contract.bandwidth import EXPIRE_S, IDLE_S, BandwidthClaim, CoordinatorState
from seawall.contract.names import bandwidth_coordinator_id
from seawall.runtime.bandwidth import claim_share
from workflows.bandwidth import BandwidthCoordinatorWorkflow

LIMIT = 20e6


@pytest.fixture
async def scope(env: WorkflowEnvironment) -> AsyncIterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    queue = f"site-bw-{tag}"
    async with Worker(env.client, task_queue=queue, workflows=[BandwidthCoordinatorWorkflow]):
        yield f"site:bw-{tag}", queue


def claim(member: str, **kw: object) -> BandwidthClaim:
    return BandwidthClaim.model_validate({"member": member, "limit": LIMIT, **kw})


async def test_two_processes_share_the_limit_and_a_silent_one_drops_out(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    name, queue = scope
    client = env.client
    first = await claim_share(client, name, queue, claim("p1@a"))
    assert first.share == LIMIT and first.members == 1
    second = await claim_share(client, name, queue, claim("p2@b"))
    assert second.share == LIMIT / 2 and second.members == 2
    again = await claim_share(client, name, queue, claim("p1@a"))
    assert again.share == LIMIT / 2
    # p2 stops renewing (killed): once EXPIRE_S have passed, p1 has the whole limit back.
    handle = client.get_workflow_handle(bandwidth_coordinator_id(name))
    await env.fast_forward(handle, timedelta(seconds=EXPIRE_S + 1))  # type: ignore[attr-defined]
    alone = await claim_share(client, name, queue, claim("p1@a"))
    assert alone.share == LIMIT and alone.members == 1


async def test_a_stopping_process_hands_its_share_back_at_once(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    name, queue = scope
    await claim_share(env.client, name, queue, claim("p1", seeding=True, seed_limit=6e6))
    both = await claim_share(env.client, name, queue, claim("p2", seeding=True, seed_limit=6e6))
    assert both.share == LIMIT / 2 and both.seed_share == 3e6
    await claim_share(env.client, name, queue, claim("p2", shipping=False))
    alone = await claim_share(env.client, name, queue, claim("p1", seeding=True, seed_limit=6e6))
    assert alone.share == LIMIT and alone.seed_share == 6e6


async def test_continue_as_new_keeps_the_members(env: WorkflowEnvironment, scope: tuple[str, str]) -> None:
    name, queue = scope
    await claim_share(env.client, name, queue, claim("p1"), max_claims=3)
    await claim_share(env.client, name, queue, claim("p2"), max_claims=3)
    first_run = await env.client.get_workflow_handle(bandwidth_coordinator_id(name)).describe()
    await claim_share(env.client, name, queue, claim("p1"), max_claims=3)  # the third: continue-as-new
    grant = await claim_share(env.client, name, queue, claim("p2"), max_claims=3)
    assert grant.members == 2 and grant.share == LIMIT / 2  # p1 carried into the new run
    now = await env.client.get_workflow_handle(bandwidth_coordinator_id(name)).describe()
    assert now.run_id != first_run.run_id


async def test_an_idle_coordinator_ends_and_the_next_claim_starts_it_again(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    name, queue = scope
    await claim_share(env.client, name, queue, claim("p1"))
    await claim_share(env.client, name, queue, claim("p1", shipping=False))
    handle = env.client.get_workflow_handle(bandwidth_coordinator_id(name), result_type=CoordinatorState)
    await env.fast_forward(handle, timedelta(seconds=IDLE_S + 5))  # type: ignore[attr-defined]
    ended = await handle.result()
    assert ended.scope == name and ended.members == []
    grant = await claim_share(env.client, name, queue, claim("p3"))
    assert grant.share == LIMIT and grant.members == 1


async def test_a_shipping_claim_without_any_limit_is_refused(
    env: WorkflowEnvironment, scope: tuple[str, str]
) -> None:
    name, queue = scope
    await claim_share(env.client, name, queue, claim("p1"))
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await claim_share(env.client, name, queue, BandwidthClaim(member="p2"))
    assert "limit" in str(caught.value.cause)
    still = await claim_share(env.client, name, queue, claim("p1"))
    assert still.members == 1
