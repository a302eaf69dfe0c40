"""GroupReplicationCycle and ProtectGroup against stub activities: the barrier (every snapshot before
any ship), thaw after a freeze that timed out or failed, no group point when a member fails; and a
plan whose VMs share a group recovering every member from one group point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from seawall.contract.messages import FailoverInput, GroupCycleInput
from seawall.contract.names import Activity as A
from seawall.contract.queues import seed_queue, site_queue
from tests.workflows.conftest import cancel_while_snapshotting
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.groups import GroupReplicationCycleWorkflow
from workflows.protect_group import ProtectGroupWorkflow
from workflows.recovery import RecoveryPlanWorkflow

VMS = ["db", "app", "web"]


async def _cycle(rig: Any) -> Any:
    return await rig.client.start_workflow(
        GroupReplicationCycleWorkflow.run,
        GroupCycleInput(group="erp"),
        id=rig.wid("group-cycle"),
        task_queue=site_queue(rig.source),
    )


def _index(stubs: Stubs, name: str, pred: Callable[[Any], bool] = lambda _: True) -> list[int]:
    return [i for i, c in enumerate(stubs.calls) if c.name == name and pred(c.inp)]


async def test_barrier_freeze_all_snapshots_thaw_then_ship_and_group_point_last(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        result = await (await _cycle(rig)).result()
    point = result.point_id
    freeze = _index(stubs, A.RUN_SNAPSHOT_HOOK, lambda i: i.hook == "freeze")
    thaw = _index(stubs, A.RUN_SNAPSHOT_HOOK, lambda i: i.hook == "thaw")
    snaps = _index(stubs, A.CREATE_SNAPSHOT)
    ships = _index(stubs, A.SHIP_DISKS)
    verifies = _index(stubs, A.VERIFY_POINT)
    (commit_group,) = _index(stubs, A.COMMIT_GROUP_POINT)
    releases = _index(stubs, A.RELEASE_SNAPSHOT)
    assert len(freeze) == len(thaw) == 1 and len(snaps) == len(ships) == len(releases) == 3
    # The barrier: freeze, then all three snapshots, then thaw, and only then any shipping.
    assert freeze[0] < min(snaps) and max(snaps) < thaw[0] < min(ships)
    # The group point is written after every member verified, and before the snapshots go.
    assert max(verifies) < commit_group < min(releases)
    assert sorted(stubs.vms(A.CREATE_SNAPSHOT)) == sorted(VMS)
    assert {i.point_id for i in stubs.inputs(A.SHIP_DISKS)} == {point}  # one point id for all members
    assert all(i.meta["consistency_group"] == "erp" for i in stubs.inputs(A.COMMIT_POINT))
    assert all(i.meta["app_consistent"] == "true" for i in stubs.inputs(A.COMMIT_POINT))
    (req,) = stubs.inputs(A.COMMIT_GROUP_POINT)
    assert (req.point_id, sorted(req.vms), req.app_consistent) == (point, sorted(VMS), True)
    assert result.app_consistent and sorted(stubs.vms(A.RELEASE_SNAPSHOT)) == sorted(VMS)


async def test_freeze_that_timed_out_still_thaws_and_the_point_is_not_app_consistent(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(freeze="timeout")
    async with rig_for(stubs) as rig:
        result = await (await _cycle(rig)).result()
    hooks = [i.hook for i in stubs.inputs(A.RUN_SNAPSHOT_HOOK)]
    assert hooks == ["freeze", "thaw"]
    assert not result.app_consistent
    (req,) = stubs.inputs(A.COMMIT_GROUP_POINT)
    assert not req.app_consistent and any("timed out" in n for n in req.notes)
    assert all(i.meta["app_consistent"] == "false" for i in stubs.inputs(A.COMMIT_POINT))


async def test_freeze_activity_failing_still_thaws_and_snapshots_go_ahead(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(freeze="fails")
    async with rig_for(stubs) as rig:
        result = await (await _cycle(rig)).result()
    assert [i.hook for i in stubs.inputs(A.RUN_SNAPSHOT_HOOK)] == ["freeze", "thaw"]
    assert len(stubs.of(A.CREATE_SNAPSHOT)) == 3 and not result.app_consistent
    (req,) = stubs.inputs(A.COMMIT_GROUP_POINT)
    assert any("worker lost" in n for n in req.notes)


async def test_a_group_seed_ships_and_verifies_in_the_seed_slots_an_incremental_in_the_sites(
    rig_for: Callable[[Stubs], Any],
) -> None:
    for parent, queue in ((None, seed_queue), ("20261130T090000Z-aaaaaaaaaaaa", site_queue)):
        stubs = Stubs(parent=parent)
        async with rig_for(stubs) as rig:
            await (await _cycle(rig)).result()
        for name in (A.SHIP_DISKS, A.VERIFY_POINT):
            assert [c.queue for c in stubs.of(name)] == [queue(rig.source)] * 3, (parent, name)
        assert {c.queue for c in stubs.of(A.COMMIT_POINT)} == {site_queue(rig.source)}


async def test_a_member_snapshot_failing_thaws_releases_the_others_and_commits_no_group_point(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(failing={A.CREATE_SNAPSHOT: {"app"}})
    async with rig_for(stubs) as rig:
        with pytest.raises(WorkflowFailureError):
            await (await _cycle(rig)).result()
    assert [i.hook for i in stubs.inputs(A.RUN_SNAPSHOT_HOOK)] == ["freeze", "thaw"]
    assert stubs.of(A.SHIP_DISKS) == [] and stubs.of(A.COMMIT_GROUP_POINT) == []
    # Every member's snapshot is released by name, the failed one's too (a create that failed at the
    # site may still have left one): none is left behind.
    assert sorted(stubs.vms(A.RELEASE_SNAPSHOT)) == ["app", "db", "web"]
    names = {i.vm: i.snapshot for i in stubs.inputs(A.CREATE_SNAPSHOT)}
    assert {i.vm: i.snapshot for i in stubs.inputs(A.RELEASE_SNAPSHOT)} == names


async def test_a_group_cycle_cancelled_while_its_snapshots_are_taken_releases_every_one(
    rig_for: Callable[[Stubs], Any],
) -> None:
    # The snapshot calls outlast the workflow task timeout, so the cancel lands while they run: the
    # cycle waits for them, thaws, and releases all three; nothing is shipped.
    stubs = Stubs(uninterruptible={A.CREATE_SNAPSHOT: 7.0})
    async with rig_for(stubs) as rig:
        _, cause = await cancel_while_snapshotting(
            rig, GroupReplicationCycleWorkflow.run, GroupCycleInput(group="erp"), "group-cycle"
        )
    assert isinstance(cause, CancelledError), repr(cause)
    assert stubs.of(A.SHIP_DISKS) == [] and stubs.of(A.COMMIT_GROUP_POINT) == []
    assert set(stubs.vms(A.RELEASE_SNAPSHOT)) == set(VMS)
    # Thawed and released only after every snapshot call had ended.
    ended = max(n for _, n in stubs.finished)
    assert len(stubs.finished) == 3 and min(_index(stubs, A.RELEASE_SNAPSHOT)) >= ended
    assert _index(stubs, A.RUN_SNAPSHOT_HOOK, lambda i: i.hook == "thaw")[0] >= ended


async def test_a_member_failing_verification_commits_no_group_point(rig_for: Callable[[Stubs], Any]) -> None:
    stubs = Stubs(verify_fails_for={"web"})
    async with rig_for(stubs) as rig:
        with pytest.raises(WorkflowFailureError) as failed:
            await (await _cycle(rig)).result()
    assert "web" in str(failed.value.cause)
    assert stubs.of(A.COMMIT_GROUP_POINT) == []
    assert sorted(stubs.vms(A.RELEASE_SNAPSHOT)) == sorted(VMS)


async def test_protect_group_drops_member_schedules_seeds_and_schedules_the_group(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        result = await rig.client.execute_workflow(
            ProtectGroupWorkflow.run,
            GroupCycleInput(group="erp"),
            id=rig.wid("protect-group"),
            task_queue=rig.queue,
        )
    assert sorted(stubs.vms(A.DELETE_SCHEDULE)) == sorted(VMS)
    assert sorted(stubs.vms(A.ENABLE_CBT)) == sorted(VMS)
    assert len(stubs.of(A.COMMIT_GROUP_POINT)) == 1
    assert result.schedule_id == "replicate-group/erp" and result.first_point
    assert max(_index(stubs, A.DELETE_SCHEDULE)) < min(_index(stubs, A.CREATE_SNAPSHOT))


@pytest.mark.parametrize("point_time", [None, "2026-11-30T09:00:00Z"])
async def test_plan_recovers_every_member_from_one_group_point(
    rig_for: Callable[[Stubs], Any], point_time: str | None
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("data", vm_step("db", "data")),
            group("apps", vm_step("app", "apps"), vm_step("web", "apps"), vm_step("solo", "apps")),
            consistency_groups={"erp": ["db", "app", "web"]},
        )
        handle = await rig.start(
            RecoveryPlanWorkflow.run,
            FailoverInput(plan="erp", mode="unplanned", point_time=point_time),
            "plan",
        )
        report = await handle.result()
    (chosen,) = stubs.inputs(A.CHOOSE_GROUP_POINTS)
    assert chosen.groups == {"erp": ["db", "app", "web"]} and chosen.point_time == point_time
    by_vm = {i.vm: i.point_id for i in stubs.inputs(A.CHOOSE_POINT)}
    assert by_vm == {"db": "gp-erp", "app": "gp-erp", "web": "gp-erp", "solo": None}
    assert {v.vm: v.point_id for v in report.vms} == {
        "db": "gp-erp",
        "app": "gp-erp",
        "web": "gp-erp",
        "solo": "pt-solo",
    }


async def test_a_drill_sets_only_in_test_dns_and_its_cleanup_is_what_restores_it(
    rig_for: Callable[[Stubs], Any],
) -> None:
    """A drill runs the DNS step only for a VM with ``in_test`` records (``drill_dns``); the records go
    back in ``cleanup_run``, which a drill always runs after its DNS step."""
    from seawall.contract.messages import VMStep
    from tests.workflows.test_recovery_plan import end_drill

    stubs = Stubs()
    async with rig_for(stubs) as rig:
        stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group(
                "all",
                VMStep(vm="db", group="all", depends_on=[], boot_delay_s=0, drill_dns=True),
                vm_step("app", "all"),
            ),
        )
        handle = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test"), "plan")
        report = await end_drill(handle)
    assert stubs.vms(A.UPDATE_DNS) == ["db"]
    (dns,) = stubs.inputs(A.UPDATE_DNS)
    assert dns.target.mode == "test" and dns.target.drill_dns
    names = stubs.names()
    assert names.index(A.UPDATE_DNS) < names.index(A.CLEANUP_RUN)
    assert {v.vm: len(v.dns) for v in report.vms} == {"db": 1, "app": 0}


async def test_a_group_cycle_of_a_mirrored_store_mirrors_every_member_after_the_release(
    rig_for: Callable[[Stubs], Any],
) -> None:
    """Each member's points go to the mirror (the pass that finds every member verified there copies
    the group point), after the snapshots are released; the result says the mirror and its lag."""
    stubs = Stubs(mirror="far")
    async with rig_for(stubs) as rig:
        result = await (await _cycle(rig)).result()
    mirrors = _index(stubs, A.MIRROR_POINTS)
    assert sorted(stubs.vms(A.MIRROR_POINTS)) == sorted(VMS)
    assert max(_index(stubs, A.RELEASE_SNAPSHOT)) < min(mirrors)
    assert max(_index(stubs, A.COMMIT_GROUP_POINT)) < min(mirrors)
    assert (result.mirror, result.mirror_lags, result.mirror_errors) == ("far", dict.fromkeys(VMS, 0), {})


async def test_a_group_cycle_without_a_mirror_mirrors_nothing(rig_for: Callable[[Stubs], Any]) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        result = await (await _cycle(rig)).result()
    assert not stubs.of(A.MIRROR_POINTS)
    assert (result.mirror, result.mirror_lags, result.mirror_errors) == (None, {}, {})


async def test_a_group_cycle_whose_mirror_fails_still_succeeds_and_says_why(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(
        mirror="far", failing={A.MIRROR_POINTS: None}, failure_type={A.MIRROR_POINTS: "StoreUnavailable"}
    )
    async with rig_for(stubs) as rig:
        result = await (await _cycle(rig)).result()
    assert result.point_id and result.mirror == "far" and result.mirror_lags == {}
    assert sorted(result.mirror_errors) == sorted(VMS) and all(result.mirror_errors.values())
    assert len(stubs.of(A.COMMIT_GROUP_POINT)) == 1 and stubs.of(A.APPLY_RETENTION)


@pytest.mark.parametrize(
    ("from_mirror", "plan_says", "store_down", "expected"),
    [
        (False, False, False, "local"),  # the store answers: it serves
        (False, False, True, "far"),  # the store is down: the mirror serves
        (True, False, False, "far"),  # the operator says so
        (False, True, False, "far"),  # the plan says so
    ],
)
async def test_a_group_recovers_from_the_store_its_group_point_was_chosen_from(
    rig_for: Callable[[Stubs], Any], from_mirror: bool, plan_says: bool, store_down: bool, expected: str
) -> None:
    stubs = Stubs(mirror="far", store_down=store_down)
    async with rig_for(stubs) as rig:
        stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("apps", vm_step("db", "apps"), vm_step("app", "apps"), vm_step("solo", "apps")),
            consistency_groups={"erp": ["db", "app"]},
        ).model_copy(update={"from_mirror": plan_says})
        handle = await rig.start(
            RecoveryPlanWorkflow.run,
            FailoverInput(plan="erp", mode="unplanned", from_mirror=from_mirror),
            "plan",
        )
        report = await handle.result()
    (spec_req,) = stubs.inputs(A.LOAD_PLAN_SPEC)
    assert spec_req.from_mirror == from_mirror  # the plan's own choice is checked by the activity
    (chosen,) = stubs.inputs(A.CHOOSE_GROUP_POINTS)
    assert chosen.from_mirror == (from_mirror or plan_says)
    asked = {i.vm: (i.point_id, i.store, i.from_mirror) for i in stubs.inputs(A.CHOOSE_POINT)}
    forced = from_mirror or plan_says
    assert asked == {
        "db": ("gp-erp", expected, forced),
        "app": ("gp-erp", expected, forced),
        "solo": (None, None, forced),
    }
    # The report names the store that served each VM.
    assert {v.vm: v.replica_store for v in report.vms} == {"db": expected, "app": expected, "solo": expected}


async def test_a_failback_never_reads_a_mirror_by_choice(rig_for: Callable[[Stubs], Any]) -> None:
    stubs = Stubs(mirror="far")
    async with rig_for(stubs) as rig:
        stubs.spec = plan_spec(
            "erp", rig.source, rig.target, group("apps", vm_step("db", "apps"))
        ).model_copy(update={"from_mirror": True})
        handle = await rig.start(
            RecoveryPlanWorkflow.run,
            FailoverInput(plan="erp", mode="planned", direction="failback", from_mirror=True),
            "plan",
        )
        await handle.result()
    (spec_req,) = stubs.inputs(A.LOAD_PLAN_SPEC)
    assert not spec_req.from_mirror
    assert all(not i.from_mirror for i in stubs.inputs(A.CHOOSE_POINT))
