"""Signed intents at the doors and the orchestration worker: the HMAC keys, issuing, and the worker's
verifier (the claims and the pure check are in ``seawall.contract.intents``).

Keys: ``SEAWALL_INTENT_KEYS`` lists key references (``file:``/``env:``, optional ``#key-id``, the
format of payload keys; ``seawall codec keygen`` makes one), newest first: the first signs, every one
verifies. The HMAC key is derived from the referenced bytes with its own context, so a file shared
with another use still gives an independent key. Set it on the orchestration workers and on every
door (API, CLI); with it set, a worker refuses real failovers, commits, reprotects, aborts and
approvals that do not carry a valid signature.

Where the check runs, and why it is deterministic:

- **At a workflow's start** the ``check_intent`` activity verifies the intent (signature, expiry,
  plan, action, role) and looks for another run that already used its nonce (the ``SeawallIntent``
  search attribute). Its answer is recorded in history, so a replay never needs the key.
- **In the ``approve`` / ``abort`` validators** there is no activity to call. The validator calls the
  pure :func:`seawall.contract.intents.verify` with the keys this worker process registered for the
  workflow's task queue (:func:`install_verifier`, at worker start) and ``workflow.now()``. That is
  sound because a validator runs only when an update is first delivered, never on replay (the SDK's
  ``run_validator`` is false for updates already in history), and a rejected update leaves no trace in
  history. What the handler then records (the verified user and role) is read from the update's own
  input, so replay rebuilds the same state without the key. A worker without keys rejects signed
  approvals for enforced runs (it cannot check them) rather than trusting them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import blake3

from seawall.contract.intents import MAX_INTENT_TTL_S, IntentClaims, SignedIntent, mac

_CONTEXT = "seawall 2026-12 intent hmac-sha256"


class IntentKeyError(ValueError):
    """The intent key configuration is unusable (a bad reference, one id for two keys)."""


class IntentKeys:
    """Ordered HMAC keys by key id: the first signs, every one verifies."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        self._keys: dict[str, bytes] = {}
        self._order: list[str] = []
        for key_id, key in keys:
            known = self._keys.get(key_id)
            if known is not None and known != key:
                raise IntentKeyError(f"intent key id {key_id!r} is given twice with different keys")
            if known is None:
                self._keys[key_id] = key
                self._order.append(key_id)
        if not self._order:
            raise IntentKeyError("no intent keys given (SEAWALL_INTENT_KEYS is empty)")

    @classmethod
    def from_refs(cls, refs: str) -> IntentKeys:
        from seawall.blockstore.keys import KeyRefError, load_key
        from seawall.security.codec import parse_key_refs

        loaded: list[tuple[str, bytes]] = []
        for ref in parse_key_refs(refs):
            try:
                material = load_key(ref)
            except KeyRefError as exc:
                raise IntentKeyError(f"SEAWALL_INTENT_KEYS: {exc}") from None
            derived = blake3.blake3(material.key, derive_key_context=_CONTEXT).digest()
            loaded.append((material.key_id, derived))
        return cls(loaded)

    @property
    def by_id(self) -> dict[str, bytes]:
        return dict(self._keys)

    def issue(
        self,
        *,
        action: str,
        plan: str,
        user: str,
        role: str,
        ttl_s: float = 300.0,
        mode: str | None = None,
        direction: str | None = None,
        gate: str | None = None,
        run: str | None = None,
        options: str | None = None,
        now: float | None = None,
    ) -> SignedIntent:
        """Sign what an authenticated, authorised user asked a door for (valid ``ttl_s`` seconds)."""
        issued = time.time() if now is None else now
        claims = IntentClaims(
            action=action,
            plan=plan,
            mode=mode,
            direction=direction,
            gate=gate,
            run=run,
            options=options,
            user=user,
            role=role,
            issued_at=issued,
            expires_at=issued + min(ttl_s, MAX_INTENT_TTL_S),
            nonce=secrets.token_hex(16),
            key_id=self._order[0],
        )
        return SignedIntent(claims=claims, signature=mac(self._keys[self._order[0]], claims))


def maybe_issue(keys: IntentKeys | None, **claims: Any) -> SignedIntent | None:
    """``keys.issue(**claims)``, or None where signed intents are not configured."""
    return keys.issue(**claims) if keys is not None else None


def keys_from_settings(refs: str | None) -> IntentKeys | None:
    """The configured keys, or None when signed intents are not configured."""
    return IntentKeys.from_refs(refs) if refs else None


# Worker side: the keys the validators of workflows on each task queue check approvals with. Filled
# at worker start (``install_verifier``); read in update validators through ``verifier_keys``.
_VERIFIERS: dict[str, dict[str, bytes]] = {}


def install_verifier(task_queue: str, keys: IntentKeys | None) -> None:
    if keys is None:
        _VERIFIERS.pop(task_queue, None)
    else:
        _VERIFIERS[task_queue] = keys.by_id


def verifier_keys(task_queue: str) -> dict[str, bytes]:
    """The keys registered for ``task_queue`` (empty: this worker cannot verify anything)."""
    return dict(_VERIFIERS.get(task_queue, {}))
