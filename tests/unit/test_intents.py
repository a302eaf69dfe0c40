"""Signed intents: the pure check every worker and validator runs, and the keys doors sign with."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from seawall.contract.intents import (
    DEFAULT_OPTIONS,
    IntentClaims,
    IntentRefused,
    SignedIntent,
    canonical,
    failover_options,
    mac,
    verify,
)
from seawall.security.intents import IntentKeyError, IntentKeys, keys_from_settings, maybe_issue

KEYS = IntentKeys([("k1", b"\x01" * 32)])


def issue(**claims: object) -> SignedIntent:
    base: dict[str, object] = {"action": "approve", "plan": "erp", "gate": "g", "run": "r1"}
    return KEYS.issue(**({"user": "ann", "role": "admin"} | base | claims))  # type: ignore[arg-type]


def check(signed: SignedIntent | None, **expect: object) -> IntentClaims:
    base: dict[str, object] = {"action": "approve", "plan": "erp", "gate": "g", "run": "r1"}
    return verify(signed, KEYS.by_id, time.time(), **(base | expect))  # type: ignore[arg-type]


def test_a_fresh_intent_verifies_to_its_claims() -> None:
    claims = check(issue(), needs="admin")
    assert (claims.user, claims.role, claims.plan, claims.gate) == ("ann", "admin", "erp", "g")


# Each intent is issued when its case runs, not at collection: a slow run must not expire them first.
@pytest.mark.parametrize(
    ("make", "expect", "reason"),
    [
        (lambda: None, {}, "none given"),
        (issue, {"plan": "crm"}, "plan 'erp', not 'crm'"),
        (issue, {"run": "r2"}, "run 'r1', not 'r2'"),
        (issue, {"gate": "h"}, "gate 'g', not 'h'"),
        (issue, {"action": "abort"}, "action 'approve', not 'abort'"),
        (lambda: issue(role="operator"), {"needs": "admin"}, "role operator; this needs admin"),
        (issue, {"used": {"x"}}, None),
        (lambda: issue(now=time.time() - 400, ttl_s=300), {}, "expired"),
        (lambda: issue(now=time.time() + 600), {}, "in the future"),
        (
            lambda: IntentKeys([("k1", b"\x02" * 32)]).issue(
                action="approve", plan="erp", user="m", role="admin"
            ),
            {},
            "does not verify",
        ),
        (
            lambda: IntentKeys([("k9", b"\x01" * 32)]).issue(
                action="approve", plan="erp", user="m", role="admin"
            ),
            {},
            "unknown key id",
        ),
    ],
)
def test_refusals_name_what_is_wrong(
    make: Callable[[], SignedIntent | None], expect: dict[str, object], reason: str | None
) -> None:
    signed = make()
    if reason is None:
        check(signed, **expect)  # a nonce other than this one's was used: fine
        return
    with pytest.raises(IntentRefused, match=reason.replace("(", r"\(")):
        check(signed, **expect)


def test_an_altered_claim_or_a_replayed_nonce_is_refused() -> None:
    signed = issue(role="operator")
    promoted = SignedIntent(
        claims=signed.claims.model_copy(update={"role": "admin"}), signature=signed.signature
    )
    with pytest.raises(IntentRefused, match="does not verify"):
        check(promoted)
    with pytest.raises(IntentRefused, match="replayed"):
        check(signed, used={signed.claims.nonce})


def test_a_failover_intent_authorises_exactly_the_options_it_signs() -> None:
    older = failover_options("2026-11-30T12:00:00+00:00", False)
    mirror = failover_options(None, True)
    signed = issue(action="failover", gate=None, run=None, options=older)
    assert check(signed, action="failover", gate=None, run=None, options=older).options == older
    for other in (DEFAULT_OPTIONS, mirror, failover_options("2026-11-29T12:00:00+00:00", False)):
        with pytest.raises(IntentRefused, match="signed for a run with options"):
            check(signed, action="failover", gate=None, run=None, options=other)
    # Options altered after signing: the signature no longer verifies.
    altered = SignedIntent(
        claims=signed.claims.model_copy(update={"options": mirror}), signature=signed.signature
    )
    with pytest.raises(IntentRefused, match="does not verify"):
        check(altered, action="failover", gate=None, run=None, options=mirror)


def test_an_intent_signed_before_options_keeps_its_signature_and_authorises_only_the_defaults() -> None:
    signed = issue(action="failover", gate=None, run=None)
    # The bytes a door signed before the claim existed (every other claim, sorted, compact): unchanged,
    # so its signature still verifies.
    before = {k: v for k, v in signed.claims.model_dump(mode="json").items() if k != "options"}
    assert signed.claims.options is None
    assert canonical(signed.claims) == json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert mac(b"\x01" * 32, signed.claims) == signed.signature
    check(signed, action="failover", gate=None, run=None, options=DEFAULT_OPTIONS)
    with pytest.raises(IntentRefused, match=r"not .*point_time.*2026"):
        check(signed, action="failover", gate=None, run=None, options=failover_options("2026-11-30", False))


def test_keys_load_from_references_rotate_and_refuse_conflicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEW_KEY", "11" * 32)
    monkeypatch.setenv("OLD_KEY", "22" * 32)
    new_only = IntentKeys.from_refs("env:NEW_KEY#new")
    both = IntentKeys.from_refs("env:NEW_KEY#new, env:OLD_KEY#old")
    old_only = IntentKeys.from_refs("env:OLD_KEY#old")
    signed_old = old_only.issue(action="reprotect", plan="erp", user="a", role="admin")
    assert verify(signed_old, both.by_id, time.time(), action="reprotect", plan="erp").user == "a"
    with pytest.raises(IntentRefused, match="unknown key id"):
        verify(signed_old, new_only.by_id, time.time(), action="reprotect", plan="erp")
    # Signing uses the first (newest) key; the key never appears in what is signed.
    signed = both.issue(action="reprotect", plan="erp", user="a", role="admin")
    assert signed.claims.key_id == "new" and "11" * 8 not in signed.model_dump_json()
    with pytest.raises(IntentKeyError, match="twice with different keys"):
        IntentKeys.from_refs("env:NEW_KEY#same, env:OLD_KEY#same")
    with pytest.raises(IntentKeyError, match="UNSET_KEY"):
        IntentKeys.from_refs("env:UNSET_KEY")
    assert keys_from_settings(None) is None and maybe_issue(None, action="x") is None


def test_an_intent_is_never_issued_for_longer_than_an_hour() -> None:
    signed = KEYS.issue(action="reprotect", plan="erp", user="a", role="admin", ttl_s=10 * 3600)
    assert signed.claims.expires_at - signed.claims.issued_at == 3600


def test_a_worker_with_a_bad_intent_key_reference_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from seawall.cli import app

    monkeypatch.setenv("SEAWALL_INTENT_KEYS", "env:SEAWALL_TEST_UNSET_INTENT_KEY")
    result = CliRunner().invoke(app, ["worker", "--site", "primary"])
    assert result.exit_code == 2
    assert (
        "configuration: SEAWALL_INTENT_KEYS: environment variable SEAWALL_TEST_UNSET_INTENT_KEY"
        in result.output
    )
    assert "Traceback" not in result.output


def test_worker_refuses_an_unknown_role_before_it_connects() -> None:
    from typer.testing import CliRunner

    from seawall.cli import app

    result = CliRunner().invoke(app, ["worker", "--site", "primary", "--role", "everything"])
    assert result.exit_code == 2
    # The message in Rich's error box: its words, whatever the box's line breaks.
    words = " ".join(result.output.replace("│", " ").split())
    assert "--role" in words and "'everything' is not one of all, workflows, activities" in words, words
    assert "Traceback" not in result.output
