"""Recovery-plan actions over a Temporal client: start a failover (or a failback), approve a gate,
abort, clean a drill up, extend its time to live; commit a failover, reprotect, clean up a lost drill.

Written once for every door (the CLI, the API, the demo, the benchmarks): each takes plain arguments,
returns typed results and raises :mod:`seawall.control.errors`, which each door words its own way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.failures import failure_reason
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
    RunReport,
)
from seawall.contract.names import Update, Workflow, cleanup_test_id, commit_id, recover_id, reprotect_id
from seawall.control.errors import AlreadyRunning, Failed, NotRunning, Refused, Stuck

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
        raise Refused(name, failure_reason(exc)) from None
    except RPCError as exc:
        raise rpc_refusal(exc, plan) from None


def rpc_refusal(exc: RPCError, plan: str) -> Exception:
    """What an RPC error on the plan's run means for an operator (every update and ``force_end``)."""
    if exc.status == RPCStatusCode.NOT_FOUND:  # never started, or already ended
        return NotRunning(plan)
    if exc.status == RPCStatusCode.FAILED_PRECONDITION and "workflow task" in exc.message.lower():
        return Stuck(plan, exc.message)
    # Not a refusal (Temporal away, or refusing the call itself): each door answers the RPC error.
    return exc


async def force_end(client: Client, plan: str, by: str, reason: str) -> str:
    """Terminate the plan's running run: for a run that cannot take an abort (``Stuck``). Nothing of
    its own compensation runs: a drill's resources are then removed with ``CleanupTest`` by run."""
    handle = client.get_workflow_handle(recover_id(plan))
    try:
        await handle.terminate(f"ended by {by}: {reason}")
    except RPCError as exc:
        raise rpc_refusal(exc, plan) from None
    return f"run of {plan} terminated by {by}"


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
        raise Failed(failure_reason(exc)) from None


async def commit(client: Client, queue: str, plan: str, run: str) -> CommitOutcome:
    """Make a real failover final: old schedules go, points older than the recovered one are pruned."""
    inp = PlanRunInput(plan=plan, run=run)
    return await _run_to_end(client, queue, Workflow.COMMIT_FAILOVER, inp, commit_id(plan), CommitOutcome)


async def reprotect(client: Client, queue: str, plan: str) -> ReprotectOutcome:
    """Replicate the failed-over copies back into the same replica (only DR-side changes travel)."""
    inp = PlanInput(plan=plan)
    return await _run_to_end(client, queue, Workflow.REPROTECT, inp, reprotect_id(plan), ReprotectOutcome)


async def cleanup_test(client: Client, queue: str, plan: str, run: str) -> CleanupOutcome:
    """Remove what a drill made, by its run name, when its own workflow is gone."""
    inp = PlanRunInput(plan=plan, run=run)
    return await _run_to_end(client, queue, Workflow.CLEANUP_TEST, inp, cleanup_test_id(plan), CleanupOutcome)
