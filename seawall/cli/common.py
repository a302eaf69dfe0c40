"""What every CLI command shares: consoles, exit codes, JSON output."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from rich.console import Console
from temporalio.client import Client

from seawall.runtime.config import Settings

console = Console()
# Error lines are never wrapped at the terminal width: one line a script can match, whatever the width.
err_console = Console(stderr=True, soft_wrap=True)


class Exit(IntEnum):
    """Exit codes scripts can rely on."""

    OK = 0
    FAILED = 1  # the operation ran and failed (a part unhealthy, a run failed)
    BAD_INPUT = 2  # the input is wrong: a plan file, a flag, a name that does not exist
    UNAVAILABLE = 3  # a service Seawall needs (Temporal, a site, the store) cannot be reached
    WAITING = 4  # the run waits for a person (a gate): nothing failed, nothing is done yet


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


async def temporal_client(settings: Settings) -> Client:
    """The Temporal client for a command; configuration and connection errors end it with a clear line."""
    import typer

    from seawall.runtime.temporal import TemporalConfigError, connect
    from seawall.security.codec import PayloadKeyError

    try:
        return await connect(settings)
    except (TemporalConfigError, PayloadKeyError) as exc:
        err_console.print(f"configuration: {exc}")
        raise typer.Exit(Exit.BAD_INPUT) from None
    except RuntimeError as exc:
        err_console.print(f"cannot reach Temporal at {settings.temporal_address}: {exc}")
        raise typer.Exit(Exit.UNAVAILABLE) from None


def rpc_line(exc: Exception) -> tuple[str, Exit]:
    """One line and an exit code for a Temporal RPC error no command handled itself."""
    from temporalio.service import RPCError, RPCStatusCode

    if not isinstance(exc, RPCError):
        return f"error: {exc}", Exit.FAILED
    status = exc.status.name if exc.status is not None else "ERROR"
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return f"Temporal did not answer ({status}): {exc.message}", Exit.UNAVAILABLE
    if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.ALREADY_EXISTS):
        return f"Temporal: {exc.message} ({status})", Exit.BAD_INPUT
    return f"Temporal refused ({status}): {exc.message}", Exit.FAILED
