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
from pydantic import Field
from temporalio.client import Client

from seawall.api.audit import AuditLog
from seawall.api.auth import Principal, Role
from seawall.api.catalogue import ApiCatalogue
from seawall.api.problems import PRINCIPAL_KEY, ApiProblem
from seawall.api.schemas import RunLinks
from seawall.contract.intents import SignedIntent
from seawall.contract.names import recover_id
from seawall.model import Inventory, RecoveryPlan
from seawall.runtime.config import Settings
from seawall.security.intents import keys_from_settings, maybe_issue

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

    # Staying fast under load (docs/OPERATIONS.md, "The HTTP API under load"):
    # requests being answered at once; past it a request gets 503 with Retry-After (/healthz never).
    api_max_in_flight: int = Field(default=64, ge=1)
    api_retry_after_s: int = Field(default=1, ge=0)
    # A request body must arrive whole within this, or 408: a slow client cannot hold a slot.
    api_body_timeout_s: float = Field(default=10.0, gt=0)
    # An idle keep-alive connection is closed after this (uvicorn's timeout_keep_alive).
    api_keep_alive_s: int = Field(default=5, ge=1)
    # Largest request head (line + headers) uvicorn buffers before refusing it.
    api_max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # Plan files and the inventory are checked for changes at most this often (off the event loop).
    api_plans_check_s: float = Field(default=1.0, ge=0)
    # Connecting to Temporal gives up after this (503), instead of holding every request that waits on it.
    api_temporal_connect_s: float = Field(default=10.0, gt=0)
    # The console's fleet status is read at most this often (every open page polls it every 5 s);
    # the page shows how old the answer is. 0: read on every request.
    api_status_cache_s: float = Field(default=3.0, ge=0)


class ApiContext:
    """One app's state: settings, audit log, and the Temporal client every request shares."""

    def __init__(self, settings: ApiSettings, client_factory: ClientFactory) -> None:
        self.settings = settings
        self.audit = AuditLog(settings.audit_log)
        self.catalogue = ApiCatalogue(settings.inventory, settings.plans_dir, settings.api_plans_check_s)
        self._factory = client_factory
        self._lock = asyncio.Lock()
        self._client: Client | None = None
        # The door's signing keys (SEAWALL_INTENT_KEYS): what a token holder may do is signed for the
        # workers, which refuse real actions without it (the Temporal UI cannot sign).
        self.intent_keys = keys_from_settings(settings.intent_keys)

    def sign(self, who: Principal, record: dict[str, object], **claims: object) -> SignedIntent | None:
        """An intent for what ``who`` (authenticated, role checked) asked; noted in the audit record."""
        intent = maybe_issue(
            self.intent_keys, user=who.name, role=who.role.name, ttl_s=self.settings.intent_ttl_s, **claims
        )
        if intent is not None:
            record["intent_nonce"] = intent.claims.nonce
        return intent

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    wait = self.settings.api_temporal_connect_s
                    self._client = await asyncio.wait_for(self._factory(), wait)
                except (RuntimeError, TimeoutError) as exc:  # the SDK's connect error, or no answer
                    address = self.settings.temporal_address
                    log.warning("cannot reach Temporal at %s: %s", address, exc or "timed out")
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

    async def known_plan(self, plan: str) -> RecoveryPlan:
        """The plan called ``plan``: 404 if there is none, 422 if its file is invalid."""
        view = await self.catalogue.view()
        view.inventory  # noqa: B018 -- an invalid inventory is a 500 before any plan is looked at
        entry = view.entries.get(plan)
        if entry is None:
            raise unknown_plan(plan)
        if entry.plan is None:
            raise ApiProblem(
                422, "plan-invalid", "Plan invalid", f"plan {plan!r} is invalid: " + "; ".join(entry.problems)
            )
        return entry.plan

    async def vms_in_scope(self, who: Principal) -> tuple[Inventory, list[str]]:
        view = await self.catalogue.view()
        return view.inventory, view.vms_in_scope(who)

    async def known_vm(self, who: Principal, vm: str) -> Inventory:
        inventory, visible = await self.vms_in_scope(who)
        # Out of scope answers exactly as unknown: a scoped token must not map the estate by probing.
        if vm not in visible:
            raise ApiProblem(404, "unknown-vm", "Unknown VM", f"no protected VM named {vm!r}")
        return inventory


async def api_context(request: Request) -> ApiContext:
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


async def current_principal(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    # The gate has already authenticated every /v1 request; the dependency documents the scheme.
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise ApiProblem(401, "unauthenticated", "Unauthenticated", "a valid bearer token is required")
    return principal


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(who: Principal = Depends(current_principal)) -> Principal:
        if not who.may(role):
            raise ApiProblem(
                403, "forbidden", "Forbidden", f"role {who.role.name} may not do this (needs {role.name})"
            )
        return who

    return check


viewer = require(Role.viewer)
operator = require(Role.operator)
admin = require(Role.admin)


async def known_query_only(request: Request) -> None:
    """(Async, like every dependency here: FastAPI runs a plain ``def`` dependency in a worker thread,
    a thread hop per dependency per request.)

    Refuse query parameters the operation does not declare: a misspelt ``?point_tme=`` must not
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
