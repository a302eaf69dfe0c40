"""The console's own read-only JSON under /v1/console: what the /v1 resources do not already answer.

Everything here is a read; every change the console makes goes through the ordinary /v1 endpoints, so
one set of role and scope checks (and one audit log) covers both doors. The API's request gate has
already authenticated every /v1 path before these handlers run; ``require`` checks the role.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from seawall.api.auth import Principal, Role
from seawall.api.catalogue import PlanEntry
from seawall.api.deps import ApiSettings, require
from seawall.api.problems import ApiProblem
from seawall.console.fleet import STRIPS_KEEP_S, Kept, Strip, fleet_strips, point_times, threshold_s
from seawall.console.views import (
    DrillPlan,
    ProtectionRow,
    Readiness,
    ReportSummary,
    age_strip,
    protection_row,
    read_reports,
    readiness,
)
from seawall.contract.names import Query, recover_id, recover_vm_id
from seawall.contract.search import SA_RUN
from seawall.control import drills, fleet
from seawall.control.status import VMStatus
from seawall.model import Inventory, RecoveryPlan

ClientGetter = Callable[[], Awaitable[Client]]

# A report page opened on its own (not in the console's sandboxed frame) still runs nothing.
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# What a button does, as the /v1 call it makes and the least role the API asks for it. A button is
# offered only when the route exists in this app and the token's role suffices: the server checks again.
ACTIONS: dict[str, tuple[str, str, Role]] = {
    "drill": ("POST", "/v1/plans/{plan}/failovers", Role.operator),
    "failover": ("POST", "/v1/plans/{plan}/failovers", Role.admin),
    "approve": ("POST", "/v1/plans/{plan}/approve", Role.operator),
    "cleanup": ("POST", "/v1/plans/{plan}/cleanup", Role.operator),
    "abort": ("POST", "/v1/plans/{plan}/abort", Role.admin),
    "commit": ("POST", "/v1/plans/{plan}/commit", Role.admin),
    "reprotect": ("POST", "/v1/plans/{plan}/reprotect", Role.admin),
}


class Session(BaseModel):
    name: str
    role: Literal["viewer", "operator", "admin"]
    plans: str | list[str] = Field(description='"*" or the plans the token is scoped to')
    actions: list[str] = Field(description="the buttons this token may use: " + ", ".join(ACTIONS))
    temporal_ui_url: str


class RunSteps(BaseModel):
    run: str | None = Field(description="the running run's name; None when no run is going")
    steps: dict[str, str] = Field(description="each recovering VM's current step at the target site")


def offered_actions(app: FastAPI, who: Principal) -> list[str]:
    # The app's own OpenAPI document says which operations exist (cached after its first build): robust
    # to how routers are nested, and exactly what the API documents to every other client.
    paths = app.openapi().get("paths", {})
    return [
        name
        for name, (method, path, role) in ACTIONS.items()
        if method.lower() in paths.get(path, {}) and who.may(role)
    ]


def _scope(
    inventory: Inventory, entries: dict[str, PlanEntry], who: Principal
) -> tuple[Inventory, dict[str, list[str]], dict[str, str]]:
    """The inventory, the VMs of each plan the token sees, and the plans' check problems."""
    plans: dict[str, list[str]] = {}
    problems: dict[str, str] = {}
    for entry in entries.values():
        if not who.sees(entry.name):
            continue
        plans[entry.name] = [vm.name for _, vm in entry.plan.vms()] if entry.plan else []
        if entry.plan is None:
            problems[entry.name] = "; ".join(entry.problems)
    return inventory, plans, problems


def _visible_vms(inventory: Inventory, plans: dict[str, list[str]], who: Principal) -> list[str]:
    names = [p.name for p in inventory.protected_vms]
    if who.plans is None:
        return names
    # As /v1/vms: a scoped token sees the VMs of its plans, not the estate.
    mine = {vm for vms in plans.values() for vm in vms}
    return [n for n in names if n in mine]


async def _schedule_of(client: Client, plan: RecoveryPlan | None) -> DrillPlan | None:
    """The plan's drill schedule: its file's cron and, when Temporal has it, its next run."""
    if plan is None or plan.drill_schedule is None:
        return None
    found = await drills.describe(client, plan.name)
    return DrillPlan(
        cron=plan.drill_schedule.cron,
        approve_gates=plan.drill_schedule.approve_gates,
        paused=found.paused if found else None,
        next_at=found.next_runs[0] if found and found.next_runs else None,
    )


# A step query waits on the target site's worker; the run page asks every 2 s, so it must not hang.
STEP_WAIT = timedelta(seconds=5)
_QUERY_ERRORS = (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError)


