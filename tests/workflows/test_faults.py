"""Faults that must not stall or jam a run: corrupt data falls back to an older point (or fails the VM
with the corruption named), a bad input from the UI fails the run at once naming the field, a bad update
argument is rejected with one line, and no workflow type can be jammed by its input."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from seawall.contract.messages import ApproveInput, FailoverInput
from seawall.contract.names import Activity as A
from seawall.contract.names import Update, Workflow
from seawall.contract.verify import VerifyInput
from tests.workflows.conftest import WAIT_S, Rig, progress_until
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.recovery import RecoveryPlanWorkflow
from workflows.verify import VerifyReplicaWorkflow

RIG = Callable[[Stubs], Any]
DRILL_RUNNING = "drill running: waiting for cleanup (or its time to live)"


def one_vm(rig: Rig, **kw: Any) -> None:
    rig.stubs.spec = plan_spec("erp", rig.source, rig.target, group("data", vm_step("db", "data")), **kw)


async def failure_of(handle: Any, within: float = WAIT_S) -> ApplicationError:
    """The run's failure. "At once" is checked on the history (no workflow task failed and was retried
    first), not by the wait: under a full suite the dev server once held a run's history for 10 s."""
    async with asyncio.timeout(within):
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


# ---- corrupt data: fall back, or fail the VM naming it -------------------------------------------------


async def test_a_corrupt_point_falls_back_to_the_newest_older_point_and_the_report_says_why(
    rig_for: RIG,
) -> None:
    stubs = Stubs(corrupt={"pt-db"})
    async with rig_for(stubs) as rig:
        one_vm(rig)
        handle = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test"), "plan")
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        report = await handle.result()
    assert report.status == "completed"
    (vm,) = report.vms
    assert vm.point_id == "pt-db-older"
    assert "pt-db of db is corrupt" in vm.point_note and "chunk 0123456789abcdef" in vm.point_note
    assert "pt-db-older is the newest older point" in vm.point_note
    # Once, not retried: bad data is no reason to wait.
    assert [r.point.point_id for r in stubs.inputs(A.MATERIALIZE_DISKS)] == ["pt-db", "pt-db-older"]
    assert [r.replaces for r in stubs.inputs(A.MATERIALIZE_DISKS)] == [False, True]
    assert [c.refused for c in stubs.inputs(A.CHOOSE_POINT)] == [[], ["pt-db"]]


async def test_with_no_older_point_the_vm_fails_naming_the_corruption_not_cancelled(rig_for: RIG) -> None:
    stubs = Stubs(corrupt={"pt-db"}, no_older=True)
    async with rig_for(stubs) as rig:
        # rollback-test: the failed drill is torn down at once (under stop it would wait for a retry).
        one_vm(rig, failure_policy="rollback-test")
        handle = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test"), "plan")
        cause = await failure_of(handle)
    assert cause.type == "PlanFailed"
    report = stubs.report()
    assert report.status == "failed"
    reason = report.failed_vms["db"]
    assert "point pt-db of db is corrupt" in reason and "chunk 0123456789abcdef" in reason, reason
    assert "no fallback: db has no verified recovery point older than pt-db" in reason, reason
    assert "Activity task failed" not in reason and "Cancelled" not in reason
    assert len(stubs.of(A.MATERIALIZE_DISKS)) == 1 and stubs.of(A.CLEANUP_RUN)


async def test_a_failed_activity_is_reported_with_its_own_message(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: None}, failure_type={A.CREATE_TARGET_VM: "PlanInvalid"})
    async with rig_for(stubs) as rig:
        one_vm(rig, failure_policy="rollback-test")
        handle = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test"), "plan")
        await failure_of(handle)
    assert stubs.report().failed_vms == {"db": "create_target_vm: create_target_vm failed for db"}


