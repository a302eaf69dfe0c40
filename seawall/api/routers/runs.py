"""``/v1/plans/{plan}/{approve,abort,cleanup,retry,rollback}``: updates to the plan's running failover."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request
from temporalio.client import Client, WorkflowExecutionDescription

from seawall.api.auth import Principal, Role
from seawall.api.deps import WORKER_WAIT, ApiContext, Ctx, admin, in_scope, operator
from seawall.api.problems import ApiProblem, problems
from seawall.api.schemas import (
    RUN_EXAMPLE,
    AbortRequest,
    ApprovalDone,
    ApproveRequest,
    PlanName,
    RetryRequest,
    RollbackRequest,
    UpdateDone,
    ok_example,
)
from seawall.contract.messages import AbortInput, Approval, ApproveInput, RetryInput, RollbackInput
from seawall.contract.names import FENCING_GATE, ROLLBACK_GATE
from seawall.contract.search import SA_MODE
from seawall.control import recovery
from seawall.control.runs import running_run
from seawall.model import RecoveryPlan

router = APIRouter(prefix="/v1", tags=["recovery"])


T = TypeVar("T")


async def _to_running(
    ctx: ApiContext,
    request: Request,
    who: Principal,
    plan: str,
    send: Callable[[Client, str, dict[str, object]], Awaitable[T]],
    **what: Any,
) -> tuple[WorkflowExecutionDescription, T]:
    """Send an update to the plan's running run (409 if none runs), audited with ``what``."""
    in_scope(who, plan)
    await ctx.known_plan(plan)
    async with ctx.audit.audited(request, who, 200, plan=plan, **what) as record:
        tc = await ctx.client()
        desc = await running_run(tc, plan)
        record["run_id"] = desc.run_id
        answer = await send(tc, desc.run_id, record)
    return desc, answer


def gate_role(plan: RecoveryPlan, gate: str, mode: str | None) -> Role:
    """The least role that may approve ``gate`` of ``plan`` in a run of ``mode`` (the workflow checks
    the same with signed intents): the gate's own ``role``, else an operator in a drill and an admin in
    a real failover. Confirming the sources are down (the fencing gate) and a rollback need an admin. A
    name that is no gate of the plan is left to the run, which refuses it (409) as not the gate waiting."""
    if gate in (FENCING_GATE, ROLLBACK_GATE):
        return Role.admin
    for g in plan.gates:
        if g.name == gate and g.role is not None:
            return Role[g.role]
    return Role.operator if mode == "test" else Role.admin


def running_mode(desc: WorkflowExecutionDescription) -> str | None:
    """The mode a running RecoveryPlan was started in (its search attribute)."""
    values = desc.typed_search_attributes.get(SA_MODE)
    return str(values) if values is not None else None


def _done(result: str) -> dict[str, object]:
    return {
        "plan": "erp-dr",
        "workflow_id": "recover/erp-dr",
        "run_id": RUN_EXAMPLE["run_id"],
        "result": result,
    }


