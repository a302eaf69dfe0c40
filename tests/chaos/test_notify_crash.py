"""Notifications survive a worker SIGKILLed mid-plan: a drill of the ERP plan whose worker is frozen
right after delivering the gate-waiting notification to the webhook (before it remembered so: the
third delivery of the run, after run-started's two) and killed while the run waits at the gate (no
other step in flight: a killed hook is not retried, by design); a new worker
takes over and the retry delivers again under the same event key. The webhook endpoint and the SMTP
server started here each end with exactly one message per event (run started, gate waiting, run
completed), every webhook body HMAC-signed, no secret in any body."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import WorkflowHandle

from seawall.contract.messages import ApproveInput, RunReport
from seawall.lab import LabInfo
from tests.chaos import test_recovery_crash as crash_tests
from tests.chaos.test_recovery_crash import GATE, PORT_OFFSET, Crash, Erp, end_run
from tests.integration.test_recovery import PLAN, stand_ins, start_drill, wait_progress
from tests.receivers import Mailbox, Webhook, receivers

# The crash tests' module fixture: the ERP VMs protected once, the plan written.
erp = crash_tests.erp
HOOK_KEY = "notify-crash-hook-key-0123456789"
EVENTS = ["gate-waiting", "run-completed", "run-started"]


def configure(stack: Erp, tmp: Path, hook: Webhook, mail: Mailbox) -> None:
    key_file = tmp / "hook.key"
    key_file.write_text(HOOK_KEY)
    path = stack.env.settings.inventory
    data = yaml.safe_load(path.read_text())
    data["notifications"] = [
        {"name": "a-hook", "kind": "webhook", "url": hook.url, "secret": f"file:{key_file}"},
        {
            "name": "b-mail",
            "kind": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": mail.port,
            "sender": "seawall@example.org",
            "to": ["dr@example.org"],
        },
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def test_each_event_reaches_each_receiver_once_across_a_sigkilled_worker(
    erp: Erp,
    lab: LabInfo,
    tmp_path: Path,
) -> None:
    handle: WorkflowHandle[Any, RunReport] | None = None
    inventory = erp.env.settings.inventory
    original = inventory.read_text()
    async with receivers(HOOK_KEY.encode()) as (hook, mail):
        configure(erp, tmp_path, hook, mail)
        # Frozen after the third delivery: gate-waiting to the webhook (first by name).
        crash = Crash(erp, tmp_path, "notify.delivered=3")
        try:
            with stand_ins(PORT_OFFSET):
                handle = await start_drill(erp.env, ttl_s=3600)
                frozen = await crash.frozen("notify.delivered=3")
                await crash.kill_and_replace(handle)
                await wait_progress(handle, lambda p: p["pending_gate"] == GATE, timeout=300)
                await handle.execute_update("approve", ApproveInput(gate=GATE, by="chaos"))
                await wait_progress(
                    handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=300
                )
                await handle.execute_update("cleanup")
                report = await asyncio.wait_for(handle.result(), timeout=300)
                # The run-completed notification is sent before the run ends; its delivery is awaited.
        finally:
            if handle is not None:
                await end_run(handle)
            crash.stop()
            inventory.write_text(original)

    assert frozen["event"] == "gate-waiting" and frozen["target"] == "a-hook", frozen
    assert any(a.endswith("notify") for a in crash.failed_attempts), crash.failed_attempts
    assert report.status == "completed"
    # The killed attempt had delivered gate-waiting to the webhook: the retry delivered it again, and
    # the receiver recognised the repeat by its key.
    waiting = [h for h, _ in hook.raw if "gate-waiting" in h.get("x-seawall-event", "")]
    assert len(waiting) == 2, [h.get("x-seawall-event") for h, _ in hook.raw]
    assert sorted(e["event"] for e in hook.events.values()) == EVENTS
    assert all(e["run"] == report.run and e["plan"] == PLAN for e in hook.events.values())
    assert hook.bad_signatures == 0
    subjects = sorted(str(m["Subject"]) for m in mail.events.values())
    assert len(mail.events) == 3, subjects
    assert len(mail.raw) == 3  # the frozen attempt never reached the mail target
    everything = "\n".join(b.decode() for _, b in hook.raw) + "\n".join(m.as_string() for m in mail.raw)
    assert HOOK_KEY not in everything
