"""``create_app``: the API's FastAPI application, put together from its routers.

Stateless on purpose: every answer comes from Temporal (runs, schedules, cycle results), the inventory
and plan files, and the reports the workers write. Two API processes behind a balancer see the same
thing, and restarting one loses nothing. ``seawall api serve`` runs it.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from seawall.api.auth import Tokens
from seawall.api.deps import ApiContext, ApiSettings, ClientFactory, known_query_only
from seawall.api.gate import RequestGate
from seawall.api.problems import Problem, install_handlers
from seawall.api.routers import after_failover, failovers, health, plans, reports, runs, sites, vms
from seawall.console import mount_console

DESCRIPTION = (
    "Every /v1 operation needs `Authorization: Bearer <token>`. Roles: viewer (read), "
    "operator (+ test failovers, approve, cleanup, replicate), admin (+ planned and unplanned "
    "failovers, abort, commit, reprotect). A token scoped to plans sees and acts on those plans "
    "(and their VMs) only. "
    "Errors are `application/problem+json`."
)


def create_app(settings: ApiSettings, tokens: Tokens, client_factory: ClientFactory) -> FastAPI:
    """The API over ``client_factory``'s Temporal client (connected once, on first use)."""
    app = FastAPI(
        title="Seawall API",
        version="1",
        summary="Disaster-recovery failovers, approvals and replication on Temporal",
        description=DESCRIPTION,
    )
    app.state.seawall = ApiContext(settings, client_factory)
    # In the order the OpenAPI document lists them: plans and their runs, then replication.
    for module in (plans, failovers, reports, runs, after_failover, vms, sites, health):
        app.include_router(module.router, dependencies=[Depends(known_query_only)])
    install_handlers(app, settings.temporal_address)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    mount_console(app, settings, app.state.seawall.client)
    app.add_middleware(
        RequestGate,
        tokens=tokens,
        max_in_flight=settings.api_max_in_flight,
        retry_after_s=settings.api_retry_after_s,
        body_timeout_s=settings.api_body_timeout_s,
    )
    return app
