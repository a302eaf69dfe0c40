"""RecoveryPlan never makes a disaster worse: every failure policy in every mode, a drill ended by
cleanup, abort or its time to live in each phase (gates included), a stopped real failover's
decisions (retry, approved rollback, end as it is), gate timeouts in every mode, and ``Hook.site``.

The rule the real-mode tests hold: ``cleanup_run`` (the only step that destroys what a run recovered)
is never called for a planned or unplanned failover unless gate ``rollback`` was approved.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle

from seawall.contract.messages import AbortInput, ApproveInput, RetryInput, RollbackInput, RunReport
from seawall.contract.names import Activity as A
from seawall.contract.queues import site_queue
from tests.workflows.conftest import WAIT_S, Rig, progress_until
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from tests.workflows.test_recovery_plan import DRILL_RUNNING, RIG, plan_failure, refused, start
from workflows.recovery import RecoveryPlanWorkflow

pytestmark = pytest.mark.timeout(240)

MODES = ["test", "planned", "unplanned"]
REAL = ["planned", "unplanned"]


def stopped(p: dict[str, Any]) -> bool:
    return p["stopped"] is not None and str(p["phase"]).startswith("stopped:")


async def outcome(handle: WorkflowHandle[Any, Any]) -> tuple[RunReport | None, WorkflowFailureError | None]:
    """The run's report, or its failure (a failed run fails the workflow with the report attached)."""
    async with asyncio.timeout(WAIT_S):
        try:
            return await handle.result(), None
        except WorkflowFailureError as exc:
            return None, exc


def three_groups(
    rig: Rig,
    policy: str,
    *,
    gate: str | None = None,
    gate_timeout_s: float | None = None,
    gate_on_timeout: str = "abort",
) -> None:
    """``data``: db and cache (independent) and app (needs db); ``front``: web (behind ``gate``)."""
    rig.stubs.spec = plan_spec(
        "erp",
        rig.source,
        rig.target,
        group(
            "data", vm_step("db", "data"), vm_step("cache", "data"), vm_step("app", "data", depends_on=["db"])
        ),
        group(
            "front",
            vm_step("web", "front"),
            gate=gate,
            gate_timeout_s=gate_timeout_s,
            gate_on_timeout=gate_on_timeout,
        ),
        failure_policy=policy,
        post_hooks=["smoke"],
    )


def never_destroyed(stubs: Stubs) -> None:
    assert A.CLEANUP_RUN not in stubs.names(), "a real failover's recovered VMs were destroyed"


# ---- every failure policy in every mode -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", ["stop", "rollback-test"])
async def test_a_failed_vm_stops_the_run_and_a_real_failover_keeps_what_is_up(
    rig_for: RIG, mode: str, policy: str
) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rig_for(stubs) as rig:
        three_groups(rig, policy)
        handle = await start(rig, mode)
        if mode == "test" and policy == "rollback-test":
            report, failure = await outcome(handle)  # a drill is torn down at once
        else:
            progress = await progress_until(handle, stopped)
            assert progress["stopped"] == "failed: db, app" and progress["vms"]["cache"] == "healthy"
            assert "web" not in stubs.vms(A.CHOOSE_POINT)  # the run waits where it stopped
            await asyncio.sleep(0.5)
            assert A.WRITE_REPORT not in stubs.names()
            if mode == "test":
                assert A.CLEANUP_RUN not in stubs.names()
                await handle.execute_update(RecoveryPlanWorkflow.cleanup)
            else:
                never_destroyed(stubs)
                said = await handle.execute_update(
                    RecoveryPlanWorkflow.abort, AbortInput(by="erin", reason="investigate first")
                )
                assert "ends as it is (nothing is destroyed)" in said
            report, failure = await outcome(handle)
    assert report is None and failure is not None and plan_failure(failure).type == "PlanFailed"
    report = stubs.report()
    assert report.status == "failed"
    assert [v.vm for v in report.vms] == ["cache"]  # what is up
    assert set(report.failed_vms) == {"db", "app"} and report.failed_vms["app"] == "dependency db failed"
    assert "smoke" not in [h.name for h in report.hooks]
    if mode == "test":
        assert [c.mode for c in stubs.inputs(A.CLEANUP_RUN)] == ["test"] and report.cleanup is not None
    else:
        never_destroyed(stubs)
        assert report.cleanup is None and report.rollback is None
        assert report.decisions[-1].startswith("ended as it is by erin")
        warned = any("rollback-test applies to drills only" in w for w in report.warnings)
        assert warned == (policy == "rollback-test")


