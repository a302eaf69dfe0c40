"""Consistency groups: ``GroupReplicationCycle``, one group point (``ProtectGroup`` is in
``workflows.protect_group``).

A group cycle runs on the source site's queue. Its barrier: freeze (optional) -> every member's
snapshot -> thaw (always, in a ``finally``: after a hung freeze, a failed snapshot or a cancel) ->
only then is anything shipped. Every member's point gets the group point's id, is committed and
verified as in a single-VM cycle, and the group point is written last, only when all members
verified; the snapshots are released in a ``finally`` whatever happened. A cycle that failed for one
member commits no group point: its other members' points are never chosen for a group recovery.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.replication import (
    FATAL,
    PERSISTENT,
    QUICK,
    ReplicationCycleWorkflow,
    mirror_step,
    point_id_for,
)
from workflows.seeds import ship_queue

with workflow.unsafe.imports_passed_through():
    from activities.groups import GroupActivities
    from activities.protection import InventoryActivities
    from activities.replica import RetentionActivities
    from activities.replication import ReplicationActivities
    from seawall.contract.messages import (
        CommitRequest,
        CycleStart,
        GroupCycleInput,
        GroupCycleResult,
        GroupPointRequest,
        GroupProtection,
        ShipOutcome,
        ShipRequest,
        SnapshotHookOutcome,
        SnapshotHookRequest,
        SnapshotRelease,
        SnapshotRequest,
        SnapshotTaken,
        VMPoint,
        VMRef,
    )
    from seawall.contract.names import (
        PATCH_CYCLE_SNAPSHOT_GUARD,
        PATCH_GROUP_RELEASE_BY_NAME,
        Query,
        Workflow,
        group_search_value,
    )
    from seawall.contract.search import SA_SITE, SA_VM

_ = ReplicationCycleWorkflow  # the single-VM cycle these steps mirror


@workflow.defn(name=Workflow.GROUP_REPLICATION_CYCLE)
class GroupReplicationCycleWorkflow:
    """freeze -> all snapshots -> thaw -> ship all -> commit, verify all -> group point -> release."""

    def __init__(self) -> None:
        self._phase = "starting"
        self._point: str | None = None

    @workflow.query(name=Query.PHASE)
    def phase(self) -> dict[str, str | None]:
        return {"phase": self._phase, "point": self._point}

    def _set_phase(self, phase: str, group: str) -> None:
        self._phase = phase
        workflow.set_current_details(
            f"group {group}: {phase}" + (f" (point {self._point})" if self._point else "")
        )

    @workflow.run
    async def run(self, inp: GroupCycleInput) -> GroupCycleResult:
        started = workflow.now()
        g: GroupProtection = await workflow.execute_local_activity_method(
            InventoryActivities.resolve_group,
            inp,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        workflow.upsert_search_attributes(
            [SA_VM.value_set(group_search_value(g.group)), SA_SITE.value_set(g.source_site)]
        )
        point = self._point = point_id_for(workflow.info(), started)
        self._set_phase("finding parent points", g.group)
        starts: list[CycleStart] = list(
            await asyncio.gather(
                *(
                    workflow.execute_local_activity_method(
                        ReplicationActivities.start_cycle,
                        VMPoint(vm=vm, point_id=point),
                        start_to_close_timeout=timedelta(minutes=2),
                        retry_policy=QUICK,
                    )
                    for vm in g.vms
                )
            )
        )
        snaps: dict[str, SnapshotTaken] = {}
        hooks: list[SnapshotHookOutcome] = []
        try:
            window = await self._barrier(g, point, starts, snaps, hooks)
            app_consistent = g.app_consistent and all(h.ok for h in hooks if h.hook == "freeze")
            notes = [f"{h.hook}: {h.detail}" for h in hooks if not h.ok]
            shipped = await self._ship_commit_verify(g, point, starts, snaps, app_consistent)
            self._set_phase("committing group point", g.group)
            # Local, like a member's commit: quick, and a dead worker's attempt is retried within a
            # workflow task timeout (the record is written once; the same content again is a no-op).
            await workflow.execute_local_activity_method(
                GroupActivities.commit_group_point,
                GroupPointRequest(
                    group=g.group,
                    point_id=point,
                    vms=g.vms,
                    app_consistent=app_consistent,
                    snapshots_started_at=window[0],
                    snapshots_finished_at=window[1],
                    notes=notes,
                ),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=QUICK,
            )
        finally:
            self._set_phase("releasing snapshots", g.group)
            # Every member's, by name (releasing one never taken is a no-op): an earlier attempt of a
            # workflow task may have taken a snapshot whose completion this attempt never saw.
            names = (
                {vm: start.snapshot for vm, start in zip(g.vms, starts, strict=True)}
                if workflow.patched(PATCH_GROUP_RELEASE_BY_NAME)
                else {vm: snap.snapshot for vm, snap in snaps.items()}
            )
            await asyncio.gather(
                *(
                    workflow.execute_local_activity_method(
                        ReplicationActivities.release_snapshot,
                        SnapshotRelease(vm=vm, snapshot=name),
                        start_to_close_timeout=timedelta(minutes=10),
                        retry_policy=RetryPolicy(
                            maximum_interval=timedelta(minutes=1), non_retryable_error_types=FATAL
                        ),
                    )
                    for vm, name in names.items()
                )
            )
        mirror_lags: dict[str, int] = {}
        mirror_errors: dict[str, str] = {}
        if g.mirror is not None and workflow.patched("group-mirror-points"):
            # Each member's points, then the group point once every member is verified in the
            # mirror (the last member's pass writes it): a group recovery from the mirror needs it.
            self._set_phase("mirroring points", g.group)
            passes = await asyncio.gather(*(mirror_step(vm, g.heartbeat_timeout_s) for vm in g.vms))
            for vm, (outcome, error) in zip(g.vms, passes, strict=True):
                if outcome is not None:
                    mirror_lags[vm] = outcome.lag
                if error is not None:
                    mirror_errors[vm] = error
        self._set_phase("applying retention", g.group)
        retention = await asyncio.gather(
            *(
                workflow.execute_local_activity_method(
                    RetentionActivities.apply_retention,
                    VMRef(vm=vm),
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=QUICK,
                )
                for vm in g.vms
            )
        )
        self._set_phase("done", g.group)
        return GroupCycleResult(
            group=g.group,
            point_id=point,
            vms=g.vms,
            started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
            app_consistent=app_consistent,
            hooks=hooks,
            snapshots_started_at=window[0],
            snapshots_finished_at=window[1],
            bytes_shipped=sum(s.bytes_shipped for s in shipped),
            retention_deleted={vm: r.deleted for vm, r in zip(g.vms, retention, strict=True)},
            mirror=g.mirror,
            mirror_lags=mirror_lags,
            mirror_errors=mirror_errors,
        )

    async def _hook(self, g: GroupProtection, hook: str, point: str, timeout_s: float) -> SnapshotHookOutcome:
        return await workflow.execute_activity_method(
            GroupActivities.run_snapshot_hook,
            SnapshotHookRequest(group=g.group, hook=hook, point_id=point),
            # The activity kills the command at its own timeout; this one only catches a dead worker.
            start_to_close_timeout=timedelta(seconds=timeout_s + 60),
            heartbeat_timeout=timedelta(seconds=30),
            # A freeze is not repeated (the snapshots go ahead crash-consistent); a thaw must happen.
            retry_policy=RetryPolicy(maximum_attempts=1 if hook == "freeze" else 5),
        )

    async def _barrier(
        self,
        g: GroupProtection,
        point: str,
        starts: list[CycleStart],
        snaps: dict[str, SnapshotTaken],
        hooks: list[SnapshotHookOutcome],
    ) -> tuple[str, str]:
        """Every member's snapshot taken together, between freeze and thaw. Returns when the first
        snapshot was asked for and when the last was done."""
        taking: list[workflow.ActivityHandle[SnapshotTaken]] = []
        try:
            if g.freeze:
                self._set_phase("freezing", g.group)
                try:
                    hooks.append(await self._hook(g, "freeze", point, g.freeze_timeout_s))
                except ActivityError as exc:
                    # The freeze's worker died or its activity failed: the snapshots go ahead,
                    # crash-consistent together, and the point says it is not app-consistent.
                    now = workflow.now().isoformat()
                    hooks.append(
                        SnapshotHookOutcome(
                            hook="freeze",
                            ok=False,
                            timed_out=False,
                            detail=str(exc.cause or exc)[:500],
                            started_at=now,
                            finished_at=now,
                        )
                    )
            self._set_phase("taking snapshots", g.group)
            first = workflow.now().isoformat()
            taking = [
                workflow.start_local_activity_method(
                    ReplicationActivities.create_snapshot,
                    SnapshotRequest(vm=vm, snapshot=start.snapshot, quiesce=g.app_consistent),
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=QUICK,
                )
                for vm, start in zip(g.vms, starts, strict=True)
            ]
            gathered = asyncio.gather(*taking, return_exceptions=True)
            # Guarded as the single-VM cycle: the finally waits for calls a cancel cannot stop.
            guarded = workflow.patched(PATCH_CYCLE_SNAPSHOT_GUARD)
            taken = await (asyncio.shield(gathered) if guarded else gathered)
            failed = [r for r in taken if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
            return first, workflow.now().isoformat()
        finally:
            if pending := [t for t in taking if not t.done()]:
                await workflow.wait(pending)
            for vm, t in zip(g.vms, taking, strict=False):
                if t.done() and not t.cancelled() and t.exception() is None:
                    snaps[vm] = t.result()
            if g.thaw:
                self._set_phase("thawing", g.group)
                hooks.append(await self._hook(g, "thaw", point, g.thaw_timeout_s))

    async def _ship_commit_verify(
        self,
        g: GroupProtection,
        point: str,
        starts: list[CycleStart],
        snaps: dict[str, SnapshotTaken],
        app_consistent: bool,
    ) -> list[ShipOutcome]:
        hb = timedelta(seconds=g.heartbeat_timeout_s)
        self._set_phase("shipping", g.group)
        queues = [ship_queue(start.parent, g.source_site) for start in starts]
        shipped: list[ShipOutcome] = list(
            await asyncio.gather(
                *(
                    workflow.execute_activity_method(
                        ReplicationActivities.ship_disks,
                        ShipRequest(
                            vm=vm,
                            point_id=point,
                            snapshot=snaps[vm].snapshot,
                            parent=start.parent,
                            disks=snaps[vm].disks,
                        ),
                        task_queue=queue,
                        start_to_close_timeout=timedelta(hours=24),
                        heartbeat_timeout=hb,
                        retry_policy=PERSISTENT,
                    )
                    for vm, start, queue in zip(g.vms, starts, queues, strict=True)
                )
            )
        )
        self._set_phase("committing member points", g.group)
        await asyncio.gather(
            *(
                workflow.execute_local_activity_method(
                    ReplicationActivities.commit_point,
                    CommitRequest(
                        vm=vm,
                        point_id=point,
                        parent=start.parent,
                        outcome=out,
                        meta={
                            "workflow_id": workflow.info().workflow_id,
                            "snapshot": snaps[vm].snapshot,
                            "guest_ips": ",".join(snaps[vm].guest_ips),
                            "app_consistent": "true" if app_consistent else "false",
                            "consistency_group": g.group,
                        },
                    ),
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=QUICK,
                )
                for vm, start, out in zip(g.vms, starts, shipped, strict=True)
            )
        )
        self._set_phase("verifying member points", g.group)
        verified = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    ReplicationActivities.verify_point,
                    VMPoint(vm=vm, point_id=point),
                    task_queue=queue,
                    start_to_close_timeout=timedelta(hours=12),
                    heartbeat_timeout=hb,
                    retry_policy=PERSISTENT,
                )
                for vm, queue in zip(g.vms, queues, strict=True)
            )
        )
        bad = [
            f"{vm}: {'; '.join(v.problems[:3])}" for vm, v in zip(g.vms, verified, strict=True) if not v.ok
        ]
        if bad:
            raise ApplicationError(
                f"group {g.group} point {point}: members failed verification: " + " | ".join(bad),
                type="VerifyFailed",
                non_retryable=True,
            )
        return shipped
