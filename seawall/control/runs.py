"""Runs of a recovery plan as Temporal knows them: the newest (or a given) run, whether it is running,
and its live progress.

A plan has one workflow id (``recover/<plan>``, one failover at a time), so "the plan's run" is the
newest run under that id unless a run id is given.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.names import Query, recover_id
from seawall.control.errors import NoSuchRun, NotFound, NotRunning


async def describe_run(client: Client, plan: str, run_id: str | None = None) -> WorkflowExecutionDescription:
    """The description of ``plan``'s newest run (or of ``run_id``); :class:`NoSuchRun` if there is none."""
    handle = client.get_workflow_handle(recover_id(plan), run_id=run_id)
    try:
        return await handle.describe()
    except RPCError as exc:
        # A run id that is no UUID is INVALID_ARGUMENT to the server: to a caller, no such run.
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise NoSuchRun(plan, run_id) from None
        raise


async def running_run(client: Client, plan: str) -> WorkflowExecutionDescription:
    """The plan's run if it is running; :class:`NotRunning` otherwise (never started counts too)."""
    try:
        desc = await describe_run(client, plan)
    except NotFound:
        raise NotRunning(plan) from None
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise NotRunning(plan)
    return desc


async def run_progress(
    client: Client, desc: WorkflowExecutionDescription, timeout: timedelta | None = None
) -> dict[str, Any] | None:
    """The run's ``progress`` query answer while it runs; None once it has ended, or before a worker
    has taken its first task (there is nothing to ask yet)."""
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return None
    handle = client.get_workflow_handle(desc.id, run_id=desc.run_id)
    with contextlib.suppress(RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        answer = await handle.query(Query.PROGRESS, rpc_timeout=timeout)
        return answer if isinstance(answer, dict) else None
    return None


async def memo_of(desc: WorkflowExecutionDescription) -> dict[str, Any]:
    """The run's memo, or {} for one written in a shape (or with a codec) this process cannot read."""
    try:
        memo = await desc.memo()
    except Exception:  # a memo someone else wrote: none of ours
        return {}
    return memo if isinstance(memo, dict) else {}
