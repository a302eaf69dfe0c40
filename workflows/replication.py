"""Replication: ProtectVM (CBT, seed, schedule), ReplicationCycle (one recovery point), UnprotectVM.

A cycle runs on the source site's task queue, so its quick steps (snapshot, commit, release, retention)
are local activities on the site's own worker — one server round trip fewer each — while the transfer
and the verify are regular, heartbeating activities that another worker of the site can take over.

Nothing large travels through here: point ids, disk keys and shipped-disk summaries, never manifests.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import HEARTBEAT_TIMEOUT, persistent, quick
from workflows.seeds import ship_queue

with workflow.unsafe.imports_passed_through():
    # The activity classes only name the activities here (and give their types): their code runs at
    # the workers, never in the workflow sandbox.
    from activities.mirror import MirrorActivities
    from activities.protection import InventoryActivities
    from activities.replica import RetentionActivities
    from activities.replication import ReplicationActivities
    from activities.schedules import ensure_gc_schedule, ensure_schedule
    from seawall.contract.messages import (
        CommitRequest,
        CycleInput,
        CycleResult,
        CycleStart,
        GcInput,
        GcOutcome,
        GcScheduleRequest,
        MirrorOutcome,
        ProtectInput,
        ProtectResult,
        ScheduleRequest,
        ShipOutcome,
        ShipRequest,
        SnapshotRelease,
        SnapshotRequest,
        SnapshotTaken,
        VerifyOutcome,
        VMPoint,
        VMRef,
    )
    from seawall.contract.names import (
        MEMO_RESULT,
        PATCH_CYCLE_RESULT_MEMO,
        PATCH_CYCLE_SNAPSHOT_GUARD,
        Query,
        Workflow,
        seed_cycle_id,
    )
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_SITE, SA_VM
    from workflows.inputs import decode_input

# Errors no retry can fix: the activities raise them as non-retryable ApplicationErrors already; the
# list also covers a worker that raises them plainly.
FATAL = [
    "NotProtected",
    "UnknownPolicy",
    "VMGone",
    "KeyMissing",
    "WrongKey",
    "StoreError",
    "CredentialsError",
]

QUICK = quick(FATAL)
PERSISTENT = persistent(FATAL)


def point_id_for(info: workflow.Info, started: datetime) -> str:
    """Deterministic per run: the start time (readable, sortable) plus the run id's random tail.

    Run ids are UUIDv7: their head is a timestamp shared by runs started close together.
    """
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}-{info.run_id.replace('-', '')[-12:]}"


async def mirror_step(vm: str, heartbeat_timeout_s: float) -> tuple[MirrorOutcome | None, str | None]:
    """Copy the VM's verified points to its store's mirror and verify them there. A mirror that is
    down does not fail the cycle (the primary point is verified): the error is returned, and the
    next cycle catches up."""
    try:
        outcome = await workflow.execute_activity_method(
            MirrorActivities.mirror_points,
            VMRef(vm=vm),
            start_to_close_timeout=timedelta(hours=12),
            heartbeat_timeout=timedelta(seconds=heartbeat_timeout_s),
            retry_policy=RetryPolicy(
                maximum_attempts=3,
                initial_interval=timedelta(seconds=2),
                non_retryable_error_types=FATAL,
            ),
        )
    except ActivityError as exc:
        return None, str(exc.cause or exc)
    return outcome, None


@workflow.defn(name=Workflow.REPLICATION_CYCLE)
class ReplicationCycleWorkflow:
    """snapshot -> ship -> commit -> verify -> release snapshot -> retention: one verified point."""

    def __init__(self) -> None:
        self._phase = "starting"
        self._point: str | None = None
        self._verified: VerifyOutcome | None = None

    @workflow.query(name=Query.PHASE)
    def phase(self) -> dict[str, str | None]:
        return {"phase": self._phase, "point": self._point}

    def _set_phase(self, phase: str, vm: str) -> None:
        self._phase = phase
        workflow.set_current_details(f"{vm}: {phase}" + (f" (point {self._point})" if self._point else ""))

    @workflow.run
    async def run(self, raw: Any = None) -> CycleResult:
        inp = decode_input(CycleInput, raw)
        started = workflow.now()
        prot = await workflow.execute_local_activity_method(
            InventoryActivities.resolve_protection,
            ProtectInput(vm=inp.vm, source_site=inp.source_site),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        workflow.upsert_search_attributes([SA_VM.value_set(prot.vm), SA_SITE.value_set(prot.source_site)])
        self._point = point_id_for(workflow.info(), started)
        point = self._point

        self._set_phase("finding parent point", inp.vm)
        start = await workflow.execute_local_activity_method(
            ReplicationActivities.start_cycle,
            VMPoint(vm=inp.vm, point_id=point),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=QUICK,
        )
        self._set_phase("taking snapshot", inp.vm)
        request = SnapshotRequest(vm=inp.vm, snapshot=start.snapshot, quiesce=prot.app_consistent)
        # Guarded: the snapshot is taken inside the compensation's reach. A cancel (unprotect, a
        # drill's pause) that lands while the site's snapshot call runs cannot stop that call; the
        # release then waits for it to end and releases what it made, by name.
        guarded = workflow.patched(PATCH_CYCLE_SNAPSHOT_GUARD)
        taking = self._take_snapshot(request)
        if not guarded:
            snap = await taking  # the shape of cycles started before the guard: outside the try
        try:
            if guarded:
                snap = await asyncio.shield(taking)
            shipped = await self._ship_commit_verify(
                inp.vm,
                point,
                start,
                snap,
                timedelta(seconds=prot.heartbeat_timeout_s),
                prot.app_consistent,
                prot.source_site,
            )
        finally:
            if not taking.done():
                # Cancelled mid-call: whatever the call ends in, a snapshot it made is released next.
                await workflow.wait([taking])
            # Compensation: a snapshot left behind grows a delta disk at the source until someone notices.
            self._set_phase("releasing snapshot", inp.vm)
            await workflow.execute_local_activity_method(
                ReplicationActivities.release_snapshot,
                SnapshotRelease(vm=inp.vm, snapshot=request.snapshot),
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(minutes=1), non_retryable_error_types=FATAL
                ),
            )
        mirrored: MirrorOutcome | None = None
        mirror_error: str | None = None
        if prot.mirror is not None and workflow.patched("mirror-points"):
            # After the snapshot is released: the mirror never holds it open.
            self._set_phase("mirroring points", inp.vm)
            mirrored, mirror_error = await mirror_step(inp.vm, prot.heartbeat_timeout_s)
        self._set_phase("applying retention", inp.vm)
        retention = await workflow.execute_local_activity_method(
            RetentionActivities.apply_retention,
            VMRef(vm=inp.vm),
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=QUICK,
        )
        self._set_phase("done", inp.vm)
        paths = {d.change_path for d in shipped.disks}
        result = CycleResult(
            vm=inp.vm,
            point_id=point,
            parent=start.parent,
            started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
            change_path=paths.pop() if len(paths) == 1 else "mixed",
            bytes_read=shipped.bytes_read,
            bytes_shipped=shipped.bytes_shipped,
            verified=True,
            retention_deleted=retention.deleted,
            corrupt_points=self._verified.corrupt_points if self._verified else [],
            healed_points=self._verified.healed_points if self._verified else [],
            mirror=prot.mirror,
            mirror_lag=mirrored.lag if mirrored is not None else None,
            mirror_error=mirror_error,
        )
        if workflow.patched(PATCH_CYCLE_RESULT_MEMO):
            # The result in the memo too: a visibility listing of the fleet's cycles then carries every
            # VM's newest point, bytes and path, with no history fetch per cycle (seawall.control.fleet).
            workflow.upsert_memo({MEMO_RESULT: result})
        return result

    def _take_snapshot(self, request: SnapshotRequest) -> workflow.ActivityHandle[SnapshotTaken]:
        return workflow.start_local_activity_method(
            ReplicationActivities.create_snapshot,
            request,
            # Quiesced snapshots of busy guests take minutes.
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=QUICK,
        )

    async def _ship_commit_verify(
        self,
        vm: str,
        point: str,
        start: CycleStart,
        snap: SnapshotTaken,
        hb: timedelta,
        app_consistent: bool,
        site: str,
    ) -> ShipOutcome:
        """The part the snapshot must outlive: transfer, commit (manifest last), re-read and verify."""
        self._set_phase("shipping changed blocks" if start.parent else "seeding full disks", vm)
        queue = ship_queue(start.parent, site)
        shipped = await workflow.execute_activity_method(
            ReplicationActivities.ship_disks,
            ShipRequest(vm=vm, point_id=point, snapshot=snap.snapshot, parent=start.parent, disks=snap.disks),
            task_queue=queue,
            start_to_close_timeout=timedelta(hours=24),
            heartbeat_timeout=hb,
            retry_policy=PERSISTENT,
        )
        self._set_phase("committing point", vm)
        await workflow.execute_local_activity_method(
            ReplicationActivities.commit_point,
            CommitRequest(
                vm=vm,
                point_id=point,
                parent=start.parent,
                outcome=shipped,
                meta={
                    "workflow_id": workflow.info().workflow_id,
                    "snapshot": snap.snapshot,
                    "guest_ips": ",".join(snap.guest_ips),
                    # Quiesced (VMware Tools/VSS): recorded on the point, shown in recovery reports.
                    "app_consistent": "true" if app_consistent else "false",
                },
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=QUICK,
        )
        self._set_phase("verifying point", vm)
        verified = await workflow.execute_activity_method(
            ReplicationActivities.verify_point,
            VMPoint(vm=vm, point_id=point),
            task_queue=queue,
            start_to_close_timeout=timedelta(hours=12),
            heartbeat_timeout=hb,
            retry_policy=PERSISTENT,
        )
        self._verified = verified
        if not verified.ok:
            # The point stays unverified: the next cycle builds on the last verified one instead.
            raise ApplicationError(
                f"point {point} of {vm} failed verification: " + "; ".join(verified.problems[:5]),
                type="VerifyFailed",
                non_retryable=True,
            )
        return shipped


@workflow.defn(name=Workflow.PROTECT_VM)
class ProtectVMWorkflow:
    """Validate, enable CBT, seed the first verified point, then hand the VM to its schedule."""

    @workflow.run
    async def run(self, raw: Any = None) -> ProtectResult:
        inp = decode_input(ProtectInput, raw)
        prot = await workflow.execute_activity_method(
            InventoryActivities.resolve_protection,
            inp,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        workflow.upsert_search_attributes([SA_VM.value_set(prot.vm), SA_SITE.value_set(prot.source_site)])
        workflow.set_current_details(f"{prot.vm}: enabling changed block tracking")
        if prot.source_kind == "vsphere":
            await workflow.execute_activity_method(
                ReplicationActivities.enable_cbt,
                VMRef(vm=prot.vm),
                task_queue=site_queue(prot.source_site),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=QUICK,
            )
        workflow.set_current_details(f"{prot.vm}: seeding the first recovery point")
        seed = await workflow.execute_child_workflow(
            ReplicationCycleWorkflow.run,
            CycleInput(vm=prot.vm),
            id=seed_cycle_id(prot.vm, workflow.info().run_id),
            task_queue=site_queue(prot.source_site),
        )
        workflow.set_current_details(f"{prot.vm}: creating its schedule (every {prot.interval_s:g}s)")
        sid = await workflow.execute_activity(
            ensure_schedule,
            ScheduleRequest(vm=prot.vm, source_site=prot.source_site, interval_s=prot.interval_s),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        if workflow.patched("gc-schedule-per-store"):
            # Garbage collection lists the whole store: once per store on its own schedule, not per cycle.
            await workflow.execute_activity(
                ensure_gc_schedule,
                GcScheduleRequest(store=prot.store, site=prot.source_site, interval_s=prot.gc_interval_s),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        workflow.set_current_details(f"{prot.vm}: protected, first point {seed.point_id}")
        return ProtectResult(
            vm=prot.vm, schedule_id=sid, interval_s=prot.interval_s, first_point=seed.point_id
        )


@workflow.defn(name=Workflow.COLLECT_GARBAGE)
class CollectGarbageWorkflow:
    """Delete what no recovery point of any VM in a replica store references (run by its schedule)."""

    @workflow.run
    async def run(self, raw: Any = None) -> GcOutcome:
        inp = decode_input(GcInput, raw)
        workflow.upsert_search_attributes([SA_SITE.value_set(inp.site)])
        workflow.set_current_details(f"collecting garbage in replica store {inp.store}")
        return await workflow.execute_activity_method(
            RetentionActivities.collect_garbage,
            inp,
            task_queue=site_queue(inp.site),
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PERSISTENT,
        )