# ---- inputs the UI can send -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"plan": "erp", "mode": "tset"}, "mode: 'tset' is not one of test, planned, unplanned"),
        ({"mode": "test"}, "plan: is required"),
        ({"plan": 7, "mode": "test"}, "plan: Input should be a valid string"),
        ({"plan": "erp", "mode": "test", "ttl": 5}, "ttl: is not a known field"),
        ("erp", "input: expected a JSON object, got 'erp'"),
        (None, "an input object is required"),
    ],
)
async def test_a_bad_input_fails_the_run_at_once_naming_the_field_and_frees_the_plan(
    rig_for: RIG, raw: Any, says: str
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        one_vm(rig)
        # As the UI sends it: the type by name, the JSON as typed.
        args = [] if raw is None else [raw]
        handle = await rig.client.start_workflow(
            Workflow.RECOVERY_PLAN, args=args, id=rig.wid("plan"), task_queue=rig.queue
        )
        cause = await failure_of(handle)
        assert cause.type == "InvalidInput" and says in cause.message, cause.message
        assert cause.non_retryable
        history = await handle.fetch_history()
        assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        # The plan is free again: a good run of it starts right after.
        again = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test"), "plan")
        await progress_until(again, lambda p: p["phase"] == DRILL_RUNNING)
        await again.execute_update(RecoveryPlanWorkflow.cleanup)
        assert (await again.result()).status == "completed"
    assert not stubs.of(A.LOAD_PLAN_SPEC)[1:]  # the bad run loaded nothing


@pytest.mark.parametrize(
    "workflow_type",
    [
        Workflow.PROBE_SITE,
        Workflow.PROTECT_VM,
        Workflow.REPLICATION_CYCLE,
        Workflow.UNPROTECT_VM,
        Workflow.COLLECT_GARBAGE,
        Workflow.RECOVERY_PLAN,
        Workflow.RECOVER_VM,
        Workflow.CLEANUP_TEST,
        Workflow.COMMIT_FAILOVER,
        Workflow.REPROTECT,
        Workflow.VERIFY_REPLICA,
    ],
)
async def test_no_workflow_type_can_be_jammed_by_its_input(rig_for: RIG, workflow_type: str) -> None:
    async with rig_for(Stubs()) as rig:
        handle = await rig.client.start_workflow(
            workflow_type, {"vm": "Not A Name!", "bogus": True}, id=rig.wid("bad"), task_queue=rig.queue
        )
        cause = await failure_of(handle)
        history = await handle.fetch_history()
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert cause.type == "InvalidInput" and cause.message.startswith("invalid input: "), cause.message
    assert "bogus: is not a known field" in cause.message


async def test_verify_replica_reports_corrupt_points(rig_for: RIG) -> None:
    stubs = Stubs(corrupt={"p2"})
    async with rig_for(stubs) as rig:
        report = await rig.client.execute_workflow(
            VerifyReplicaWorkflow.run,
            VerifyInput(vm="db", points=["p1", "p2"]),
            id=rig.wid("v"),
            task_queue=rig.queue,
        )
    assert not report.ok and report.corrupt_points == ["p2"]
    (call,) = stubs.of(A.SCRUB_REPLICA)
    assert call.queue.endswith(rig.source)


# ---- update arguments ------------------------------------------------------------------------------


async def test_bad_update_arguments_are_rejected_with_one_line(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        rig.stubs.spec = plan_spec(
            "erp", rig.source, rig.target, group("data", vm_step("db", "data"), gate="go")
        )
        handle = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test"), "plan")
        await progress_until(handle, lambda p: p["pending_gate"] == "go")
        for name, arg, says in [
            (Update.APPROVE, {"gate": "go"}, "by: is required"),
            (Update.APPROVE, {"gate": "go", "by": "ann", "extra": 1}, "extra: is not a known field"),
            (Update.APPROVE, "go", "expected a JSON object"),
            (Update.APPROVE, {"gate": "nope", "by": "ann"}, "gate 'nope' is not the one waiting ('go')"),
            (Update.ABORT, {"by": "ann"}, "reason: is required"),
            (Update.EXTEND_TTL, "soon", "hours: 'soon' is not a number"),
        ]:
            with pytest.raises(WorkflowUpdateFailedError) as rejected:
                await handle.execute_update(name, arg)
            cause = rejected.value.cause
            assert isinstance(cause, ApplicationError) and says in cause.message, (name, cause)
            assert "\n" not in cause.message
        # Nothing was jammed: the right approval goes through and the drill completes.
        await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go", by="ann"))
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        assert (await handle.result()).status == "completed"
