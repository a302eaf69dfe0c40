"""Replication activities: snapshot, ship, commit, verify, release — each idempotent.

They run on the source site's worker (``seawall-site-<site>``), where the site's credentials and the
replica store's credentials live. Idempotency comes from names derived from the workflow: the snapshot
is named after the point id, a ship's session id is ``<point>.<disk>`` (the store's journal confirms
what a dead attempt already wrote), and committing an existing identical point is a no-op. The
site's adapter (``seawall.sites``) takes the snapshot and opens its disks; retention is in
``activities.replica``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext, site_errors
from activities.heartbeat import Beat, keep_alive, with_heartbeats
from activities.replica import ReplicaSite
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.manifest import PointRef, ShippedDisk, ShipProgress
from seawall.blockstore.repository import Repository
from seawall.blockstore.source import SourceError
from seawall.blockstore.stores.backend import StoreError
from seawall.contract.heartbeats import ShipCheckpoint, ShipHeartbeat
from seawall.contract.messages import (
    CommitRequest,
    CycleStart,
    ShipOutcome,
    ShippedDiskRef,
    ShipRequest,
    SnapshotRelease,
    SnapshotRequest,
    SnapshotTaken,
    VerifyOutcome,
    VMPoint,
    VMRef,
)
from seawall.contract.names import SNAPSHOT_PREFIX, Activity
from seawall.runtime import failpoints


def snapshot_name(point_id: str) -> str:
    return f"{SNAPSHOT_PREFIX}{point_id}"


class ReplicationActivities(ReplicaSite):
    """At the source site: one replication cycle's steps."""

    def __init__(self, ctx: SiteContext, checkpoint_mib: int | None = None, scrub_interval_s: float = 0.0):
        super().__init__(ctx, checkpoint_mib)
        self.scrub_interval_s = scrub_interval_s

    @activity.defn(name=Activity.START_CYCLE)
    def start_cycle(self, req: VMPoint) -> CycleStart:
        """The cycle's parent: the newest *verified* point, so a corrupt point is never built upon."""
        vm, point_id = req.vm, req.point_id
        repo = self._repository(vm)
        try:
            existing = {p.point_id: p for p in repo.list_points(vm)}
            if point_id in existing:
                # A replayed cycle whose commit already happened keeps its original parent.
                parent_id = existing[point_id].parent
                parent = existing.get(parent_id) if parent_id else None
            else:
                ref = repo.latest_point(vm, verified_only=True)
                parent = existing.get(ref.point_id) if ref else None
        except (StoreError, DataPathError) as exc:
            err = self._store_error(vm, exc)
            # Nothing to resume yet, and the store layer already retried: fail this cycle at once (a
            # local activity's retries are invisible to status), so status and the metrics say why;
            # the schedule's next cycle tries again.
            raise ApplicationError(err.message, type=err.type, non_retryable=True) from None
        return CycleStart(
            point_id=point_id,
            snapshot=snapshot_name(point_id),
            parent=parent.point_id if parent else None,
            parent_created_at=parent.created_at.isoformat() if parent else None,
        )

    @activity.defn(name=Activity.ENABLE_CBT)
    def enable_cbt(self, req: VMRef) -> bool:
        vm = req.vm
        with site_errors():
            return self.ctx.adapter.enable_cbt(vm)

    @activity.defn(name=Activity.CREATE_SNAPSHOT)
    def create_snapshot(self, req: SnapshotRequest) -> SnapshotTaken:
        vm, name, quiesce = req.vm, req.snapshot, req.quiesce
        only = self.ctx.inventory.protected_vm(vm).disks
        with site_errors():
            taken = self.ctx.adapter.create_snapshot(vm, name, quiesce=quiesce, only=only)
        failpoints.hit("snapshot.taken", {"vm": vm, "snapshot": name})
        return taken

    @activity.defn(name=Activity.SHIP_DISKS)
    def ship_disks(self, req: ShipRequest) -> ShipOutcome:
        """Ship every disk of the snapshot; resumable from the last checkpoint the store confirms.

        Heartbeat details carry the disks already shipped and the current disk's ShipProgress; the
        deterministic session id alone would also let the store's journal resume a ship.
        """
        info = activity.info()
        done: dict[str, ShippedDiskRef] = {}
        previous: ShipHeartbeat | None = None
        if info.heartbeat_details:
            # Decoded without a type hint: the converter hands back the heartbeat's JSON object.
            previous = ShipHeartbeat.model_validate(info.heartbeat_details[0])
            for ref in previous.done:
                done[ref.disk] = ref
        # A seed (no parent) ships under the seed limits as well.
        repo = self._repository(req.vm, seed=req.parent is None)
        parent = PointRef(vm=req.vm, point_id=req.parent) if req.parent else None
        started = time.monotonic()

        def timing(details: ShipHeartbeat) -> ShipHeartbeat:
            # The seconds this attempt shipped and waited on its bandwidth limits: status says
            # "throttled" from them.
            waited = float(getattr(repo.store, "waited", 0.0))
            return details.model_copy(
                update={"shipping_s": round(time.monotonic() - started, 1), "throttled_s": round(waited, 1)}
            )

        # Checkpoints come every <= 1 GiB scanned; the ticker repeats the newest one every few seconds
        # in between, so a short heartbeat timeout notices a dead worker without failing a slow read.
        beat = Beat(previous or ShipHeartbeat(done=list(done.values())), refresh=timing)

        def on_progress(progress: ShipProgress) -> None:
            checkpoint = ShipCheckpoint.model_validate(progress.model_dump(mode="json"))
            beat(ShipHeartbeat(done=list(done.values()), progress=checkpoint))
            failpoints.hit("ship.checkpoint", {"progress": checkpoint.model_dump(mode="json")})

        with (
            keep_alive(beat),
            site_errors(),
            self.ctx.adapter.open_disks(req.vm, req.snapshot) as open_source,
        ):
            for disk in req.disks:
                name = disk.replica_name
                if name in done:
                    continue
                try:
                    source = open_source(disk)
                except SourceError as exc:
                    raise ApplicationError(self.ctx.redact(str(exc)), type="SourceUnavailable") from None
                try:
                    shipped: ShippedDisk = repo.ship(
                        source,
                        req.vm,
                        name,
                        parent=parent,
                        session=f"{req.point_id}.{name}",
                        on_progress=on_progress,
                    )
                except (StoreError, DataPathError) as exc:
                    raise self._store_error(req.vm, exc) from None
                except SourceError as exc:
                    raise ApplicationError(self.ctx.redact(str(exc)), type="SourceUnavailable") from None
                finally:
                    source.close()
                done[name] = ShippedDiskRef(
                    disk=name,
                    shipped=shipped.model_dump(mode="json"),
                    bytes_read=shipped.bytes_read,
                    bytes_shipped=shipped.bytes_shipped,
                    change_path=str(shipped.change_path),
                )
                beat(ShipHeartbeat(done=list(done.values())))
        return ShipOutcome(disks=[done[d.replica_name] for d in req.disks])

    @activity.defn(name=Activity.COMMIT_POINT)
    def commit_point(self, req: CommitRequest) -> str:
        """Commit the point, with the VM's configuration as of the cycle's snapshot stored beside it.

        The configuration is described here, at the worker, and sealed into the replica: it never
        passes through the workflow history (it holds MACs, annotations, tags).
        """
        repo = self._repository(req.vm)
        disks = [ShippedDisk.model_validate(d.shipped) for d in req.outcome.disks]
        snapshot = req.meta.get("snapshot") or snapshot_name(req.point_id)
        with site_errors():
            described = self.ctx.adapter.describe_vm(req.vm, snapshot)
        config = None
        if described is not None:
            config = (described.kind, described.scrubbed().model_dump_json().encode())
        try:
            ref = repo.commit_point(
                req.vm, req.point_id, disks, parent=req.parent, meta=req.meta, source_config=config
            )
        except (StoreError, DataPathError) as exc:
            raise self._store_error(req.vm, exc) from None
        failpoints.hit("commit.done", {"point": ref.point_id})
        return ref.point_id

    @activity.defn(name=Activity.VERIFY_POINT)
    def verify_point(self, req: VMPoint) -> VerifyOutcome:
        vm, point_id = req.vm, req.point_id
        repo = self._repository(vm)
        try:
            # Incremental: re-read what this point added; rows of a verified parent are already proven
            # (unless a scrub found one of their chunks damaged since: then they fail here). A point
            # that starts a new full layer (every MAX_CHAIN cycles, or a resized disk) is re-read whole.
            result = with_heartbeats(
                lambda: repo.verify_point(vm, point_id, mark=True, full=False), lambda: point_id
            )
            # This cycle's ship may have repaired damaged chunks: prove the points that need them again.
            healed = [
                c.point_id for c in with_heartbeats(lambda: repo.reverify_repaired(vm), lambda: vm) if c.ok
            ]
            corrupt = self._scrub_if_due(repo, vm)
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        problems = [f"{b.disk} block {b.block} @ {b.offset}: {b.reason}" for b in result.bad_blocks]
        return VerifyOutcome(
            ok=result.ok,
            blocks_checked=result.blocks_checked,
            bytes_checked=result.bytes_checked,
            problems=(problems + list(result.errors))[:50],
            corrupt_points=corrupt,
            healed_points=healed,
        )

    def _scrub_if_due(self, repo: Repository, vm: str) -> list[str]:
        """Once per ``scrub_interval_s`` a cycle reads every point of its VM in full (the periodic
        scrub: incremental verifies never re-read inherited chunks). The VM's corrupt points."""
        last = repo.last_scrub(vm)
        due = self.scrub_interval_s > 0 and (
            last is None or (datetime.now(UTC) - last).total_seconds() >= self.scrub_interval_s
        )
        if due:
            with_heartbeats(lambda: repo.scrub(vm), lambda: {"scrub": vm})
        return repo.corrupt_points(vm)

    @activity.defn(name=Activity.RELEASE_SNAPSHOT)
    def release_snapshot(self, req: SnapshotRelease) -> int:
        """Remove the cycle's snapshot; a snapshot already gone (or a VM already gone) is success."""
        vm, name = req.vm, req.snapshot
        failpoints.hit("release.start", {"snapshot": name})
        with site_errors():
            released = self.ctx.adapter.release_snapshot(vm, name)
        kept = self._point_kept(vm, name)
        if kept is not None:
            with site_errors():
                self.ctx.adapter.settle_snapshot(vm, name, kept)
        return released

    @activity.defn(name=Activity.RELEASE_ORPHAN_SNAPSHOTS)
    def release_orphan_snapshots(self, req: VMRef) -> list[str]:
        """Unprotect's sweep, once no cycle of the VM runs: every Seawall snapshot it still holds.

        Not for a consistency group's member: the group's cycles (which unprotecting one VM does not
        cancel) hold its snapshots behind their barrier."""
        if self.ctx.inventory.group_of(req.vm) is not None:
            return []
        with site_errors():
            released = self.ctx.adapter.release_orphan_snapshots(req.vm)
        if released:
            activity.logger.warning("%s: released orphaned snapshots: %s", req.vm, ", ".join(released))
        return released

    def _point_kept(self, vm: str, snapshot: str) -> bool | None:
        """Whether the snapshot's point is committed and verified; None when the store cannot say
        (then nothing is settled: the next cycle's release settles for it)."""
        try:
            points = self._repository(vm).list_points(vm)
        except (StoreError, DataPathError):
            return None
        return any(snapshot_name(p.point_id) == snapshot and p.verified for p in points)
