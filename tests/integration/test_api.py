"""A test failover of the ERP plan driven only through the HTTP API (uvicorn on loopback), against the lab:
start (idempotent), follow, approve the gate, clean up, read the report; the audit log has every step."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from seawall.api.app import create_app
from seawall.api.auth import hash_token, parse_tokens
from seawall.api.deps import ApiSettings
from seawall.lab import LabInfo
from tests.integration.test_recovery import PLAN, VMS, protected_erp, stand_ins

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"oncall": ("operator", [PLAN]), "board": ("viewer", "*"), "commander": ("admin", "*")}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-of-{name}"}


def token_text() -> str:
    entries = [
        {"name": name, "sha256": hash_token(f"token-of-{name}"), "role": role, "plans": plans}
        for name, (role, plans) in TOKENS.items()
    ]
    return yaml.safe_dump({"tokens": entries})


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """uvicorn in this event loop (the API shares the test's Temporal client) on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def poll(
    http: httpx.AsyncClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 180
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    last: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        response = await http.get(f"/v1/plans/{PLAN}/failovers/current", headers=bearer("board"))
        assert response.status_code == 200, response.text
        last = response.json()
        if predicate(last):
            return last
        assert last["status"] == "RUNNING", f"run ended while waiting: {last}"
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting; last state {last}")


async def test_a_drill_through_the_api(lab: LabInfo, lab_state_dir: Path, tmp_path: Path) -> None:
    async with protected_erp(lab, tmp_path, lab_state_dir) as env:
        settings = ApiSettings(
            **env.settings.model_dump(), audit_log=tmp_path / "audit.log", temporal_ui_url=lab.temporal.ui_url
        )

        async def factory() -> Any:
            return env.client

        app = create_app(settings, parse_tokens(token_text()), factory)
        with stand_ins(env.settings.health_check_port_offset):
            async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
                start = f"/v1/plans/{PLAN}/failovers"
                # Unique per test run: the server remembers a key for a day, across test sessions too.
                key = {"Idempotency-Key": f"drill-{uuid.uuid4()}"}
                first = await http.post(
                    start, json={"mode": "test", "ttl_hours": 1}, headers=bearer("oncall") | key
                )
                assert first.status_code == 202, first.text
                run_id = first.json()["run_id"]
                assert first.json()["links"]["ui"].startswith(lab.temporal.ui_url)
                # A retry of the same request (a runbook tool's timeout) gets the same run back.
                retry = await http.post(
                    start, json={"mode": "test", "ttl_hours": 1}, headers=bearer("oncall") | key
                )
                assert retry.status_code == 202 and retry.json()["run_id"] == run_id
                assert retry.headers["idempotent-replayed"] == "true"
                # Any other start while it runs is refused.
                other = await http.post(
                    start, json={"mode": "test"}, headers=bearer("oncall") | {"Idempotency-Key": "another"}
                )
                assert (
                    other.status_code == 409
                    and other.json()["detail"] == f"a failover of {PLAN} is already running"
                )
                assert (
                    await http.post(start, json={"mode": "planned"}, headers=bearer("commander"))
                ).status_code == 409
                # An operator's token cannot turn a drill into a real failover, nor a viewer's clean up.
                assert (
                    await http.post(start, json={"mode": "unplanned"}, headers=bearer("oncall"))
                ).status_code == 403
                assert (
                    await http.post(f"/v1/plans/{PLAN}/cleanup", headers=bearer("board"))
                ).status_code == 403

                state = await poll(
                    http, lambda s: (s["progress"] or {}).get("pending_gate") == "web-go-ahead"
                )
                assert (
                    state["run_id"] == run_id and state["mode"] == "test" and state["started_by"] == "oncall"
                )
                assert {state["progress"]["vms"][v] for v in ("db-01", "app-01", "app-02")} == {"healthy"}
                wrong = await http.post(
                    f"/v1/plans/{PLAN}/approve", json={"gate": "db"}, headers=bearer("oncall")
                )
                assert wrong.status_code == 409 and "is not the one waiting" in wrong.json()["detail"]
                approved = await http.post(
                    f"/v1/plans/{PLAN}/approve",
                    json={"gate": "web-go-ahead", "comment": "batch ok"},
                    headers=bearer("oncall"),
                )
                assert approved.status_code == 200, approved.text
                assert approved.json()["approval"]["by"] == "oncall"
                state = await poll(
                    http, lambda s: str((s["progress"] or {}).get("phase")).startswith("drill running")
                )
                assert set(state["progress"]["vms"].values()) == {"healthy"}

                # Replication goes on during a drill: every VM has a verified point, and a cycle on demand.
                vms = (await http.get("/v1/vms", headers=bearer("oncall"))).json()
                assert [v["vm"] for v in vms] == VMS and all(v["scheduled"] and v["last_point"] for v in vms)
                points = (await http.get("/v1/vms/db-01/points", headers=bearer("board"))).json()
                assert any(p["verified"] and p["point_id"] == vms[0]["last_point"] for p in points), points
                triggered = await http.post("/v1/vms/web-01/replicate", headers=bearer("oncall"))
                assert triggered.status_code == 202, triggered.text

                cleanup = await http.post(f"/v1/plans/{PLAN}/cleanup", headers=bearer("oncall"))
                assert cleanup.status_code == 200 and cleanup.json()["run_id"] == run_id
                done = await poll(http, lambda s: s["status"] != "RUNNING", timeout=240)
                assert done["status"] == "COMPLETED" and done["closed_at"]

                report = await http.get(f"/v1/plans/{PLAN}/report", headers=bearer("board"))
                assert report.status_code == 200, report.text
                body = report.json()
                assert body["run"] == done["run"] and body["status"] == "completed" and body["mode"] == "test"
                assert [v["vm"] for v in body["vms"]] == VMS
                assert (
                    body["approvals"][0]["by"] == "oncall" and body["approvals"][0]["comment"] == "batch ok"
                )
                assert (
                    body["cleanup"] and len([r for r in body["cleanup"]["removed"] if r["kind"] == "vm"]) == 5
                )
                # Once it has ended, a late retry with the key still names that run, and starts nothing.
                late = await http.post(
                    start, json={"mode": "test", "ttl_hours": 1}, headers=bearer("oncall") | key
                )
                assert late.status_code == 202 and late.json()["run_id"] == run_id
                # Issue #14: another key starts run B; a retry of the first key still replays run A,
                # found through the server's visibility, not as the plan's newest run.
                key_b = {"Idempotency-Key": f"drill-b-{uuid.uuid4()}"}
                run_b = await http.post(start, json={"mode": "test"}, headers=bearer("oncall") | key_b)
                assert run_b.status_code == 202 and run_b.json()["run_id"] != run_id, run_b.text
                aborted = await http.post(
                    f"/v1/plans/{PLAN}/abort",
                    json={"reason": "idempotency check"},
                    headers=bearer("commander"),
                )
                assert aborted.status_code == 200, aborted.text
                await poll(http, lambda s: s["status"] != "RUNNING", timeout=240)
                again = await http.post(
                    start, json={"mode": "test", "ttl_hours": 1}, headers=bearer("oncall") | key
                )
                assert again.status_code == 202 and again.json()["run_id"] == run_id, again.text
                assert again.headers["idempotent-replayed"] == "true"
                run_b_id = run_b.json()["run_id"]

    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    steps = [(a["who"], a["path"].rsplit("/", 1)[-1], a["status"]) for a in audit]
    assert steps == [
        ("oncall", "failovers", 202),
        ("oncall", "failovers", 202),
        ("oncall", "failovers", 409),
        ("commander", "failovers", 409),
        ("oncall", "approve", 409),
        ("oncall", "approve", 200),
        ("oncall", "replicate", 202),
        ("oncall", "cleanup", 200),
        ("oncall", "failovers", 202),
        ("oncall", "failovers", 202),
        ("commander", "abort", 200),
        ("oncall", "failovers", 202),
    ]
    ok = [a for a in audit if a["status"] < 300 and "plan" in a]
    assert all(a["run_id"] == run_id for a in ok[:-3])
    assert [a["run_id"] for a in ok[-3:]] == [run_b_id, run_b_id, run_id]


def test_seawall_api_serve(lab: LabInfo, tmp_path: Path) -> None:
    """The command operators run: token file checked, Temporal reached through Settings, SIGTERM stops it."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(token_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "seawall.cli", "api", "serve", "--port", str(port), "--tokens", str(tokens)]
    cmd += ["--audit-log", str(tmp_path / "audit.log")]
    env = {**os.environ, **lab.env(), "COLUMNS": "200", "SEAWALL_API_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # A hang, not a speed (idle it answers in ~3 s; at load 9 on CI's 2 cores it once took over 30 s).
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the API did not come up in 120 s"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/plans", timeout=10).status_code == 401
        plans = httpx.get(f"{url}/v1/plans", headers=bearer("oncall"), timeout=10)
        assert plans.status_code == 200 and [p["name"] for p in plans.json()] == [PLAN]
        vms = httpx.get(f"{url}/v1/vms", headers=bearer("board"), timeout=30)
        assert vms.status_code == 200 and [v["vm"] for v in vms.json()] == VMS
        spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
        assert "/v1/plans/{plan}/failovers" in spec["paths"]
        # Issue #14: a stranger's path with a newline in it cannot forge a second log line.
        forged = 'x%0aINFO:     127.0.0.1:1 - "POST /v1/plans/erp-dr/failovers HTTP/1.1" 202'
        assert httpx.get(f"{url}/v1/{forged}", timeout=10).status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: a SIGTERM exit.
        assert proc.returncode in (0, -signal.SIGTERM), out
        assert f"Seawall API on http://127.0.0.1:{port} (3 tokens" in out
        assert not (tmp_path / "audit.log").exists(), "reads are not audited"
        knocks = [line for line in out.splitlines() if "GET /v1/x" in line]
        assert len(knocks) == 1 and "\\nINFO:" in knocks[0], out
        assert not any(line.startswith("INFO:") and "202" in line for line in out.splitlines()), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
