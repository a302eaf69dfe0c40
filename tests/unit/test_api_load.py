"""The API under load: bounded concurrency (503 + Retry-After, /healthz exempt), a body read timeout,
the plan catalogue checked off the event loop at most every api_plans_check_s, audit lines in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from starlette.types import Message, Receive, Scope, Send

from seawall.api import catalogue as api_catalogue
from seawall.api.app import create_app
from seawall.api.audit import AuditLog
from seawall.api.auth import hash_token, parse_tokens
from seawall.api.gate import RequestGate
from tests.unit.test_api_endpoints import make_settings

TOKEN = "tok-load-viewer"
TOKENS = parse_tokens(
    yaml.safe_dump({"tokens": [{"name": "v", "sha256": hash_token(TOKEN), "role": "viewer", "plans": "*"}]})
)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Held:
    """An ASGI app whose /v1/slow answers only when released; everything else answers at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        if scope["path"] == "/v1/slow":
            self.entered += 1
            await self.release.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=10)


async def test_past_the_limit_a_request_gets_503_with_retry_after_and_healthz_still_answers() -> None:
    inner = Held()
    gate = RequestGate(inner, TOKENS, max_in_flight=2, retry_after_s=3)
    async with client(gate) as http:
        held = [asyncio.create_task(http.get("/v1/slow", headers=AUTH)) for _ in range(2)]
        while inner.entered < 2:
            await asyncio.sleep(0.01)
        assert gate.in_flight == 2

        refused = await http.get("/v1/plans", headers=AUTH)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "3"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:seawall:problem:overloaded"
        # Even a stranger is turned away before any token check: overload costs nothing to refuse.
        assert (await http.get("/v1/plans")).status_code == 503
        # Liveness is never refused: a balancer must not take a busy API for a dead one.
        health = await http.get("/healthz")
        assert health.status_code == 200

        inner.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    assert gate.in_flight == 0
    async with client(gate) as http:
        assert (await http.get("/v1/plans", headers=AUTH)).status_code == 200


async def test_a_refused_or_failed_request_gives_its_slot_back() -> None:
    gate = RequestGate(Held(), TOKENS, max_in_flight=1)
    async with client(gate) as http:
        for _ in range(3):
            assert (await http.get("/v1/plans")).status_code == 401  # unauthenticated: answered, slot freed
            big = await http.post("/v1/x", headers={**AUTH, "Content-Length": str(10**9)}, content=b"x")
            assert big.status_code == 413
        assert (await http.get("/v1/plans", headers=AUTH)).status_code == 200
    assert gate.in_flight == 0


async def test_the_limit_comes_from_the_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(
        update={"api_max_in_flight": 7, "api_retry_after_s": 4, "api_body_timeout_s": 0.5}
    )

    async def no_temporal() -> Any:
        raise RuntimeError("no Temporal here")

    app = create_app(settings, TOKENS, no_temporal)
    (gate,) = [m for m in app.user_middleware if m.cls is RequestGate]
    assert gate.kwargs["max_in_flight"] == 7
    assert gate.kwargs["retry_after_s"] == 4
    assert gate.kwargs["body_timeout_s"] == 0.5


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_frees_its_slot() -> None:
    inner = Held()
    gate = RequestGate(inner, TOKENS, max_in_flight=1, body_timeout_s=0.2)
    sent: list[Message] = []
    first = True

    async def trickle() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/plans/erp-dr/approve",
        "headers": [
            (b"authorization", AUTH["Authorization"].encode()),
            (b"content-type", b"application/json"),
        ],
        "query_string": b"",
        "client": ("127.0.0.1", 5555),
    }
    await asyncio.wait_for(gate(scope, trickle, send), 5)
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["type"] == "urn:seawall:problem:body-timeout"
    assert inner.bodies == []  # the route never saw a partial body
    assert gate.in_flight == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="h11", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_slowloris_body_over_a_real_socket_is_cut_off_and_others_are_served() -> None:
    inner = Held()
    gate = RequestGate(inner, TOKENS, max_in_flight=1, body_timeout_s=0.3)
    async with served(gate) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/plans/erp-dr/approve HTTP/1.1\r\nHost: api\r\n"
            + f"Authorization: {AUTH['Authorization']}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        # While the slow body holds the one slot, others are refused, and /healthz answers.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            await asyncio.sleep(0.05)
            assert (await http.get("/v1/plans", headers=AUTH)).status_code == 503
            assert (await http.get("/healthz")).status_code == 200
            answer = await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"body-timeout" in answer
            writer.close()
            assert (await http.get("/v1/plans", headers=AUTH)).status_code == 200
    assert inner.bodies == [b"", b""]  # /healthz and the last GET: never the partial body


