"""What every CLI command shares: consoles, exit codes, JSON output."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class Exit(IntEnum):
    """Exit codes scripts can rely on."""

    OK = 0
    FAILED = 1  # the operation ran and failed (a part unhealthy, a run failed)
    BAD_INPUT = 2  # the input is wrong: a plan file, a flag, a name that does not exist
    UNAVAILABLE = 3  # a service Seawall needs (Temporal, a site, the store) cannot be reached


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
