"""Errors as ``application/problem+json`` (RFC 9457): the body, the documented examples, and the
handlers that turn every error the API can meet into one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from seawall.api.auth import Principal
from seawall.control.errors import (
    AlreadyRunning,
    ControlError,
    InvalidState,
    NoReport,
    NoSuchRun,
    NotAuthorised,
    NotFound,
    NotProtected,
    NotRunning,
    Refused,
)

log = logging.getLogger("seawall.api")

PROBLEM_JSON = "application/problem+json"
# Where the request gate leaves the authenticated caller in the ASGI scope.
PRINCIPAL_KEY = "seawall.principal"


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


def control_problem(exc: ControlError) -> ApiProblem:
    """The answer to an operator action's refusal: 404 for what does not exist, 409 for a wrong state."""
    if isinstance(exc, NoSuchRun):
        return ApiProblem(404, "no-run", "No such run", str(exc))
    if isinstance(exc, NoReport):
        return ApiProblem(404, "no-report", "No report", str(exc))
    if isinstance(exc, AlreadyRunning):
        return ApiProblem(409, "already-running", "Already running", str(exc))
    if isinstance(exc, NotRunning):
        return ApiProblem(409, "not-running", "Not running", str(exc))
    if isinstance(exc, NotProtected):
        return ApiProblem(409, "not-protected", "Not protected", str(exc))
    if isinstance(exc, NotAuthorised):
        return ApiProblem(403, "not-authorised", f"{exc.update} not authorised", exc.detail)
    if isinstance(exc, Refused):
        return ApiProblem(409, "refused", f"{exc.update} refused", exc.detail)
    if isinstance(exc, NotFound):
        return ApiProblem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, InvalidState):
        return ApiProblem(409, "conflict", "Conflict", str(exc))
    return ApiProblem(500, "internal", "Internal error", "the API failed; see its log")


def rpc_status(exc: RPCError) -> int:
    """Temporal (or the run's worker) not answering is 503; Temporal refusing the call is 502."""
    return 503 if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED) else 502


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


def install_handlers(app: FastAPI, temporal_address: str) -> None:
    """Every error an operation can end in, answered as a problem (never a bare 500 page)."""

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
        if exc.status == 403:
            who = request.scope.get(PRINCIPAL_KEY)
            name = who.name if isinstance(who, Principal) else "?"
            log.warning("403 %s %s for %s: %s", request.method, request.url.path, name, exc.detail)
        return problem_response(exc.status, exc.slug, exc.title, exc.detail, headers=exc.headers or None)

    @app.exception_handler(ControlError)
    async def _control(request: Request, exc: ControlError) -> JSONResponse:
        return await _problem(request, control_problem(exc))

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
        if rpc_status(exc) == 503:
            detail = f"Temporal at {temporal_address} (or the run's worker) did not answer: {exc.message}"
            return problem_response(503, "temporal-unavailable", "Temporal unavailable", detail)
        log.error("Temporal refused a call: %s (%s)", exc.message, exc.status)
        return problem_response(
            502, "temporal-error", "Temporal error", f"Temporal refused the call: {exc.message}"
        )

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(500, "internal", "Internal error", "the API failed; see its log")
