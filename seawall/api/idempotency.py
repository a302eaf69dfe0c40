"""Idempotent failover starts: the run an ``Idempotency-Key`` started is found again from its memo.

Nothing is stored by the API itself (it is stateless): the hashed key and the request it came with
travel in the run's memo, so a retry through another API process finds the same run.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecutionDescription

from seawall.api.problems import ApiProblem
from seawall.control.errors import NotFound
from seawall.control.runs import describe_run, memo_of

# Memo keys of an API-started run: the hashed Idempotency-Key (scoped to the token) and the request it
# started, so a retry finds its run and a reused key with another body is refused.
MEMO_KEY = "seawall_idempotency_key"
MEMO_REQUEST = "seawall_request"
MEMO_BY = "seawall_started_by"
# How long an Idempotency-Key names its run: a retry within a day is the same request; the same key
# reused later (a runbook that hard-codes one) is a new failover, not yesterday's run.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


def key_hash(who: str, key: str | None) -> str | None:
    """The key as the memo keeps it: hashed, and scoped to the token, so two callers who happen to
    pick the same key do not share a run."""
    return hashlib.sha256(f"{who}\0{key}".encode()).hexdigest() if key is not None else None


def start_memo(who: str, fingerprint: str, hashed_key: str | None) -> dict[str, str]:
    memo = {MEMO_BY: who, MEMO_REQUEST: fingerprint}
    if hashed_key:
        memo[MEMO_KEY] = hashed_key
    return memo


async def same_key(
    client: Client, plan: str, hashed_key: str | None, fingerprint: str
) -> WorkflowExecutionDescription | None:
    """The newest run of ``plan`` if it was started with this key (and this request), else None."""
    if hashed_key is None:
        return None
    try:
        desc = await describe_run(client, plan)
    except NotFound:
        return None
    if desc.start_time is not None and datetime.now(UTC) - desc.start_time > IDEMPOTENCY_WINDOW:
        return None
    memo = await memo_of(desc)
    if memo.get(MEMO_KEY) != hashed_key:
        return None
    if memo.get(MEMO_REQUEST) != fingerprint:
        raise ApiProblem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key started a failover with a different request body",
        )
    return desc
