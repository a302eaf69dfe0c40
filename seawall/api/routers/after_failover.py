"""``/v1/plans/{plan}/{commit,reprotect}``: after a real failover, make it final, or replicate back.

Both start a workflow and answer 202 (they run for minutes); a repeat while one runs gets the same
run back. Both are refused (409) unless the plan's newest run is a completed real failover.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from seawall.api.auth import Principal
from seawall.api.deps import Ctx, admin, in_scope
from seawall.api.problems import problems
from seawall.api.schemas import ActionStarted, CommitRequest, PlanName, ok_example
from seawall.control import recovery

router = APIRouter(prefix="/v1", tags=["recovery"])

_RUN = "20261126T013000Z-8c1d2e3f"


@router.post(
    "/plans/{plan}/commit",
    status_code=202,
    response_model=ActionStarted,
    summary="Make the plan's real failover final (admin): old schedules go, older points are pruned",
    responses={
        202: ok_example(
            {"plan": "erp-dr", "action": "commit", "workflow_id": "commit/erp-dr", "run_id": "4f1c0b8e-1d2a"}
        ),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def commit(
    ctx: Ctx,
    plan: PlanName,
    request: Request,
    body: Annotated[CommitRequest, Body(openapi_examples={"run": {"value": {"run": _RUN}}})],
    who: Principal = Depends(admin),
) -> ActionStarted:
    in_scope(who, plan)
    await ctx.known_plan(plan)
    async with ctx.audit.audited(request, who, 202, plan=plan, run=body.run) as record:
        tc = await ctx.client()
        intent = ctx.sign(who, record, action="commit", plan=plan, run=body.run)
        handle = await recovery.start_commit(
            tc, ctx.settings.orchestration_queue, plan, body.run, intent, by=who.name
        )
        record["workflow_id"], record["run_id"] = handle.id, handle.result_run_id
    return ActionStarted(plan=plan, action="commit", workflow_id=handle.id, run_id=str(handle.result_run_id))


@router.post(
    "/plans/{plan}/reprotect",
    status_code=202,
    response_model=ActionStarted,
    summary="Replicate the failed-over copies back toward the source site (admin)",
    responses={
        202: ok_example(
            {"plan": "erp-dr", "action": "reprotect", "workflow_id": "reprotect/erp-dr", "run_id": "9a0e2c4d"}
        ),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def reprotect(
    ctx: Ctx, plan: PlanName, request: Request, who: Principal = Depends(admin)
) -> ActionStarted:
    in_scope(who, plan)
    await ctx.known_plan(plan)
    async with ctx.audit.audited(request, who, 202, plan=plan) as record:
        tc = await ctx.client()
        intent = ctx.sign(who, record, action="reprotect", plan=plan)
        handle = await recovery.start_reprotect(tc, ctx.settings.orchestration_queue, plan, intent)
        record["workflow_id"], record["run_id"] = handle.id, handle.result_run_id
    return ActionStarted(
        plan=plan, action="reprotect", workflow_id=handle.id, run_id=str(handle.result_run_id)
    )
