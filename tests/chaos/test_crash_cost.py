"""A crash costs seconds: a worker SIGKILLed during ``materialize_disks`` is replaced, and the attempt it
held is retried once its 20 s heartbeat timeout passes, with no watchdog failing it by hand (the drill
test in test_recovery_crash.py plays that watchdog; this one does not).

Asserted on the event times of the recovered VM's workflow history, with generous margins: the retry
must start well within the old 2-minute heartbeat timeout.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from seawall.contract.messages import ApproveInput, RunReport
from seawall.contract.names import recover_vm_id
from seawall.lab import LabInfo
from tests.chaos.test_recovery_crash import GATE, Crash, Erp, end_run, erp  # noqa: F401 - the fixture
from tests.integration.test_recovery import PLAN, PORT_OFFSET, stand_ins, start_drill, wait_progress
from workflows.policies import HEARTBEAT_TIMEOUT

# The retry of a dead attempt starts after the heartbeat timeout plus the retry's first backoff (2 s);
# the margin covers a loaded machine and the server's timer granularity.
BOUND_S = HEARTBEAT_TIMEOUT.total_seconds() + 2 + 23


async def test_a_worker_killed_during_materialize_costs_one_heartbeat_timeout(
    erp: Erp,  # noqa: F811 - the module fixture imported above
    lab: LabInfo,
    tmp_path: Path,
) -> None:
    failpoint = "materialize.disk_done=1"
    crash = Crash(erp, tmp_path, failpoint)
    handle: WorkflowHandle[Any, RunReport] | None = None
    try:
        with stand_ins(PORT_OFFSET):
            handle = await start_drill(erp.env, ttl_s=3600)
            frozen = await crash.frozen(failpoint)
            assert frozen["vm"] == "db-01", frozen
            dead = crash.workers[-1]
            killed_at = datetime.now(UTC)
            dead.kill()
            # A replacement, and nothing else: no one fails the dead attempt for Temporal.
            crash.workers.append(erp.worker(tmp_path / "worker-2.log"))
            await wait_progress(handle, lambda p: p["pending_gate"] == GATE, timeout=240)
            await handle.execute_update("approve", ApproveInput(gate=GATE, by="chaos"))
            await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))
            await handle.execute_update("cleanup")
            report = await asyncio.wait_for(handle.result(), timeout=180)
            child = erp.env.client.get_workflow_handle(recover_vm_id(PLAN, report.run, "db-01"))
            history = await child.fetch_history()
    finally:
        if handle is not None:
            await end_run(handle)
        crash.stop()

    assert report.status == "completed", report.failed_vms
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "materialize_disks"
    }
    (started,) = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    attrs = started.activity_task_started_event_attributes
    # The attempt the dead worker held timed out on its heartbeat; the second one did the work.
    assert attrs.attempt == 2, attrs
    assert attrs.last_failure.timeout_failure_info.timeout_type, attrs.last_failure
    retried_after = (started.event_time.ToDatetime(tzinfo=UTC) - killed_at).total_seconds()
    assert 0 < retried_after < BOUND_S, f"the retry started {retried_after:.1f}s after the kill"
    print(f"materialize retried {retried_after:.1f}s after the SIGKILL (bound {BOUND_S:.0f}s, was 120s+)")
