"""How a benchmark prints its result: one JSON object for scripts, ``key: value`` lines for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any


def emit(result: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