async def test_plan_files_are_checked_off_the_loop_and_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path).model_copy(update={"api_plans_check_s": 3600.0})
    threads: list[int] = []
    real = api_catalogue.load_catalogue

    def recording(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(api_catalogue, "load_catalogue", recording)

    async def no_temporal() -> Any:
        raise RuntimeError("no Temporal here")

    app = create_app(settings, TOKENS, no_temporal)
    async with client(app) as http:
        first = await asyncio.gather(*(http.get("/v1/plans", headers=AUTH) for _ in range(10)))
        assert {r.status_code for r in first} == {200}
        assert [p["name"] for p in first[0].json()] == ["erp-dr", "web-dr"]
        # Ten concurrent requests, one check of the files; not on the event loop's thread.
        assert len(threads) == 1
        assert threading.get_ident() not in threads

        erp = settings.plans_dir / "erp-dr.yaml"
        (settings.plans_dir / "new-dr.yaml").write_text(
            erp.read_text().replace("name: erp-dr", "name: new-dr")
        )
        assert [p["name"] for p in (await http.get("/v1/plans", headers=AUTH)).json()] == ["erp-dr", "web-dr"]
        assert len(threads) == 1  # within the interval: no stat at all

        app.state.seawall.catalogue._due = 0.0  # the interval has passed
        names = [p["name"] for p in (await http.get("/v1/plans", headers=AUTH)).json()]
        assert names == ["erp-dr", "new-dr", "web-dr"]
        assert len(threads) == 2


async def test_with_no_interval_every_request_sees_a_changed_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(update={"api_plans_check_s": 0.0})

    async def no_temporal() -> Any:
        raise RuntimeError("no Temporal here")

    app = create_app(settings, TOKENS, no_temporal)
    async with client(app) as http:
        before = (await http.get("/v1/plans", headers=AUTH)).json()
        web = settings.plans_dir / "web-dr.yaml"
        text = web.read_text().replace("description: ", "description: changed ", 1)
        stat = web.stat()
        web.write_text(text)
        os.utime(web, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        after = (await http.get("/v1/plans", headers=AUTH)).json()

    def web(plans: list[dict[str, Any]]) -> str:
        return str(next(p["description"] for p in plans if p["name"] == "web-dr"))

    assert not web(before).startswith("changed ")
    assert web(after).startswith("changed ")


async def test_audit_lines_are_written_off_the_loop_in_order_and_synced(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.log")
    threads: set[int] = set()
    real = log.write

    def write(record: dict[str, Any]) -> None:
        threads.add(threading.get_ident())
        real(record)

    log.write = write  # type: ignore[method-assign]
    await asyncio.gather(*(log.append({"n": i}) for i in range(50)))
    lines = [json.loads(line)["n"] for line in log.path.read_text().splitlines()]
    assert lines == list(range(50))
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_every_api_limit_is_documented_with_its_default() -> None:
    from seawall.api.deps import ApiSettings

    guide = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    for name, info in ApiSettings.model_fields.items():
        if name.startswith("api_"):
            assert f"| `SEAWALL_{name.upper()}` | {info.default:g} |" in guide, name
