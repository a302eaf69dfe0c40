"""RecoveryPlan against stub activities: gates, abort in each phase, a drill's cleanup and time to live,
the failure policies in test and real modes, fencing, the planned final cycle and failback.

The failure policies in every mode, abort and cleanup in every phase, retry and rollback are in
``test_failure_policies``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from seawall.contract.messages import AbortInput, ApproveInput, FailoverInput, RunReport
from seawall.contract.names import Activity as A
from seawall.contract.queues import site_queue
from tests.workflows.conftest import Rig, progress_until
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.recovery import RecoveryPlanWorkflow

RIG = Callable[[Stubs], Any]
DRILL_RUNNING = "drill running: waiting for cleanup (or its time to live)"


def two_groups(rig: Rig, *, gate: str | None = None, **kw: Any) -> None:
    """``db`` first, then ``app`` (behind ``gate`` when given)."""
    rig.stubs.spec = plan_spec(
        "erp",
        rig.source,
        rig.target,
        group("data", vm_step("db", "data")),
        group("apps", vm_step("app", "apps"), gate=gate, **kw),
    )


async def start(rig: Rig, mode: str = "test", **kw: Any) -> WorkflowHandle[Any, Any]:
    return await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode=mode, **kw), "plan")


async def end_drill(handle: WorkflowHandle[Any, Any]) -> RunReport:
    await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
    assert await handle.execute_update(RecoveryPlanWorkflow.cleanup) == "cleanup requested"
    result: RunReport = await handle.result()
    return result


async def refused(handle: WorkflowHandle[Any, Any], update: Any, *args: Any) -> str:
    """The validator's message for an update it refuses."""
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await handle.execute_update(update, *args)
    cause = rejected.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause.message


def plan_failure(exc: WorkflowFailureError) -> ApplicationError:
    assert isinstance(exc.cause, ApplicationError), repr(exc.cause)
    return exc.cause


def elapsed(report: RunReport) -> timedelta:
    return datetime.fromisoformat(report.finished_at) - datetime.fromisoformat(report.started_at)


# ---- drills, hooks and gates ------------------------------------------------------------------------


async def test_drill_recovers_groups_in_order_with_hooks_then_is_cleaned_up_on_request(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("data", vm_step("db", "data")),
            group("apps", vm_step("app", "apps"), pre_hooks=["warm"], post_hooks=["check"]),
            pre_hooks=["announce"],
            post_hooks=["smoke"],
        )
        report = await end_drill(await start(rig))
    # A drill touches nothing at the source and leaves production DNS alone.
    for untouched in (A.PAUSE_SCHEDULES, A.FENCE_VM, A.UPDATE_DNS, A.RESTORE_IN_PLACE):
        assert untouched not in stubs.names()
    assert [(h.name, h.group) for h in stubs.inputs(A.RUN_HOOK)] == [
        ("announce", None),
        ("warm", "apps"),
        ("check", "apps"),
        ("smoke", None),
    ]
    assert stubs.vms(A.CHOOSE_POINT) == ["db", "app"]
    for name in (A.CHOOSE_POINT, A.MATERIALIZE_DISKS, A.CREATE_TARGET_VM, A.CHECK_HEALTH, A.RUN_HOOK):
        assert {c.queue for c in stubs.of(name)} == {site_queue(rig.target)}, name
    recover = stubs.inputs(A.CHOOSE_POINT)
    assert {(r.mode, r.in_place, r.target_site, r.run) for r in recover} == {
        ("test", False, rig.target, report.run)
    }
    assert [(c.plan, c.run, c.mode) for c in stubs.inputs(A.CLEANUP_RUN)] == [("erp", report.run, "test")]
    assert stubs.report() == report
    assert report.status == "completed" and report.mode == "test"
    assert [(v.vm, v.target_name, v.point_id) for v in report.vms] == [
        ("db", "db-new", "pt-db"),
        ("app", "app-new", "pt-app"),
    ]
    assert [s.step for s in report.vms[0].steps] == [
        "choose recovery point",
        "materialize disks",
        "create, re-IP and power on",
        "health checks",
    ]
    assert [r.id for r in report.vms[0].resources] == ["db-dir", "db-new"]
    assert [g.step for g in report.groups] == ["data", "apps"]
    assert [h.name for h in report.hooks] == ["announce", "warm", "check", "smoke"]
    assert report.failed_vms == {} and report.fencing == [] and report.approvals == []
    assert report.cleanup is not None and [r.id for r in report.cleanup.removed] == [f"drill-{report.run}"]