@pytest.mark.parametrize("mode", MODES)
async def test_skip_vm_recovers_the_rest_and_completes(rig_for: RIG, mode: str) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rig_for(stubs) as rig:
        three_groups(rig, "skip-vm")
        handle = await start(rig, mode)
        if mode == "test":
            await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
            await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        report, failure = await outcome(handle)
    assert failure is None and report is not None and report.status == "completed"
    assert [v.vm for v in report.vms] == ["cache", "web"]
    assert set(report.failed_vms) == {"db", "app"}
    assert "app" not in stubs.vms(A.CHOOSE_POINT)
    assert [h.name for h in report.hooks] == ["smoke"]
    if mode == "test":
        assert [c.mode for c in stubs.inputs(A.CLEANUP_RUN)] == ["test"]
    else:
        never_destroyed(stubs)


@pytest.mark.parametrize("mode", MODES)
async def test_a_failed_hook_stops_the_run_like_a_failed_vm(rig_for: RIG, mode: str) -> None:
    stubs = Stubs(failing={A.RUN_HOOK: None})
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop")
        handle = await start(rig, mode)
        progress = await progress_until(handle, stopped)
        assert progress["stopped"].startswith("hook smoke failed")
        stubs.failing = {}
        await handle.execute_update(RecoveryPlanWorkflow.retry, RetryInput(by="erin"))
        if mode == "test":
            await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
            await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        report, failure = await outcome(handle)
    assert failure is None and report is not None and report.status == "completed"
    assert [(h.name, h.ok) for h in report.hooks] == [("smoke", False), ("smoke", True)]
    assert [v.vm for v in report.vms] == ["db", "cache", "app", "web"]
    if mode != "test":
        never_destroyed(stubs)


# ---- a stopped real failover: retry, rollback, end ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_retry_recovers_the_failed_vms_then_the_rest_of_the_plan(rig_for: RIG, mode: str) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop")
        handle = await start(rig, mode)
        await progress_until(handle, stopped)
        stubs.failing = {}  # the operator fixed what failed
        said = await handle.execute_update(RecoveryPlanWorkflow.retry, RetryInput(by="erin", comment="fixed"))
        assert said.startswith("retry requested by erin")
        if mode == "test":
            await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
            assert "nothing to retry" in await refused(handle, RecoveryPlanWorkflow.retry, RetryInput(by="x"))
            await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        report, failure = await outcome(handle)
    assert failure is None and report is not None and report.status == "completed"
    chosen = stubs.vms(A.CHOOSE_POINT)
    assert sorted(chosen[:2]) == ["cache", "db"] and chosen[2:] == ["db", "app", "web"]  # cache only once
    assert [v.vm for v in report.vms] == ["db", "cache", "app", "web"] and report.failed_vms == {}
    assert report.decisions[0].startswith("retry by erin") and report.decisions[0].endswith(": fixed")
    if mode != "test":
        never_destroyed(stubs)


@pytest.mark.parametrize("mode", REAL)
async def test_rollback_destroys_only_after_an_approval_naming_what_it_destroys(
    rig_for: RIG, mode: str
) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop")
        handle = await start(rig, mode)
        await progress_until(handle, stopped)
        said = await handle.execute_update(
            RecoveryPlanWorkflow.rollback, RollbackInput(by="erin", reason="db cannot come up")
        )
        assert said.startswith("nothing is destroyed until gate 'rollback' is approved")
        progress = await progress_until(handle, lambda p: p["pending_gate"] == "rollback")
        message = progress["gate_message"]
        assert message in said
        assert f"DESTROYS at site {rig.target} the recovered VMs: cache-new (recovered cache)" in message
        assert "whatever the failed attempts of db, app left there" in message
        assert f"STARTS the source VMs db, cache, app, web at site {rig.source} again" in message
        await asyncio.sleep(0.5)
        never_destroyed(stubs)  # asked, not approved
        assert "waiting for approval" in await refused(handle, RecoveryPlanWorkflow.retry, RetryInput(by="x"))
        assert "already waiting" in await refused(
            handle, RecoveryPlanWorkflow.rollback, RollbackInput(by="x", reason="again")
        )
        await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="rollback", by="frank"))
        report, failure = await outcome(handle)
    assert failure is None and report is not None and report.status == "rolled-back"
    (cleanup,) = stubs.inputs(A.CLEANUP_RUN)
    assert (cleanup.mode, cleanup.run) == (mode, report.run)
    names = stubs.names()
    # The replicas go first, then the originals start, then their schedules.
    assert names.index(A.CLEANUP_RUN) < names.index(A.START_SOURCE) < names.index(A.RESUME_SCHEDULES)
    assert stubs.vms(A.START_SOURCE) == ["db", "cache", "app", "web"]
    assert {c.queue for c in stubs.of(A.START_SOURCE)} == {site_queue(rig.source)}
    assert report.rollback is not None
    assert (report.rollback.requested_by, report.rollback.approved_by) == ("erin", "frank")
    assert report.rollback.schedules_resumed == 4
    assert [(a.gate, a.by) for a in report.approvals] == [("rollback", "frank")]


