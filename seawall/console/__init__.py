"""The web console: a DR administrator's dashboard served by the API process, with the API's tokens.

``mount_console(app, settings, client)`` adds two things to the API app:

- ``/console``: the packaged page (HTML, CSS, vanilla JS in ``static/``: no CDN, no build step), public
  because it holds no data; it asks for an API token, keeps it in sessionStorage and sends it as a bearer
  header on every call, never in a URL.
- ``/v1/console/...``: read-only JSON the /v1 resources lack (protection rows, the 24-hour point-age
  strip, plan readiness, reports). Every change the console makes goes through the ordinary /v1
  endpoints, so the same roles, scopes and audit log apply.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from seawall.api.deps import ApiSettings
from seawall.console.routes import ClientGetter, console_router

STATIC = Path(__file__).parent / "static"

# Scripts only from this origin (no inline script, so injected markup cannot run); the report frame is
# an about:srcdoc document that inherits this policy, and its self-contained page has inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    "object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class _Assets(StaticFiles):
    """Static files with the console's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount_console(app: FastAPI, settings: ApiSettings, client: ClientGetter) -> None:
    """Serve the console under /console and its read-only data under /v1/console on ``app``."""
    app.include_router(console_router(app, settings, client))

    @app.get("/console", include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})

    @app.get("/console/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/console", status_code=308)

    app.mount("/console/assets", _Assets(directory=STATIC), name="console-assets")


__all__ = ["mount_console"]
