"""The request gate: pure ASGI in front of routing. First how busy the API is: past ``max_in_flight``
requests being answered at once a request gets 503 with Retry-After (``/healthz`` is never turned
away, so a balancer does not take a busy API for a dead one). Then a body's size is checked before it
is read whole, and who is calling: every /v1 request needs a known bearer token before anything else
runs. A body must arrive whole within ``body_timeout_s`` (408 otherwise): a client that trickles its
body (slowloris) cannot hold a slot for longer than that."""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seawall.api.auth import Principal, Tokens
from seawall.api.problems import PRINCIPAL_KEY, problem_response
from seawall.security.redaction import escape_control

log = logging.getLogger("seawall.api")

MAX_BODY = 64 * 1024
MAX_IN_FLIGHT = 64
BODY_TIMEOUT_S = 10.0
# Answered whatever the load: liveness for a balancer.
EXEMPT = frozenset({"/healthz"})


class RequestGate:
    """Pure ASGI, in front of routing: past ``max_in_flight`` requests a 503 (``/healthz`` exempt), a
    body over ``limit`` is refused before it is read whole, a body not read within ``body_timeout_s``
    is a 408, and /v1 needs a known bearer token before anything else runs (a malformed body from a
    stranger gets a 401, not a validation answer)."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Tokens,
        limit: int = MAX_BODY,
        max_in_flight: int = MAX_IN_FLIGHT,
        retry_after_s: int = 1,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app, self.tokens, self.limit = app, tokens, limit
        self.max_in_flight, self.retry_after_s, self.body_timeout_s = (
            max_in_flight,
            retry_after_s,
            body_timeout_s,
        )
        self.in_flight = 0  # requests past the gate and not yet answered (the event loop's only: no lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await problem_response(
                503,
                "overloaded",
                "Overloaded",
                f"the API is answering {self.max_in_flight} requests already; retry shortly",
                headers={"Retry-After": str(self.retry_after_s)},
            )(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._gated(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _gated(self, scope: Scope, receive: Receive, send: Send) -> None:
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
                log.warning(
                    "401 %s %s from %s: %s", scope["method"], escape_control(path), client[0], challenge[1]
                )
                await problem_response(
                    401,
                    "unauthenticated",
                    "Unauthenticated",
                    challenge[1],
                    headers={"WWW-Authenticate": challenge[0]},
                )(scope, receive, send)
                return
            scope[PRINCIPAL_KEY] = principal
        # Read the body here, counting: a chunked body has no Content-Length to check up front.
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS")
        try:
            # Only the reading is timed: answers (413, 408) are sent outside the deadline.
            async with asyncio.timeout(self.body_timeout_s if more else None):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limit:
                        break
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            client = scope.get("client") or ("?", 0)
            log.warning(
                "408 %s %s from %s: body not received in %g s",
                scope["method"],
                escape_control(scope["path"]),
                client[0],
                self.body_timeout_s,
            )
            detail = f"the request body did not arrive within {self.body_timeout_s:g} s"
            await problem_response(
                408, "body-timeout", "Body timeout", detail, headers={"Connection": "close"}
            )(scope, receive, send)
            return
        if size > self.limit:
            await self._too_large(scope, receive, send)
            return
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
