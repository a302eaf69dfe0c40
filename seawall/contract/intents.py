"""Signed intents: what a Seawall door (CLI, API, console) attests before a real failover, a commit, a
reprotect, an abort or a gate approval goes to Temporal, and what the orchestration worker checks.

Why: anyone who reaches the Temporal UI or frontend can start a workflow or send an update with any
input. An input that *claims* ``by: dr-admin`` proves nothing. A door authenticates its user and checks
their role, then signs the claims below with an HMAC key that only the doors and the orchestration
worker hold (``SEAWALL_INTENT_KEYS``); the workflow accepts the action only with a valid signature.
The claims and the signature are no secret (they may sit in history in clear); the key never does.

Sandbox-safe (pydantic + stdlib): the models travel in workflow inputs and updates, and the pure
:func:`verify` runs in an update validator (see ``seawall.security.intents`` for why that is sound).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.names import FENCING_GATE as FENCING_GATE
from seawall.contract.names import NAME_PATTERN

ROLES = ("viewer", "operator", "admin")
_ROLE = r"^(viewer|operator|admin)$"
_ACTION = r"^(failover|approve|abort|commit|reprotect|cleanup-test|unprotect)$"
# Signed claims are accepted up to this long before their ``issued_at`` (clocks of two hosts differ).
CLOCK_SKEW_S = 60.0
# No door issues an intent for longer than this: a leaked intent is useless after it.
MAX_INTENT_TTL_S = 3600.0
# The gate a real-mode run started without an intent waits on (an admin's signed approval).
AUTHORISE_GATE = "authorise-start"


def role_rank(role: str | None) -> int:
    """viewer < operator < admin; anything else ranks below viewer."""
    return ROLES.index(role) + 1 if role in ROLES else 0


class IntentClaims(BaseModel):
    """Who (as the door verified them) may do what, to which plan (and run, gate), until when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(pattern=_ACTION)
    plan: str = Field(pattern=NAME_PATTERN)  # unprotect: the VM's name
    mode: str | None = Field(default=None, pattern=r"^(test|planned|unplanned)$")
    direction: str | None = Field(default=None, pattern=r"^(failover|failback)$")
    gate: str | None = Field(default=None, max_length=63)
    # approve/abort: the Temporal run id of the RecoveryPlan run; commit / cleanup-test: the run's name.
    run: str | None = Field(default=None, max_length=64)
    # failover: the run's options that choose what is recovered (``failover_options``). None in an
    # intent signed before this claim existed: it verifies as before and authorises the defaults.
    options: str | None = Field(default=None, max_length=300)
    user: str = Field(min_length=1, max_length=200)
    role: str = Field(pattern=_ROLE)
    issued_at: float
    expires_at: float
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    key_id: str = Field(min_length=1, max_length=100)


class SignedIntent(BaseModel):
    """The claims and their HMAC-SHA256 (hex) under the key named by ``claims.key_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claims: IntentClaims
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")


class IntentRefused(ValueError):
    """An intent that does not authorise what it is presented for; the message says why."""


def canonical(claims: IntentClaims) -> bytes:
    """The bytes signed: the claims as sorted, compact JSON (the same on every door and worker).
    ``options`` is left out when unset, so intents signed before it existed keep their signature."""
    data = claims.model_dump(mode="json")
    if data.get("options") is None:
        data.pop("options", None)
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def failover_options(point_time: str | None, from_mirror: bool) -> str:
    """A failover's options as its intent signs them: which point (at or before ``point_time``) and
    from which copy (the mirrors) — so an intent for the newest point cannot start a run that
    recovers an older one, or reads the mirror, by an input changed at the Temporal frontend."""
    options = {"from_mirror": from_mirror, "point_time": point_time}
    return json.dumps(options, sort_keys=True, separators=(",", ":"))


DEFAULT_OPTIONS = failover_options(None, False)


def mac(key: bytes, claims: IntentClaims) -> str:
    return hmac.new(key, b"seawall-intent-v1\x00" + canonical(claims), hashlib.sha256).hexdigest()


def verify(
    signed: SignedIntent | None,
    keys: dict[str, bytes],
    now: float,
    *,
    action: str,
    plan: str,
    mode: str | None = None,
    direction: str | None = None,
    gate: str | None = None,
    run: str | None = None,
    options: str | None = None,
    needs: str = "viewer",
    used: frozenset[str] | set[str] = frozenset(),
) -> IntentClaims:
    """The claims of ``signed`` if it authorises exactly this action (else :class:`IntentRefused`).

    Pure: the keys and the time are given, so it runs the same in an activity and in a validator.
    """
    if signed is None:
        raise IntentRefused(f"{action} of plan {plan} needs an intent signed by a Seawall door (none given)")
    c = signed.claims
    key = keys.get(c.key_id)
    if key is None:
        raise IntentRefused(f"intent signed with unknown key id {c.key_id!r}")
    if not hmac.compare_digest(mac(key, c), signed.signature):
        raise IntentRefused("intent signature does not verify (forged or altered)")
    if c.expires_at <= now:
        raise IntentRefused(f"intent of {c.user} expired {now - c.expires_at:.0f}s ago")
    if c.issued_at > now + CLOCK_SKEW_S or c.expires_at - c.issued_at > MAX_INTENT_TTL_S:
        raise IntentRefused("intent is issued in the future or for too long")
    expected = {
        "action": action,
        "plan": plan,
        "mode": mode,
        "direction": direction,
        "gate": gate,
        "run": run,
    }
    for name, want in expected.items():
        got = getattr(c, name)
        if want is not None and got != want:
            raise IntentRefused(f"intent is for {name} {got!r}, not {want!r}")
    # An intent without the claim (signed before it existed) authorises the default options only.
    signed_options = c.options if c.options is not None else DEFAULT_OPTIONS
    if options is not None and signed_options != options:
        raise IntentRefused(f"intent was signed for a run with options {signed_options}, not {options}")
    if c.nonce in used:
        raise IntentRefused("intent was already used (replayed)")
    if role_rank(c.role) < role_rank(needs):
        raise IntentRefused(f"{c.user} has role {c.role}; this needs {needs}")
    return c


class IntentCheck(BaseModel):
    """check_intent: the intent a workflow was started with, and what it is started to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: SignedIntent | None
    action: str
    plan: str
    mode: str | None = None
    direction: str | None = None
    run: str | None = None
    # failover: failover_options(...) of the input being started; checked exactly when given.
    options: str | None = None
    needs: str = "operator"
    # The run checking: another run that already used the intent's nonce makes it a replay.
    workflow_id: str
    run_id: str


class Authority(BaseModel):
    """check_intent's answer, recorded in history: the worker's policy and who (verified) started it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enforced: bool
    verified: bool = False
    user: str | None = None
    role: str | None = None
    nonce: str | None = None
    # Policy: drills may be started (and their gates approved) without an intent.
    unsigned_drills: bool = True
    # A real-mode run started without an intent waits this long for an admin's signed approval of
    # AUTHORISE_GATE (0: it is refused at once).
    confirm_wait_s: float = 0.0
