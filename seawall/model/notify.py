"""Where Seawall tells a person that they are needed: webhook and e-mail targets in the inventory.

A target names the events it wants and, optionally, the plans or sites it is about (none: all).
Secrets (the webhook's HMAC key, the SMTP password) are references, resolved at the worker that
sends; a message never carries one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StrictBool

from seawall.model.scalars import HttpUrlStr, Name, Port, SecretRef, Variant, non_empty


class Event(StrEnum):
    """What happened that a person may need to know (the notification's ``event``)."""

    GATE_WAITING = "gate-waiting"
    RUN_STARTED = "run-started"
    RUN_COMPLETED = "run-completed"
    RUN_FAILED = "run-failed"
    DRILL_PASSED = "drill-passed"
    DRILL_FAILED = "drill-failed"
    RPO_BREACH = "rpo-breach"
    RPO_RECOVERED = "rpo-recovered"


class NotifyTarget(Variant):
    """One place notifications go. Use ``AnyNotifyTarget``."""

    name: Name
    kind: Literal["webhook", "email"]
    events: list[Event] = Field(default_factory=lambda: list(Event), description="default: every event")
    plans: list[Name] = Field(default=[], description="only events of these plans (default: all)")
    sites: list[Name] = Field(default=[], description="only events at these sites (default: all)")


class WebhookTarget(NotifyTarget):
    """POST the event as JSON (``format: json``) or as a Slack incoming-webhook message (``slack``).

    With ``secret`` the body is signed: header ``X-Seawall-Signature: sha256=<hex HMAC-SHA256 of the
    body>``. Every delivery of one event carries the same ``X-Seawall-Event`` key: a retried delivery
    is recognisable, and the receiver keeps the first.
    """

    kind: Literal["webhook"] = "webhook"
    url: HttpUrlStr
    format: Literal["json", "slack"] = "json"
    secret: SecretRef = Field(default="none", description="HMAC key for X-Seawall-Signature")


class EmailTarget(NotifyTarget):
    """Send an e-mail through an SMTP relay; ``Message-ID`` is derived from the event's key."""

    kind: Literal["email"] = "email"
    smtp_host: Annotated[str, non_empty("smtp_host")]
    smtp_port: Port = 25
    starttls: StrictBool = False
    username: str | None = None
    password: SecretRef = "none"
    sender: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
    to: Annotated[list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]], Field(min_length=1)]


AnyNotifyTarget = Annotated[WebhookTarget | EmailTarget, Field(discriminator="kind")]
