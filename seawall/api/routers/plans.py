"""``GET /v1/plans``: the recovery plans in the token's scope, valid or not (with their problems)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from seawall.api.auth import Principal
from seawall.api.deps import Ctx, viewer
from seawall.api.problems import problems
from seawall.api.schemas import PlanSummary, ok_example

router = APIRouter(prefix="/v1", tags=["recovery"])


@router.get(
    "/plans",
    response_model=list[PlanSummary],
    summary="List the recovery plans (those in the token's scope)",
    responses={
        200: ok_example(
            [
                {
                    "name": "erp-dr",
                    "defined_in": "erp-dr.yaml",
                    "valid": True,
                    "problems": [],
                    "description": "ERP (web, app, db) from primary to the dr vCenter",
                    "source_site": "primary",
                    "target_site": "dr",
                    "groups": [{"name": "db", "vms": ["db-01"], "gate": None}],
                }
            ]
        ),
        **problems(401, 403),
    },
)
async def list_plans(ctx: Ctx, who: Principal = Depends(viewer)) -> Response:
    # Rendered once per catalogue build and scope (seawall.api.catalogue), not per request.
    view = await ctx.catalogue.view()
    return Response(view.plans_json(who), media_type="application/json")
