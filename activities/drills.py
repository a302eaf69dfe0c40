"""``drive_drill``: what a person does during a drill, done for a schedule.

It watches the drill run (the ``progress`` query), approves a waiting gate when the plan lets the
schedule do so (otherwise the run waits for a person, who was notified by the run itself), and once
every VM is healthy sends the ``cleanup`` update. A drill not healthy within the plan's
``health_timeout`` is aborted (a drill is cleaned up either way). Every step is safe to repeat: a
retried attempt finds the run where the last one left it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from seawall.contract.drills import DRILL_UP_PHASE, DriveDrillInput, DriveOutcome
from seawall.contract.messages import AbortInput, ApproveInput
from seawall.contract.names import Activity, Query, Update, recover_id

POLL_S = 2.0


async def _progress(client: Client, plan: str, run_id: str) -> tuple[WorkflowExecutionStatus | None, Any]:
    handle = client.get_workflow_handle(recover_id(plan), run_id=run_id)
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return desc.status, None
    return desc.status, await handle.query(Query.PROGRESS)


async def _update(client: Client, plan: str, run_id: str, name: str, arg: Any) -> str | None:
    """Send an update; the refusal's reason when the run refuses it (already done, gate moved on)."""
    handle = client.get_workflow_handle(recover_id(plan), run_id=run_id)
    try:
        if arg is None:
            await handle.execute_update(name)
        else:
            await handle.execute_update(name, arg)
    except WorkflowUpdateFailedError as exc:
        return str(exc.cause or exc)
    return None


class DrillActivities:
    @activity.defn(name=Activity.DRIVE_DRILL)
    async def drive_drill(self, inp: DriveDrillInput) -> DriveOutcome:
        client = activity.client()
        # The deadline counts from the first attempt (kept in the heartbeat), so a retry keeps the clock.
        details = activity.info().heartbeat_details
        first = float(details[0]) if details else time.time()
        deadline = first + inp.health_timeout_s
        approved: list[str] = list(details[1]) if len(details) > 1 else []
        while True:
            activity.heartbeat(first, approved)
            try:
                status, progress = await _progress(client, inp.plan, inp.run_id)
            except RPCError as exc:
                activity.logger.warning("drill %s: cannot read progress yet: %s", inp.plan, exc)
                status, progress = WorkflowExecutionStatus.RUNNING, None
            if status != WorkflowExecutionStatus.RUNNING:
                name = status.name if status else "gone"
                return DriveOutcome(
                    healthy=False, detail=f"the run ended ({name}) before it was healthy", approved=approved
                )
            if isinstance(progress, dict):
                gate = progress.get("pending_gate")
                if gate and inp.approve_gates and gate not in approved:
                    why = await _update(
                        client,
                        inp.plan,
                        inp.run_id,
                        Update.APPROVE,
                        ApproveInput(
                            gate=gate,
                            by=inp.by,
                            comment="approved by the drill schedule (the plan allows it)",
                        ),
                    )
                    if why is None:
                        approved.append(gate)
                if str(progress.get("phase", "")).startswith(DRILL_UP_PHASE):
                    vms = progress.get("vms", {})
                    why = await _update(client, inp.plan, inp.run_id, Update.CLEANUP, None)
                    detail = f"all {len(vms)} VMs healthy; cleanup requested"
                    if why is not None:
                        detail += f" (the run answered: {why})"
                    return DriveOutcome(healthy=True, detail=detail, approved=approved)
            if time.time() > deadline:
                reason = f"not healthy within {inp.health_timeout_s:g}s"
                await _update(
                    client, inp.plan, inp.run_id, Update.ABORT, AbortInput(by=inp.by, reason=reason)
                )
                return DriveOutcome(healthy=False, detail=reason, approved=approved)
            await asyncio.sleep(POLL_S)
