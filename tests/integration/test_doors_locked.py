"""Attack 1 of issue #14, replayed against the lab: someone at the Temporal frontend (a client without
Seawall's keys, as the UI is) tries to start a real failover and approve it under a made-up name.

The orchestration worker is the real one (``workers.main.build_workers``, real activities) with payload
keys, ``SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION`` and intent keys. The doors are real too: the HTTP API
(uvicorn on loopback) with an operator's and an admin's token, and the ``seawall`` CLI as a process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from seawall.api.app import create_app
from seawall.api.auth import parse_tokens
from seawall.api.deps import ApiSettings
from seawall.contract.intents import AUTHORISE_GATE
from seawall.contract.messages import ApproveInput, FailoverInput, RunReport
from seawall.contract.names import Query, Update, Workflow, recover_id
from seawall.lab import LabInfo
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect
from tests.integration.test_api import bearer, serve, token_text
from workers.main import build_workers

ROOT = Path(__file__).resolve().parents[2]
PLAN = "erp-dr"


@dataclass
class Locked:
    settings: Settings
    keyed: Client  # holds the payload key, not the intent key (e.g. a script beside the codec server)
    plain: Client  # no key at all: what the Temporal UI or a bare SDK script sends
    env: dict[str, str]  # for CLI processes: the lab plus the keys

    async def start(self, inp: Any, client: Client | None = None) -> WorkflowHandle[Any, RunReport]:
        return await (client or self.keyed).start_workflow(
            Workflow.RECOVERY_PLAN,
            inp,
            id=recover_id(PLAN),
            task_queue=self.settings.orchestration_queue,
            result_type=RunReport,
        )


@asynccontextmanager
async def locked_worker(lab: LabInfo, tmp: Path) -> AsyncIterator[Locked]:
    (tmp / "payload.key").write_text(os.urandom(32).hex())
    (tmp / "intent.key").write_text(os.urandom(32).hex())
    env = {
        **os.environ,
        **lab.env(),
        "PYTHONPATH": str(ROOT),
        "SEAWALL_INVENTORY": str(ROOT / "examples/inventory.yaml"),
        "SEAWALL_PLANS_DIR": str(ROOT / "examples"),
        "SEAWALL_REPORTS_DIR": str(tmp / "reports"),
        "SEAWALL_PAYLOAD_KEYS": f"file:{tmp / 'payload.key'}",
        "SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION": "true",
        "SEAWALL_INTENT_KEYS": f"file:{tmp / 'intent.key'}",
        # Its own queue: no other worker of the lab takes these runs.
        "SEAWALL_ORCHESTRATION_QUEUE": f"seawall-orchestration-doors-{uuid.uuid4().hex[:8]}",
    }
    names = [k for k in env if k.startswith("SEAWALL_")]
    settings = Settings(**{k.removeprefix("SEAWALL_").lower(): env[k] for k in names})
    worker_client = await connect(settings)
    keyed = await connect(settings.model_copy(update={"intent_keys": None}))
    plain = await Client.connect(lab.temporal.address, data_converter=pydantic_data_converter)
    async with AsyncExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(max_workers=settings.max_concurrent_activities))
        for worker in build_workers(worker_client, [], settings, executor):
            await stack.enter_async_context(worker)
        locked = Locked(settings, keyed, plain, env)
        try:
            yield locked
        finally:
            handle = keyed.get_workflow_handle(recover_id(PLAN))
            with suppress(Exception):
                await handle.terminate("test_doors_locked: done")


async def scheduled_activities(
    handle: WorkflowHandle[Any, Any], until: str | None = None, timeout: float = 120
) -> list[str]:
    """The activities the run has scheduled so far; with ``until``, once that one is among them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        names = []
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                names.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        if until is None or until in names or asyncio.get_running_loop().time() > deadline:
            return names
        await asyncio.sleep(0.5)


async def progress(handle: WorkflowHandle[Any, Any], check: Any, timeout: float = 60) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            try:
                answer: dict[str, Any] = await handle.query(Query.PROGRESS)
                if check(answer):
                    return answer
            except Exception:
                pass
            await asyncio.sleep(0.2)


