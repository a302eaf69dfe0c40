"""The HTTP API: failovers, approvals and replication for runbook tools, chat-ops and incident systems.

Stateless on purpose: every answer comes from Temporal (runs, schedules, cycle results), the inventory
and plan files, and the reports the workers write. Two API processes behind a balancer see the same
thing, and restarting one loses nothing. ``create_app`` builds it; ``seawall api serve`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from seawall.api.auth import Principal, Role, Tokens
from seawall.contract.messages import AbortInput, Approval, ApproveInput, FailoverInput, RunReport
from seawall.contract.search import SA_MODE, SA_RUN
from seawall.control.status import VMStatus, cycle_history, schedule_id, vm_status
from seawall.model import Inventory, RecoveryPlan
from seawall.plans import InventoryInvalid, load_catalogue
from seawall.runtime.config import Settings

log = logging.getLogger("seawall.api")

MAX_BODY = 64 * 1024
PROBLEM_JSON = "application/problem+json"
_PRINCIPAL = "seawall.principal"
# Memo keys of an API-started run: the hashed Idempotency-Key (scoped to the token) and the request it
# started, so a retry finds its run and a reused key with another body is refused.
MEMO_KEY = "seawall_idempotency_key"
MEMO_REQUEST = "seawall_request"
MEMO_BY = "seawall_started_by"
# Temporal calls that wait on a worker (an update, a query) give up after this instead of holding the
# HTTP request open without bound when no worker is polling.
WORKER_WAIT = timedelta(seconds=30)
# How long an Idempotency-Key names its run: a retry within a day is the same request; the same key
# reused later (a runbook that hard-codes one) is a new failover, not yesterday's run.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


class ApiSettings(Settings):
    """The API's own settings on top of the shared ones (``SEAWALL_API_*``-free names for brevity)."""

    # Every allowed mutating call is appended here as one JSON line.
    audit_log: Path = Path(".seawall/audit.log")
    # Where the links in answers point a person at a run.
    temporal_ui_url: str = "http://127.0.0.1:8233"


def run_workflow_id(plan: str) -> str:
    """One failover per plan at a time: the same id as `seawall failover` uses."""
    return f"recover/{plan}"


# --- problems (RFC 9457) ------------------------------------------------------------------------------


