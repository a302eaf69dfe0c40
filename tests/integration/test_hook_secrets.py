"""Secret scan after a full drill with hooks that try to leak: a command hook that prints its whole
environment (on a worker whose own environment holds secrets) and is given a secret by reference, and
an HTTP hook with a bearer token and a secret in its URL's query string. Nothing configured as secret
may appear in the report (JSON, HTML), the workflow histories (RecoveryPlan and its children) or the
worker's log lines; the hooks did run, and the env hook's output is in the report, masked."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from seawall.contract.messages import ApproveInput
from seawall.lab import LabInfo
from seawall.security.redaction import RedactingFilter
from tests.integration.test_recovery import PLAN, protected_erp, stand_ins, start_drill, wait_progress

WORKER_SECRET = "worker-env-secret-6f0d1c2b"  # in the worker process's environment only
HOOK_SECRET = "hook-ref-secret-93ab7e10"  # given to the command hook through secret_env
HOOK_TOKEN = "hook-bearer-4d7c21aa90"  # the HTTP hook's credentials
QUERY_SECRET = "query-secret-1e5f88c3"  # in the HTTP hook's URL
SECRETS = (WORKER_SECRET, HOOK_SECRET, HOOK_TOKEN, QUERY_SECRET)


class _Receiver(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:
        _Receiver.seen.append(self.headers.get("Authorization", ""))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


def add_hooks(plans: Path, port: int) -> None:
    path = plans / f"{PLAN}.yaml"
    plan = yaml.safe_load(path.read_text())
    plan["pre_hooks"] = [
        {
            "name": "print-env",
            "kind": "command",
            "command": ["env"],
            "env": {"STAGE": "drill"},
            "secret_env": {"HOOK_API_KEY": "env:SEAWALL_TEST_HOOK_SECRET"},
        },
        {
            "name": "notify",
            "kind": "http",
            "url": f"http://127.0.0.1:{port}/notify?token={QUERY_SECRET}",
            "credentials": "env:SEAWALL_TEST_HOOK_TOKEN",
        },
    ]
    path.write_text(yaml.safe_dump(plan, sort_keys=False))


async def test_a_drill_with_leaky_hooks_leaks_nothing(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setenv("SEAWALL_TEST_WORKER_PASSWORD", WORKER_SECRET)
    monkeypatch.setenv("SEAWALL_TEST_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("SEAWALL_TEST_HOOK_TOKEN", HOOK_TOKEN)
    caplog.set_level(logging.DEBUG)
    # What a worker does at start (workers.main.run_worker): every handler masks secrets and URL query
    # values. DEBUG everywhere: client libraries log each request's URL, Temporal each payload.
    caplog.handler.addFilter(RedactingFilter())
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    histories: list[str] = []
    try:
        async with protected_erp(lab, tmp_path, lab_state_dir) as env:
            add_hooks(tmp_path / "plans", server.server_port)
            with stand_ins(env.settings.health_check_port_offset):
                handle = await start_drill(env, ttl_s=3600)
                await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead")
                await handle.execute_update("approve", ApproveInput(gate="web-go-ahead", by="scan"))
                await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))
                await handle.execute_update("cleanup")
                report = await handle.result()
            runs = [(handle.id, handle.result_run_id)]
            query = f"WorkflowId STARTS_WITH 'recover/{PLAN}/{report.run}/'"
            runs += [(w.id, w.run_id) async for w in env.client.list_workflows(query)]
            for workflow_id, run_id in runs:
                history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
                histories.append(history.to_json())
    finally:
        server.shutdown()
    assert len(histories) == 6  # the plan and its five VMs
    assert _Receiver.seen == [f"Bearer {HOOK_TOKEN}"]  # the HTTP hook ran, with its token
    hooks = {h.name: h for h in report.hooks}
    assert hooks["print-env"].ok and hooks["notify"].ok
    shown = hooks["print-env"].detail
    assert "STAGE=drill" in shown and "HOOK_API_KEY=***" in shown
    assert "SEAWALL_TEST_WORKER_PASSWORD" not in shown and "AWS_SECRET_ACCESS_KEY" not in shown
    assert "token=***" in hooks["notify"].detail
    reports = tmp_path / "reports" / PLAN
    texts = {
        "report.json": (reports / f"{report.run}.json").read_text(),
        "report.html": (reports / f"{report.run}.html").read_text(),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        **{f"history {i}": h for i, h in enumerate(histories)},
    }
    leaks = [(where, s) for where, text in texts.items() for s in SECRETS if s in text]
    assert leaks == []
