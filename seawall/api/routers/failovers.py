"""``/v1/plans/{plan}/failovers``: start a failover (idempotently), and a run's status and progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request, Response
from fastapi import Path as PathParam

from seawall.api import idempotency
from seawall.api.auth import Principal, Role
from seawall.api.deps import WORKER_WAIT, Ctx, in_scope, operator, viewer
from seawall.api.problems import ApiProblem, problems
from seawall.api.schemas import (
    RUN_EXAMPLE,
    STATE_EXAMPLE,
    FailoverRequest,
    FailoverStarted,
    PlanName,
    Progress,
    RunState,
    ok_example,
)
from seawall.contract.intents import failover_options
from seawall.contract.messages import FailoverInput
from seawall.contract.names import recover_id
from seawall.contract.search import SA_MODE, SA_RUN
from seawall.control import recovery
from seawall.control.errors import AlreadyRunning
from seawall.control.runs import describe_run, memo_of, run_progress

router = APIRouter(prefix="/v1", tags=["recovery"])

_START_EXAMPLES = {
    "drill": {"summary": "A test failover", "value": {"mode": "test", "ttl_hours": 2}},
    "planned": {"summary": "A planned migration", "value": {"mode": "planned"}},
    "unplanned": {
        "summary": "Disaster: recover to a point before the corruption",
        "value": {"mode": "unplanned", "point_time": "2026-11-26T01:00:00Z"},
    },
    "mirror": {
        "summary": "The replica stores' region is lost or untrusted: recover from their mirrors",
        "value": {"mode": "unplanned", "from_mirror": True},
    },
}


@router.post(
    "/plans/{plan}/failovers",
    status_code=202,
    response_model=FailoverStarted,
    summary="Start a failover of a plan (test: operator; planned/unplanned: admin)",
    description="One failover per plan at a time. With an `Idempotency-Key`, a retry of the same "
    "request within 24 hours returns the run the first one started (header `Idempotent-Replayed: "
    "true`), even after it ended; another start while a run is going gets 409.",
    responses={
        202: ok_example(
            RUN_EXAMPLE, "The run started (or, for a repeated Idempotency-Key, the run it started)"
        ),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def start_failover(
    ctx: Ctx,
    plan: PlanName,
    request: Request,
    response: Response,
    body: Annotated[FailoverRequest, Body(openapi_examples=_START_EXAMPLES)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Repeat it on a retry to get the same run back instead of a 409.",
            examples=["incident-4711-failover"],
        ),
    ] = None,
    who: Principal = Depends(operator),
) -> FailoverStarted:
    if body.mode != "test" and not who.may(Role.admin):
        raise ApiProblem(
            403,
            "forbidden",
            "Forbidden",
            f"role {who.role.name} may start test failovers only; a {body.mode} failover needs admin",
        )
    in_scope(who, plan)
    await ctx.known_plan(plan)
    async with ctx.audit.audited(request, who, 202, plan=plan, mode=body.mode) as record:
        tc = await ctx.client()
        fingerprint = body.fingerprint()
        hashed = idempotency.key_hash(plan, idempotency_key)
        replay = await idempotency.same_key(tc, plan, who.name, hashed, fingerprint)
        if replay is None:
            point_time = body.point_time.isoformat() if body.point_time else None
            inp = FailoverInput(
                plan=plan,
                mode=body.mode,
                point_time=point_time,
                ttl_s=body.ttl_hours * 3600 if body.ttl_hours is not None else None,
                from_mirror=body.from_mirror,
                intent=ctx.sign(
                    who,
                    record,
                    action="failover",
                    plan=plan,
                    mode=body.mode,
                    direction="failover",
                    options=failover_options(point_time, body.from_mirror),
                ),
            )
            memo = idempotency.start_memo(who.name, fingerprint, hashed)
            try:
                handle = await recovery.start_failover(
                    tc,
                    ctx.settings.orchestration_queue,
                    inp,
                    memo=memo,
                    search_attributes=idempotency.start_attributes(hashed),
                )
                run_id = str(handle.result_run_id)
            except AlreadyRunning:
                # Two retries racing: the one that lost finds the winner's run under its key.
                replay = await idempotency.same_key(tc, plan, who.name, hashed, fingerprint)
                if replay is None:
                    raise
        if replay is not None:
            run_id = replay.run_id
            response.headers["Idempotent-Replayed"] = "true"
            record["idempotent_replay"] = True
        record["workflow_id"] = recover_id(plan)
        record["run_id"] = run_id
    return FailoverStarted(
        plan=plan,
        mode=body.mode,
        workflow_id=recover_id(plan),
        run_id=run_id,
        links=ctx.links(plan, run_id),
    )


async def run_state(ctx: Ctx, plan: str, run_id: str | None) -> RunState:
    tc = await ctx.client()
    desc = await describe_run(tc, plan, run_id)
    answer = await run_progress(tc, desc, WORKER_WAIT)
    progress = Progress.model_validate(answer) if answer is not None else None
    attrs = desc.typed_search_attributes
    memo = await memo_of(desc)
    started_by = memo.get(idempotency.MEMO_BY)
    return RunState(
        plan=plan,
        workflow_id=desc.id,
        run_id=desc.run_id,
        status=desc.status.name if desc.status else "UNKNOWN",
        mode=attrs.get(SA_MODE),
        run=attrs.get(SA_RUN),
        started_by=started_by if isinstance(started_by, str) else None,
        started_at=desc.start_time,
        closed_at=desc.close_time,
        progress=progress,
        links=ctx.links(plan, desc.run_id),
    )


@router.get(
    "/plans/{plan}/failovers/current",
    response_model=RunState,
    summary="The plan's newest run: status and live progress",
    responses={200: ok_example(STATE_EXAMPLE), **problems(401, 403, 404, 422, 503)},
)
async def current_failover(ctx: Ctx, plan: PlanName, who: Principal = Depends(viewer)) -> RunState:
    in_scope(who, plan)
    await ctx.known_plan(plan)
    return await run_state(ctx, plan, None)


@router.get(
    "/plans/{plan}/failovers/{run_id}",
    response_model=RunState,
    summary="One run of the plan, by its Temporal run id",
    responses={200: ok_example(STATE_EXAMPLE), **problems(401, 403, 404, 422, 503)},
)
async def one_failover(
    ctx: Ctx,
    plan: PlanName,
    run_id: Annotated[str, PathParam(max_length=64, examples=[RUN_EXAMPLE["run_id"]])],
    who: Principal = Depends(viewer),
) -> RunState:
    in_scope(who, plan)
    await ctx.known_plan(plan)
    return await run_state(ctx, plan, run_id)
