"""At the target site: choose a recovery point, materialize its disks, create the VM; failback in place.

These run on the target's worker, with its credentials and the replica store's; they read per-VM
detail (size, networks, addresses) from the plan file at the worker, so the workflow history carries
names and ids. The site's adapter does the work (``seawall.sites``); every resource is tagged with
the run as it is created, so a retried step finds what it made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext, fatal, site_errors
from activities.heartbeat import with_heartbeats
from activities.recovery import find_plan, target_name
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.manifest import DiskManifest
from seawall.blockstore.stores.backend import StoreError
from seawall.contract.messages import (
    ChosenPoint,
    CreateTargetRequest,
    Materialized,
    PointRestore,
    RecoverVMInput,
    TargetVM,
)
from seawall.contract.names import Activity
from seawall.model import PlanVM, RecoveryPlan
from seawall.model.ipplan import IpPlanError, NicPlan, plan_vm_nics
from seawall.runtime.config import Settings
from seawall.sites.base import Restore, RunLabels, VMShape
from seawall.sites.replica import open_repository


class ReplicaPoint:
    """One point of a VM's replica, as a site adapter reads it (``seawall.sites.base.PointReader``).

    The replica is opened on first read, so a site that refuses the verb does so before the store
    is touched, as it did when each site kind was a branch of the activity.
    """

    def __init__(self, open_repo: Callable[[], Any], vm: str, point_id: str) -> None:
        self._open = open_repo
        self.vm = vm
        self.point_id = point_id

    @cached_property
    def repo(self) -> Any:
        return self._open()

    @cached_property
    def _disks(self) -> list[DiskManifest]:
        return list(self.repo.read_manifest(self.vm, self.point_id).disks)

    def disks(self) -> list[DiskManifest]:
        return self._disks

    def restorer(self, disk: str) -> Restore:
        """Stream the disk into a writer, verified on the way (chunk ids, block hashes, digest)."""

        def restore(writer: Callable[[int, bytes], None]) -> object:
            return self.repo.restore_disk(self.vm, self.point_id, disk, writer)

        return restore

    def progress(self, disk: str) -> Callable[[int], None]:
        def report(offset: int) -> None:
            activity.heartbeat({"disk": disk, "offset": offset})

        return report


def labels(inp: RecoverVMInput) -> RunLabels:
    return RunLabels(plan=inp.plan, run=inp.run, vm=inp.vm)


class TargetSite:
    """What the target site's activities share: the site, the settings, the plan's view of a VM."""

    def __init__(self, ctx: SiteContext, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings

    def _plan_vm(self, plan_name: str, vm: str) -> tuple[RecoveryPlan, PlanVM]:
        plan, _ = find_plan(self.settings, plan_name)
        for group in plan.groups:
            for pv in group.vms:
                if pv.name == vm:
                    return plan, pv
        raise fatal(f"plan {plan_name!r} has no VM {vm!r}", "PlanInvalid")

    def _repository(self, vm: str, store: str | None = None) -> Any:
        """The VM's replica in ``store`` (default: the VM's own store; or its mirror, by name)."""
        inv = self.ctx.inventory
        pvm = inv.protected_vm(vm)
        return open_repository(inv, store or pvm.replica_store, inv.policy(pvm.policy))

    def _verified_points(self, vm: str) -> tuple[str, Any, list[Any]]:
        """(store name, repository, verified points) from the VM's store, or from its mirror when
        the store cannot be read: a region that is gone must not stop the recovery."""
        inv = self.ctx.inventory
        primary = inv.protected_vm(vm).replica_store
        try:
            repo = self._repository(vm)
            return primary, repo, [p for p in repo.list_points(vm) if p.verified]
        except (StoreError, DataPathError) as exc:
            mirror = inv.replica_store(primary).mirror
            if mirror is None:
                raise ApplicationError(f"replica of {vm}: {exc}", type="StoreUnavailable") from None
            activity.logger.warning(
                "replica store %s of %s unreadable (%s): reading mirror %s", primary, vm, exc, mirror
            )
            try:
                repo = self._repository(vm, mirror)
                return mirror, repo, [p for p in repo.list_points(vm) if p.verified]
            except (StoreError, DataPathError) as exc2:
                raise ApplicationError(
                    f"replica of {vm}: store {primary!r}: {exc}; mirror {mirror!r}: {exc2}",
                    type="StoreUnavailable",
                ) from None


class RecoveryActivities(TargetSite):
    """Everything that makes a recovered VM at the target site (or, failing back, the original)."""

    def _nics(self, inp: RecoverVMInput, pv: PlanVM, source_ips: list[str]) -> list[NicPlan]:
        try:
            return plan_vm_nics(pv, self.ctx.site, inp.mode, source_ips)
        except IpPlanError as exc:
            raise fatal(str(exc), "PlanInvalid") from None

    @activity.defn(name=Activity.CHOOSE_POINT)
    def choose_point(self, inp: RecoverVMInput) -> ChosenPoint:
        """The newest verified point (at or before ``point_time`` when given)."""
        store, repo, points = self._verified_points(inp.vm)
        if inp.point_time:
            limit = datetime.fromisoformat(inp.point_time.replace("Z", "+00:00"))
            points = [p for p in points if p.created_at <= limit]
        if not points:
            when = f" at or before {inp.point_time}" if inp.point_time else ""
            raise fatal(f"{inp.vm} has no verified recovery point{when}", "NoRecoveryPoint")
        point = points[-1]
        manifest = repo.read_manifest(inp.vm, point.point_id)
        return ChosenPoint(
            point_id=point.point_id,
            created_at=point.created_at.isoformat(),
            disks=[d.disk for d in manifest.disks],
            source_ips=[ip for ip in manifest.meta.get("guest_ips", "").split(",") if ip],
            store=store,
        )

    @activity.defn(name=Activity.MATERIALIZE_DISKS)
    def materialize_disks(self, req: PointRestore) -> Materialized:
        inp, point = req.target, req.point
        reader = ReplicaPoint(lambda: self._repository(inp.vm, point.store), inp.vm, point.point_id)
        reader.disks()  # the manifest first: an unreadable replica fails before the site is touched
        with site_errors():
            uploaded, resources = self.ctx.adapter.materialize(
                target_name(inp), labels(inp), reader, activity.heartbeat
            )
        return Materialized(
            point=point, disks=[json.dumps(u, default=str) for u in uploaded], resources=resources
        )

    @activity.defn(name=Activity.RESTORE_IN_PLACE)
    def restore_in_place(self, req: PointRestore) -> TargetVM:
        """Failback: write the point onto the original VM's own disk files, then start the VM.

        The original keeps its identity (name, hardware, addresses in the guest); only its disks come
        back with what changed while it was away. Disks pair up by position (disk0 is the first).
        """
        inp, point = req.target, req.point
        reader = ReplicaPoint(lambda: self._repository(inp.vm, point.store), inp.vm, point.point_id)
        with site_errors():
            return self.ctx.adapter.restore_in_place(inp.vm, point, reader, activity.heartbeat)

    @activity.defn(name=Activity.CREATE_TARGET_VM)
    def create_target_vm(self, req: CreateTargetRequest) -> TargetVM:
        inp, disks = req.target, req.disks
        # vCenter tasks can take minutes: heartbeat meanwhile, so a dead worker is noticed in seconds.
        return with_heartbeats(lambda: self._create_target_vm(inp, disks), lambda: inp.vm)

    def _create_target_vm(self, inp: RecoverVMInput, disks: Materialized) -> TargetVM:
        plan, pv = self._plan_vm(inp.plan, inp.vm)
        nics = self._nics(inp, pv, disks.point.source_ips)
        size = pv.size
        shape = VMShape(
            cpus=size.cpus if size and size.cpus else 2,
            memory_mib=size.memory_mib if size and size.memory_mib else 4096,
            instance_type=size.instance_type if size and size.instance_type else None,
            hostname=pv.hostname or inp.vm,
        )
        with site_errors():
            return self.ctx.adapter.create_vm(
                target_name(inp), RunLabels(plan=plan.name, run=inp.run, vm=inp.vm), shape, nics, disks.disks
            )
