"""Notifications: targets validated in the inventory (located errors), chosen by event/plan/site,
delivered to a real webhook endpoint (HMAC-signed) and a real SMTP server, each event under one key,
a partial delivery resumed from the activity's heartbeat without sending twice; no secret in a body."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from seawall.contract.drills import NotifyRequest, NotifySent
from seawall.notify import message_id, targets_for
from seawall.plans import check_files, load_inventory
from seawall.runtime.config import Settings
from seawall.security.redaction import REDACTOR
from tests.receivers import receivers

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "inventory.yaml").read_text())
HOOK_KEY = "hook-signing-key-0123456789"
SECRET_IN_TEXT = "s3cr3t-smtp-password-xyz"


def inventory(tmp: Path, notifications: list[dict[str, Any]]) -> Path:
    data = dict(EXAMPLE, notifications=notifications)
    # The example's relative paths point from examples/: keep them valid from the temporary folder.
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def req(
    event: str = "gate-waiting", plan: str | None = "erp-dr", key: str = "recover/erp-dr/r1/gate-waiting/go"
) -> NotifyRequest:
    return NotifyRequest(
        event=event,
        key=key,
        plan=plan,
        site="dr",
        run="20261126T010000Z-abcd1234",
        summary=f"gate go waits for approval (smtp password {SECRET_IN_TEXT} must never show)",
        facts={"approvers": "operator", "message": "check the batch jobs"},
    )


def test_bad_targets_are_located_errors(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        [
            {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:1/x", "secret": "hunter2-literal"},
            {"name": "ops", "kind": "email", "smtp_host": "mail", "sender": "dr@x.org", "to": []},
            {"name": "pager", "kind": "webhook", "url": "http://127.0.0.1:1/x", "sites": ["nowhere"]},
            {"name": "chat", "kind": "webhook", "url": "http://127.0.0.1:1/x", "events": ["gate-waits"]},
        ],
    )
    errors = [str(e) for e in check_files([path])]
    text = "\n".join(errors)
    assert all(e.startswith(f"{path}:") for e in errors), errors
    assert "notifications[0].secret" in text and "not a secret reference" in text
    assert "hunter2-literal" not in text  # the error never repeats what looks like a secret
    assert "notifications[1].to" in text
    assert "notifications[3].events[0]" in text


def test_duplicate_names_and_unknown_sites_are_refused(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        [
            {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:1/x", "sites": ["nowhere"]},
            {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:1/y"},
        ],
    )
    text = "\n".join(str(e) for e in check_files([path]))
    assert "notifications[0].sites[0]: unknown site 'nowhere'" in text
    assert "notification 'ops' is already defined" in text


def test_targets_are_chosen_by_event_plan_and_site(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        [
            {"name": "all", "kind": "webhook", "url": "http://127.0.0.1:1/a"},
            {
                "name": "erp-gates",
                "kind": "webhook",
                "url": "http://127.0.0.1:1/b",
                "plans": ["erp-dr"],
                "events": ["gate-waiting"],
            },
            {"name": "aws-only", "kind": "webhook", "url": "http://127.0.0.1:1/c", "sites": ["aws"]},
        ],
    )
    inv = load_inventory(path)
    assert [t.name for t in targets_for(inv, req())] == ["all", "erp-gates"]
    assert [t.name for t in targets_for(inv, req(event="run-failed"))] == ["all"]
    assert [t.name for t in targets_for(inv, req(plan="other"))] == ["all"]


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAWALL_TEST_HOOK_KEY", HOOK_KEY)
    monkeypatch.setenv("SEAWALL_TEST_SMTP_PASSWORD", SECRET_IN_TEXT)
    REDACTOR.add(SECRET_IN_TEXT)


async def test_one_event_reaches_a_signed_webhook_and_a_mailbox_once_even_when_retried(
    tmp_path: Path, key_env: None
) -> None:
    async with receivers(HOOK_KEY.encode()) as (hook, mail):
        path = inventory(
            tmp_path,
            [
                {
                    "name": "mail",
                    "kind": "email",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": mail.port,
                    "sender": "seawall@example.org",
                    "to": ["oncall@example.org"],
                },
                {"name": "hook", "kind": "webhook", "url": hook.url, "secret": "env:SEAWALL_TEST_HOOK_KEY"},
                {
                    "name": "slack",
                    "kind": "webhook",
                    "url": hook.url,
                    "format": "slack",
                    "secret": "env:SEAWALL_TEST_HOOK_KEY",
                },
            ],
        )
        acts = NotifyActivities(Settings(inventory=path))
        env = ActivityEnvironment()
        beats: list[Any] = []
        env.on_heartbeat = lambda *details: beats.append(list(details[0]))
        hook.fail_next = 1  # the JSON hook is down for the first delivery
        with pytest.raises(ApplicationError) as first:
            await env.run(acts.notify, req())
        assert "webhook hook: HTTP 503" in str(first.value)
        assert beats[-1] == ["mail", "slack"]  # delivered to the others, remembered in the heartbeat
        # The retry (as Temporal hands it the last heartbeat) sends only what was not delivered.
        env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[beats[-1]])
        sent: NotifySent = await env.run(acts.notify, req())
        assert sent.delivered == ["mail", "slack", "hook"]
        # A retry of the whole event (a worker died before its heartbeat reached the server) is
        # delivered again under the same key: the receivers keep the first.
        env.info = dataclasses.replace(env.info, attempt=3, heartbeat_details=[])
        await env.run(acts.notify, req())

    assert len(mail.raw) == 2 and len(mail.events) == 1
    msg = mail.events[message_id(req().key)]
    assert msg["X-Seawall-Event"] == req().key and mail.envelopes[0][1] == ["<oncall@example.org>"]
    assert "gate go waits for approval" in msg["Subject"]
    assert hook.bad_signatures == 0
    assert set(hook.events) == {req().key}  # JSON and Slack deliveries of one event: one key
    bodies = [json.loads(body) for _, body in hook.raw]
    assert {b.get("event") for b in bodies if "event" in b} == {"gate-waiting"}
    assert any("text" in b and "gate go waits" in b["text"] for b in bodies)
    everything = "\n".join(b.decode() for _, b in hook.raw) + "\n".join(m.as_string() for m in mail.raw)
    assert SECRET_IN_TEXT not in everything and HOOK_KEY not in everything


async def test_a_forged_or_unsigned_body_is_told_apart(tmp_path: Path, key_env: None) -> None:
    async with receivers(b"another-key-the-receiver-has") as (hook, _):
        path = inventory(
            tmp_path,
            [{"name": "hook", "kind": "webhook", "url": hook.url, "secret": "env:SEAWALL_TEST_HOOK_KEY"}],
        )
        with pytest.raises(ApplicationError):
            await ActivityEnvironment().run(NotifyActivities(Settings(inventory=path)).notify, req())
    assert hook.bad_signatures == 1 and hook.events == {}


async def test_an_unresolvable_secret_is_not_retried(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        [
            {
                "name": "hook",
                "kind": "webhook",
                "url": "http://127.0.0.1:9/x",
                "secret": "env:SEAWALL_NOT_SET_ANYWHERE",
            }
        ],
    )
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(NotifyActivities(Settings(inventory=path)).notify, req())
    assert refused.value.non_retryable and refused.value.type == "SecretError"
