"""Idempotent failover starts: the run an ``Idempotency-Key`` started is found again for 24 hours.

Nothing is stored by the API itself (it is stateless): the hashed key is a search attribute of the run
(``SeawallRequest``), and the caller and the request it came with travel in the run's memo. A retry,
through any API process, finds the run by a visibility query — whatever runs of the plan came after
it — and then: the same caller with the same body gets that run back; another body is a 422; another
caller is a 409 (a key is not a way to learn of, or attach to, someone else's failover).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from seawall.api.problems import ApiProblem
from seawall.contract.names import Workflow, recover_id
from seawall.contract.search import SA_REQUEST
from seawall.control.errors import NotFound
from seawall.control.runs import describe_run, memo_of

# Memo keys of an API-started run: who started it and the request it started, so a retry finds its
# run and a reused key with another body (or from another caller) is refused.
MEMO_KEY = "seawall_idempotency_key"
MEMO_REQUEST = "seawall_request"
MEMO_BY = "seawall_started_by"
# How long an Idempotency-Key names its run: a retry within a day is the same request; the same key
# reused later (a runbook that hard-codes one) is a new failover, not yesterday's run.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def key_hash(plan: str, key: str | None) -> str | None:
    """The key as the run keeps it: hashed (a key may carry an incident id), per plan."""
    return hashlib.sha256(f"{plan}\0{key}".encode()).hexdigest() if key is not None else None


def start_memo(who: str, fingerprint: str, hashed_key: str | None) -> dict[str, str]:
    memo = {MEMO_BY: who, MEMO_REQUEST: fingerprint}
    if hashed_key:
        memo[MEMO_KEY] = hashed_key
    return memo


def start_attributes(hashed_key: str | None) -> TypedSearchAttributes | None:
    """The search attribute that makes the run findable by its key (none without a key)."""
    if hashed_key is None:
        return None
    return TypedSearchAttributes([SearchAttributePair(SA_REQUEST, hashed_key)])


async def same_key(
    client: Client, plan: str, who: str, hashed_key: str | None, fingerprint: str
) -> WorkflowExecutionDescription | None:
    """The run of ``plan`` this key started within the window, if any; refuses a reuse of the key
    with another body (422) or by another caller (409)."""
    if hashed_key is None:
        return None
    desc = await _newest_with_key(client, plan, hashed_key) or await _listed_with_key(
        client, plan, hashed_key
    )
    if desc is None:
        return None
    memo = await memo_of(desc)
    if memo.get(MEMO_BY) != who:
        raise ApiProblem(
            409,
            "idempotency-key-in-use",
            "Idempotency-Key in use",
            "this Idempotency-Key already started a failover for another caller; choose another key",
        )
    if memo.get(MEMO_REQUEST) != fingerprint:
        raise ApiProblem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key started a failover with a different request body",
        )
    return desc


def _within_window(desc: WorkflowExecutionDescription) -> bool:
    return desc.start_time is None or datetime.now(UTC) - desc.start_time <= IDEMPOTENCY_WINDOW


async def _newest_with_key(client: Client, plan: str, hashed_key: str) -> WorkflowExecutionDescription | None:
    """The plan's newest run, when it carries the key: consistent at once, where visibility may lag a
    run started a moment ago (two racing retries)."""
    try:
        desc = await describe_run(client, plan)
    except NotFound:
        return None
    if not _within_window(desc) or (await memo_of(desc)).get(MEMO_KEY) != hashed_key:
        return None
    return desc


async def _listed_with_key(client: Client, plan: str, hashed_key: str) -> WorkflowExecutionDescription | None:
    """An older run of the plan that carries the key, found by a visibility query."""
    since = (datetime.now(UTC) - IDEMPOTENCY_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
    # The hash is hex and the id is our own: nothing of the caller's is spliced into the query.
    query = (
        f"WorkflowType = '{Workflow.RECOVERY_PLAN}' AND WorkflowId = '{recover_id(plan)}' "
        f"AND {SA_REQUEST.name} = '{hashed_key}' AND StartTime > '{since}'"
    )
    async for execution in client.list_workflows(query, limit=1):
        try:
            return await describe_run(client, plan, execution.run_id)
        except NotFound:
            return None
    return None