async def run_steps(client: Client, plan: str) -> RunSteps:
    """The fine step (``choose recovery point``, ``materialize disks``...) of each VM the plan's running
    run is recovering: the run's own progress says only "recovering"; each VM's child workflow knows more."""
    handle = client.get_workflow_handle(recover_id(plan))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return RunSteps(run=None, steps={})
        raise
    run = desc.typed_search_attributes.get(SA_RUN)
    if desc.status != WorkflowExecutionStatus.RUNNING or run is None:
        return RunSteps(run=None, steps={})
    progress: Any = None
    with contextlib.suppress(*_QUERY_ERRORS):
        progress = await handle.query(Query.PROGRESS, rpc_timeout=STEP_WAIT)
    states = progress.get("vms", {}) if isinstance(progress, dict) else {}
    recovering = sorted(vm for vm, state in states.items() if state == "recovering")

    async def step(vm: str) -> str | None:
        child = client.get_workflow_handle(recover_vm_id(plan, run, vm))
        with contextlib.suppress(*_QUERY_ERRORS):
            return str(await child.query(Query.STEP, rpc_timeout=STEP_WAIT))
        return None  # not started yet, or its worker is busy: the coarse state stands

    found = await asyncio.gather(*(step(vm) for vm in recovering))
    return RunSteps(run=run, steps={vm: s for vm, s in zip(recovering, found, strict=True) if s})


