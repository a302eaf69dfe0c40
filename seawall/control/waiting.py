"""Waiting for a run to be *up*: every VM healthy (a drill standing, a real failover done), a gate
waiting for a person, or the run's end — instead of waiting for the run's end (a drill's end is its
cleanup, hours later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from temporalio.client import Client, WorkflowExecutionStatus

from seawall.contract.drills import DRILL_UP_PHASE
from seawall.control.runs import describe_run, run_progress

State = Literal["healthy", "completed", "gate", "stopped", "failed"]


@dataclass(frozen=True)
class Waited:
    state: State
    detail: str
    run_id: str
    progress: dict[str, Any] = field(default_factory=dict)


async def wait_until_up(
    client: Client,
    plan: str,
    run_id: str | None = None,
    *,
    stop_at_gate: bool = False,
    poll_s: float = 1.0,
    seen: Callable[[dict[str, Any]], None] | None = None,
) -> Waited:
    """Poll the run until it is healthy (a drill standing), ends, or, with ``stop_at_gate``, waits at a
    gate. ``seen`` gets every progress answer (the CLI shows it live)."""
    while True:
        desc = await describe_run(client, plan, run_id)
        run_id = desc.run_id
        if desc.status != WorkflowExecutionStatus.RUNNING:
            name = desc.status.name if desc.status else "UNKNOWN"
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                return Waited("completed", "the run completed", run_id)
            return Waited("failed", f"the run ended {name.lower()}", run_id)
        progress = await run_progress(client, desc) or {}
        if progress and seen is not None:
            seen(progress)
        stopped = progress.get("stopped")
        if stopped:
            # A failed step (or an abort) stopped the run: it waits for the operator, not for time.
            why = f"the run stopped: {stopped}; decide with seawall retry, rollback, cleanup or abort"
            return Waited("stopped", why, run_id, progress)
        gate = progress.get("pending_gate")
        if gate and stop_at_gate:
            return Waited("gate", f"gate {gate} waits for approval", run_id, progress)
        if str(progress.get("phase", "")).startswith(DRILL_UP_PHASE):
            vms = progress.get("vms", {})
            return Waited("healthy", f"all {len(vms)} VMs healthy", run_id, progress)
        await asyncio.sleep(poll_s)
