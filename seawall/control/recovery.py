"""Recovery-plan actions over a Temporal client: start a failover (or a failback), approve a gate,
abort, clean a drill up, extend its time to live, retry a stopped run, ask to roll a stopped real
failover back; commit a failover, reprotect, clean up a lost drill.

Written once for every door (the CLI, the API, the demo, the benchmarks): each takes plain arguments,
returns typed results and raises :mod:`seawall.control.errors`, which each door words its own way.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
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
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.failures import failure_reason
from seawall.contract.intents import SignedIntent
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
from seawall.contract.search import SA_MODE, SA_RUN
from seawall.control.errors import (
    AlreadyRunning,
    Failed,
    NotAuthorised,
    NotFailedOver,
    NotRunning,
    Refused,
    Stuck,
)
from seawall.control.runs import describe_run

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
            # What the Temporal UI lists the run as (instead of "RecoveryPlan").
            static_summary=f"{inp.mode} {inp.direction} of {inp.plan}",
            static_details=f"plan {inp.plan}, mode {inp.mode}"
            + (f", point at or before {inp.point_time}" if inp.point_time else "")
            + (f", drill time to live {inp.ttl_s:g}s" if inp.ttl_s else "")
            + (", read from the replica stores' mirrors" if inp.from_mirror else ""),
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
    args = [] if arg is None else [arg]
    # One id for every try: were a try taken after all, the server answers the next with its outcome.
    update_id = f"{name}-{uuid.uuid4()}"
    try:
        return await resend_dropped(
            lambda: handle.execute_update(
                name, *args, id=update_id, result_type=result_type, rpc_timeout=timeout
            )
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "IntentRefused":
            raise NotAuthorised(name, cause.message) from None
        raise Refused(name, failure_reason(exc)) from None
    except RPCError as exc:
        raise rpc_refusal(exc, plan) from None


# A workflow task can fail once for a reason of its own (the run completes in the same task as a new
# event arrives): the server then drops the updates that task carried ("unexpected workflow task
# failure") and the next task runs without them. Sent again, the update is taken; a run whose tasks
# keep failing is refused at once ("in failed state"), which is Stuck.
UPDATE_RETRY_PAUSES_S = (0.2, 0.5, 1.0, 2.0)


def update_dropped(exc: RPCError) -> bool:
    """Whether the server dropped the update with a workflow task that failed once (send it again)."""
    return exc.status == RPCStatusCode.FAILED_PRECONDITION and "unexpected workflow task failure" in (
        exc.message.lower()
    )


async def resend_dropped(send: Callable[[], Awaitable[T]]) -> T:
    """``send()`` an update, again after each pause while the server drops it (``update_dropped``);
    ``send`` reuses one update id, so a try taken after all answers the next with its outcome."""
    for pause in UPDATE_RETRY_PAUSES_S:
        try:
            return await send()
        except RPCError as exc:
            if not update_dropped(exc):
                raise
        await asyncio.sleep(pause)
    return await send()


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


async def _start(
    client: Client, queue: str, workflow: str, arg: Any, wf_id: str, result_type: type[T]
) -> WorkflowHandle[Any, T]:
    """Start ``workflow`` (or, while one runs under ``wf_id``, attach to it: a repeat is harmless)."""
    return await client.start_workflow(
        workflow,
        arg,
        id=wf_id,
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        result_type=result_type,
        static_summary=_summary(workflow, wf_id),
    )


def _summary(workflow: str, wf_id: str) -> str:
    """What the Temporal UI lists the run as: the workflow and the plan it is about."""
    return f"{workflow} of {wf_id.partition('/')[2]}"


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
            static_summary=_summary(workflow, wf_id),
        )
    except WorkflowFailureError as exc:
        raise Failed(failure_reason(exc)) from None


async def failed_over(client: Client, plan: str, run: str | None = None, *, ended_as_is: bool = False) -> str:
    """The name of the plan's newest run if it is a completed real failover (and ``run``, when given);
    :class:`NotFailedOver` otherwise: committing or reprotecting after a drill, a failed run or a
    failback would prune points or reverse replication for nothing that happened."""
    desc = await describe_run(client, plan)
    attrs = desc.typed_search_attributes
    mode, name = attrs.get(SA_MODE), attrs.get(SA_RUN)
    # A stopped real failover that this commit just ended as it is ends FAILED when a VM failed: what
    # did recover is up, and making it final is the operator's decision.
    ok = (
        (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED)
        if ended_as_is
        else (WorkflowExecutionStatus.COMPLETED,)
    )
    if desc.status not in ok:
        state = desc.status.name.lower() if desc.status else "unknown"
        raise NotFailedOver(
            plan, f"its newest run {name or desc.run_id} is {state}, not a completed failover"
        )
    if mode not in ("planned", "unplanned"):
        raise NotFailedOver(plan, f"its newest run {name} was a {mode} run, not a real failover")
    if run is not None and run != name:
        raise NotFailedOver(plan, f"run {run} is not its newest failover ({name})")
    return str(name)


async def start_commit(
    client: Client,
    queue: str,
    plan: str,
    run: str,
    intent: SignedIntent | None = None,
    *,
    by: str = "operator",
) -> WorkflowHandle[Any, CommitOutcome]:
    """Start making a real failover final (``commit``, without waiting for it); only after one. A
    failover stopped for the operator is ended as it is first (:func:`commit`)."""
    ended = await _end_stopped_run(client, plan, by)
    await failed_over(client, plan, run, ended_as_is=ended)
    inp = PlanRunInput(plan=plan, run=run, intent=intent)
    return await _start(client, queue, Workflow.COMMIT_FAILOVER, inp, commit_id(plan), CommitOutcome)


async def start_reprotect(
    client: Client, queue: str, plan: str, intent: SignedIntent | None = None
) -> WorkflowHandle[Any, ReprotectOutcome]:
    """Start replicating the failed-over copies back (``reprotect``, without waiting for it); only
    after a real failover."""
    await failed_over(client, plan)
    inp = PlanInput(plan=plan, intent=intent)
    return await _start(client, queue, Workflow.REPROTECT, inp, reprotect_id(plan), ReprotectOutcome)


async def commit(
    client: Client,
    queue: str,
    plan: str,
    run: str,
    intent: SignedIntent | None = None,
    *,
    by: str = "operator",
) -> CommitOutcome:
    """Make a real failover final: old schedules go, points older than the recovered one are pruned.

    A failover of the plan that still runs is refused (:class:`Refused`) unless it has stopped and
    waits for the operator: committing is then that decision, so its run is ended as it is first.
    """
    await _end_stopped_run(client, plan, by)
    inp = PlanRunInput(plan=plan, run=run, intent=intent)
    return await _run_to_end(client, queue, Workflow.COMMIT_FAILOVER, inp, commit_id(plan), CommitOutcome)


async def _end_stopped_run(client: Client, plan: str, by: str) -> bool:
    """Before a commit: a running failover of ``plan`` must be one stopped for the operator; end it
    (True when it did)."""
    handle = client.get_workflow_handle(recover_id(plan))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return False
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return False
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
    return True


async def reprotect(
    client: Client, queue: str, plan: str, intent: SignedIntent | None = None
) -> ReprotectOutcome:
    """Replicate the failed-over copies back into the same replica (only DR-side changes travel)."""
    inp = PlanInput(plan=plan, intent=intent)
    return await _run_to_end(client, queue, Workflow.REPROTECT, inp, reprotect_id(plan), ReprotectOutcome)


async def cleanup_test(client: Client, queue: str, plan: str, run: str) -> CleanupOutcome:
    """Remove what a drill made, by its run name, when its own workflow is gone."""
    inp = PlanRunInput(plan=plan, run=run)
    return await _run_to_end(client, queue, Workflow.CLEANUP_TEST, inp, cleanup_test_id(plan), CleanupOutcome)
