"""Replication activities: snapshot, ship, commit, verify, release, retain — each idempotent.

They run on the source site's worker (``seawall-site-<site>``), where the site's credentials and the
replica store's credentials live. Idempotency comes from names derived from the workflow: the snapshot
is named after the point id, a ship's session id is ``<point>.<disk>`` (the store's journal confirms
what a dead attempt already wrote), and committing an existing identical point is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext
from activities.heartbeat import with_heartbeats
from seawall.blockstore.errors import DataPathError, WrongKeyError
from seawall.blockstore.keys import KeyRefError
from seawall.blockstore.layout import point_key, verified_key
from seawall.blockstore.manifest import PointRef, RetentionPolicy, ShippedDisk, ShipProgress
from seawall.blockstore.repository import Repository
from seawall.blockstore.source import DiskSource, SourceError
from seawall.blockstore.stores.backend import StoreError, TransientStoreError
from seawall.contract.heartbeats import ShipCheckpoint, ShipHeartbeat
from seawall.contract.messages import (
    CommitRequest,
    CycleStart,
    DiskRef,
    GcInput,
    GcOutcome,
    ProtectInput,
    Protection,
    RetentionOutcome,
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
from seawall.contract.names import Activity
from seawall.model import DirectorySite, Inventory, VSphereSite
from seawall.runtime import failpoints
from seawall.security.secrets import SecretError
from seawall.sites.directory import imagesnap
from seawall.sites.directory.source import RawSource
from seawall.sites.replica import open_repository
from seawall.sites.vsphere.client import VSphereError, VSphereNotFound
from seawall.sites.vsphere.source import VSphereDiskSource


def snapshot_name(point_id: str) -> str:
    return f"seawall-{point_id}"


def _fatal(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def resolve_protection_for(
    inventory: Inventory, inp: ProtectInput, heartbeat_timeout_s: float = 120.0, gc_interval_s: float = 3600.0
) -> Protection:
    try:
        pvm = inventory.protected_vm(inp.vm)
    except LookupError:
        known = ", ".join(v.name for v in inventory.protected_vms) or "none"
        raise _fatal(
            f"VM {inp.vm!r} is not protected in the inventory (protected: {known})", "NotProtected"
        ) from None
    policy_name = inp.policy or pvm.policy
    try:
        policy = inventory.policy(policy_name)
    except LookupError:
        known = ", ".join(p.name for p in inventory.policies)
        raise _fatal(f"policy {policy_name!r} does not exist (policies: {known})", "UnknownPolicy") from None
    interval = policy.interval.total_seconds()
    grace = policy.rpo_grace.total_seconds() if policy.rpo_grace is not None else interval / 2
    site = inventory.site(pvm.source_site)
    if inp.source_site is not None and inp.source_site != pvm.source_site:
        if inp.source_site not in pvm.target_sites:
            raise _fatal(
                f"VM {pvm.name!r} can replicate back only from one of its target sites "
                f"({', '.join(pvm.target_sites)}), not {inp.source_site!r}",
                "NotProtected",
            )
        site = inventory.site(inp.source_site)
    return Protection(
        vm=pvm.name,
        source_site=site.name,
        source_kind=site.kind,
        policy=policy.name,
        interval_s=interval,
        grace_s=grace,
        store=pvm.replica_store,
        app_consistent=policy.app_consistent,
        retention_count=policy.retention_count,
        retention_hours=policy.retention_hours,
        heartbeat_timeout_s=heartbeat_timeout_s,
        gc_interval_s=gc_interval_s,
    )


class InventoryActivities:
    """Inventory look-ups: registered on every worker, used as local activities by workflows."""

    def __init__(
        self, load: Callable[[], Inventory], heartbeat_timeout_s: float, gc_interval_s: float
    ) -> None:
        self._load = load
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._gc_interval_s = gc_interval_s

    @activity.defn(name=Activity.RESOLVE_PROTECTION)
    def resolve_protection(self, inp: ProtectInput) -> Protection:
        # Re-read at each call so an edited inventory (policy change) applies from the next cycle on.
        return resolve_protection_for(self._load(), inp, self._heartbeat_timeout_s, self._gc_interval_s)


class ReplicationActivities:
    def __init__(self, ctx: SiteContext, checkpoint_mib: int | None = None) -> None:
        self.ctx = ctx
        self.checkpoint_mib = checkpoint_mib

    # ---- helpers ---------------------------------------------------------------------------------

    def _protection(self, vm: str) -> Protection:
        return resolve_protection_for(self.ctx.inventory, ProtectInput(vm=vm))

    def _repository(self, vm: str) -> Repository:
        inv = self.ctx.inventory
        pvm = inv.protected_vm(vm)
        try:
            return open_repository(
                inv, pvm.replica_store, inv.policy(pvm.policy), checkpoint_mib=self.checkpoint_mib
            )
        except (KeyRefError, SecretError) as exc:
            raise _fatal(f"replica of {vm!r}: {exc}", "KeyMissing") from None
        except StoreError as exc:
            raise self._store_error(vm, exc) from None

    def _store_error(self, vm: str, exc: Exception) -> ApplicationError:
        if isinstance(exc, TransientStoreError):
            return ApplicationError(f"replica store of {vm!r}: {exc}", type="StoreUnavailable")
        if isinstance(exc, WrongKeyError):
            return _fatal(f"replica of {vm!r}: {exc}", "WrongKey")
        return _fatal(f"replica store of {vm!r}: {exc}", "StoreError")

    def _check_vsphere(self, vm: str) -> None:
        if not isinstance(self.ctx.site, VSphereSite):
            raise _fatal(
                f"VM {vm!r}: source site {self.ctx.site.name!r} is {self.ctx.site.kind}, "
                "which has no VMs to snapshot (sources are vsphere or directory sites)",
                "UnsupportedSource",
            )

    def _find_vm(self, conn: Any, vm: str) -> Any:
        try:
            return conn.find_vm(vm)
        except VSphereNotFound as exc:
            raise _fatal(
                f"{exc}: was it deleted or renamed? unprotect it or fix the inventory", "VMGone"
            ) from None

    # ---- activities ------------------------------------------------------------------------------

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
            raise self._store_error(vm, exc) from None
        return CycleStart(
            point_id=point_id,
            snapshot=snapshot_name(point_id),
            parent=parent.point_id if parent else None,
            parent_created_at=parent.created_at.isoformat() if parent else None,
        )

    @activity.defn(name=Activity.ENABLE_CBT)
    def enable_cbt(self, req: VMRef) -> bool:
        vm = req.vm
        self._check_vsphere(vm)
        with self.ctx.vsphere() as conn:
            status = conn.enable_cbt(self._find_vm(conn, vm))
            return bool(status.enabled and status.supported)

    @activity.defn(name=Activity.CREATE_SNAPSHOT)
    def create_snapshot(self, req: SnapshotRequest) -> SnapshotTaken:
        vm, name, quiesce = req.vm, req.snapshot, req.quiesce
        if isinstance(self.ctx.site, DirectorySite):
            return self._image_snapshot(vm, name)
        self._check_vsphere(vm)
        with self.ctx.vsphere() as conn:
            vmobj = self._find_vm(conn, vm)
            try:
                snap = conn.create_snapshot(vmobj, name, quiesce=quiesce)
                disks = conn.snapshot_disks(snap)
                cbt = conn.cbt_status(vmobj)
                guest = conn.properties(vmobj, ["guest.net"]).get("guest.net") or []
            except VSphereError as exc:
                raise ApplicationError(
                    self.ctx.redact(f"snapshot of {vm!r}: {exc}"), type="SnapshotFailed"
                ) from None
        return SnapshotTaken(
            snapshot=name,
            disks=[
                DiskRef(key=str(d.key), label=d.label, size=d.capacity_bytes, name=f"disk{i}")
                for i, d in enumerate(sorted(disks, key=lambda d: d.key))
            ],
            cbt=bool(cbt.enabled and cbt.supported),
            guest_ips=[ip for nic in guest for ip in (nic.ipAddress or []) if ":" not in ip],
        )

    def _image_snapshot(self, vm: str, name: str) -> SnapshotTaken:
        root = self.ctx.directory_root()
        only = self.ctx.inventory.protected_vm(vm).disks
        try:
            names = imagesnap.list_disks(root, vm, only)
            snap, _ = imagesnap.create_snapshot(root, vm, name, names)
        except SourceError as exc:
            raise _fatal(str(exc), "VMGone") from None
        return SnapshotTaken(
            snapshot=name,
            disks=[DiskRef(key=n, label=n, size=(snap / n).stat().st_size, name=n) for n in names],
            cbt=False,
        )

    @activity.defn(name=Activity.SHIP_DISKS)
    def ship_disks(self, req: ShipRequest) -> ShipOutcome:
        """Ship every disk of the snapshot; resumable from the last checkpoint the store confirms.

        Heartbeat details carry the disks already shipped and the current disk's ShipProgress; the
        deterministic session id alone would also let the store's journal resume a ship.
        """
        info = activity.info()
        done: dict[str, ShippedDiskRef] = {}
        if info.heartbeat_details:
            # Decoded without a type hint: the converter hands back the heartbeat's JSON object.
            for ref in ShipHeartbeat.model_validate(info.heartbeat_details[0]).done:
                done[ref.disk] = ref
        repo = self._repository(req.vm)
        parent = PointRef(vm=req.vm, point_id=req.parent) if req.parent else None

        def on_progress(progress: ShipProgress) -> None:
            checkpoint = ShipCheckpoint.model_validate(progress.model_dump(mode="json"))
            activity.heartbeat(ShipHeartbeat(done=list(done.values()), progress=checkpoint))
            failpoints.hit("ship.checkpoint", {"progress": checkpoint.model_dump(mode="json")})

        with self._sources(req) as open_source:
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
                activity.heartbeat(ShipHeartbeat(done=list(done.values())))
        return ShipOutcome(disks=[done[d.replica_name] for d in req.disks])

    @contextlib.contextmanager
    def _sources(self, req: ShipRequest) -> Iterator[Callable[[DiskRef], DiskSource]]:
        """Open each disk of the snapshot: over vSphere's datastore HTTP, or the image copy on disk."""
        if isinstance(self.ctx.site, DirectorySite):
            snap = imagesnap.snapshot_path(self.ctx.directory_root(), req.vm, req.snapshot)
            yield lambda disk: RawSource(snap / disk.key)
            return
        self._check_vsphere(req.vm)
        with self.ctx.vsphere() as conn:
            vmobj = self._find_vm(conn, req.vm)
            yield lambda disk: VSphereDiskSource(conn, vmobj, req.snapshot, int(disk.key))

    @activity.defn(name=Activity.COMMIT_POINT)
    def commit_point(self, req: CommitRequest) -> str:
        repo = self._repository(req.vm)
        disks = [ShippedDisk.model_validate(d.shipped) for d in req.outcome.disks]
        try:
            ref = repo.commit_point(req.vm, req.point_id, disks, parent=req.parent, meta=req.meta)
        except (StoreError, DataPathError) as exc:
            raise self._store_error(req.vm, exc) from None
        failpoints.hit("commit.done", {"point": ref.point_id})
        return ref.point_id

    @activity.defn(name=Activity.VERIFY_POINT)
    def verify_point(self, req: VMPoint) -> VerifyOutcome:
        vm, point_id = req.vm, req.point_id
        repo = self._repository(vm)
        try:
            # Incremental: re-read what this point added; rows of a verified parent are already proven.
            # A point that starts a new full layer (every MAX_CHAIN cycles, or a resized disk) is
            # re-read whole, so every chunk is re-verified at least that often.
            result = with_heartbeats(
                lambda: repo.verify_point(vm, point_id, mark=True, full=False), lambda: point_id
            )
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        problems = [f"{b.disk} block {b.block} @ {b.offset}: {b.reason}" for b in result.bad_blocks]
        return VerifyOutcome(
            ok=result.ok,
            blocks_checked=result.blocks_checked,
            bytes_checked=result.bytes_checked,
            problems=(problems + list(result.errors))[:50],
        )

    @activity.defn(name=Activity.RELEASE_SNAPSHOT)
    def release_snapshot(self, req: SnapshotRelease) -> int:
        """Remove the cycle's snapshot; a snapshot already gone (or a VM already gone) is success."""
        vm, name = req.vm, req.snapshot
        failpoints.hit("release.start", {"snapshot": name})
        if isinstance(self.ctx.site, DirectorySite):
            return int(imagesnap.remove_snapshot(self.ctx.directory_root(), vm, name))
        self._check_vsphere(vm)
        with self.ctx.vsphere() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                return 0
            try:
                return conn.remove_snapshot(vmobj, name)
            except VSphereError as exc:
                raise ApplicationError(self.ctx.redact(f"release snapshot of {vm!r}: {exc}")) from None

    @activity.defn(name=Activity.APPLY_RETENTION)
    def apply_retention(self, req: VMRef) -> RetentionOutcome:
        """Drop the VM's points its policy no longer keeps; their data goes at the store's next GC."""
        vm = req.vm
        prot = self._protection(vm)
        repo = self._repository(vm)
        policy = RetentionPolicy(
            keep_last=prot.retention_count,
            keep_hours=float(prot.retention_hours) if prot.retention_hours else None,
        )
        try:
            kept = repo.apply_retention(vm, policy)
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        return RetentionOutcome(kept=len(kept.kept), deleted=kept.deleted)

    @activity.defn(name=Activity.COLLECT_GARBAGE)
    def collect_garbage(self, req: GcInput) -> GcOutcome:
        """Delete packs and tables no point of any VM in the store references (see Repository.gc)."""
        store = req.store
        inv = self.ctx.inventory
        users = [p for p in inv.protected_vms if p.replica_store == store]
        if not users:
            raise _fatal(f"no protected VM uses replica store {store!r}", "StoreError")
        # Any policy's key opens the store for listing; chunks are never decrypted by GC.
        vm = users[0].name
        repo = self._repository(vm)
        try:
            result = with_heartbeats(repo.gc, lambda: store)
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        return GcOutcome(
            store=store,
            packs_deleted=result.packs_deleted,
            tables_deleted=result.tables_deleted,
            condemned=result.condemned,
            live_sessions=result.live_sessions,
        )

    @activity.defn(name=Activity.PRUNE_POINTS)
    def prune_points(self, req: VMRef) -> list[str]:
        """After a committed failover: drop every point older than the newest verified one.

        The newest verified point is what the failover recovered from (or newer) and the base that
        reverse replication ships against; the older ones describe a primary that no longer exists.
        """
        vm = req.vm
        repo = self._repository(vm)
        try:
            points = repo.list_points(vm)
            keep = repo.latest_point(vm, verified_only=True)
            if keep is None:
                return []
            newest = next(p for p in points if p.point_id == keep.point_id)
            pruned = [p.point_id for p in points if p.created_at < newest.created_at]
            for point_id in pruned:
                repo.store.delete(point_key(vm, point_id))
                repo.store.delete(verified_key(vm, point_id))
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        return pruned

    @activity.defn(name=Activity.DELETE_REPLICA)
    def delete_replica(self, req: VMRef) -> int:
        """Delete every recovery point of ``vm`` (unprotect --delete-replica); data goes at GC."""
        vm = req.vm
        repo = self._repository(vm)
        try:
            points = repo.list_points(vm)
            # Newest last, so an interrupted unprotect never leaves a hole under a kept point's parent.
            for p in points:
                repo.store.delete(point_key(vm, p.point_id))
                repo.store.delete(verified_key(vm, p.point_id))
            repo.gc()
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        return len(points)
