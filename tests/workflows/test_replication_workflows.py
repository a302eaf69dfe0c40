"""ReplicationCycle, ProtectVM and UnprotectVM against stub activities: what each step is asked to do,
in which order, on which queue, and what happens when a step fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from seawall.contract.messages import CycleInput, ProtectInput, UnprotectInput
from seawall.contract.names import Activity as A
from seawall.contract.queues import seed_queue, site_queue
from tests.workflows.conftest import cancel_while_snapshotting
from tests.workflows.stubs import Stubs
from workflows.replication import ProtectVMWorkflow, ReplicationCycleWorkflow
from workflows.unprotect import UnprotectVMWorkflow

CYCLE = [
    A.RESOLVE_PROTECTION,
    A.START_CYCLE,
    A.CREATE_SNAPSHOT,
    A.SHIP_DISKS,
    A.COMMIT_POINT,
    A.VERIFY_POINT,
    A.RELEASE_SNAPSHOT,
    A.APPLY_RETENTION,
]


def _cause(exc: WorkflowFailureError) -> ApplicationError:
    """The application error under a failed workflow (directly, or under the failed activity)."""
    cause = exc.cause
    if isinstance(cause, ActivityError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


async def test_cycle_ships_from_the_newest_verified_point_and_returns_its_figures(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(parent="20261130T090000Z-aaaaaaaaaaaa")
    async with rig_for(stubs) as rig:
        handle = await rig.client.start_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web"),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.source),
        )
        result = await handle.result()
    assert stubs.names() == CYCLE
    (start,) = stubs.inputs(A.START_CYCLE)
    point = start.point_id
    (snap,) = stubs.inputs(A.CREATE_SNAPSHOT)
    assert (snap.vm, snap.snapshot, snap.quiesce) == ("web", f"seawall-{point}", True)  # app_consistent
    (ship,) = stubs.inputs(A.SHIP_DISKS)
    assert (ship.point_id, ship.parent, [d.name for d in ship.disks]) == (point, stubs.parent, ["disk0"])
    (commit,) = stubs.inputs(A.COMMIT_POINT)
    assert commit.parent == stubs.parent and commit.meta["guest_ips"] == "10.0.0.9"
    assert commit.meta["workflow_id"] == handle.id
    assert [(r.vm, r.snapshot) for r in stubs.inputs(A.RELEASE_SNAPSHOT)] == [("web", f"seawall-{point}")]
    # The quick steps ran as local activities on the site's own worker, the transfer on its queue.
    assert {c.queue for c in stubs.calls} == {site_queue(rig.source)}
    assert result.point_id == point and result.parent == stubs.parent
    assert (result.change_path, result.bytes_read, result.bytes_shipped) == ("cbt", 100, 10)
    assert result.verified and result.retention_deleted == ["old-point"]


async def test_a_failed_ship_still_releases_the_snapshot_and_commits_nothing(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(failing={A.SHIP_DISKS: None}, failure_type={A.SHIP_DISKS: "StoreError"})
    async with rig_for(stubs) as rig:
        handle = await rig.client.start_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web"),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.source),
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert _cause(failed.value).type == "StoreError"
    assert stubs.names() == [
        A.RESOLVE_PROTECTION,
        A.START_CYCLE,
        A.CREATE_SNAPSHOT,
        A.SHIP_DISKS,
        A.RELEASE_SNAPSHOT,
    ]


async def test_a_point_that_fails_verification_fails_the_cycle_after_releasing_the_snapshot(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(verify_ok=False)
    async with rig_for(stubs) as rig:
        handle = await rig.client.start_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web"),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.source),
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = _cause(failed.value)
    assert cause.type == "VerifyFailed" and cause.non_retryable
    assert "digest mismatch" in cause.message
    # Committed but never verified: the next cycle builds on the last verified point; no retention.
    assert stubs.names() == CYCLE[:-1]


async def test_a_commit_conflict_is_not_verified_and_releases_the_snapshot(
    rig_for: Callable[[Stubs], Any],
) -> None:
    # The store refuses a different manifest under an existing point id (the activity's StoreError).
    stubs = Stubs(failing={A.COMMIT_POINT: None}, failure_type={A.COMMIT_POINT: "StoreError"})
    async with rig_for(stubs) as rig:
        handle = await rig.client.start_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web"),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.source),
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert _cause(failed.value).type == "StoreError"
    assert stubs.names() == [
        A.RESOLVE_PROTECTION,
        A.START_CYCLE,
        A.CREATE_SNAPSHOT,
        A.SHIP_DISKS,
        A.COMMIT_POINT,
        A.RELEASE_SNAPSHOT,
    ]


async def test_a_cycle_cancelled_while_its_snapshot_is_taken_releases_it_after_it_exists(
    rig_for: Callable[[Stubs], Any],
) -> None:
    # Unprotect cancels a cycle the schedule has just started. A snapshot call that outlasts the
    # workflow task's timeout lets the cancel in while it runs (the worker heartbeats the task); the
    # site's call cannot be interrupted, so the cycle waits for it and then releases that snapshot.
    stubs = Stubs(uninterruptible={A.CREATE_SNAPSHOT: 7.0})
    async with rig_for(stubs) as rig:
        _, cause = await cancel_while_snapshotting(
            rig, ReplicationCycleWorkflow.run, CycleInput(vm="web"), "cycle"
        )
    assert isinstance(cause, CancelledError), repr(cause)
    # Cancelled before the transfer: nothing shipped, and the snapshot was released (a release that a
    # rejected workflow task ran is run again: it is idempotent).
    names = stubs.names()
    assert A.SHIP_DISKS not in names and names[:3] == [A.RESOLVE_PROTECTION, A.START_CYCLE, A.CREATE_SNAPSHOT]
    (snap,) = stubs.inputs(A.CREATE_SNAPSHOT)
    assert {r.snapshot for r in stubs.inputs(A.RELEASE_SNAPSHOT)} == {snap.snapshot}
    # Released after the snapshot call had ended, not before a snapshot that then appeared.
    ((_, calls_by_then),) = stubs.finished
    assert names.index(A.RELEASE_SNAPSHOT) >= calls_by_then, (names, stubs.finished)


async def test_reverse_cycle_resolves_the_vm_at_the_site_it_replicates_from(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        await rig.client.execute_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web", source_site=rig.target),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.target),
        )
    (prot,) = stubs.inputs(A.RESOLVE_PROTECTION)
    assert prot.source_site == rig.target
    assert stubs.names() == CYCLE


@pytest.mark.parametrize("kind", ["vsphere", "directory"])
async def test_protect_enables_cbt_on_vsphere_seeds_then_schedules(
    rig_for: Callable[[Stubs], Any], kind: str
) -> None:
    stubs = Stubs(source_kind=kind)
    async with rig_for(stubs) as rig:
        result = await rig.client.execute_workflow(
            ProtectVMWorkflow.run, ProtectInput(vm="web"), id=rig.wid("protect"), task_queue=rig.queue
        )
    cbt = [A.ENABLE_CBT] if kind == "vsphere" else []
    assert stubs.names() == [A.RESOLVE_PROTECTION, *cbt, *CYCLE, A.ENSURE_SCHEDULE, A.ENSURE_GC_SCHEDULE]
    if cbt:
        assert [c.queue for c in stubs.of(A.ENABLE_CBT)] == [site_queue(rig.source)]
    (sched,) = stubs.inputs(A.ENSURE_SCHEDULE)
    assert (sched.vm, sched.source_site, sched.interval_s, sched.reverse) == ("web", rig.source, 300, False)
    (gc,) = stubs.inputs(A.ENSURE_GC_SCHEDULE)
    assert (gc.store, gc.site, gc.interval_s) == ("local", rig.source, 3600)
    (start,) = stubs.inputs(A.START_CYCLE)
    assert result.first_point == start.point_id and result.schedule_id == "replicate/web"
    # The seed's transfer and verify ran in the site's seed slots; its quick steps on the site's queue.
    for name in (A.SHIP_DISKS, A.VERIFY_POINT):
        assert [c.queue for c in stubs.of(name)] == [seed_queue(rig.source)], name
    assert {c.queue for c in stubs.of(A.CREATE_SNAPSHOT)} == {site_queue(rig.source)}


@pytest.mark.parametrize("delete_replica", [False, True])
async def test_unprotect_deletes_the_schedule_cancels_cycles_sweeps_and_on_request_the_points(
    rig_for: Callable[[Stubs], Any], delete_replica: bool
) -> None:
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        deleted = await rig.client.execute_workflow(
            UnprotectVMWorkflow.run,
            UnprotectInput(vm="web", delete_replica=delete_replica),
            id=rig.wid("unprotect"),
            task_queue=rig.queue,
        )
    # The sweep runs at the source once the cycles are closed; the points go after it, on request.
    sweep = [A.CHECK_INTENT, A.DELETE_SCHEDULE, A.CANCEL_CYCLES, A.RESOLVE_PROTECTION]
    sweep.append(A.RELEASE_ORPHAN_SNAPSHOTS)
    if delete_replica:
        assert stubs.names() == [*sweep, A.DELETE_REPLICA]
        assert [c.queue for c in stubs.of(A.DELETE_REPLICA)] == [site_queue(rig.source)]
        assert deleted == 7
    else:
        assert stubs.names() == sweep
        assert deleted == 0
    assert [c.queue for c in stubs.of(A.RELEASE_ORPHAN_SNAPSHOTS)] == [site_queue(rig.source)]
    assert set(stubs.vms(A.DELETE_SCHEDULE) + stubs.vms(A.CANCEL_CYCLES)) == {"web"}
    assert stubs.vms(A.RELEASE_ORPHAN_SNAPSHOTS) == ["web"]


@pytest.mark.parametrize("fails", [A.RESOLVE_PROTECTION, A.RELEASE_ORPHAN_SNAPSHOTS])
async def test_unprotect_ends_the_protection_when_the_sweep_cannot_run(
    rig_for: Callable[[Stubs], Any], fails: str
) -> None:
    """The VM left the inventory, or its source site is lost (the disaster itself): the schedule is
    gone and the cycles are cancelled all the same, and the unprotect completes."""
    stubs = Stubs(failing={fails: None})
    async with rig_for(stubs) as rig:
        deleted = await rig.client.execute_workflow(
            UnprotectVMWorkflow.run,
            UnprotectInput(vm="web"),
            id=rig.wid("unprotect-unswept"),
            task_queue=rig.queue,
        )
    assert deleted == 0
    assert stubs.names()[:3] == [A.CHECK_INTENT, A.DELETE_SCHEDULE, A.CANCEL_CYCLES]
    assert stubs.names()[-1] == fails


async def test_a_mirrored_store_mirrors_after_the_snapshot_is_released(
    rig_for: Callable[[Stubs], Any],
) -> None:
    stubs = Stubs(mirror="far")
    async with rig_for(stubs) as rig:
        result = await rig.client.execute_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web"),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.source),
        )
    assert stubs.names() == [*CYCLE[:-1], A.MIRROR_POINTS, A.APPLY_RETENTION]
    assert (result.mirror, result.mirror_lag, result.mirror_error) == ("far", 0, None)


async def test_a_mirror_that_fails_does_not_fail_the_cycle(rig_for: Callable[[Stubs], Any]) -> None:
    stubs = Stubs(
        mirror="far", failing={A.MIRROR_POINTS: None}, failure_type={A.MIRROR_POINTS: "StoreUnavailable"}
    )
    async with rig_for(stubs) as rig:
        result = await rig.client.execute_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm="web"),
            id=rig.wid("cycle"),
            task_queue=site_queue(rig.source),
        )
    assert result.verified and A.APPLY_RETENTION in stubs.names()
    assert result.mirror == "far" and result.mirror_lag is None and result.mirror_error