async def test_a_gate_waits_for_its_own_approval_and_refuses_any_other(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig, gate="go-apps")
        handle = await start(rig)
        progress = await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        assert progress["phase"] == "waiting for approval: go-apps (check apps)"
        assert progress["vms"] == {"db": "healthy"}
        assert "is not the one waiting" in await refused(
            handle, RecoveryPlanWorkflow.approve, ApproveInput(gate="go-db", by="alice")
        )
        approval = await handle.execute_update(
            RecoveryPlanWorkflow.approve, ApproveInput(gate="go-apps", by="alice", comment="db looks fine")
        )
        assert (approval.gate, approval.approved, approval.by) == ("go-apps", True, "alice")
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        assert "no gate is waiting" in await refused(
            handle, RecoveryPlanWorkflow.approve, ApproveInput(gate="go-apps", by="alice")
        )
        report = await end_drill(handle)
    assert stubs.vms(A.CHOOSE_POINT) == ["db", "app"]
    assert report.approvals == [approval] and report.approvals[0].comment == "db looks fine"
    assert report.status == "completed"


@pytest.mark.parametrize("on_timeout", ["approve", "abort"])
async def test_an_unanswered_gate_does_what_its_timeout_says(rig_for: RIG, on_timeout: str) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig, gate="go-apps", gate_timeout_s=3600, gate_on_timeout=on_timeout)
        handle = await start(rig)
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        await rig.env.fast_forward(handle, timedelta(hours=1, minutes=1))  # type: ignore[attr-defined]
        if on_timeout == "approve":
            report = await end_drill(handle)
        else:
            report = await handle.result()
    (decision,) = report.approvals
    assert (decision.gate, decision.by, decision.approved) == ("go-apps", "timeout", on_timeout == "approve")
    if on_timeout == "approve":
        assert report.status == "completed" and stubs.vms(A.CHOOSE_POINT) == ["db", "app"]
    else:
        assert report.status == "aborted" and stubs.vms(A.CHOOSE_POINT) == ["db"]
    assert len(stubs.of(A.CLEANUP_RUN)) == 1  # a drill never leaves anything behind


# ---- abort ------------------------------------------------------------------------------------------


async def test_abort_at_a_gate_recovers_nothing_more_and_cleans_the_drill_up(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig, gate="go-apps")
        handle = await start(rig)
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        said = await handle.execute_update(
            RecoveryPlanWorkflow.abort, AbortInput(by="carol", reason="db is wrong")
        )
        assert said == "abort requested by carol"
        report = await handle.result()
    assert report.status == "aborted"
    (decision,) = report.approvals
    assert (decision.gate, decision.approved, decision.by) == ("go-apps", False, "abort")
    assert stubs.vms(A.CHOOSE_POINT) == ["db"] and [v.vm for v in report.vms] == ["db"]
    assert [c.mode for c in stubs.inputs(A.CLEANUP_RUN)] == ["test"]
    assert report.cleanup is not None


async def test_abort_while_a_drill_runs_ends_it_at_once(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig)
        handle = await start(rig)
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        await handle.execute_update(RecoveryPlanWorkflow.abort, AbortInput(by="carol", reason="done early"))
        report = await handle.result()
    # Today the recovery itself completed: the abort only ends the drill's lifetime.
    assert report.status == "completed" and [v.vm for v in report.vms] == ["db", "app"]
    assert len(stubs.of(A.CLEANUP_RUN)) == 1
    assert elapsed(report) < timedelta(hours=1)


# ---- a drill's time to live -------------------------------------------------------------------------


async def test_a_drill_left_alone_is_cleaned_up_at_its_time_to_live(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig)  # test_ttl_s: 4 h
        handle = await start(rig)
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        await rig.env.fast_forward(handle, timedelta(hours=4, minutes=1))  # type: ignore[attr-defined]
        report = await handle.result()
    assert report.status == "completed" and len(stubs.of(A.CLEANUP_RUN)) == 1
    assert timedelta(hours=4) <= elapsed(report) < timedelta(hours=4, minutes=2)


async def test_extend_ttl_moves_the_deadline_of_a_running_drill(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig)
        handle = await start(rig, ttl_s=3600)  # the operator's ttl overrides the plan's 4 h
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        for hours in (0.0, 169.0):
            assert "at most 168 hours" in await refused(handle, RecoveryPlanWorkflow.extend_ttl, hours)
        assert await handle.execute_update(RecoveryPlanWorkflow.extend_ttl, 2.0) == "drill extended by 2 h"
        await rig.env.fast_forward(handle, timedelta(hours=1, minutes=1))  # type: ignore[attr-defined]
        progress = await handle.query(RecoveryPlanWorkflow.progress)
        assert progress["phase"] == DRILL_RUNNING and A.CLEANUP_RUN not in stubs.names()
        await rig.env.fast_forward(handle, timedelta(hours=2))  # type: ignore[attr-defined]
        report = await handle.result()
    assert len(stubs.of(A.CLEANUP_RUN)) == 1
    assert timedelta(hours=3) <= elapsed(report) < timedelta(hours=3, minutes=2)


