"""Scheduled drills against the lab: the plan's drill schedule (every 2 minutes) made a Temporal
Schedule by `seawall plan schedule`, triggered now (not waiting for the cron); the ScheduledDrill
approves the gate (the plan lets it), waits for every VM healthy, cleans up and passes; readiness, the
console's last-passed-drill age and `seawall plan schedule` show it; the people configured hear of each
event once (a webhook endpoint, HMAC-checked, and an SMTP server started here)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import WorkflowHandle

from seawall.contract.drills import DrillResult
from seawall.contract.names import drill_schedule_id
from seawall.lab import LabInfo
from tests.chaos.workers import ROOT
from tests.integration.console_stack import Stack, console_stack, token_of
from tests.integration.test_recovery import PLAN, VMS, dr_vms
from tests.receivers import Mailbox, Webhook, receivers

HOOK_KEY = "drill-schedule-hook-key-0123456789"


@pytest.fixture(scope="module")
async def stack(
    lab: LabInfo, lab_state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with console_stack(lab, lab_state_dir, tmp_path_factory.mktemp("drills")) as found:
        yield found


def cli(stack: Stack, *args: str) -> tuple[int, Any]:
    settings = stack.env.settings
    env = {
        **os.environ,
        "SEAWALL_TEMPORAL_ADDRESS": settings.temporal_address,
        "SEAWALL_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "SEAWALL_INVENTORY": str(settings.inventory),
        "SEAWALL_PLANS_DIR": str(stack.tmp / "plans"),
        "SEAWALL_REPORTS_DIR": str(stack.tmp / "reports"),
        "SEAWALL_ORCHESTRATION_QUEUE": settings.orchestration_queue,
    }
    done = subprocess.run(
        [sys.executable, "-m", "seawall.cli", "plan", "schedule", *args, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def edit_plan(stack: Stack, **changes: Any) -> None:
    path = stack.tmp / "plans" / f"{PLAN}.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def add_notifications(stack: Stack, hook: Webhook, mail: Mailbox) -> None:
    key_file = stack.tmp / "hook.key"
    key_file.write_text(HOOK_KEY + "\n")
    path = stack.env.settings.inventory
    data = yaml.safe_load(path.read_text())
    data["notifications"] = [
        {
            "name": "oncall-hook",
            "kind": "webhook",
            "url": hook.url,
            "secret": f"file:{key_file}",
            "plans": [PLAN],
        },
        {
            "name": "oncall-mail",
            "kind": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": mail.port,
            "sender": "seawall@example.org",
            "to": ["dr-team@example.org"],
        },
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def readiness(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        answer = await http.get(
            "/v1/console/plans", headers={"Authorization": f"Bearer {token_of('oncall')}"}
        )
    assert answer.status_code == 200, answer.text
    return next(p for p in answer.json() if p["plan"] == PLAN)


async def the_drill(stack: Stack) -> WorkflowHandle[Any, DrillResult]:
    query = f'WorkflowType = "ScheduledDrill" AND SeawallPlan = "{PLAN}"'
    for _ in range(120):
        async for wf in stack.env.client.list_workflows(query, limit=1):
            return stack.env.client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=DrillResult)
        await asyncio.sleep(0.5)
    raise AssertionError("the triggered schedule started no ScheduledDrill")


@pytest.mark.timeout(900)
async def test_a_scheduled_drill_fires_passes_cleans_up_and_shows_in_readiness(
    stack: Stack, lab: LabInfo
) -> None:
    before = set(dr_vms(lab))
    async with receivers(HOOK_KEY.encode()) as (hook, mail):
        add_notifications(stack, hook, mail)
        edit_plan(
            stack,
            rpo="2h",
            rto="30m",
            max_drill_age="1d",
            drill_schedule={"cron": "*/2 * * * *", "approve_gates": True, "health_timeout": "15m"},
        )
        await asyncio.sleep(1.5)  # the API re-reads plan files at most every second
        first = await readiness(stack)
        assert not first["ready"] and "never drilled" in first["reasons"]
        assert first["schedule"]["cron"] == "*/2 * * * *" and first["schedule"]["paused"] is None

        code, synced = cli(stack)
        assert code == 0, synced
        row = next(r for r in synced["schedules"] if r["plan"] == PLAN)
        assert row["action"] == "created" and row["cron"] == "*/2 * * * *" and row["approve_gates"]
        assert row["last_passed_drill_age_s"] is None
        nxt = [datetime.fromisoformat(t) for t in row["next_runs"]]
        assert len(nxt) >= 2 and nxt[1] - nxt[0] == timedelta(minutes=2)
        assert (await readiness(stack))["schedule"]["next_at"] is not None

        code, triggered = cli(stack, "--trigger", PLAN)
        assert (
            code == 0
            and next(r for r in triggered["schedules"] if r["plan"] == PLAN)["action"] == "triggered"
        )
        drill = await the_drill(stack)
        # No second drill from the cron while this one is judged (the test does not wait for one).
        await stack.env.client.get_schedule_handle(drill_schedule_id(PLAN)).pause(
            note="test: one drill is enough"
        )
        result = await drill.result()
        assert result.status == "passed", result
        assert f"all {len(VMS)} VMs healthy" in result.detail

        # Cleaned up: no drill copy is left at the DR site.
        assert not [n for n in set(dr_vms(lab)) - before if "-drill-" in n]
        report = json.loads((stack.tmp / "reports" / PLAN / f"{result.run}.json").read_text())
        assert report["status"] == "completed" and len(report["vms"]) == len(VMS)
        assert [(a["gate"], a["by"]) for a in report["approvals"]] == [("web-go-ahead", "schedule")]
        assert report["targets"]["rto_s"] == 1800 and report["targets"]["rpo_s"] == 7200
        html = (stack.tmp / "reports" / PLAN / f"{result.run}.html").read_text()
        assert '<p id="verdict">Result: <span class="pass">PASS</span></p>' in html

        await asyncio.sleep(1.5)
        after = await readiness(stack)
        assert after["ready"], after["reasons"]
        assert after["last_passed_drill"]["run"] == result.run and after["last_passed_drill"]["age_s"] < 300
        assert after["schedule"]["paused"] is True
        # Paused in the file too, or bringing the schedule in line would resume the cron.
        edit_plan(stack, drill_schedule={"cron": "*/2 * * * *", "approve_gates": True, "paused": True})
        code, shown = cli(stack)
        row = next(r for r in shown["schedules"] if r["plan"] == PLAN)
        assert code == 0 and row["action"] == "updated" and row["last_passed_drill_age_s"] < 300

        # Each event of the drill reached each receiver exactly once (a retry would repeat its key).
        run_events = ["run-started", "gate-waiting", "run-completed"]
        hook_events = sorted(e["event"] for e in hook.events.values())
        assert hook_events == sorted([*run_events, "drill-passed"]), hook_events
        assert hook.bad_signatures == 0 and len(hook.raw) == len(hook.events)
        mail_events = sorted(str(m["Subject"]) for m in mail.events.values())
        assert len(mail.events) == 4 and len(mail.raw) == 4, mail_events
        assert any("scheduled drill of erp-dr passed" in s for s in mail_events)
        assert HOOK_KEY not in "\n".join(b.decode() for _, b in hook.raw)

    # The plan without its schedule: `seawall plan schedule` deletes it.
    edit_plan(stack, drill_schedule=None)
    code, gone = cli(stack)
    assert code == 0 and next(r for r in gone["schedules"] if r["plan"] == PLAN)["action"] == "deleted"
