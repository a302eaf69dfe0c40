"""What the routers share: the API's settings, its Temporal client (connected once, on first use),
who is calling and what their token may see."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from seawall.api.audit import AuditLog
from seawall.api.auth import Principal, Role
from seawall.api.catalogue import plan_catalogue
from seawall.api.problems import PRINCIPAL_KEY, ApiProblem
from seawall.api.schemas import RunLinks
from seawall.contract.names import recover_id
from seawall.model import Inventory, RecoveryPlan
from seawall.runtime.config import Settings

log = logging.getLogger("seawall.api")

# Temporal calls that wait on a worker (an update, a query) give up after this instead of holding the
# HTTP request open without bound when no worker is polling.
WORKER_WAIT = timedelta(seconds=30)

ClientFactory = Callable[[], Awaitable[Client]]


class ApiSettings(Settings):
    """The API's own settings on top of the shared ones (``SEAWALL_API_*``-free names for brevity)."""

    # Every allowed mutating call is appended here as one JSON line.
    audit_log: Path = Path(".seawall/audit.log")
    # Where the links in answers point a person at a run.
    temporal_ui_url: str = "http://127.0.0.1:8233"


class ApiContext:
    """One app's state: settings, audit log, and the Temporal client every request shares."""

    def __init__(self, settings: ApiSettings, client_factory: ClientFactory) -> None:
        self.settings = settings
        self.audit = AuditLog(settings.audit_log)
        self._factory = client_factory
        self._lock = asyncio.Lock()
        self._client: Client | None = None

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self._factory()
                except RuntimeError as exc:  # the SDK's connect error
                    address = self.settings.temporal_address
                    log.warning("cannot reach Temporal at %s: %s", address, exc)
                    raise ApiProblem(
                        503,
                        "temporal-unavailable",
                        "Temporal unavailable",
                        f"cannot reach Temporal at {address}",
                    ) from None
            return self._client

    def links(self, plan: str, run_id: str) -> RunLinks:
        wid = quote(recover_id(plan), safe="")
        base, namespace = self.settings.temporal_ui_url.rstrip("/"), self.settings.temporal_namespace
        ui = f"{base}/namespaces/{namespace}/workflows"
        return RunLinks(
            self=f"/v1/plans/{plan}/failovers/{run_id}",
            ui=f"{ui}/{wid}/{run_id}/history",
            current=f"/v1/plans/{plan}/failovers/current",
            report=f"/v1/plans/{plan}/report",
        )

    def known_plan(self, plan: str) -> RecoveryPlan:
        """The plan called ``plan``: 404 if there is none, 422 if its file is invalid."""
        _, entries = plan_catalogue(self.settings)
        entry = entries.get(plan)
        if entry is None:
            raise unknown_plan(plan)
        if entry.plan is None:
            raise ApiProblem(
                422, "plan-invalid", "Plan invalid", f"plan {plan!r} is invalid: " + "; ".join(entry.problems)
            )
        return entry.plan

    def vms_in_scope(self, who: Principal) -> tuple[Inventory, list[str]]:
        inventory, entries = plan_catalogue(self.settings)
        names = [p.name for p in inventory.protected_vms]
        if who.plans is None:
            return inventory, names
        # A scoped token sees the VMs of its plans: a department's own servers, not the estate.
        mine = {vm.name for e in entries.values() if e.plan and who.sees(e.name) for _, vm in e.plan.vms()}
        return inventory, [n for n in names if n in mine]

    def known_vm(self, who: Principal, vm: str) -> Inventory:
        inventory, visible = self.vms_in_scope(who)
        # Out of scope answers exactly as unknown: a scoped token must not map the estate by probing.
        if vm not in visible:
            raise ApiProblem(404, "unknown-vm", "Unknown VM", f"no protected VM named {vm!r}")
        return inventory


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.seawall
    return context


Ctx = Annotated[ApiContext, Depends(api_context)]


def unknown_plan(plan: str) -> ApiProblem:
    """The one answer for a plan the caller may not know of, whether it exists or not (no list of
    the plans that do: a scoped token learns nothing of the others)."""
    return ApiProblem(404, "unknown-plan", "Unknown plan", f"no recovery plan named {plan!r}")


def in_scope(who: Principal, plan: str) -> None:
    if not who.sees(plan):
        raise unknown_plan(plan)


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from the API's token file (stored there as its SHA-256).",
)


def current_principal(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    # The gate has already authenticated every /v1 request; the dependency documents the scheme.
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise ApiProblem(401, "unauthenticated", "Unauthenticated", "a valid bearer token is required")
    return principal


def require(role: Role) -> Callable[[Principal], Principal]:
    def check(who: Principal = Depends(current_principal)) -> Principal:
        if not who.may(role):
            raise ApiProblem(
                403, "forbidden", "Forbidden", f"role {who.role.name} may not do this (needs {role.name})"
            )
        return who

    return check


viewer = require(Role.viewer)
operator = require(Role.operator)
admin = require(Role.admin)


def known_query_only(request: Request) -> None:
    """Refuse query parameters the operation does not declare: a misspelt ``?point_tme=`` must not
    silently mean "the newest point" (and the OpenAPI document promises no others)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route.dependant)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        named = ", ".join(repr(name) for name in unknown[:5])
        takes = ", ".join(sorted(allowed)) or "none"
        raise ApiProblem(
            400,
            "unknown-query-parameter",
            "Unknown query parameter",
            f"unknown query parameter {named} (takes: {takes})",
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