async def test_a_real_failover_has_no_cleanup_and_no_time_to_live(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig, gate="go-apps")
        handle = await start(rig, "unplanned")
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        assert "only a test failover is cleaned up" in await refused(handle, RecoveryPlanWorkflow.cleanup)
        assert "only a running drill" in await refused(handle, RecoveryPlanWorkflow.extend_ttl, 1.0)
        await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go-apps", by="alice"))
        report = await handle.result()
    assert report.status == "completed" and report.cleanup is None
    assert A.CLEANUP_RUN not in stubs.names()
    # The sources stop first: schedules paused, every VM fenced at the source, before any recovery.
    names = stubs.names()
    assert names.index(A.PAUSE_SCHEDULES) < names.index(A.FENCE_VM) < names.index(A.CHOOSE_POINT)
    # No final cycle, so no running cycle is stopped for one (the source may be gone with its worker).
    assert A.CANCEL_FAILOVER_CYCLES not in names
    (paused,) = stubs.inputs(A.PAUSE_SCHEDULES)
    assert paused.vms == ["db", "app"]
    assert stubs.vms(A.FENCE_VM) == ["db", "app"]
    assert {c.queue for c in stubs.of(A.FENCE_VM)} == {site_queue(rig.source)}
    assert report.fencing == ["db: powered off", "app: powered off"]
    # Unplanned: no final replication; DNS follows the recovered VMs.
    assert A.SHIP_DISKS not in names
    assert stubs.vms(A.UPDATE_DNS) == ["db", "app"]
    assert [d.value for v in report.vms for d in v.dns] == ["10.1.0.9", "10.1.0.9"]


# ---- fencing, planned, failback ---------------------------------------------------------------------


async def test_an_unreachable_source_becomes_a_gate_in_an_unplanned_failover(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.FENCE_VM: {"db"}})
    async with rig_for(stubs) as rig:
        two_groups(rig)
        handle = await start(rig, "unplanned")
        progress = await progress_until(handle, lambda p: p["pending_gate"] == "source-fenced")
        assert "did not answer for db" in progress["phase"]
        assert A.CHOOSE_POINT not in stubs.names()
        await handle.execute_update(
            RecoveryPlanWorkflow.approve, ApproveInput(gate="source-fenced", by="bob")
        )
        report = await handle.result()
    assert report.status == "completed" and [v.vm for v in report.vms] == ["db", "app"]
    assert report.fencing[0].startswith("db: could not be fenced")
    assert report.fencing[1] == "app: powered off"
    assert report.fencing[2].startswith("fencing confirmed by bob at ")
    assert [(a.gate, a.by, a.approved) for a in report.approvals] == [("source-fenced", "bob", True)]


async def test_an_unconfirmed_fence_recovers_nothing(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.FENCE_VM: {"db"}})
    async with rig_for(stubs) as rig:
        two_groups(rig)
        handle = await start(rig, "unplanned")
        await progress_until(handle, lambda p: p["pending_gate"] == "source-fenced")
        await handle.execute_update(RecoveryPlanWorkflow.abort, AbortInput(by="bob", reason="cannot confirm"))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert plan_failure(failed.value).type == "FenceFailed"
    assert A.CHOOSE_POINT not in stubs.names() and A.WRITE_REPORT not in stubs.names()


async def test_planned_failover_replicates_the_stopped_sources_a_last_time(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig)
        report = await (await start(rig, "planned")).result()
    names = stubs.names()
    # The final cycle runs alone: the cycles the paused schedules started are stopped (and have
    # closed) before the sources are fenced and replicated a last time.
    assert names.index(A.PAUSE_SCHEDULES) < names.index(A.CANCEL_FAILOVER_CYCLES) < names.index(A.FENCE_VM)
    assert stubs.inputs(A.CANCEL_FAILOVER_CYCLES)[0].vms == ["db", "app"]
    assert names.index(A.FENCE_VM) < names.index(A.SHIP_DISKS)
    assert max(i for i, n in enumerate(names) if n == A.APPLY_RETENTION) < names.index(A.CHOOSE_POINT)
    assert sorted(s.vm for s in stubs.inputs(A.SHIP_DISKS)) == ["app", "db"]
    cycle_protection = [p for p in stubs.of(A.RESOLVE_PROTECTION)]
    assert {p.queue for p in cycle_protection} == {site_queue(rig.source)}
    assert {p.inp.source_site for p in cycle_protection} == {None}  # the inventory's own source
    assert report.status == "completed" and [v.vm for v in report.vms] == ["db", "app"]
    assert stubs.vms(A.MATERIALIZE_DISKS) == ["db", "app"] and A.RESTORE_IN_PLACE not in names


