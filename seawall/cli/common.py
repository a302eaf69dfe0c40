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
err_console = Console(stderr=True)


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