async def test_abort_at_the_rollback_gate_ends_the_run_without_destroying(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rig_for(stubs) as rig:
        three_groups(rig, "rollback-test")
        handle = await start(rig, "unplanned")
        await progress_until(handle, stopped)
        await handle.execute_update(RecoveryPlanWorkflow.rollback, RollbackInput(by="erin", reason="r"))
        await progress_until(handle, lambda p: p["pending_gate"] == "rollback")
        await handle.execute_update(
            RecoveryPlanWorkflow.abort, AbortInput(by="erin", reason="changed my mind")
        )
        _, failure = await outcome(handle)
    assert failure is not None
    never_destroyed(stubs)
    assert A.START_SOURCE not in stubs.names()
    report = stubs.report()
    assert report.status == "failed" and report.rollback is None and [v.vm for v in report.vms] == ["cache"]


async def test_rollback_is_refused_for_a_drill_and_for_a_run_not_stopped(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop", gate="go")
        drill = await start(rig, "test")
        await progress_until(drill, lambda p: p["pending_gate"] == "go")
        assert "clean it up" in await refused(
            drill, RecoveryPlanWorkflow.rollback, RollbackInput(by="x", reason="r")
        )
        assert "not stopped" in await refused(drill, RecoveryPlanWorkflow.retry, RetryInput(by="x"))
        await drill.terminate("end of test")
    async with rig_for(Stubs()) as rig:
        three_groups(rig, "stop", gate="go")
        real = await start(rig, "unplanned")
        await progress_until(real, lambda p: p["pending_gate"] == "go")
        assert "only a stopped real failover" in await refused(
            real, RecoveryPlanWorkflow.rollback, RollbackInput(by="x", reason="r")
        )
        await real.terminate("end of test")


# ---- abort and cleanup in every phase -----------------------------------------------------------------

PHASES = ["pre-hook", "gate", "group", "health-checks", "recovered", "stopped"]


def phase_rig(rig: Rig, phase: str) -> Any:
    """A plan and stubs that hold the run in ``phase``; the progress condition that says it is there."""
    stubs = rig.stubs
    gate = "go" if phase == "gate" else None
    rig.stubs.spec = plan_spec(
        "erp",
        rig.source,
        rig.target,
        group("data", vm_step("db", "data")),
        group("front", vm_step("web", "front"), gate=gate),
        pre_hooks=["announce"],
    )
    if phase == "pre-hook":
        stubs.blocking = {A.RUN_HOOK}
        return lambda p: A.RUN_HOOK in stubs.names()
    if phase == "gate":
        return lambda p: p["pending_gate"] == "go"
    if phase == "group":
        stubs.blocking = {A.MATERIALIZE_DISKS}
        return lambda p: A.MATERIALIZE_DISKS in stubs.names()
    if phase == "health-checks":
        stubs.blocking = {A.CHECK_HEALTH}
        return lambda p: A.CHECK_HEALTH in stubs.names()
    if phase == "stopped":
        stubs.failing = {A.CREATE_TARGET_VM: {"web"}}
        return stopped
    return lambda p: p["phase"] == DRILL_RUNNING or p["phase"].startswith("completed")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("how", ["cleanup", "abort"])
async def test_a_drill_ends_and_is_cleaned_up_in_every_phase(rig_for: RIG, phase: str, how: str) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        there = phase_rig(rig, phase)
        handle = await start(rig, "test")
        await progress_until(handle, there)
        if how == "cleanup":
            await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        else:
            await handle.execute_update(RecoveryPlanWorkflow.abort, AbortInput(by="carol", reason="enough"))
        report, failure = await outcome(handle)
    assert [c.mode for c in stubs.inputs(A.CLEANUP_RUN)] == ["test"]
    report = report or stubs.report()
    assert report.cleanup is not None
    expected = {"recovered": "completed", "stopped": "failed"}.get(phase, "aborted")
    assert report.status == expected and (failure is not None) == (expected == "failed")
    if phase in ("pre-hook", "gate", "group", "health-checks"):
        assert "web" not in stubs.vms(A.CHOOSE_POINT)
    if phase == "gate":
        assert [(a.gate, a.approved, a.by) for a in report.approvals] == [("go", False, how)]


@pytest.mark.parametrize("mode", REAL)
@pytest.mark.parametrize("phase", ["pre-hook", "gate", "group", "health-checks"])
async def test_abort_stops_a_real_failover_where_it_is_and_destroys_nothing(
    rig_for: RIG, mode: str, phase: str
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        there = phase_rig(rig, phase)
        handle = await start(rig, mode)
        await progress_until(handle, there)
        said = await handle.execute_update(RecoveryPlanWorkflow.abort, AbortInput(by="carol", reason="stop"))
        assert "stops where it is" in said
        progress = await progress_until(handle, stopped)
        assert progress["stopped"] == "aborted by carol (stop)"
        await asyncio.sleep(0.5)
        never_destroyed(stubs)
        # Retry carries on from where it stopped: the aborted step runs again, then the rest.
        stubs.blocking = set()
        await handle.execute_update(RecoveryPlanWorkflow.retry, RetryInput(by="carol"))
        if phase == "gate":
            await progress_until(handle, lambda p: p["pending_gate"] == "go")
            await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go", by="carol"))
        report, failure = await outcome(handle)
    assert failure is None and report is not None and report.status == "completed"
    assert [v.vm for v in report.vms] == ["db", "web"] and report.failed_vms == {}
    never_destroyed(stubs)


# ---- gates: timeouts in every mode, a drill's time to live ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("on_timeout", ["approve", "abort"])
async def test_a_gate_timeout_does_its_default_action_in_every_mode(
    rig_for: RIG, mode: str, on_timeout: str
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop", gate="go", gate_timeout_s=1800, gate_on_timeout=on_timeout)
        handle = await start(rig, mode)
        await progress_until(handle, lambda p: p["pending_gate"] == "go")
        await rig.env.fast_forward(handle, timedelta(minutes=31))  # type: ignore[attr-defined]
        if on_timeout == "approve":
            if mode == "test":
                await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
                await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        elif mode != "test":
            # A real failover is not torn down by a gate's timeout: it stops and waits.
            await progress_until(handle, stopped)
            never_destroyed(stubs)
            await handle.execute_update(RecoveryPlanWorkflow.abort, AbortInput(by="erin", reason="later"))
        report, failure = await outcome(handle)
    assert failure is None and report is not None
    assert (report.approvals[0].gate, report.approvals[0].by, report.approvals[0].approved) == (
        "go",
        "timeout",
        on_timeout == "approve",
    )
    assert ("web" in stubs.vms(A.CHOOSE_POINT)) == (on_timeout == "approve")
    assert report.status == ("completed" if on_timeout == "approve" else "aborted")
    if mode == "test":
        assert len(stubs.of(A.CLEANUP_RUN)) == 1
    else:
        never_destroyed(stubs)


async def test_a_drill_waiting_at_a_gate_without_timeout_ends_at_its_time_to_live(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop", gate="go")  # test_ttl: 4 h, counted from the drill's start
        handle = await start(rig, "test")
        progress = await progress_until(handle, lambda p: p["pending_gate"] == "go")
        assert progress["deadline"] is not None
        await rig.env.fast_forward(handle, timedelta(hours=4, minutes=1))  # type: ignore[attr-defined]
        report, _ = await outcome(handle)
    assert report is not None and report.status == "aborted"
    assert [(a.gate, a.by, a.approved) for a in report.approvals] == [("go", "time to live", False)]
    assert len(stubs.of(A.CLEANUP_RUN)) == 1 and "web" not in stubs.vms(A.CHOOSE_POINT)
    assert report.decisions[-1].startswith("time to live reached")


async def test_a_stopped_drill_ends_at_its_time_to_live(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rig_for(stubs) as rig:
        three_groups(rig, "stop")
        handle = await start(rig, "test", ttl_s=3600)
        await progress_until(handle, stopped)
        await rig.env.fast_forward(handle, timedelta(hours=1, minutes=1))  # type: ignore[attr-defined]
        _, failure = await outcome(handle)
    assert failure is not None and len(stubs.of(A.CLEANUP_RUN)) == 1
    assert stubs.report().status == "failed"


# ---- Hook.site ---------------------------------------------------------------------------------------


async def test_a_hook_runs_on_the_worker_of_the_site_it_names(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("data", vm_step("db", "data"), pre_hooks=["quiesce-app"], post_hooks=["check"]),
            pre_hooks=["announce"],
        )
        stubs.spec = spec.model_copy(
            update={"hook_sites": {"announce": rig.source, "data/quiesce-app": rig.source}}
        )
        handle = await start(rig, "unplanned")
        report, failure = await outcome(handle)
    assert failure is None and report is not None
    queues = {c.inp.name: c.queue for c in stubs.of(A.RUN_HOOK)}
    assert queues == {
        "announce": site_queue(rig.source),
        "quiesce-app": site_queue(rig.source),
        "check": site_queue(rig.target),
    }