async def refused(handle: WorkflowHandle[Any, Any], arg: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(Update.APPROVE, arg, result_type=dict)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


async def test_a_ui_started_failover_fences_nothing_until_an_admin_approves_through_a_door(
    lab: LabInfo, tmp_path: Path
) -> None:
    async with locked_worker(lab, tmp_path) as locked:
        # 1. The UI's plain JSON input: the worker refuses to run it at all.
        plain_run = await locked.start(FailoverInput(plan=PLAN, mode="planned"), locked.plain)
        with pytest.raises(WorkflowFailureError) as failed:
            await locked.keyed.get_workflow_handle(plain_run.id, run_id=plain_run.result_run_id).result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "PlaintextRefused", repr(cause)
        assert await scheduled_activities(plain_run) == []

        # 2. Encrypted but unsigned (someone with the payload key): it waits for an admin.
        handle = await locked.start(FailoverInput(plan=PLAN, mode="planned"))
        await progress(handle, lambda p: p["pending_gate"] == AUTHORISE_GATE)
        plain_handle = locked.plain.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        made_up = ApproveInput(gate=AUTHORISE_GATE, by="dr-admin")
        assert (await refused(plain_handle, made_up)).type == "PlaintextRefused"
        assert "needs an intent signed" in (await refused(handle, made_up)).message

        api_settings = ApiSettings(
            **locked.settings.model_dump(),
            audit_log=tmp_path / "audit.log",
            temporal_ui_url=lab.temporal.ui_url,
        )

        async def factory() -> Client:
            return locked.keyed

        app = create_app(api_settings, parse_tokens(token_text()), factory)
        approve = f"/v1/plans/{PLAN}/approve"
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
            low = await http.post(approve, json={"gate": AUTHORISE_GATE}, headers=bearer("oncall"))
            assert low.status_code == 403, low.text
            # The API's own role check (before the run is asked) or the run's: either says so.
            assert "needs admin" in low.json()["detail"], low.json()
            answer = await progress(handle, lambda p: True)
            assert answer["approvals"] == [] and answer["pending_gate"] == AUTHORISE_GATE
            # Nothing fenced, nothing made: the intent was checked (and the waiting gate announced).
            done = await scheduled_activities(handle)
            assert done[0] == "check_intent" and set(done) <= {"check_intent", "notify"}, done
            ok = await http.post(approve, json={"gate": AUTHORISE_GATE}, headers=bearer("commander"))
            assert ok.status_code == 200, ok.text
            approval = ok.json()["approval"]
            assert (approval["by"], approval["role"], approval["verified"]) == ("commander", "admin", True)
        # The same run goes on: it loads the plan and pauses schedules before fencing.
        await progress(handle, lambda p: p["phase"] in ("fencing the source VMs",) or p["vms"], timeout=120)
        assert "pause_schedules" in await scheduled_activities(handle, until="pause_schedules")
        audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
        assert [(r["who"], r["role"], r["status"]) for r in audit] == [
            ("oncall", "operator", 403),
            ("commander", "admin", 200),
        ]
        # The refusal was decided before anything was signed; the approval names its signed intent.
        assert "intent_nonce" not in audit[0] and len(audit[1]["intent_nonce"]) == 32
        assert audit[0]["run_id"] == audit[1]["run_id"] == handle.result_run_id


def cli(locked: Locked, *argv: str, keys: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(locked.env)
    if not keys:
        env.pop("SEAWALL_INTENT_KEYS")
    return subprocess.run(
        [sys.executable, "-m", "seawall.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )


async def test_the_cli_signs_and_a_cli_without_the_key_is_refused(lab: LabInfo, tmp_path: Path) -> None:
    async with locked_worker(lab, tmp_path) as locked:
        handle = await locked.start(FailoverInput(plan=PLAN, mode="unplanned"))
        await progress(handle, lambda p: p["pending_gate"] == AUTHORISE_GATE)
        unkeyed = await asyncio.to_thread(cli, locked, "approve", PLAN, "--gate", AUTHORISE_GATE, keys=False)
        assert unkeyed.returncode == 2 and "needs an intent signed" in unkeyed.stderr, unkeyed.stderr
        keyed = await asyncio.to_thread(cli, locked, "approve", PLAN, "--gate", AUTHORISE_GATE)
        assert keyed.returncode == 0, keyed.stderr
        assert '"verified": true' in " ".join(keyed.stdout.split()), keyed.stdout
        answer = await progress(handle, lambda p: p["pending_gate"] != AUTHORISE_GATE)
        assert answer["approvals"][0]["by"].endswith("@cli") and answer["approvals"][0]["role"] == "admin"
        # A start signed by the CLI needs no approval: it goes straight to work.
        await handle.terminate("next")
        started = await asyncio.to_thread(cli, locked, "failover", PLAN, "--mode", "planned", "--json")
        assert started.returncode == 0, started.stderr
        run = locked.keyed.get_workflow_handle(recover_id(PLAN), run_id=json.loads(started.stdout)["run_id"])
        # Loading the plan comes between the intent check and pausing: wait for the pause itself.
        done = await scheduled_activities(run, until="pause_schedules")
        assert done[0] == "check_intent" and "pause_schedules" in done, done
        assert (await progress(run, lambda p: True))["approvals"] == []
