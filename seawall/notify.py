"""Telling people: one event delivered to the webhook and e-mail targets the inventory names for it.

Delivery is at least once (the ``notify`` activity retries), made exactly once at the receiver by the
event's key: every delivery of one event carries the same ``X-Seawall-Event`` header (webhooks) and
the same ``Message-ID`` (e-mail), derived from the key the workflow gave the event. The body holds the
event's names and facts, never a secret: it passes through the process's redactor, and the HMAC key
and SMTP password are resolved here, at the worker, from references.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from seawall.contract.drills import NotifyRequest
from seawall.model import Inventory
from seawall.model.notify import AnyNotifyTarget, EmailTarget, WebhookTarget
from seawall.security.secrets import redact, resolve, resolve_text

EVENT_HEADER = "X-Seawall-Event"
SIGNATURE_HEADER = "X-Seawall-Signature"
TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """A target did not take the message (retryable: the activity tries again)."""


def targets_for(inventory: Inventory, req: NotifyRequest) -> list[AnyNotifyTarget]:
    """The targets that asked for this event, about this plan and site."""
    return [
        t
        for t in inventory.notifications
        if req.event in t.events
        and (not t.plans or (req.plan is not None and req.plan in t.plans))
        and (not t.sites or (req.site is not None and req.site in t.sites))
    ]


def body_of(req: NotifyRequest) -> dict[str, Any]:
    """The JSON body every webhook gets (redacted: facts come from plan runs, never from secrets)."""
    return {
        "event": req.event,
        "key": req.key,
        "plan": req.plan,
        "site": req.site,
        "run": req.run,
        "summary": redact(req.summary),
        "facts": {k: redact(v) for k, v in req.facts.items()},
    }


def _slack(req: NotifyRequest) -> dict[str, Any]:
    lines = [f"*{redact(req.summary)}*"] + [f"• {k}: {redact(v)}" for k, v in req.facts.items()]
    return {"text": "\n".join(lines)}


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@seawall>"


async def send_webhook(target: WebhookTarget, req: NotifyRequest, base_dir: Path) -> None:
    payload = _slack(req) if target.format == "slack" else body_of(req)
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", EVENT_HEADER: req.key}
    secret = resolve(target.secret, base_dir)
    if secret is not None:
        # As text (a key file's trailing newline is no part of the key), like every other secret.
        headers[SIGNATURE_HEADER] = sign(secret.text().encode(), body)
    # Imported here: httpx brings its command line's click and pygments (90 ms of every worker's
    # start), and only a worker that delivers a webhook needs it.
    import httpx

    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:
            answer = await client.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook {target.name}: {redact(str(exc)) or type(exc).__name__}") from None
    if answer.status_code >= 300:
        raise DeliveryError(f"webhook {target.name}: HTTP {answer.status_code}")


def _email(target: EmailTarget, req: NotifyRequest) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[seawall] {redact(req.summary)}"[:200]
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.to)
    msg["Message-ID"] = message_id(req.key)
    msg[EVENT_HEADER] = req.key
    facts = "\n".join(f"{k}: {redact(v)}" for k, v in req.facts.items())
    msg.set_content(f"{redact(req.summary)}\n\nevent: {req.event}\n{facts}\n")
    return msg


def _smtp_send(target: EmailTarget, msg: EmailMessage, password: str | None) -> None:
    with smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=TIMEOUT_S) as smtp:
        if target.starttls:
            smtp.starttls()
        if target.username:
            smtp.login(target.username, password or "")
        smtp.send_message(msg)


async def send_email(target: EmailTarget, req: NotifyRequest, base_dir: Path) -> None:
    password = resolve_text(target.password, base_dir)
    try:
        await asyncio.to_thread(_smtp_send, target, _email(target, req), password)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"e-mail {target.name}: {redact(str(exc)) or type(exc).__name__}") from None


async def deliver(target: AnyNotifyTarget, req: NotifyRequest, base_dir: Path) -> None:
    if isinstance(target, WebhookTarget):
        await send_webhook(target, req, base_dir)
    else:
        await send_email(target, req, base_dir)
