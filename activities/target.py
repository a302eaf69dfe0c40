"""At the target site: choose a recovery point, materialize its disks, create the VM; failback in place.

These run on the target's worker, with its credentials and the replica store's; they read per-VM
detail (size, networks, addresses) from the plan file at the worker, so the workflow history carries
names and ids. The site's adapter does the work (``seawall.sites``); every resource is tagged with
the run as it is created, so a retried step finds what it made.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext, fatal, site_errors
from activities.heartbeat import Beat, keep_alive, with_heartbeats
from activities.pointsource import (
    check_config,
    group_candidates,
    missing_config,
    read_from,
    stores_to_read,
    verified_points,
)
from activities.recovery import find_plan, target_name
from activities.shape import vm_shape
from seawall.blockstore.errors import (
    BadBlockError,
    CorruptObjectError,
    DataPathError,
    DigestMismatchError,
    MissingObjectError,
    WrongKeyError,
)
from seawall.blockstore.manifest import DiskManifest
from seawall.blockstore.stores.backend import StoreError
from seawall.blockstore.table import TableFormatError
from seawall.contract.messages import (
    ChosenPoint,
    CreateTargetRequest,
    GroupPointsChosen,
    GroupPointsRequest,
    Materialized,
    PointRestore,
    RecoverVMInput,
    TargetVM,
)
from seawall.contract.names import Activity, drill_network_name
from seawall.contract.verify import CORRUPT_REPLICA
from seawall.model import PlanVM, RecoveryPlan
from seawall.model.ipplan import IpPlanError, NicPlan, plan_vm_nics
from seawall.model.sourceconfig import SourceConfig
from seawall.runtime.config import Settings
from seawall.sites.base import Restore, RunLabels
from seawall.sites.replica import open_repository


class ReplicaPoint:
    """One point of a VM's replica, as a site adapter reads it (``seawall.sites.base.PointReader``).

    The replica is opened on first read, so a site that refuses the verb does so before the store
    is touched, as it did when each site kind was a branch of the activity.
    """

    def __init__(self, open_repo: Callable[[], Any], vm: str, point_id: str, replaces: bool = False) -> None:
        self._open = open_repo
        self.vm = vm
        self.point_id = point_id
        self.replaces = replaces
        # Progress is heartbeated at once and repeated by the activity's ticker between reports.
        self.beat = Beat({"point": point_id})

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

    def source_config(self) -> SourceConfig | None:
        """The VM's configuration captured with the point (decrypted here, at the worker)."""
        raw = self.repo.read_source_config(self.vm, self.point_id)
        if raw is None:
            return None
        try:
            return SourceConfig.model_validate_json(raw)
        except ValidationError as exc:
            raise CorruptObjectError(
                f"configuration of point {self.point_id} of {self.vm}", f"{exc.error_count()} invalid fields"
            ) from None

    def progress(self, disk: str) -> Callable[[int], None]:
        def report(offset: int) -> None:
            self.beat({"disk": disk, "offset": offset})

        return report


# A fallback verifies each older candidate in full before choosing it: a bounded number of reads.
FALLBACK_CANDIDATES = 3


@contextlib.contextmanager
def corrupt_data(vm: str, point_id: str, reader: ReplicaPoint | None = None) -> Iterator[None]:
    """Bad data in a point is no reason to retry: fail at once, naming the damage (``CorruptReplica``).

    The workflow then falls back to an older point; a store that is merely unreachable (StoreError)
    stays retryable.
    """
    try:
        yield
    except (
        BadBlockError,
        DigestMismatchError,
        CorruptObjectError,
        MissingObjectError,
        TableFormatError,
    ) as exc:
        if isinstance(exc, BadBlockError) and reader is not None:
            # Marked where it was found: the next cycle neither builds on it nor trusts its chunks.
            with contextlib.suppress(Exception):
                reader.repo.mark_bad_block(vm, point_id, exc)
        raise ApplicationError(
            f"point {point_id} of {vm} is corrupt: {exc}",
            {"vm": vm, "point": point_id},
            type=CORRUPT_REPLICA,
            non_retryable=True,
        ) from None


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

    def _labels(self, inp: RecoverVMInput) -> RunLabels:
        """The run's labels, with the placement the inventory maps this VM's site pair to."""
        inv = self.ctx.inventory
        source = inv.protected_vm(inp.vm).source_site
        return RunLabels(
            plan=inp.plan, run=inp.run, vm=inp.vm, placement=inv.placement(source, self.ctx.site.name)
        )

    def _repository(self, vm: str, store: str | None = None) -> Any:
        """The VM's replica in ``store`` (default: the VM's own store; or its mirror, by name)."""
        inv = self.ctx.inventory
        pvm = inv.protected_vm(vm)
        return open_repository(inv, store or pvm.replica_store, inv.policy(pvm.policy))

    def _verified_points(
        self, vm: str, *, from_mirror: bool = False, store: str | None = None
    ) -> tuple[str, Any, list[Any]]:
        """(store name, repository, verified points) from the VM's store, or from its mirror when
        the store cannot be read (a region that is gone must not stop the recovery) or the run
        asks for the mirror; ``store`` (the store the VM's group point came from) is read first."""
        order = stores_to_read(self.ctx.inventory, vm, from_mirror=from_mirror, store=store)
        return read_from(vm, self._repository, lambda repo: verified_points(repo, vm), order, vm)


