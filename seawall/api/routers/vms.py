"""``/v1/vms``: protected VMs with their RPO status, their recovery points, and replicate-now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from seawall.api.auth import Principal
from seawall.api.deps import Ctx, operator, viewer
from seawall.api.problems import problems
from seawall.api.schemas import PointView, Triggered, VMName, ok_example
from seawall.contract.names import schedule_id
from seawall.control import replication
from seawall.control.status import VMStatus, cycle_history

router = APIRouter(prefix="/v1", tags=["replication"])


@router.get(
    "/vms",
    response_model=list[VMStatus],
    summary="Protected VMs with their RPO status (those of the token's plans)",
    responses={
        200: ok_example(
            [
                {
                    "vm": "db-01",
                    "source_site": "primary",
                    "policy": "rpo-30s",
                    "rpo_s": 30.0,
                    "threshold_s": 45.0,
                    "scheduled": True,
                    "paused": False,
                    "last_point": "db-01-20261126T013000Z",
                    "last_point_at": "2026-11-26T01:30:00Z",
                    "age_s": 12.5,
                    "breach": False,
                    "last_bytes_shipped": 1048576,
                    "last_change_path": "cbt",
                    "running": None,
                    "progress": None,
                }
            ]
        ),
        **problems(401, 403, 503),
    },
)
async def list_vms(ctx: Ctx, who: Principal = Depends(viewer)) -> list[VMStatus]:
    inventory, names = await ctx.vms_in_scope(who)
    return await replication.statuses(await ctx.client(), inventory, names)


@router.get(
    "/vms/{vm}/points",
    response_model=list[PointView],
    summary="A VM's recent replication cycles and the recovery points they made (newest first)",
    responses={
        200: ok_example(
            [
                {
                    "point_id": "db-01-20261126T013000Z",
                    "workflow_id": "replicate/db-01-2026-11-26T01:30:00Z",
                    "run_id": "0196f1a2-0000-7000-8000-000000000001",
                    "status": "COMPLETED",
                    "started_at": "2026-11-26T01:30:00Z",
                    "closed_at": "2026-11-26T01:30:04Z",
                    "verified": True,
                    "change_path": "cbt",
                    "bytes_read": 4194304,
                    "bytes_shipped": 1048576,
                }
            ]
        ),
        **problems(401, 403, 404, 422, 503),
    },
)
async def points(
    ctx: Ctx,
    vm: VMName,
    who: Principal = Depends(viewer),
    limit: Annotated[int, Query(ge=1, le=100, description="how many cycles")] = 20,
) -> list[PointView]:
    await ctx.known_vm(who, vm)
    runs = await cycle_history(await ctx.client(), vm, limit=limit)
    return [
        PointView(
            point_id=r.result.point_id if r.result else None,
            workflow_id=r.workflow_id,
            run_id=r.run_id,
            status=r.status,
            started_at=r.started_at,
            closed_at=r.closed_at,
            verified=r.result.verified if r.result else None,
            change_path=r.result.change_path if r.result else None,
            bytes_read=r.result.bytes_read if r.result else None,
            bytes_shipped=r.result.bytes_shipped if r.result else None,
        )
        for r in runs
    ]


@router.post(
    "/vms/{vm}/replicate",
    status_code=202,
    response_model=Triggered,
    summary="Start a replication cycle now, through the VM's schedule (operator)",
    responses={
        202: ok_example({"vm": "db-01", "schedule_id": "replicate/db-01"}),
        **problems(401, 403, 404, 409, 413, 422, 503),
    },
)
async def replicate(ctx: Ctx, vm: VMName, request: Request, who: Principal = Depends(operator)) -> Triggered:
    await ctx.known_vm(who, vm)
    async with ctx.audit.audited(request, who, 202, vm=vm, schedule_id=schedule_id(vm)):
        triggered = await replication.replicate_now(await ctx.client(), vm)
    return Triggered(vm=vm, schedule_id=triggered)