def console_router(app: FastAPI, settings: ApiSettings, client: ClientGetter) -> APIRouter:
    """The console's read-only routes.

    Longer than 80 lines on purpose: FastAPI routes are declared where they are registered, and these
    close over the app, its settings and its Temporal client getter; each route itself is short.
    """
    # Out of the public OpenAPI document: these shapes serve this console and may change with it; runbook
    # tools use the documented /v1 resources.
    router = APIRouter(prefix="/v1/console", tags=["console"], include_in_schema=False)
    viewer = require(Role.viewer)

    async def scope(who: Principal) -> tuple[Inventory, dict[str, list[str]], dict[str, str]]:
        # The API's own catalogue view: checked off the loop at most every api_plans_check_s.
        view = await app.state.seawall.catalogue.view()
        return _scope(view.inventory, view.entries, who)

    @router.get("/session", response_model=Session, summary="Who the token is and which buttons it gets")
    async def session(who: Principal = Depends(viewer)) -> Session:
        return Session(
            name=who.name,
            role=who.role.name,  # type: ignore[arg-type]
            plans=who.scope,
            actions=offered_actions(app, who),
            temporal_ui_url=settings.temporal_ui_url,
        )

    # The fleet's status and strips, read at most this often per API process (every page polls them).
    kept_status: Kept[dict[str, VMStatus]] = Kept(settings.api_status_cache_s)
    kept_strips: Kept[dict[str, Strip]] = Kept(STRIPS_KEEP_S)

    async def fleet_status(inventory: Inventory) -> tuple[dict[str, VMStatus], datetime]:
        names = [p.name for p in inventory.protected_vms]

        async def read() -> dict[str, VMStatus]:
            found = await fleet.statuses(await client(), inventory, names)
            return {s.vm: s for s in found}

        # The whole inventory, whichever token asks: one read serves every scope.
        return await kept_status.get(inventory, read)

    async def rows(
        who: Principal,
    ) -> tuple[dict[str, list[str]], dict[str, str], dict[str, ProtectionRow], datetime]:
        inventory, plans, problems = await scope(who)
        names = _visible_vms(inventory, plans, who)
        statuses, as_of = await fleet_status(inventory)
        out: dict[str, ProtectionRow] = {}
        for name in names:
            status = statuses[name]
            member = [p for p, vms in plans.items() if name in vms]
            store = inventory.protected_vm(name).replica_store
            out[name] = protection_row(status, store, member, status.last_cycle_s)
        return plans, problems, out, as_of

    def dated(response: Response, as_of: datetime) -> None:
        # How old the answer is: the page shows it (an answer may come from the last few seconds' read).
        response.headers["X-Seawall-As-Of"] = as_of.isoformat()
        response.headers["Age"] = str(max(0, int((datetime.now(UTC) - as_of).total_seconds())))

    @router.get(
        "/protection",
        response_model=list[ProtectionRow],
        summary="Every protected VM in the token's scope: state, RPO vs newest verified point, last cycle",
    )
    async def protection(response: Response, who: Principal = Depends(viewer)) -> list[ProtectionRow]:
        _, _, found, as_of = await rows(who)
        dated(response, as_of)
        return list(found.values())

    @router.get(
        "/strips",
        response_model=list[Strip],
        summary="Every VM's strip in the token's scope: the worst point age per half hour of 24 hours",
    )
    async def strips(response: Response, who: Principal = Depends(viewer)) -> list[Strip]:
        inventory, plans, _ = await scope(who)
        names = _visible_vms(inventory, plans, who)
        everyone = [p.name for p in inventory.protected_vms]

        async def read() -> dict[str, Strip]:
            return {s.vm: s for s in await fleet_strips(await client(), inventory, everyone)}

        found, as_of = await kept_strips.get(inventory, read)
        dated(response, as_of)
        return [found[n] for n in names]

    @router.get(
        "/vms/{vm}/strip",
        response_model=Strip,
        summary="The worst age of the VM's newest verified point in each half hour of the last 24 hours",
    )
    async def strip(vm: Annotated[str, PathParam(max_length=63)], who: Principal = Depends(viewer)) -> Strip:
        inventory, plans, _ = await scope(who)
        if vm not in _visible_vms(inventory, plans, who):
            # One answer for unknown and out-of-scope: a scoped token learns no other VM's name.
            raise ApiProblem(404, "unknown-vm", "Unknown VM", f"no protected VM named {vm!r} in your scope")
        now = datetime.now(UTC)
        times = await point_times(await client(), vm, now - timedelta(hours=24))
        return Strip(vm=vm, threshold_s=threshold_s(inventory, vm), cells=age_strip(times, now))

    @router.get(
        "/plans",
        response_model=list[Readiness],
        summary="Readiness of every plan in scope: check, verified points, last drill, RTO",
    )
    async def plans_readiness(who: Principal = Depends(viewer)) -> list[Readiness]:
        plans, problems, found, _ = await rows(who)
        reports_dir = Path(settings.reports_dir)
        history = await asyncio.to_thread(lambda: {p: read_reports(reports_dir, p) for p in plans})
        entries = (await app.state.seawall.catalogue.view()).entries
        now = datetime.now(UTC)
        models = {name: entries[name].plan if name in entries else None for name in plans}
        tc = await client()
        schedules = await asyncio.gather(*(_schedule_of(tc, p) for p in models.values()))
        out = []
        for (name, plan), schedule in zip(models.items(), schedules, strict=True):
            rto = plan.rto if plan else None
            max_age = plan.max_drill_age if plan else None
            out.append(
                readiness(
                    name,
                    valid=name not in problems,
                    problems=[problems[name]] if name in problems else [],
                    vms=plans[name],
                    rows=found,
                    reports=history[name],
                    now=now,
                    rto_target_s=rto.total_seconds() if rto else None,
                    max_drill_age_s=max_age.total_seconds() if max_age else None,
                    schedule=schedule,
                )
            )
        return out

    @router.get(
        "/plans/{plan}/steps",
        response_model=RunSteps,
        summary="The current step of each VM the plan's running run is recovering",
    )
    async def steps(
        plan: Annotated[str, PathParam(max_length=63)], who: Principal = Depends(viewer)
    ) -> RunSteps:
        _, plans, _ = await scope(who)
        if plan not in plans:
            raise ApiProblem(
                404, "unknown-plan", "Unknown plan", f"no recovery plan named {plan!r} in your scope"
            )
        return await run_steps(await client(), plan)

    @router.get(
        "/reports", response_model=list[ReportSummary], summary="Every run report in scope, newest first"
    )
    async def reports(who: Principal = Depends(viewer)) -> list[ReportSummary]:
        _, plans, _ = await scope(who)
        reports_dir = Path(settings.reports_dir)
        found = await asyncio.to_thread(lambda: [r for p in plans for r in read_reports(reports_dir, p)])
        return sorted(found, key=lambda r: r.started_at, reverse=True)

    @router.get(
        "/reports/{plan}/{run}",
        summary="A run's self-contained HTML report (fetched with the token; shown in a sandboxed frame)",
        response_class=Response,
        responses={200: {"content": {"text/html": {}}}},
    )
    async def report_html(
        plan: Annotated[str, PathParam(max_length=63)],
        run: Annotated[str, PathParam(max_length=64)],
        who: Principal = Depends(viewer),
    ) -> Response:
        _, plans, _ = await scope(who)
        folder = Path(settings.reports_dir) / plan
        # Names are compared with the files found, never joined into a path from the request: no traversal.
        found = (
            [p for p in folder.glob("*.html") if p.stem == run] if plan in plans and folder.is_dir() else []
        )
        if not found:
            raise ApiProblem(404, "no-report", "No report", f"no report of plan {plan!r} run {run!r}")
        body = await asyncio.to_thread(found[0].read_bytes)
        return Response(
            body,
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": REPORT_CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    return router
