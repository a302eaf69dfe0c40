"""CleanupTest, CommitFailover, Reprotect and ProbeSite against stub activities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall.contract.messages import PlanInput, PlanRunInput, ProbeSiteInput
from seawall.contract.names import Activity as A
from seawall.contract.queues import site_queue
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.after_failover import CleanupTestWorkflow, CommitFailoverWorkflow, ReprotectWorkflow
from workflows.probe import ProbeSiteWorkflow

RIG = Callable[[Stubs], Any]
RUN = "20261130T100000Z-abcdef12"


def spec_for(stubs: Stubs, source: str, target: str) -> None:
    stubs.spec = plan_spec(
        "erp", source, target, group("data", vm_step("db", "data")), group("apps", vm_step("app", "apps"))
    )


async def test_cleanup_test_removes_a_drill_by_its_run_at_the_target(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        spec_for(stubs, rig.source, rig.target)
        outcome = await rig.client.execute_workflow(
            CleanupTestWorkflow.run,
            PlanRunInput(plan="erp", run=RUN),
            id=rig.wid("cleanup"),
            task_queue=rig.queue,
        )
    assert stubs.names() == [A.LOAD_PLAN_SPEC, A.CLEANUP_RUN]
    (req,) = stubs.inputs(A.CLEANUP_RUN)
    assert (req.plan, req.run, req.mode) == ("erp", RUN, "test")
    assert [c.queue for c in stubs.of(A.CLEANUP_RUN)] == [site_queue(rig.target)]
    assert [r.id for r in outcome.removed] == [f"drill-{RUN}"]


async def test_commit_failover_deletes_the_old_schedules_and_prunes_older_points(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        spec_for(stubs, rig.source, rig.target)
        outcome = await rig.client.execute_workflow(
            CommitFailoverWorkflow.run,
            PlanRunInput(plan="erp", run=RUN),
            id=rig.wid("commit"),
            task_queue=rig.queue,
        )
    assert stubs.names() == [
        A.CHECK_INTENT,  # no intent keys on this worker: the answer is "not enforced"
        A.LOAD_PLAN_SPEC,
        A.DELETE_SCHEDULE,
        A.PRUNE_POINTS,
        A.DELETE_SCHEDULE,
        A.PRUNE_POINTS,
    ]
    assert {c.queue for c in stubs.of(A.PRUNE_POINTS)} == {site_queue(rig.target)}
    assert outcome.schedules_deleted == ["db", "app"]
    assert outcome.points_pruned == {"db": ["db-old"], "app": ["app-old"]}


async def test_reprotect_replicates_from_the_target_then_schedules_the_reverse_direction(
    rig_for: RIG,
) -> None:
    stubs = Stubs(parent="recovered-point")
    async with rig_for(stubs) as rig:
        spec_for(stubs, rig.source, rig.target)
        outcome = await rig.client.execute_workflow(
            ReprotectWorkflow.run, PlanInput(plan="erp"), id=rig.wid("reprotect"), task_queue=rig.queue
        )
    # The first reverse cycles build on the recovered point: no re-seed.
    assert sorted(s.vm for s in stubs.inputs(A.SHIP_DISKS)) == ["app", "db"]
    assert {s.parent for s in stubs.inputs(A.SHIP_DISKS)} == {"recovered-point"}
    assert {c.queue for c in stubs.of(A.SHIP_DISKS)} == {site_queue(rig.target)}
    assert {p.source_site for p in stubs.inputs(A.RESOLVE_PROTECTION)} == {rig.target}
    schedules = stubs.inputs(A.ENSURE_SCHEDULE)
    assert [(s.vm, s.source_site, s.reverse) for s in schedules] == [
        ("db", rig.target, True),
        ("app", rig.target, True),
    ]
    assert outcome.from_site == rig.target and sorted(c.vm for c in outcome.cycles) == ["app", "db"]


async def test_probe_asks_the_sites_own_worker(rig_for: RIG) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        probe = await rig.client.execute_workflow(
            ProbeSiteWorkflow.run, ProbeSiteInput(site=rig.source), id=rig.wid("probe"), task_queue=rig.queue
        )
    assert [c.queue for c in stubs.of(A.PROBE_SITE)] == [site_queue(rig.source)]
    assert probe.site == rig.source and probe.reachable