@pytest.mark.parametrize("how", ["failed", "still running"])
async def test_running_cycles_that_cannot_be_stopped_are_a_warning_not_a_stop(rig_for: RIG, how: str) -> None:
    if how == "failed":
        stubs = Stubs(failing={A.CANCEL_FAILOVER_CYCLES: None})
    else:
        stubs = Stubs(cycles_left=["replicate/db-2026-12-03T07:37:00Z"])
    async with rig_for(stubs) as rig:
        two_groups(rig)
        report = await (await start(rig, "planned")).result()
    assert report.status == "completed" and [v.vm for v in report.vms] == ["db", "app"]
    (warning,) = [w for w in report.warnings if "still running when the sources were fenced" in w]
    assert ("not all stopped" if how == "failed" else "replicate/db-2026-12-03T07:37:00Z") in warning
    assert report.fencing == ["db: powered off", "app: powered off"]


async def test_planned_failover_refuses_an_unreachable_source(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.FENCE_VM: {"app"}})
    async with rig_for(stubs) as rig:
        two_groups(rig)
        with pytest.raises(WorkflowFailureError) as failed:
            await (await start(rig, "planned")).result()
    error = plan_failure(failed.value)
    assert error.type == "FenceFailed" and "needs a reachable source" in error.message
    assert A.SHIP_DISKS not in stubs.names() and A.CHOOSE_POINT not in stubs.names()


async def test_failback_restores_onto_the_originals_after_their_last_cycle(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        # What load_plan_spec answers for a failback: the plan's sites the other way round.
        two_groups(rig)
        report = await (await start(rig, "planned", direction="failback")).result()
    (req,) = stubs.inputs(A.LOAD_PLAN_SPEC)
    assert (req.plan, req.direction) == ("erp", "failback")
    # The copies running at the plan's (swapped) source are replicated from there, a last time.
    cycle_protection = stubs.inputs(A.RESOLVE_PROTECTION)
    assert {p.source_site for p in cycle_protection} == {rig.source} and len(cycle_protection) == 2
    assert sorted(stubs.vms(A.SHIP_DISKS)) == ["app", "db"]
    assert stubs.vms(A.RESTORE_IN_PLACE) == ["db", "app"]
    assert A.MATERIALIZE_DISKS not in stubs.names() and A.CREATE_TARGET_VM not in stubs.names()
    assert {r.target.in_place for r in stubs.inputs(A.RESTORE_IN_PLACE)} == {True}
    assert stubs.vms(A.UPDATE_DNS) == ["db", "app"]  # DNS points home
    assert report.status == "completed"
    assert [s.step for s in report.vms[0].steps][1] == "restore onto the original VM and start it"


@pytest.mark.parametrize("mode", ["test", "unplanned"])
async def test_failback_is_only_a_planned_failover(rig_for: RIG, mode: str) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        two_groups(rig)
        with pytest.raises(WorkflowFailureError) as failed:
            await (await start(rig, mode, direction="failback")).result()
    assert plan_failure(failed.value).type == "PlanInvalid"
    assert stubs.calls == []


async def test_nothing_is_aborted_once_the_drill_is_being_cleaned_up(rig_for: RIG) -> None:
    stubs = Stubs(blocking={A.CLEANUP_RUN})
    async with rig_for(stubs) as rig:
        two_groups(rig)
        handle = await start(rig)
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        await stubs.called(A.CLEANUP_RUN)
        message = await refused(handle, RecoveryPlanWorkflow.abort, AbortInput(by="carol", reason="late"))
        assert message == "the run is cleaning up; nothing to abort"
        await handle.terminate("end of test: the stub cleanup never returns")


async def test_a_drill_being_reported_is_already_cleaned_up(rig_for: RIG) -> None:
    stubs = Stubs(blocking={A.WRITE_REPORT})
    async with rig_for(stubs) as rig:
        two_groups(rig)
        handle = await start(rig)
        await progress_until(handle, lambda p: p["phase"] == DRILL_RUNNING)
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        await stubs.called(A.WRITE_REPORT)
        assert "already cleaned up" in await refused(handle, RecoveryPlanWorkflow.cleanup)
        assert "only a running drill" in await refused(handle, RecoveryPlanWorkflow.extend_ttl, 1.0)
        assert "writing report; nothing to abort" in await refused(
            handle, RecoveryPlanWorkflow.abort, AbortInput(by="carol", reason="late")
        )
        await handle.terminate("end of test: the stub report never returns")
