"""``GET /v1/plans/{plan}/report``: a run's report as the workers wrote it."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from seawall import reports
from seawall.api.auth import Principal
from seawall.api.deps import Ctx, in_scope, viewer
from seawall.api.problems import problems
from seawall.api.schemas import PlanName, ok_example
from seawall.contract.messages import RunReport

router = APIRouter(prefix="/v1", tags=["recovery"])


@router.get(
    "/plans/{plan}/report",
    response_model=RunReport,
    summary="A run's report (default: the newest) as written by the workers",
    responses={
        200: ok_example(
            {
                "plan": "erp-dr",
                "run": "20261126T013000Z-2d4e5a6b",
                "mode": "test",
                "status": "completed",
                "started_at": "2026-11-26T01:30:00+00:00",
                "finished_at": "2026-11-26T01:41:12+00:00",
                "vms": [],
                "failed_vms": {},
                "hooks": [],
                "approvals": [],
                "groups": [],
                "cleanup": None,
                "fencing": [],
            }
        ),
        **problems(401, 403, 404, 422),
    },
)
async def report(
    ctx: Ctx,
    plan: PlanName,
    who: Principal = Depends(viewer),
    run: Annotated[
        str | None,
        Query(
            max_length=64,
            description="a run's name (its report's)",
            examples=["20261126T013000Z-2d4e5a6b"],
        ),
    ] = None,
) -> RunReport:
    in_scope(who, plan)
    await ctx.known_plan(plan)
    # A file read and a parse: in a worker thread, not on the event loop.
    _, found = await asyncio.to_thread(reports.read, ctx.settings.reports_dir, plan, run)
    return found