class Problem(BaseModel):
    """An error, as ``application/problem+json``: what kind (``type``), a summary and the detail."""

    type: str = Field(examples=["urn:seawall:problem:unknown-plan"])
    title: str = Field(examples=["Unknown plan"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no recovery plan named 'payroll' (plans: erp-dr, erp-aws)"])
    errors: list[dict[str, Any]] | None = Field(default=None, description="validation errors, by field")


class ApiProblem(Exception):
    def __init__(
        self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}


def _problem_body(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"urn:seawall:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        _problem_body(status, slug, title, detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


_PROBLEM_DOCS: dict[int, tuple[str, str, str, str]] = {
    400: ("bad-request", "Bad request", "There was an error parsing the body", "The request is malformed."),
    401: ("unauthenticated", "Unauthenticated", "a valid bearer token is required", "No or unknown token."),
    403: (
        "forbidden",
        "Forbidden",
        "role viewer may not start failovers (needs operator)",
        "The token's role or plan scope does not allow this.",
    ),
    404: ("unknown-plan", "Unknown plan", "no recovery plan named 'payroll'", "No such plan, VM or run."),
    409: (
        "conflict",
        "Conflict",
        "a failover of erp-dr is already running",
        "The run is not in a state that allows this.",
    ),
    413: ("body-too-large", "Body too large", "the body is larger than 65536 bytes", "Body over 64 KiB."),
    422: (
        "invalid-body",
        "Invalid request",
        "mode: Input should be 'test', 'planned' or 'unplanned'",
        "Bad input.",
    ),
    503: (
        "temporal-unavailable",
        "Temporal unavailable",
        "cannot reach Temporal at 127.0.0.1:7233",
        "Temporal (or the run's worker) did not answer.",
    ),
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers an operation can give (400, a malformed request, any)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({400, *codes}):
        slug, title, detail, description = _PROBLEM_DOCS[code]
        out[code] = {
            "description": description,
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": _problem_body(code, slug, title, detail),
                }
            },
        }
    return out


# --- the request gate: body size, then who is calling ------------------------------------------------


class RequestGate:
    """Pure ASGI, in front of routing: a body over ``limit`` is refused before it is read whole, and
    /v1 needs a known bearer token before anything else runs (a malformed body from a stranger gets a
    401, not a validation answer)."""

    def __init__(self, app: ASGIApp, tokens: Tokens, limit: int = MAX_BODY) -> None:
        self.app, self.tokens, self.limit = app, tokens, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await problem_response(400, "bad-request", "Bad request", "Content-Length is not a number")(
                    scope, receive, send
                )
                return
            if int(length) > self.limit:
                await self._too_large(scope, receive, send)
                return
        path: str = scope["path"]
        if path == "/v1" or path.startswith("/v1/"):
            principal, challenge = self._authenticate(headers.get("authorization"))
            if principal is None:
                # For intrusion detection: who knocked where, never what token they presented.
                client = scope.get("client") or ("?", 0)
                log.warning("401 %s %s from %s: %s", scope["method"], path, client[0], challenge[1])
                await problem_response(
                    401,
                    "unauthenticated",
                    "Unauthenticated",
                    challenge[1],
                    headers={"WWW-Authenticate": challenge[0]},
                )(scope, receive, send)
                return
            scope[_PRINCIPAL] = principal
        # Read the body here, counting: a chunked body has no Content-Length to check up front.
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the body is larger than {self.limit} bytes"
        await problem_response(
            413, "body-too-large", "Body too large", detail, headers={"Connection": "close"}
        )(scope, receive, send)

    def _authenticate(self, header: str | None) -> tuple[Principal | None, tuple[str, str]]:
        if not header:
            return None, ('Bearer realm="seawall"', "a bearer token is required (Authorization: Bearer ...)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, (
                'Bearer realm="seawall", error="invalid_request"',
                "the Authorization header must be 'Bearer <token>'",
            )
        principal = self.tokens.authenticate(token.strip())
        if principal is None:
            return None, ('Bearer realm="seawall", error="invalid_token"', "the bearer token is not known")
        return principal, ("", "")


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from the API's token file (stored there as its SHA-256).",
)


def current_principal(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    # The gate has already authenticated every /v1 request; the dependency documents the scheme.
    principal = request.scope.get(_PRINCIPAL)
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


# --- audit ----------------------------------------------------------------------------------------------


class AuditLog:
    """One JSON line per allowed mutating call, appended with O_APPEND so lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


# --- plans ----------------------------------------------------------------------------------------------


@dataclass
class PlanEntry:
    name: str
    defined_in: str
    plan: RecoveryPlan | None
    problems: list[str] = field(default_factory=list)


def plan_catalogue(settings: Settings) -> tuple[Inventory, dict[str, PlanEntry]]:
    """Every plan the workers can find, from the same catalogue (``seawall.plans.catalogue``): inline
    in the inventory first, then ``kind: RecoveryPlan`` files in plans_dir, first name wins."""
    try:
        catalogue = load_catalogue(settings.inventory, settings.plans_dir)
    except InventoryInvalid as exc:
        raise ApiProblem(
            500,
            "inventory-invalid",
            "Inventory invalid",
            "the API's inventory is invalid: " + str(exc.errors[0]),
        ) from None
    entries = {
        e.name: PlanEntry(e.name, e.defined_in, e.plan, [str(error) for error in e.errors[:10]])
        for e in catalogue.entries()
    }
    return catalogue.inventory, entries


# --- request and answer bodies --------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailoverRequest(_Body):
    mode: Literal["test", "planned", "unplanned"] = Field(
        description="test: a drill on the isolated network, cleaned up after; planned: stop, final "
        "sync, no data loss; unplanned: the source is gone, newest verified point"
    )
    point_time: datetime | None = Field(
        default=None, description="recover to the newest verified point at or before this time (with zone)"
    )
    ttl_hours: float | None = Field(
        default=None, gt=0, le=14 * 24, description="a drill's time to live (default: the plan's test_ttl)"
    )

    @field_validator("point_time")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("point_time needs a time zone, e.g. 2026-11-26T01:00:00Z")
        return value

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class ApproveRequest(_Body):
    gate: str = Field(min_length=1, max_length=63, description="the gate the run is waiting on")
    comment: str = Field(default="", max_length=2000)


class AbortRequest(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class RunLinks(BaseModel):
    self: str
    ui: str
    current: str
    report: str


class FailoverStarted(BaseModel):
    plan: str
    mode: str
    workflow_id: str
    run_id: str
    links: RunLinks


class Progress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phase: str
    vms: dict[str, str]
    pending_gate: str | None
    approvals: list[Approval]
    aborted: bool


class RunState(BaseModel):
    plan: str
    workflow_id: str
    run_id: str
    status: str = Field(description="RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, TIMED_OUT, ...")
    mode: str | None
    run: str | None = Field(description="the run's name, as its report is named")
    started_by: str | None
    started_at: datetime | None
    closed_at: datetime | None
    progress: Progress | None = Field(description="the live progress while it runs")
    links: RunLinks


class GroupView(BaseModel):
    name: str
    vms: list[str]
    gate: str | None


class PlanSummary(BaseModel):
    name: str
    defined_in: str = Field(description='"inventory" or the plan file\'s name')
    valid: bool
    problems: list[str]
    description: str | None
    source_site: str | None
    target_site: str | None
    groups: list[GroupView]


class UpdateDone(BaseModel):
    plan: str
    workflow_id: str
    run_id: str
    result: str


class ApprovalDone(UpdateDone):
    approval: Approval


class PointView(BaseModel):
    point_id: str | None
    workflow_id: str
    run_id: str
    status: str
    started_at: datetime
    closed_at: datetime | None
    verified: bool | None
    change_path: str | None
    bytes_read: int | None
    bytes_shipped: int | None


class Triggered(BaseModel):
    vm: str
    schedule_id: str


class Health(BaseModel):
    ok: bool


_RUN_EXAMPLE = {
    "plan": "erp-dr",
    "mode": "test",
    "workflow_id": "recover/erp-dr",
    "run_id": "0196f1a2-7c3e-7d2b-9a51-3f0c2d4e5a6b",
    "links": {
        "self": "/v1/plans/erp-dr/failovers/0196f1a2-7c3e-7d2b-9a51-3f0c2d4e5a6b",
        "ui": "http://127.0.0.1:8233/namespaces/default/workflows/recover%2Ferp-dr/"
        "0196f1a2-7c3e-7d2b-9a51-3f0c2d4e5a6b/history",
        "current": "/v1/plans/erp-dr/failovers/current",
        "report": "/v1/plans/erp-dr/report",
    },
}


def _ok(example: Any, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


PlanName = Annotated[str, PathParam(description="a recovery plan's name", examples=["erp-dr"])]
VMName = Annotated[str, PathParam(description="a protected VM's name", examples=["db-01"])]


# --- the app --------------------------------------------------------------------------------------------

ClientFactory = Callable[[], Awaitable[Client]]


def create_app(settings: ApiSettings, tokens: Tokens, client_factory: ClientFactory) -> FastAPI:
    """The API over ``client_factory``'s Temporal client (connected once, on first use)."""
    audit = AuditLog(settings.audit_log)
    client_lock = asyncio.Lock()
    cached: list[Client] = []

    async def client() -> Client:
        async with client_lock:
            if not cached:
                try:
                    cached.append(await client_factory())
                except RuntimeError as exc:  # the SDK's connect error
                    log.warning("cannot reach Temporal at %s: %s", settings.temporal_address, exc)
                    raise ApiProblem(
                        503,
                        "temporal-unavailable",
                        "Temporal unavailable",
                        f"cannot reach Temporal at {settings.temporal_address}",
                    ) from None
            return cached[0]

    def links(plan: str, run_id: str) -> RunLinks:
        wid = quote(run_workflow_id(plan), safe="")
        ui = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows"
        return RunLinks(
            self=f"/v1/plans/{plan}/failovers/{run_id}",
            ui=f"{ui}/{wid}/{run_id}/history",
            current=f"/v1/plans/{plan}/failovers/current",
            report=f"/v1/plans/{plan}/report",
        )

    def in_scope(who: Principal, plan: str) -> None:
        if not who.sees(plan):
            raise ApiProblem(
                403, "out-of-scope", "Forbidden", f"token {who.name!r} is not scoped to plan {plan!r}"
            )

    def known_plan(plan: str) -> RecoveryPlan:
        _, entries = plan_catalogue(settings)
        entry = entries.get(plan)
        if entry is None:
            names = ", ".join(sorted(entries)) or "none"
            raise ApiProblem(
                404, "unknown-plan", "Unknown plan", f"no recovery plan named {plan!r} (plans: {names})"
            )
        if entry.plan is None:
            raise ApiProblem(
                422, "plan-invalid", "Plan invalid", f"plan {plan!r} is invalid: " + "; ".join(entry.problems)
            )
        return entry.plan

    def vms_in_scope(who: Principal) -> tuple[Inventory, list[str]]:
        inventory, entries = plan_catalogue(settings)
        names = [p.name for p in inventory.protected_vms]
        if who.plans is None:
            return inventory, names
        # A scoped token sees the VMs of its plans: a department's own servers, not the estate.
        mine = {vm.name for e in entries.values() if e.plan and who.sees(e.name) for _, vm in e.plan.vms()}
        return inventory, [n for n in names if n in mine]

    def known_vm(who: Principal, vm: str) -> Inventory:
        inventory, visible = vms_in_scope(who)
        if vm not in {p.name for p in inventory.protected_vms}:
            raise ApiProblem(404, "unknown-vm", "Unknown VM", f"no protected VM named {vm!r}")
        if vm not in visible:
            raise ApiProblem(
                403, "out-of-scope", "Forbidden", f"token {who.name!r} is not scoped to a plan with {vm!r}"
            )
        return inventory

    @contextlib.asynccontextmanager
    async def audited(
        request: Request, who: Principal, ok: int, **what: Any
    ) -> AsyncIterator[dict[str, Any]]:
        record: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "who": who.name,
            "role": who.role.name,
            "method": request.method,
            "path": request.url.path,
            "client": request.client.host if request.client else None,
            **what,
        }
        status = 500
        try:
            yield record
            status = ok
        except ApiProblem as exc:
            status = exc.status
            raise
        except RPCError as exc:
            status = (
                503 if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED) else 502
            )
            raise
        finally:
            record["status"] = status
            audit.write(record)

    async def latest(plan: str, run_id: str | None = None) -> Any:
        """The description of ``plan``'s newest run (or of ``run_id``); 404 if there is none."""
        handle = (await client()).get_workflow_handle(run_workflow_id(plan), run_id=run_id)
        try:
            return await handle.describe()
        except RPCError as exc:
            # A run id that is no UUID is INVALID_ARGUMENT to the server: to a caller, no such run.
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                what = (
                    f"no run {run_id} of plan {plan}" if run_id else f"no failover of {plan} has been started"
                )
                raise ApiProblem(404, "no-run", "No such run", what) from None
            raise

    async def running(plan: str) -> Any:
        try:
            desc = await latest(plan)
        except ApiProblem:
            desc = None  # never started: as much "not running" as a finished run
        if desc is None or desc.status != WorkflowExecutionStatus.RUNNING:
            raise ApiProblem(409, "not-running", "Not running", f"no failover of {plan} is running")
        return desc

    async def update(plan: str, desc: Any, name: str, arg: Any, result_type: type) -> Any:
        handle = (await client()).get_workflow_handle(desc.id, run_id=desc.run_id)
        try:
            if arg is None:
                return await handle.execute_update(name, result_type=result_type, rpc_timeout=WORKER_WAIT)
            return await handle.execute_update(name, arg, result_type=result_type, rpc_timeout=WORKER_WAIT)
        except WorkflowUpdateFailedError as exc:
            raise ApiProblem(409, "refused", f"{name} refused", str(exc.cause or exc)) from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ApiProblem(
                    409, "not-running", "Not running", f"no failover of {plan} is running"
                ) from None
            raise

    async def memo_of(desc: Any) -> dict[str, Any]:
        try:
            memo = await desc.memo()
        except Exception:  # a memo this API did not write (another codec, another shape): none of ours
            return {}
        return memo if isinstance(memo, dict) else {}

    async def same_key(plan: str, key_hash: str, fingerprint: str) -> Any:
        """The newest run of ``plan`` if it was started with this key (and this request), else None."""
        try:
            desc = await latest(plan)
        except ApiProblem:
            return None
        if desc.start_time is not None and datetime.now(UTC) - desc.start_time > IDEMPOTENCY_WINDOW:
            return None
        memo = await memo_of(desc)
        if memo.get(MEMO_KEY) != key_hash:
            return None
        if memo.get(MEMO_REQUEST) != fingerprint:
            raise ApiProblem(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key started a failover with a different request body",
            )
        return desc

    router = APIRouter(prefix="/v1")
    viewer = require(Role.viewer)
    operator = require(Role.operator)
    admin = require(Role.admin)

    # ---- plans and failovers --------------------------------------------------------------------------

    @router.get(
        "/plans",
        response_model=list[PlanSummary],
        summary="List the recovery plans (those in the token's scope)",
        responses={
            200: _ok(
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
    async def list_plans(who: Principal = Depends(viewer)) -> list[PlanSummary]:
        _, entries = plan_catalogue(settings)
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

    @router.post(
        "/plans/{plan}/failovers",
        status_code=202,
        response_model=FailoverStarted,
        summary="Start a failover of a plan (test: operator; planned/unplanned: admin)",
        description="One failover per plan at a time. With an `Idempotency-Key`, a retry of the same "
        "request within 24 hours returns the run the first one started (header `Idempotent-Replayed: "
        "true`), even after it ended; another start while a run is going gets 409.",
        responses={
            202: _ok(
                _RUN_EXAMPLE, "The run started (or, for a repeated Idempotency-Key, the run it started)"
            ),
            **problems(401, 403, 404, 409, 413, 422, 503),
        },
    )
    async def start_failover(
        plan: PlanName,
        request: Request,
        response: Response,
        body: Annotated[
            FailoverRequest,
            Body(
                openapi_examples={
                    "drill": {"summary": "A test failover", "value": {"mode": "test", "ttl_hours": 2}},
                    "planned": {"summary": "A planned migration", "value": {"mode": "planned"}},
                    "unplanned": {
                        "summary": "Disaster: recover to a point before the corruption",
                        "value": {"mode": "unplanned", "point_time": "2026-11-26T01:00:00Z"},
                    },
                }
            ),
        ],
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
        known_plan(plan)
        async with audited(request, who, 202, plan=plan, mode=body.mode) as record:
            tc = await client()
            fingerprint = body.fingerprint()
            # Scoped to the token: two callers who happen to pick the same key do not share a run.
            key_hash = (
                hashlib.sha256(f"{who.name}\0{idempotency_key}".encode()).hexdigest()
                if idempotency_key is not None
                else None
            )
            replay = await same_key(plan, key_hash, fingerprint) if key_hash else None
            if replay is None:
                memo = {MEMO_BY: who.name, MEMO_REQUEST: fingerprint}
                if key_hash:
                    memo[MEMO_KEY] = key_hash
                inp = FailoverInput(
                    plan=plan,
                    mode=body.mode,
                    point_time=body.point_time.isoformat() if body.point_time else None,
                    ttl_s=body.ttl_hours * 3600 if body.ttl_hours is not None else None,
                )
                try:
                    handle = await tc.start_workflow(
                        "RecoveryPlan",
                        inp,
                        id=run_workflow_id(plan),
                        task_queue=settings.orchestration_queue,
                        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                        memo=memo,
                        result_type=RunReport,
                    )
                    run_id = str(handle.result_run_id)
                except WorkflowAlreadyStartedError:
                    # Two retries racing: the one that lost finds the winner's run under its key.
                    replay = await same_key(plan, key_hash, fingerprint) if key_hash else None
                    if replay is None:
                        raise ApiProblem(
                            409,
                            "already-running",
                            "Already running",
                            f"a failover of {plan} is already running",
                        ) from None
            if replay is not None:
                run_id = replay.run_id
                response.headers["Idempotent-Replayed"] = "true"
                record["idempotent_replay"] = True
            record["workflow_id"] = run_workflow_id(plan)
            record["run_id"] = run_id
        return FailoverStarted(
            plan=plan,
            mode=body.mode,
            workflow_id=run_workflow_id(plan),
            run_id=run_id,
            links=links(plan, run_id),
        )

    _STATE_EXAMPLE = {
        "plan": "erp-dr",
        "workflow_id": "recover/erp-dr",
        "run_id": _RUN_EXAMPLE["run_id"],
        "status": "RUNNING",
        "mode": "test",
        "run": "20261126T013000Z-2d4e5a6b",
        "started_by": "dr-oncall",
        "started_at": "2026-11-26T01:30:00Z",
        "closed_at": None,
        "progress": {
            "phase": "waiting for approval: web-go-ahead (check the app tier)",
            "vms": {"db-01": "healthy", "app-01": "healthy", "app-02": "healthy"},
            "pending_gate": "web-go-ahead",
            "approvals": [],
            "aborted": False,
        },
        "links": _RUN_EXAMPLE["links"],
    }

    async def run_state(plan: str, run_id: str | None) -> RunState:
        desc = await latest(plan, run_id)
        progress: Progress | None = None
        if desc.status == WorkflowExecutionStatus.RUNNING:
            handle = (await client()).get_workflow_handle(desc.id, run_id=desc.run_id)
            # Before a worker has taken the run's first task there is nothing to ask: no progress yet.
            with contextlib.suppress(RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                progress = Progress.model_validate(await handle.query("progress", rpc_timeout=WORKER_WAIT))
        attrs = desc.typed_search_attributes
        memo = await memo_of(desc)
        return RunState(
            plan=plan,
            workflow_id=desc.id,
            run_id=desc.run_id,
            status=desc.status.name if desc.status else "UNKNOWN",
            mode=attrs.get(SA_MODE),
            run=attrs.get(SA_RUN),
            started_by=memo.get(MEMO_BY) if isinstance(memo.get(MEMO_BY), str) else None,
            started_at=desc.start_time,
            closed_at=desc.close_time,
            progress=progress,
            links=links(plan, desc.run_id),
        )

    @router.get(
        "/plans/{plan}/failovers/current",
        response_model=RunState,
        summary="The plan's newest run: status and live progress",
        responses={200: _ok(_STATE_EXAMPLE), **problems(401, 403, 404, 422, 503)},
    )
    async def current_failover(plan: PlanName, who: Principal = Depends(viewer)) -> RunState:
        in_scope(who, plan)
        known_plan(plan)
        return await run_state(plan, None)

    @router.get(
        "/plans/{plan}/failovers/{run_id}",
        response_model=RunState,
        summary="One run of the plan, by its Temporal run id",
        responses={200: _ok(_STATE_EXAMPLE), **problems(401, 403, 404, 422, 503)},
    )
    async def one_failover(
        plan: PlanName,
        run_id: Annotated[str, PathParam(max_length=64, examples=[_RUN_EXAMPLE["run_id"]])],
        who: Principal = Depends(viewer),
    ) -> RunState:
        in_scope(who, plan)
        known_plan(plan)
        return await run_state(plan, run_id)

    @router.get(
        "/plans/{plan}/report",
        response_model=RunReport,
        summary="A run's report (default: the newest) as written by the workers",
        responses={
            200: _ok(
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
        known_plan(plan)
        folder = Path(settings.reports_dir) / plan
        # Run names are compared with the files found, never joined into a path: no traversal.
        found = sorted(folder.glob("*.json"))
        if run is not None:
            found = [p for p in found if p.stem == run]
        if not found:
            raise ApiProblem(
                404, "no-report", "No report", f"no report of plan {plan}{' run ' + run if run else ''} yet"
            )
        return RunReport.model_validate_json(found[-1].read_text())

    @router.post(
        "/plans/{plan}/approve",
        response_model=ApprovalDone,
        summary="Approve the gate the plan's run waits on (operator)",
        responses={
            200: _ok(
                {
                    "plan": "erp-dr",
                    "workflow_id": "recover/erp-dr",
                    "run_id": _RUN_EXAMPLE["run_id"],
                    "result": "approved",
                    "approval": {
                        "gate": "web-go-ahead",
                        "approved": True,
                        "by": "dr-oncall",
                        "at": "2026-11-26T01:35:00+00:00",
                        "comment": "app tier checked",
                    },
                }
            ),
            **problems(401, 403, 404, 409, 413, 422, 503),
        },
    )
    async def approve(
        plan: PlanName,
        request: Request,
        body: Annotated[
            ApproveRequest,
            Body(
                openapi_examples={"gate": {"value": {"gate": "web-go-ahead", "comment": "app tier checked"}}}
            ),
        ],
        who: Principal = Depends(operator),
    ) -> ApprovalDone:
        in_scope(who, plan)
        known_plan(plan)
        async with audited(request, who, 200, plan=plan, gate=body.gate) as record:
            desc = await running(plan)
            record["run_id"] = desc.run_id
            # The approver is the token's holder: the report names them, not what the body claims.
            approval = await update(
                plan,
                desc,
                "approve",
                ApproveInput(gate=body.gate, by=who.name, comment=body.comment),
                Approval,
            )
        return ApprovalDone(
            plan=plan, workflow_id=desc.id, run_id=desc.run_id, result="approved", approval=approval
        )

    @router.post(
        "/plans/{plan}/abort",
        response_model=UpdateDone,
        summary="Abort the plan's running failover (admin); a drill is cleaned up",
        responses={
            200: _ok(
                {
                    "plan": "erp-dr",
                    "workflow_id": "recover/erp-dr",
                    "run_id": _RUN_EXAMPLE["run_id"],
                    "result": "abort requested by dr-admin",
                }
            ),
            **problems(401, 403, 404, 409, 413, 422, 503),
        },
    )
    async def abort(
        plan: PlanName,
        request: Request,
        body: Annotated[
            AbortRequest, Body(openapi_examples={"abort": {"value": {"reason": "source site is back"}}})
        ],
        who: Principal = Depends(admin),
    ) -> UpdateDone:
        in_scope(who, plan)
        known_plan(plan)
        async with audited(request, who, 200, plan=plan, reason=body.reason) as record:
            desc = await running(plan)
            record["run_id"] = desc.run_id
            result = await update(plan, desc, "abort", AbortInput(by=who.name, reason=body.reason), str)
        return UpdateDone(plan=plan, workflow_id=desc.id, run_id=desc.run_id, result=result)

    @router.post(
        "/plans/{plan}/cleanup",
        response_model=UpdateDone,
        summary="End a drill now: remove everything it made at the target (operator)",
        responses={
            200: _ok(
                {
                    "plan": "erp-dr",
                    "workflow_id": "recover/erp-dr",
                    "run_id": _RUN_EXAMPLE["run_id"],
                    "result": "cleanup requested",
                }
            ),
            **problems(401, 403, 404, 409, 413, 422, 503),
        },
    )
    async def cleanup(plan: PlanName, request: Request, who: Principal = Depends(operator)) -> UpdateDone:
        in_scope(who, plan)
        known_plan(plan)
        async with audited(request, who, 200, plan=plan) as record:
            desc = await running(plan)
            record["run_id"] = desc.run_id
            result = await update(plan, desc, "cleanup", None, str)
        return UpdateDone(plan=plan, workflow_id=desc.id, run_id=desc.run_id, result=result)

    # ---- replication ----------------------------------------------------------------------------------

    @router.get(
        "/vms",
        response_model=list[VMStatus],
        summary="Protected VMs with their RPO status (those of the token's plans)",
        responses={
            200: _ok(
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
    async def list_vms(who: Principal = Depends(viewer)) -> list[VMStatus]:
        inventory, names = vms_in_scope(who)
        tc = await client()
        return list(await asyncio.gather(*(vm_status(tc, inventory, n) for n in names)))

    @router.get(
        "/vms/{vm}/points",
        response_model=list[PointView],
        summary="A VM's recent replication cycles and the recovery points they made (newest first)",
        responses={
            200: _ok(
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
        vm: VMName,
        who: Principal = Depends(viewer),
        limit: Annotated[int, Query(ge=1, le=100, description="how many cycles")] = 20,
    ) -> list[PointView]:
        known_vm(who, vm)
        runs = await cycle_history(await client(), vm, limit=limit)
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
            202: _ok({"vm": "db-01", "schedule_id": "replicate/db-01"}),
            **problems(401, 403, 404, 409, 413, 422, 503),
        },
    )
    async def replicate(vm: VMName, request: Request, who: Principal = Depends(operator)) -> Triggered:
        known_vm(who, vm)
        async with audited(request, who, 202, vm=vm, schedule_id=schedule_id(vm)):
            try:
                # Through the schedule, not a direct start: its overlap policy keeps one cycle at a time.
                await (await client()).get_schedule_handle(schedule_id(vm)).trigger()
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    raise ApiProblem(
                        409, "not-protected", "Not protected", f"{vm} is not protected yet"
                    ) from None
                raise
        return Triggered(vm=vm, schedule_id=schedule_id(vm))

    # ---- the application ------------------------------------------------------------------------------

    app = FastAPI(
        title="Seawall API",
        version="1",
        summary="Disaster-recovery failovers, approvals and replication on Temporal",
        description="Every /v1 operation needs `Authorization: Bearer <token>`. Roles: viewer (read), "
        "operator (+ test failovers, approve, cleanup, replicate), admin (+ planned and unplanned "
        "failovers, abort). A token scoped to plans sees and acts on those plans (and their VMs) only. "
        "Errors are `application/problem+json`.",
    )
    for route in router.routes:
        if isinstance(route, APIRoute):  # grouped in the docs as operators think of them
            route.tags = ["replication"] if route.path.startswith("/v1/vms") else ["recovery"]
    app.include_router(router)

    @app.get("/healthz", response_model=Health, summary="Liveness (no token needed)", tags=["meta"])
    async def healthz() -> Health:
        return Health(ok=True)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
        if exc.status == 403:
            who = request.scope.get(_PRINCIPAL)
            name = who.name if isinstance(who, Principal) else "?"
            log.warning("403 %s %s for %s: %s", request.method, request.url.path, name, exc.detail)
        return problem_response(exc.status, exc.slug, exc.title, exc.detail, headers=exc.headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {400: "bad-request", 404: "not-found", 405: "method-not-allowed"}.get(
            exc.status_code, "http-error"
        )
        title = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}.get(
            exc.status_code, "HTTP error"
        )
        return problem_response(exc.status_code, slug, title, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The offending input is left out: it may be large, and it is the caller's own anyway.
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        # "body.mode" reads as "mode"; a whole-body error ("body") keeps its one word.
        detail = "; ".join(
            f"{'.'.join(e['loc'][1:] or e['loc']) or 'request'}: {e['msg']}" for e in errors[:5]
        )
        return problem_response(422, "invalid-body", "Invalid request", detail, errors=errors)

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            detail = (
                f"Temporal at {settings.temporal_address} (or the run's worker) did not answer: {exc.message}"
            )
            return problem_response(503, "temporal-unavailable", "Temporal unavailable", detail)
        log.error("Temporal refused a call: %s (%s)", exc.message, exc.status)
        return problem_response(
            502, "temporal-error", "Temporal error", f"Temporal refused the call: {exc.message}"
        )

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(500, "internal", "Internal error", "the API failed; see its log")

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
    app.add_middleware(RequestGate, tokens=tokens)
    return app