@router.post(
    "/plans/{plan}/approve",
    response_model=ApprovalDone,
    summary="Approve the gate the plan's run waits on (operator)",
    responses={
        200: ok_example(
            {
                **_done("approved"),
                "approval": {
                    "gate": "web-go-ahead",
                    "approved": True,
                    "by": "dr-oncall",
                    "at": "2026-11-26T01:35:00+00:00",
                    "comment": "app tier checked",
                },
            }
        ),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def approve(
    ctx: Ctx,
    plan: PlanName,
    request: Request,
    body: Annotated[
        ApproveRequest,
        Body(openapi_examples={"gate": {"value": {"gate": "web-go-ahead", "comment": "app tier checked"}}}),
    ],
    who: Principal = Depends(operator),
) -> ApprovalDone:
    in_scope(who, plan)
    found = await ctx.known_plan(plan)
    running = await running_run(await ctx.client(), plan)
    need = gate_role(found, body.gate, running_mode(running))
    if not who.may(need):
        # A refused approval is audited like one the run refuses: who tried which gate of which run.
        async with ctx.audit.audited(request, who, 403, plan=plan, gate=body.gate) as record:
            record["run_id"] = running.run_id
            raise ApiProblem(
                403,
                "forbidden",
                "Forbidden",
                f"role {who.role.name} may not approve gate {body.gate!r} (needs {need.name})",
            )

    # The approver is the token's holder, signed for this run and gate: the report names them, not
    # what the body claims, and the workflow checks their role against the gate's.
    def send(tc: Client, run_id: str, record: dict[str, object]) -> Awaitable[Approval]:
        intent = ctx.sign(who, record, action="approve", plan=plan, gate=body.gate, run=run_id)
        inp = ApproveInput(gate=body.gate, by=who.name, comment=body.comment, intent=intent)
        return recovery.approve(tc, plan, inp, run_id=run_id, timeout=WORKER_WAIT)

    desc, approval = await _to_running(ctx, request, who, plan, send, gate=body.gate)
    return ApprovalDone(
        plan=plan, workflow_id=desc.id, run_id=desc.run_id, result="approved", approval=approval
    )


@router.post(
    "/plans/{plan}/abort",
    response_model=UpdateDone,
    summary="Abort the plan's running failover (admin): a drill is cleaned up; a real failover stops "
    "where it is (nothing destroyed) and waits for retry, rollback or a second abort that ends it",
    responses={
        200: ok_example(_done("abort requested by dr-admin")),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def abort(
    ctx: Ctx,
    plan: PlanName,
    request: Request,
    body: Annotated[
        AbortRequest, Body(openapi_examples={"abort": {"value": {"reason": "source site is back"}}})
    ],
    who: Principal = Depends(admin),
) -> UpdateDone:
    def send(tc: Client, run_id: str, record: dict[str, object]) -> Awaitable[str]:
        intent = ctx.sign(who, record, action="abort", plan=plan, run=run_id)
        inp = AbortInput(by=who.name, reason=body.reason, intent=intent)
        return recovery.abort(tc, plan, inp, run_id=run_id, timeout=WORKER_WAIT)

    desc, result = await _to_running(ctx, request, who, plan, send, reason=body.reason)
    return UpdateDone(plan=plan, workflow_id=desc.id, run_id=desc.run_id, result=result)


@router.post(
    "/plans/{plan}/cleanup",
    response_model=UpdateDone,
    summary="End a drill now: remove everything it made at the target (operator)",
    responses={
        200: ok_example(_done("cleanup requested")),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def cleanup(
    ctx: Ctx, plan: PlanName, request: Request, who: Principal = Depends(operator)
) -> UpdateDone:
    desc, result = await _to_running(
        ctx,
        request,
        who,
        plan,
        lambda tc, run_id, _record: recovery.cleanup(tc, plan, run_id=run_id, timeout=WORKER_WAIT),
    )
    return UpdateDone(plan=plan, workflow_id=desc.id, run_id=desc.run_id, result=result)


@router.post(
    "/plans/{plan}/retry",
    response_model=UpdateDone,
    summary="Run a stopped run's failed steps again, then the rest of the plan (admin)",
    responses={
        200: ok_example(_done("retry requested by dr-admin: the failed steps run again, then the rest")),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def retry(
    ctx: Ctx,
    plan: PlanName,
    request: Request,
    body: Annotated[RetryRequest, Body(openapi_examples={"retry": {"value": {"comment": "db host fixed"}}})],
    who: Principal = Depends(admin),
) -> UpdateDone:
    inp = RetryInput(by=who.name, comment=body.comment)
    desc, result = await _to_running(
        ctx,
        request,
        who,
        plan,
        lambda tc, run_id, _record: recovery.retry(tc, plan, inp, run_id=run_id, timeout=WORKER_WAIT),
        comment=body.comment,
    )
    return UpdateDone(plan=plan, workflow_id=desc.id, run_id=desc.run_id, result=result)


@router.post(
    "/plans/{plan}/rollback",
    response_model=UpdateDone,
    summary="Ask to roll a stopped real failover back (admin); it waits for approval of gate 'rollback'",
    description="Nothing is destroyed by this request: the answer (and the gate's message) names every "
    "VM the rollback destroys and the sources it starts again; `POST /v1/plans/{plan}/approve` with "
    '`{"gate": "rollback"}` runs it.',
    responses={
        200: ok_example(_done("nothing is destroyed until gate 'rollback' is approved. Roll back run ...")),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def rollback(
    ctx: Ctx,
    plan: PlanName,
    request: Request,
    body: Annotated[
        RollbackRequest, Body(openapi_examples={"rollback": {"value": {"reason": "db cannot be recovered"}}})
    ],
    who: Principal = Depends(admin),
) -> UpdateDone:
    inp = RollbackInput(by=who.name, reason=body.reason)
    desc, result = await _to_running(
        ctx,
        request,
        who,
        plan,
        lambda tc, run_id, _record: recovery.rollback(tc, plan, inp, run_id=run_id, timeout=WORKER_WAIT),
        reason=body.reason,
    )
    return UpdateDone(plan=plan, workflow_id=desc.id, run_id=desc.run_id, result=result)
