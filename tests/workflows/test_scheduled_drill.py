"""ScheduledDrill and the notifications of a run, against stub activities (drive_drill is the real
one: it queries and updates the drill run on the test server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall.contract.drills import DrillInput, DrillResult, NotifyRequest
from seawall.contract.messages import ApproveInput, FailoverInput
from seawall.contract.names import Activity as A
from seawall.contract.names import recover_id
from tests.workflows.conftest import TASK_TIMEOUT, Rig, progress_until
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.drills import ScheduledDrillWorkflow
from workflows.recovery import RecoveryPlanWorkflow

RIG = Callable[[Stubs], Any]


def gated(rig: Rig) -> str:
    plan = f"erp-{rig.tag}"
    rig.stubs.spec = plan_spec(
        plan,
        rig.source,
        rig.target,
        group("data", vm_step("db", "data")),
        group("apps", vm_step("app", "apps"), gate="go"),
    )
    return plan


def events(stubs: Stubs) -> list[tuple[str, str]]:
    return [(r.event, r.key) for r in stubs.inputs(A.NOTIFY) if isinstance(r, NotifyRequest)]


async def test_a_scheduled_drill_approves_gates_the_plan_lets_it_then_cleans_up_and_passes(
    rig_for: RIG,
) -> None:
    async with rig_for(Stubs()) as rig:
        plan = gated(rig)
        inp = DrillInput(plan=plan, approve_gates=True, health_timeout_s=600)
        result: DrillResult = await rig.client.execute_workflow(
            ScheduledDrillWorkflow.run, inp, id=rig.wid("drill"), task_queue=rig.queue
        )
        assert result.status == "passed", result
        assert "all 2 VMs healthy" in result.detail
        report = rig.stubs.report()
        assert report.status == "completed" and report.mode == "test"
        assert [(a.gate, a.approved, a.by) for a in report.approvals] == [("go", True, "schedule")]
        assert rig.stubs.vms(A.CLEANUP_RUN) == [None]  # cleaned up (one call, for the run)
        found = [e for e, _ in events(rig.stubs)]
        assert found.count("run-started") == 1 and found.count("gate-waiting") == 1
        assert found.count("run-completed") == 1 and found[-1] == "drill-passed"
        # One key per event, and no two events share one.
        keys = [k for _, k in events(rig.stubs)]
        assert len(keys) == len(set(keys))
        desc = await rig.client.get_workflow_handle(recover_id(plan)).describe()
        assert (await desc.memo()).get("seawall_started_by") == "schedule"


async def test_a_gate_the_plan_keeps_for_people_waits_notified_and_fails_the_drill_at_its_deadline(
    rig_for: RIG,
) -> None:
    async with rig_for(Stubs()) as rig:
        plan = gated(rig)
        inp = DrillInput(plan=plan, approve_gates=False, health_timeout_s=3)
        result: DrillResult = await rig.client.execute_workflow(
            ScheduledDrillWorkflow.run, inp, id=rig.wid("drill"), task_queue=rig.queue
        )
        assert result.status == "failed", result
        assert "not healthy within 3s" in result.detail
        report = rig.stubs.report()
        assert report.status == "aborted" and "app" not in {v.vm for v in report.vms}
        gate_events = [r for r in rig.stubs.inputs(A.NOTIFY) if r.event == "gate-waiting"]
        assert len(gate_events) == 1
        assert gate_events[0].facts["approvers"] == "operator" and gate_events[0].plan == plan
        assert [e for e, _ in events(rig.stubs)][-1] == "drill-failed"


async def test_a_drill_is_skipped_while_another_run_of_the_plan_goes(rig_for: RIG) -> None:
    async with rig_for(Stubs()) as rig:
        plan = gated(rig)
        running = await rig.client.start_workflow(
            RecoveryPlanWorkflow.run,
            FailoverInput(plan=plan, mode="test"),
            id=recover_id(plan),
            task_queue=rig.queue,
            task_timeout=TASK_TIMEOUT,
        )
        await progress_until(running, lambda p: p["pending_gate"] == "go")
        result: DrillResult = await rig.client.execute_workflow(
            ScheduledDrillWorkflow.run, DrillInput(plan=plan), id=rig.wid("drill"), task_queue=rig.queue
        )
        assert result.status == "skipped" and result.run is None
        assert [e for e, _ in events(rig.stubs)][-1] == "drill-failed"
        await running.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go", by="t"))
        await running.terminate()


async def test_a_notification_retried_after_failures_keeps_its_key(rig_for: RIG) -> None:
    async with rig_for(Stubs(flaky={A.NOTIFY: 2})) as rig:
        plan = gated(rig)
        handle = await rig.client.start_workflow(
            RecoveryPlanWorkflow.run,
            FailoverInput(plan=plan, mode="test"),
            id=recover_id(plan),
            task_queue=rig.queue,
            task_timeout=TASK_TIMEOUT,
        )
        await progress_until(handle, lambda p: p["pending_gate"] == "go")
        await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go", by="t"))
        await progress_until(handle, lambda p: p["phase"].startswith("drill running"))
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        await handle.result()
        sent = events(rig.stubs)
        # Every event was attempted three times (two failures, then delivered), always under one key.
        by_event: dict[str, set[str]] = {}
        for event, key in sent:
            by_event.setdefault(event, set()).add(key)
        assert set(by_event) == {"run-started", "gate-waiting", "run-completed"}
        assert all(len(keys) == 1 for keys in by_event.values()), by_event
        assert len(sent) == 9