class RecoveryActivities(TargetSite):
    """Everything that makes a recovered VM at the target site (or, failing back, the original)."""

    def _nics(
        self, inp: RecoverVMInput, pv: PlanVM, source_ips: list[str], plan: RecoveryPlan | None = None
    ) -> list[NicPlan]:
        run_network = None
        if (
            inp.mode == "test"
            and plan is not None
            and plan.per_run_network(self.ctx.site)
            and any(n.test_network is None for n in pv.nics)
        ):
            # The drill's own isolated network: made by the first VM that needs it (found by name by
            # the others and by a retry), removed by the run's cleanup.
            run_network = drill_network_name(inp.run)
            with site_errors():
                self.ctx.adapter.ensure_run_network(run_network)
        try:
            return plan_vm_nics(pv, self.ctx.site, inp.mode, source_ips, run_network=run_network)
        except IpPlanError as exc:
            raise fatal(str(exc), "PlanInvalid") from None

    @activity.defn(name=Activity.CHOOSE_POINT)
    def choose_point(self, inp: RecoverVMInput) -> ChosenPoint:
        """The newest verified point (at or before ``point_time`` when given); exactly ``point_id``
        when the plan chose one for the VM's whole consistency group.

        With ``refused`` (points this run found corrupt) it falls back: the newest verified point
        older than every refused one that also passes a full verify now, so a second corrupt point
        is refused here instead of half-way through another materialize.
        """
        store, repo, points = self._verified_points(inp.vm, from_mirror=inp.from_mirror, store=inp.store)
        if inp.point_id:
            points = [p for p in points if p.point_id == inp.point_id]
            if not points:
                raise fatal(
                    f"{inp.vm} has no verified point {inp.point_id} (its group's point)", "NoRecoveryPoint"
                )
        elif inp.point_time:
            limit = datetime.fromisoformat(inp.point_time.replace("Z", "+00:00"))
            points = [p for p in points if p.created_at <= limit]
        note = ""
        if inp.refused:
            points, note = self._fallback(repo, inp, points)
        if not points:
            when = f" at or before {inp.point_time}" if inp.point_time else ""
            older = f" older than the corrupt point(s) {', '.join(inp.refused)}" if inp.refused else ""
            raise fatal(f"{inp.vm} has no verified recovery point{when}{older}{note}", "NoRecoveryPoint")
        point = points[-1]
        manifest = repo.read_manifest(inp.vm, point.point_id)
        check_config(self.ctx.inventory, repo, inp.vm, point.point_id, manifest, store)
        return ChosenPoint(
            point_id=point.point_id,
            created_at=point.created_at.isoformat(),
            disks=[d.disk for d in manifest.disks],
            source_ips=[ip for ip in manifest.meta.get("guest_ips", "").split(",") if ip],
            note=note,
            app_consistent=manifest.meta.get("app_consistent") == "true",
            consistency_group=manifest.meta.get("consistency_group") or None,
            store=store,
        )

    def _fallback(self, repo: Any, inp: RecoverVMInput, points: list[Any]) -> tuple[list[Any], str]:
        """Candidates older than every refused point, newest first, each verified in full (at most
        FALLBACK_CANDIDATES of them: each costs a read of the whole point). Returns ([chosen] or [],
        why)."""
        refused = set(inp.refused)
        oldest = min((p.created_at for p in points if p.point_id in refused), default=None)
        older = [p for p in points if p.point_id not in refused and (oldest is None or p.created_at < oldest)]
        skipped: list[str] = []
        for cand in list(reversed(older))[:FALLBACK_CANDIDATES]:
            pid: str = cand.point_id
            try:
                result = with_heartbeats(
                    functools.partial(repo.verify_point, inp.vm, pid, mark=True, full=True),
                    functools.partial(dict, verifying=pid),
                )
            except (StoreError, DataPathError) as exc:
                raise ApplicationError(f"replica of {inp.vm}: {exc}", type="StoreUnavailable") from None
            if result.ok:
                why = (
                    f"newer point(s) {', '.join(inp.refused)} refused as corrupt"
                    + (f"; {', '.join(skipped)} also failed a full verify" if skipped else "")
                    + f"; {cand.point_id} is the newest older point and passed a full verify"
                )
                return [cand], why
            repo.mark_corrupt(inp.vm, result)
            skipped.append(cand.point_id)
        tried = f" ({', '.join(skipped)} failed a full verify)" if skipped else ""
        return [], tried

    @activity.defn(name=Activity.CHOOSE_GROUP_POINTS)
    def choose_group_points(self, req: GroupPointsRequest) -> GroupPointsChosen:
        """One group point per consistency group: the newest (at or before ``point_time``) whose
        every member of the plan has its verified point; all of them recover from it. It is chosen
        from the members' store, or from its mirror when the store cannot be read or the run asks
        for the mirror; ``stores`` says which, per VM."""
        limit = datetime.fromisoformat(req.point_time.replace("Z", "+00:00")) if req.point_time else None
        groups: dict[str, str] = {}
        points: dict[str, str] = {}
        stores: dict[str, str] = {}
        inv = self.ctx.inventory
        for group, vms in sorted(req.groups.items()):
            order = stores_to_read(inv, vms[0], from_mirror=req.from_mirror)
            store, _, candidates = read_from(
                vms[0],
                self._repository,
                functools.partial(group_candidates, group=group, vms=vms, limit=limit),
                order,
                f"group {group}",
            )
            if not candidates:
                when = f" at or before {req.point_time}" if req.point_time else ""
                raise fatal(
                    f"consistency group {group} has no group point{when} covering {', '.join(vms)} "
                    f"in replica store {store!r}",
                    "NoRecoveryPoint",
                )
            chosen = candidates[-1].point_id
            groups[group] = chosen
            points.update({vm: chosen for vm in vms})
            stores.update({vm: store for vm in vms})
        return GroupPointsChosen(groups=groups, points=points, stores=stores)

    @activity.defn(name=Activity.MATERIALIZE_DISKS)
    def materialize_disks(self, req: PointRestore) -> Materialized:
        inp, point = req.target, req.point
        reader = ReplicaPoint(
            lambda: self._repository(inp.vm, point.store), inp.vm, point.point_id, req.replaces
        )
        with keep_alive(reader.beat), corrupt_data(inp.vm, point.point_id, reader):
            reader.disks()  # the manifest first: an unreadable replica fails before the site is touched
            with site_errors():
                uploaded, resources = self.ctx.adapter.materialize(
                    target_name(inp), self._labels(inp), reader, reader.beat
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
        with keep_alive(reader.beat), corrupt_data(inp.vm, point.point_id, reader), site_errors():
            return self.ctx.adapter.restore_in_place(inp.vm, point, reader, reader.beat)

    @activity.defn(name=Activity.CREATE_TARGET_VM)
    def create_target_vm(self, req: CreateTargetRequest) -> TargetVM:
        inp, disks = req.target, req.disks
        # vCenter tasks can take minutes: heartbeat meanwhile, so a dead worker is noticed in seconds.
        return with_heartbeats(lambda: self._create_target_vm(inp, disks), lambda: inp.vm)

    def _create_target_vm(self, inp: RecoverVMInput, disks: Materialized) -> TargetVM:
        plan, pv = self._plan_vm(inp.plan, inp.vm)
        nics = self._nics(inp, pv, disks.point.source_ips, plan)
        shape = vm_shape(
            pv,
            inp.vm,
            self._source_config(inp.vm, disks.point.point_id, disks.point.store),
            drill=inp.mode == "test",
        )
        with site_errors():
            made = self.ctx.adapter.create_vm(target_name(inp), self._labels(inp), shape, nics, disks.disks)
        notes = [*shape.notes, *made.notes]
        return made.model_copy(update={"notes": notes}) if notes != made.notes else made

    def _source_config(self, vm: str, point_id: str, store: str | None) -> SourceConfig | None:
        # From the store that served the point: the VM's own, or its mirror when that was unreadable.
        reader = ReplicaPoint(lambda: self._repository(vm, store), vm, point_id)
        try:
            return reader.source_config()
        except WrongKeyError as exc:
            raise fatal(f"replica of {vm!r}: {exc}", "WrongKey") from None
        except MissingObjectError:
            # Gone since the point was chosen (choose_point checks it): say which one and why.
            raise fatal(missing_config(self.ctx.inventory, vm, point_id, store), "ConfigMissing") from None
        except DataPathError as exc:
            # A point whose configuration is gone or tampered with is not silently recovered bare.
            raise fatal(f"replica of {vm!r}: {exc}", "StoreError") from None
        except StoreError as exc:
            raise ApplicationError(f"replica of {vm}: {exc}", type="StoreUnavailable") from None
