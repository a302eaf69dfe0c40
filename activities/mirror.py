"""mirror_points: copy a VM's verified points to its store's mirror and verify them there.

Runs after the cycle's own point is verified and its snapshot released (the mirror never holds a
snapshot open). Every verified point the mirror lacks is sent, oldest first, so a mirror that was
unreachable catches up at the next cycle; the outcome's ``lag`` says how many it still lacks. The
same pass back-fills configurations the mirror's older points lack, removes from the mirror the
points the primary's retention removed, and copies the VM's consistency-group points once every
member is verified in the mirror (``seawall.blockstore.mirror.mirror_vm``).
"""

from __future__ import annotations

from temporalio import activity

from activities.context import fatal
from activities.heartbeat import with_heartbeats
from activities.replica import ReplicaSite
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.mirror import mirror_vm
from seawall.blockstore.stores.backend import StoreError
from seawall.contract.messages import MirrorOutcome, VMRef
from seawall.contract.names import Activity
from seawall.sites.replica import open_mirror


class MirrorActivities(ReplicaSite):
    @activity.defn(name=Activity.MIRROR_POINTS)
    def mirror_points(self, req: VMRef) -> MirrorOutcome:
        vm = req.vm
        prot = self._protection(vm)
        primary = self._repository(vm)
        opened = open_mirror(self.ctx.inventory, primary, prot.store, site=self.ctx.site.name)
        if opened is None:
            raise fatal(f"replica store {prot.store!r} of {vm!r} has no mirror", "StoreError")
        name, mirror = opened
        current: list[str] = []
        group = self.ctx.inventory.group_of(vm)
        try:
            done = with_heartbeats(
                lambda: mirror_vm(primary, mirror, vm, [group.name] if group else [], current.append),
                lambda: {"mirror": name, "point": current[-1] if current else None},
            )
        except (StoreError, DataPathError) as exc:
            raise self._store_error(vm, exc) from None
        results = done.results
        if done.configs_backfilled:
            activity.logger.info(
                "%s: configuration of %d point(s) copied to mirror %s (mirrored before configurations were)",
                vm,
                len(done.configs_backfilled),
                name,
            )
        bad = [r for r in results if not r.verified]
        if bad:
            activity.logger.warning(
                "%s: %d point(s) failed verification in mirror %s: %s",
                vm,
                len(bad),
                name,
                "; ".join(f"{r.point_id}: {', '.join(r.errors[:3])}" for r in bad),
            )
        return MirrorOutcome(
            vm=vm,
            mirror=name,
            mirrored=[r.point_id for r in results if r.verified],
            bytes_copied=sum(r.bytes_copied for r in results),
            lag=done.lag,
            configs_backfilled=done.configs_backfilled,
            pruned=done.pruned,
            pruned_locked=done.pruned_locked,
            group_points=done.group_points,
        )
