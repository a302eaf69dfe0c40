"""``GET /v1/plans``: the recovery plans in the token's scope, valid or not (with their problems)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from seawall.api.auth import Principal
from seawall.api.catalogue import plan_catalogue
from seawall.api.deps import Ctx, viewer
from seawall.api.problems import problems
from seawall.api.schemas import GroupView, PlanSummary, ok_example

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
async def list_plans(ctx: Ctx, who: Principal = Depends(viewer)) -> list[PlanSummary]:
    _, entries = plan_catalogue(ctx.settings)
    out = []
    for entry in entries.values():
        if not who.sees(entry.name):
            continue
        plan = entry.plan
        gates = {g.before: g.name for g in plan.gates} if plan else {}
        out.append(
            PlanSummary(
                name=entry.name,
                defined_in=entry.defined_in,
                valid=plan is not None,
                problems=entry.problems,
                description=plan.description if plan else None,
                source_site=plan.source_site if plan else None,
                target_site=plan.target_site if plan else None,
                groups=[
                    GroupView(name=g.name, vms=[v.name for v in g.vms], gate=gates.get(g.name))
                    for g in (plan.groups if plan else [])
                ],
            )
        )
    return out
