"""A VM's replica at the source site's worker: opening it, its errors, and retention, GC and deletion.

Every store failure becomes an activity failure of a named type: ``StoreUnavailable`` (transient,
retried), ``WrongKey``, ``KeyMissing``, ``StoreError`` (not retried: they need an operator).
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext, fatal
from activities.heartbeat import with_heartbeats
from activities.protection import resolve_protection_for
from seawall.blockstore.errors import DataPathError, WrongKeyError
from seawall.blockstore.keys import KeyRefError
from seawall.blockstore.manifest import RetentionPolicy
from seawall.blockstore.mirror import prune_mirror
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectLockedError, StoreError, TransientStoreError
from seawall.contract.messages import GcInput, GcOutcome, ProtectInput, Protection, RetentionOutcome, VMRef
from seawall.contract.names import Activity
from seawall.security.secrets import SecretError
from seawall.sites.replica import open_mirror, open_repository


class ReplicaSite:
    """What a source site's activities share: the site, and the replica its VMs replicate into."""

    def __init__(self, ctx: SiteContext, checkpoint_mib: int | None = None) -> None:
        self.ctx = ctx
        self.checkpoint_mib = checkpoint_mib

    def _protection(self, vm: str) -> Protection:
        return resolve_protection_for(self.ctx.inventory, ProtectInput(vm=vm))

    def _repository(self, vm: str, *, seed: bool = False) -> Repository:
        inv = self.ctx.inventory
        pvm = inv.protected_vm(vm)
        try:
            return open_repository(
                inv,
                pvm.replica_store,
                inv.policy(pvm.policy),
                checkpoint_mib=self.checkpoint_mib,
                site=self.ctx.site.name,
                vm=vm,
                seed=seed,
            )
        except (KeyRefError, SecretError) as exc:
            raise fatal(f"replica of {vm!r}: {exc}", "KeyMissing") from None
        except StoreError as exc:
            raise self._store_error(vm, exc) from None

    def _store_error(self, vm: str, exc: Exception) -> ApplicationError:
        if isinstance(exc, TransientStoreError):
            return ApplicationError(f"replica store of {vm!r}: {exc}", type="StoreUnavailable")
        if isinstance(exc, WrongKeyError):
            return fatal(f"replica of {vm!r}: {exc}", "WrongKey")
        return fatal(f"replica store of {vm!r}: {exc}", "StoreError")


class RetentionActivities(ReplicaSite):
    """The points a replica keeps: the policy's, after a committed failover, or none (unprotect)."""

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
        # The mirror keeps what its own retention keeps, and never a point the primary's removed.
        self._on_mirror(vm, repo, lambda m: (m.apply_retention(vm, policy), prune_mirror(repo, m, vm)))
        if kept.locked:
            activity.logger.info(
                "retention of %s keeps %d point(s) past the policy: their object lock has not expired (%s)",
                vm,
                len(kept.locked),
                ", ".join(kept.locked),
            )
        return RetentionOutcome(kept=len(kept.kept), deleted=kept.deleted, locked=kept.locked)

    def _on_mirror(self, vm: str, primary: Repository, fn: Callable[[Repository], object]) -> None:
        """Retention and GC apply to the store's mirror too. A mirror that cannot be reached is
        logged, not fatal: the primary's retention must not wait for it (the next run catches up)."""
        opened = open_mirror(self.ctx.inventory, primary, self._protection(vm).store, site=self.ctx.site.name)
        if opened is None:
            return
        try:
            fn(opened[1])
        except (StoreError, DataPathError) as exc:
            activity.logger.warning("mirror %s of %s: %s", opened[0], vm, exc)

    @activity.defn(name=Activity.COLLECT_GARBAGE)
    def collect_garbage(self, req: GcInput) -> GcOutcome:
        """Delete packs and tables no point of any VM in the store references (see Repository.gc)."""
        store = req.store
        inv = self.ctx.inventory
        users = [p for p in inv.protected_vms if p.replica_store == store]
        if not users:
            raise fatal(f"no protected VM uses replica store {store!r}", "StoreError")
        # Any policy's key opens the store for listing; chunks are never decrypted by GC.
        vm = users[0].name
        repo = self._repository(vm)
        try:
            result = with_heartbeats(repo.gc, lambda: store)
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        self._on_mirror(vm, repo, lambda m: with_heartbeats(m.gc, lambda: f"{store} mirror"))
        return GcOutcome(
            store=store,
            packs_deleted=result.packs_deleted,
            tables_deleted=result.tables_deleted,
            condemned=result.condemned,
            live_sessions=result.live_sessions,
            locked=result.locked,
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
            locked = []
            for point_id in pruned:
                try:
                    repo.forget_point(vm, point_id)
                except ObjectLockedError:
                    locked.append(point_id)  # immutable until its lock expires; retention takes it then
                    continue
            if locked:
                activity.logger.info("%s: %d point(s) kept by their object lock", vm, len(locked))
                pruned = [p for p in pruned if p not in locked]
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        self._on_mirror(vm, repo, lambda m: prune_mirror(repo, m, vm))
        return pruned

    @activity.defn(name=Activity.DELETE_REPLICA)
    def delete_replica(self, req: VMRef) -> int:
        """Delete every recovery point of ``vm`` (unprotect --delete-replica); data goes at GC."""
        vm = req.vm
        repo = self._repository(vm)
        try:
            points = repo.list_points(vm)
            # Newest last, so an interrupted unprotect never leaves a hole under a kept point's parent.
            deleted = 0
            for p in points:
                try:
                    repo.forget_point(vm, p.point_id)
                except ObjectLockedError:
                    # Immutable by design: it stays until its lock expires (unprotect
                    # --delete-replica again after that removes it); the count says what went.
                    activity.logger.info("%s: point %s kept by its object lock", vm, p.point_id)
                    continue
                deleted += 1
            repo.gc()
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        self._on_mirror(vm, repo, lambda m: _forget_all(m, vm))
        return deleted


def _forget_all(repo: Repository, vm: str) -> None:
    """Every point of ``vm`` in ``repo`` (a mirror), but those its object lock keeps; then GC."""
    for p in repo.list_points(vm):
        try:
            repo.forget_point(vm, p.point_id)
        except ObjectLockedError:
            activity.logger.info("%s: point %s kept in the mirror by its object lock", vm, p.point_id)
    repo.gc()
