"""Failpoints: named places where a test can freeze a worker to SIGKILL it at an exact phase.

Off unless ``SEAWALL_FAILPOINTS`` is set (``name=N,...``: freeze at the N-th hit of ``name``), as in
etcd's gofail or TiKV's fail-rs. A frozen process first writes what it was doing to
``$SEAWALL_FAILPOINT_DIR/<name>.json`` so the test knows where it stopped, then sleeps until killed.
Crash tests need this: "kill the worker while it ships" is a race without it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_hits: dict[str, int] = {}


def _armed() -> dict[str, int]:
    spec = os.environ.get("SEAWALL_FAILPOINTS", "")
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        armed[name] = int(count or "1")
    return armed


def hit(name: str, details: dict[str, Any] | None = None) -> None:
    """Count a pass through ``name``; freeze forever on the armed hit."""
    armed = _armed()
    if name not in armed:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        count = _hits[name]
    if count != armed[name]:
        return
    out = Path(os.environ.get("SEAWALL_FAILPOINT_DIR", "."))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps({"failpoint": name, "hit": count, "pid": os.getpid(), **(details or {})}))
    tmp.replace(out / f"{name}.json")
    while True:
        time.sleep(3600)
