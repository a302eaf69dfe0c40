"""Recovery-plan actions over a Temporal client: start a failover (or a failback), approve a gate,
abort, clean a drill up, extend its time to live, retry a stopped run, ask to roll a stopped real
failover back; commit a failover, reprotect, clean up a lost drill.

Written once for every door (the CLI, the API, the demo, the benchmarks): each takes plain arguments,
returns typed results and raises :mod:`seawall.control.errors`, which each door words its own way.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.messages import (
    AbortInput,
    Approval,
    ApproveInput,
    CleanupOutcome,
    CommitOutcome,
    FailoverInput,
    PlanInput,
    PlanRunInput,
    ReprotectOutcome,
    RetryInput,
    RollbackInput,
    RunReport,
)
from seawall.contract.names import (
    Query,
    Update,
    Workflow,
    cleanup_test_id,
    commit_id,
    recover_id,
    reprotect_id,
)
from seawall.contract.search import SA_MODE
from seawall.control.errors import AlreadyRunning, Failed, NotRunning, Refused

T = TypeVar("T")


async def start_failover(
    client: Client,
    queue: str,
    inp: FailoverInput,
    *,
    conflict: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.FAIL,
    memo: dict[str, Any] | None = None,
    search_attributes: TypedSearchAttributes | None = None,
) -> WorkflowHandle[Any, RunReport]:
    """Start ``RecoveryPlan`` for ``inp.plan`` (a failback too: ``inp.direction``).

    One failover per plan at a time: with ``conflict`` FAIL (the CLI, the API) a second start raises
    :class:`AlreadyRunning`; USE_EXISTING (the demo) attaches to the running one instead.
    """
    try:
        return await client.start_workflow(
            Workflow.RECOVERY_PLAN,
            inp,
            id=recover_id(inp.plan),
            task_queue=queue,
            id_conflict_policy=conflict,
            memo=memo,
            search_attributes=search_attributes,
            result_type=RunReport,
        )
    except WorkflowAlreadyStartedError:
        raise AlreadyRunning(inp.plan) from None


async def _update(
    client: Client,
    plan: str,
    name: str,
    arg: Any,
    result_type: type[T],
    run_id: str | None,
    timeout: timedelta | None,
) -> T:
    """Send update ``name`` to the plan's run (the newest, or ``run_id``).

    ``timeout`` bounds the wait for a worker to answer (the API's requests must not hang); the CLI
    waits as long as it takes.
    """
    handle = client.get_workflow_handle(recover_id(plan), run_id=run_id)
    try:
        if arg is None:
            return await handle.execute_update(name, result_type=result_type, rpc_timeout=timeout)
        return await handle.execute_update(name, arg, result_type=result_type, rpc_timeout=timeout)
    except WorkflowUpdateFailedError as exc:
        raise Refused(name, str(exc.cause or exc)) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # never started, or already ended
            raise NotRunning(plan) from None
        raise


async def approve(
    client: Client,
    plan: str,
    inp: ApproveInput,
    *,
    run_id: str | None = None,
    timeout: timedelta | None = None,
) -> Approval:
    """Approve the gate the plan's run waits on; :class:`Refused` names the gate that is waiting."""
    return await _update(client, plan, Update.APPROVE, inp, Approval, run_id, timeout)


async def abort(
    client: Client, plan: str, inp: AbortInput, *, run_id: str | None = None, timeout: timedelta | None = None
) -> str:
    """Abort the plan's running failover (a drill is cleaned up)."""
    return await _update(client, plan, Update.ABORT, inp, str, run_id, timeout)


async def cleanup(
    client: Client, plan: str, *, run_id: str | None = None, timeout: timedelta | None = None
) -> str:
    """End the plan's running drill now: everything it made at the target is removed."""
    return await _update(client, plan, Update.CLEANUP, None, str, run_id, timeout)


async def extend_ttl(
    client: Client, plan: str, hours: float, *, run_id: str | None = None, timeout: timedelta | None = None
) -> str:
    """Give the plan's running drill ``hours`` more before its own timer cleans it up."""
    return await _update(client, plan, Update.EXTEND_TTL, hours, str, run_id, timeout)


async def retry(
    client: Client, plan: str, inp: RetryInput, *, run_id: str | None = None, timeout: timedelta | None = None
) -> str:
    """A stopped run (a failed step, an abort of a real failover): run its failed steps again, then the
    rest of the plan. :class:`Refused` when the run is not stopped."""
    return await _update(client, plan, Update.RETRY, inp, str, run_id, timeout)


async def rollback(
    client: Client,
    plan: str,
    inp: RollbackInput,
    *,
    run_id: str | None = None,
    timeout: timedelta | None = None,
) -> str:
    """Ask to roll a stopped real failover back. Nothing is destroyed yet: the run then waits at gate
    ``rollback``, whose message names every VM it destroys and the sources it starts again; only
    :func:`approve` of that gate runs it."""
    return await _update(client, plan, Update.ROLLBACK, inp, str, run_id, timeout)


async def _run_to_end(
    client: Client, queue: str, workflow: str, arg: Any, wf_id: str, result_type: type[T]
) -> T:
    """Run ``workflow`` to its end; a second caller while it runs attaches to the same run."""
    try:
        return await client.execute_workflow(
            workflow,
            arg,
            id=wf_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=result_type,
        )
    except WorkflowFailureError as exc:
        raise Failed(str(exc.cause or exc)) from None


async def commit(client: Client, queue: str, plan: str, run: str, *, by: str = "operator") -> CommitOutcome:
    """Make a real failover final: old schedules go, points older than the recovered one are pruned.

    A failover of the plan that still runs is refused (:class:`Refused`) unless it has stopped and
    waits for the operator: committing is then that decision, so its run is ended as it is first.
    """
    await _end_stopped_run(client, plan, by)
    inp = PlanRunInput(plan=plan, run=run)
    return await _run_to_end(client, queue, Workflow.COMMIT_FAILOVER, inp, commit_id(plan), CommitOutcome)


async def _end_stopped_run(client: Client, plan: str, by: str) -> None:
    """Before a commit: a running failover of ``plan`` must be one stopped for the operator; end it."""
    handle = client.get_workflow_handle(recover_id(plan))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return
    if desc.typed_search_attributes.get(SA_MODE) == "test":
        raise Refused(
            "commit", f"the running failover of {plan} is a drill: clean it up, it is not committed"
        )
    progress = await handle.query(Query.PROGRESS)
    if not isinstance(progress, dict) or not progress.get("stopped"):
        phase = progress.get("phase") if isinstance(progress, dict) else "running"
        raise Refused(
            "commit", f"the failover of {plan} is still running ({phase}): let it end, or abort it first"
        )
    await abort(client, plan, AbortInput(by=by, reason="committed as it is"))
    with contextlib.suppress(WorkflowFailureError):  # a stopped run with failed VMs ends failed
        await handle.result()


async def reprotect(client: Client, queue: str, plan: str) -> ReprotectOutcome:
    """Replicate the failed-over copies back into the same replica (only DR-side changes travel)."""
    inp = PlanInput(plan=plan)
    return await _run_to_end(client, queue, Workflow.REPROTECT, inp, reprotect_id(plan), ReprotectOutcome)


async def cleanup_test(client: Client, queue: str, plan: str, run: str) -> CleanupOutcome:
    """Remove what a drill made, by its run name, when its own workflow is gone."""
    inp = PlanRunInput(plan=plan, run=run)
    return await _run_to_end(client, queue, Workflow.CLEANUP_TEST, inp, cleanup_test_id(plan), CleanupOutcome)
