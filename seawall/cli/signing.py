"""The CLI's one signer: who the CLI acts as, and the signed intent it attaches to a destructive
action (``failover``, ``approve``, ``abort``, ``commit``, ``reprotect``, ``unprotect``)."""

from __future__ import annotations

import getpass
from typing import Any

import typer

from seawall.cli.common import Exit, err_console
from seawall.contract.intents import SignedIntent
from seawall.runtime.config import Settings
from seawall.security.intents import IntentKeyError, keys_from_settings, maybe_issue


def cli_user() -> str:
    """Who the CLI acts as: the operating-system user (reports and audit lines name them)."""
    return f"{getpass.getuser()}@cli"


def sign(settings: Settings, **claims: Any) -> SignedIntent | None:
    """The CLI's signed intent. Holding SEAWALL_INTENT_KEYS is admin authority (like the worker's own
    configuration); people without it use the API, whose tokens carry their role."""
    try:
        keys = keys_from_settings(settings.intent_keys)
    except IntentKeyError as exc:
        err_console.print(f"configuration: {exc}")
        raise typer.Exit(Exit.BAD_INPUT) from None
    return maybe_issue(keys, user=cli_user(), role="admin", ttl_s=settings.intent_ttl_s, **claims)
