"""The process's redactor: bounded, de-duplicated, flat in cost; URL credentials; unforgeable logs."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pytest

from seawall.security.redaction import (
    REDACTED,
    RedactingFilter,
    Redactor,
    escape_control,
    redact_urls,
)
from seawall.security.secrets import REDACTOR, register_configured, resolve


def test_known_values_are_masked_longest_first() -> None:
    r = Redactor()
    r.add("hunter2-password", "hunter2-password-and-more")
    assert r.redact("a hunter2-password-and-more b hunter2-password c") == f"a {REDACTED} b {REDACTED} c"


def test_short_values_and_none_are_ignored() -> None:
    r = Redactor()
    r.add("abc", None, "")
    assert len(r) == 0
    assert r.redact("abc") == "abc"


def test_registering_the_same_secret_on_every_call_does_not_grow() -> None:
    r = Redactor()
    for _ in range(100_000):
        r.add("vsphere-password-1", "s3-secret-key-2")
    assert len(r) == 2


def test_redaction_cost_is_flat_after_100k_site_calls() -> None:
    """Issue #14: a long-running worker must not slow down; 100,000 simulated site calls later,
    one redaction of a typical detail still takes well under 5 ms."""
    r = Redactor()
    configured = [f"secret-value-{i:04d}-xyz" for i in range(40)]
    r.add(*configured)
    for i in range(100_000):
        r.add(configured[i % len(configured)])
    detail = "vSphere call failed: " + "x" * 400 + " secret-value-0007-xyz " + "y" * 400
    r.redact(detail)  # compile once
    start = time.perf_counter()
    for _ in range(100):
        out = r.redact(detail)
    per_call = (time.perf_counter() - start) / 100
    assert "secret-value-0007-xyz" not in out
    assert per_call < 0.005, f"{per_call * 1000:.2f} ms per redaction"


def test_cap_forgets_the_oldest() -> None:
    r = Redactor(max_secrets=3)
    r.add("first-secret", "second-secret", "third-secret", "fourth-secret")
    assert len(r) == 3
    assert "first-secret" in r.redact("first-secret")
    assert r.redact("fourth-secret") == REDACTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://hooks.example.com/x?token=abc123&x=1 failed",
            "GET https://hooks.example.com/x?token=***&x=*** failed",
        ),
        ("https://admin:pa55word@vc.example.com/sdk", "https://***@vc.example.com/sdk"),
        ("http://h/p?a=1#frag", "http://h/p?a=***#frag"),
        ("no url here: a=b?c=d", "no url here: a=b?c=d"),
        ("http://h:8080/path", "http://h:8080/path"),
    ],
)
def test_urls_lose_userinfo_and_query_values(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


def test_escape_control_keeps_one_line() -> None:
    forged = 'GET /v1/x\nINFO: 127.0.0.1 "POST /v1/plans/erp-dr/failovers" 202'
    escaped = escape_control(forged)
    assert "\n" not in escaped and "\\n" in escaped
    assert escape_control("plain text") == "plain text"


def test_log_filter_masks_and_escapes() -> None:
    r = Redactor()
    r.add("log-secret-value")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(r))
    logger = logging.getLogger("seawall.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("denied %s with %s", "/v1/x\nINFO: forged", "log-secret-value")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == [f"denied /v1/x\\nINFO: forged with {REDACTED}"]


def test_register_configured_knows_secrets_before_first_use(tmp_path: Path) -> None:
    """A freshly started process masks a configured secret it has never used."""
    key = tmp_path / "site.json"
    key.write_text('{"user": "svc-seawall", "password": "fresh-worker-password"}')
    config = {
        "sites": [
            {"name": "a", "credentials": f"file:{key}"},
            {"name": "b", "credentials": "env:NOT_SET_HERE_X"},
        ]
    }
    assert register_configured(config) == 1
    assert resolve(f"file:{key}") is not None
    assert "fresh-worker-password" not in REDACTOR.redact("login failed for fresh-worker-password")


def test_a_worker_knows_the_inventorys_and_plans_secrets_at_start(tmp_path: Path) -> None:
    """Issue #14: redaction knows every configured secret from start-up, plans' hook credentials too."""
    from seawall.runtime.config import Settings
    from workers.main import _know_configured_secrets

    (tmp_path / "site.json").write_text('{"user": "u", "password": "site-password-from-start"}')
    (tmp_path / "hook.token").write_text("hook-bearer-token-from-start\n")
    (tmp_path / "inventory.yaml").write_text(
        "kind: Inventory\nsites:\n  - name: a\n    credentials: file:site.json\n"
    )
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "p.yaml").write_text(
        "kind: RecoveryPlan\nhooks:\n  - name: h\n    credentials: file:../hook.token\n"
    )
    (plans / "broken.yaml").write_text("kind: [unclosed\n")
    _know_configured_secrets(Settings(inventory=tmp_path / "inventory.yaml", plans_dir=plans))
    shown = REDACTOR.redact("401 for hook-bearer-token-from-start, login site-password-from-start")
    assert "from-start" not in shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect(user='root', password='pass')", "connect(user='root', password='***')"),
        ('{"password": "pass", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("AWS_SECRET_ACCESS_KEY=testing", "AWS_SECRET_ACCESS_KEY=***"),
        ("Authorization: Bearer 9f8e7d6c5b4a39281706", "Authorization: Bearer ***"),
        ("3 passed, 0 failed; the token is not known", "3 passed, 0 failed; the token is not known"),
    ],
)
def test_secrets_are_masked_by_shape_whoever_configured_them(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


def test_user_names_are_not_masked_in_every_line() -> None:
    """The process-wide redactor masks a credential's secrets, not its user name (which ordinary text
    contains: "operator", "admin"); a detail about the credential's own use still masks both."""
    from seawall.security.secrets import ResolvedSecret, redact

    secret = ResolvedSecret("env:X", b'{"user": "operator", "password": "long-enough-password"}')
    r = Redactor()
    r.add(secret)
    assert r.redact("role operator, long-enough-password") == f"role operator, {REDACTED}"
    assert redact("operator:long-enough-password", [secret]) == f"{REDACTED}:{REDACTED}"
