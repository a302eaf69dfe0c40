"""Hooks as the target site's worker runs them: a minimal environment, bounded output, and nothing of
a secret in what the run records (the worker's own variables, the hook's secrets, its bearer token,
query-string secrets in its URL)."""

from __future__ import annotations

import http.server
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.hooks import DETAIL_CHARS, HookActivities
from seawall.contract.messages import HookOutcome, HookRequest
from seawall.runtime.config import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKER_SECRET = "worker-only-secret-8c1f0e"  # in the worker's environment, never the hook's
HOOK_SECRET = "hook-secret-5d2a91"  # given to the hook by reference, masked in its output
HTTP_TOKEN = "tok-71be"  # short: only the hook's own redaction knows it
QUERY_SECRET = "q-secret-4242"


@pytest.fixture
def plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SEAWALL_SITE_PASSWORD_FOR_TEST", WORKER_SECRET)
    monkeypatch.setenv("HOOK_SECRET_SOURCE", HOOK_SECRET)
    monkeypatch.setenv("HOOK_TOKEN", HTTP_TOKEN)
    shutil.copy(EXAMPLES / "inventory.yaml", tmp_path / "inventory.yaml")
    yield tmp_path


def write_plan(folder: Path, *hooks: dict[str, Any]) -> None:
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    plan["pre_hooks"] = list(hooks)
    (folder / "erp-dr.yaml").write_text(yaml.safe_dump(plan))


def run(folder: Path, name: str) -> HookOutcome:
    settings = Settings(inventory=folder / "inventory.yaml", plans_dir=folder)
    acts = HookActivities(SimpleNamespace(redact=lambda text: text), settings)  # type: ignore[arg-type]
    result: HookOutcome = ActivityEnvironment().run(
        acts.run_hook, HookRequest(plan="erp-dr", group=None, name=name)
    )
    return result


def test_a_command_hook_sees_path_lang_and_what_it_declares_only(plans: Path) -> None:
    write_plan(
        plans,
        {
            "name": "print-env",
            "kind": "command",
            "command": ["env"],
            "env": {"STAGE": "pre-failover"},
            "secret_env": {"API_SECRET": "env:HOOK_SECRET_SOURCE"},
        },
    )
    outcome = run(plans, "print-env")
    assert outcome.ok
    lines = set(outcome.detail.removeprefix("exit 0: ").split("\n"))
    names = {line.split("=", 1)[0] for line in lines}
    assert names == {"PATH", "LANG", "STAGE", "API_SECRET"}, outcome.detail
    assert "STAGE=pre-failover" in lines and "API_SECRET=***" in lines
    assert WORKER_SECRET not in outcome.detail and HOOK_SECRET not in outcome.detail


def test_command_output_is_truncated_to_its_tail(plans: Path) -> None:
    script = "import sys; [sys.stdout.write('x' * 1023 + '\\n') for _ in range(20000)]; print('THE-END')"
    write_plan(plans, {"name": "chatty", "kind": "command", "command": [sys.executable, "-c", script]})
    outcome = run(plans, "chatty")
    assert outcome.ok and outcome.detail.endswith("THE-END")
    assert len(outcome.detail) < DETAIL_CHARS + 100
    assert "[20480008 bytes of output, the last 2000 characters:]" in outcome.detail


def test_a_hook_past_its_timeout_is_killed_with_its_children(plans: Path) -> None:
    write_plan(
        plans,
        {"name": "hangs", "kind": "command", "command": ["sh", "-c", "sleep 60 & sleep 60"], "timeout": "1s"},
    )
    t0 = time.monotonic()
    with pytest.raises(ApplicationError) as failed:
        run(plans, "hangs")
    assert time.monotonic() - t0 < 10
    assert failed.value.type == "HookFailed" and "TimeoutExpired" in failed.value.message


class _Refusing(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:
        _Refusing.seen.append(self.headers.get("Authorization", ""))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


def test_an_http_hooks_token_and_url_secrets_never_reach_the_detail(plans: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/{HTTP_TOKEN}?api_key={QUERY_SECRET}"
        write_plan(plans, {"name": "notify", "kind": "http", "url": url, "credentials": "env:HOOK_TOKEN"})
        with pytest.raises(ApplicationError) as failed:
            run(plans, "notify")
    finally:
        server.shutdown()
    assert _Refusing.seen == [f"Bearer {HTTP_TOKEN}"]  # the hook did send it
    message = failed.value.message
    assert "500" in message and HTTP_TOKEN not in message and QUERY_SECRET not in message, message
    assert "api_key=***" in message
