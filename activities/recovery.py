"""Recovery activities: plan loading, per-VM recovery at the target site, hooks, fencing, cleanup, report.

Target-site activities run on the target's worker, with its credentials and the replica store's; they
read per-VM detail (size, networks, addresses, checks, DNS) from the plan file at the worker, so the
workflow history carries names and ids. Every resource is tagged with the run as it is created: a
retried step finds what it made (by name or tag), and cleanup finds everything a run made.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext
from activities.heartbeat import with_heartbeats
from seawall import reports
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.stores.backend import StoreError
from seawall.contract.messages import (
    ChosenPoint,
    CleanupOutcome,
    CleanupRequest,
    CreateTargetRequest,
    DnsChange,
    GroupStep,
    HealthOutcome,
    HookOutcome,
    HookRequest,
    Materialized,
    PlanSpec,
    PlanSpecRequest,
    PointRestore,
    RecoveredVM,
    RecoverVMInput,
    ReportWritten,
    Resource,
    RunReport,
    TargetVM,
    VMRef,
    VMsRef,
    VMStep,
)
from seawall.contract.names import Activity, schedule_id
from seawall.model import (
    AwsSite,
    CommandHook,
    DnsZone,
    GuestIpCheck,
    HttpCheck,
    HttpHook,
    Inventory,
    PlanVM,
    RecoveryPlan,
    Rfc2136Zone,
    TcpCheck,
    VSphereSite,
)
from seawall.model.ipplan import IpPlanError, NicPlan, plan_vm_nics
from seawall.plans import PlanLookupError, load_catalogue
from seawall.runtime import failpoints
from seawall.runtime.config import Settings
from seawall.security.secrets import SecretError, resolve_text
from seawall.sites import health
from seawall.sites.dns import DnsProvider
from seawall.sites.replica import open_repository
from seawall.sites.vsphere.client import VSphereNotFound


def _fatal(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def find_plan(settings: Settings, name: str) -> tuple[RecoveryPlan, Inventory]:
    """The plan called ``name`` and its inventory, from the one catalogue (re-read only on a change)."""
    try:
        catalogue = load_catalogue(settings.inventory, settings.plans_dir)
        return catalogue.plan(name), catalogue.inventory
    except PlanLookupError as exc:
        raise _fatal(str(exc), "PlanInvalid") from None


def plan_spec(plan: RecoveryPlan, inventory: Inventory, direction: str = "failover") -> PlanSpec:
    gates = {g.before: g for g in plan.gates}
    groups = []
    for group in plan.groups:
        gate = gates.get(group.name)
        groups.append(
            GroupStep(
                name=group.name,
                boot_delay_s=group.boot_delay.total_seconds(),
                vms=[
                    VMStep(
                        vm=v.name,
                        group=group.name,
                        depends_on=list(v.depends_on),
                        boot_delay_s=v.boot_delay.total_seconds(),
                    )
                    for v in group.vms
                ],
                pre_hooks=[h.name for h in group.pre_hooks],
                post_hooks=[h.name for h in group.post_hooks],
                gate=gate.name if gate else None,
                gate_message=gate.message if gate else None,
                gate_timeout_s=gate.timeout.total_seconds() if gate and gate.timeout else None,
                gate_on_timeout=gate.on_timeout if gate else "abort",
            )
        )
    # Failing back runs the same groups the other way: from the plan's target to its source.
    source, target = (plan.source_site, plan.target_site)
    if direction == "failback":
        source, target = target, source
    return PlanSpec(
        plan=plan.name,
        source_site=source,
        target_site=target,
        target_kind=inventory.site(target).kind,
        failure_policy=str(
            plan.failure_policy.value if hasattr(plan.failure_policy, "value") else plan.failure_policy
        ),
        test_ttl_s=plan.test_ttl.total_seconds(),
        pre_hooks=[h.name for h in plan.pre_hooks],
        post_hooks=[h.name for h in plan.post_hooks],
        groups=groups,
    )


def target_name(inp: RecoverVMInput) -> str:
    """The recovered VM's name: the source's for a failover, a run-suffixed one for a drill."""
    return inp.vm if inp.mode != "test" else f"{inp.vm}-drill-{inp.run[-8:]}"


class OrchestrationActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name=Activity.LOAD_PLAN_SPEC)
    def load_plan_spec(self, req: PlanSpecRequest) -> PlanSpec:
        found, inventory = find_plan(self.settings, req.plan)
        return plan_spec(found, inventory, req.direction)

    @activity.defn(name=Activity.WRITE_REPORT)
    def write_report(self, report: RunReport) -> ReportWritten:
        json_path, html_path = reports.write(self.settings.reports_dir, report)
        return ReportWritten(json_path=str(json_path.resolve()), html_path=str(html_path.resolve()))

    @activity.defn(name=Activity.PAUSE_SCHEDULES)
    async def pause_schedules(self, req: VMsRef) -> int:
        """Stop scheduled cycles of the VMs being failed over: their sources are about to be fenced."""
        from temporalio.service import RPCError, RPCStatusCode

        paused = 0
        for vm in req.vms:
            try:
                await (
                    activity.client().get_schedule_handle(schedule_id(vm)).pause(note="failover in progress")
                )
                paused += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return paused


class FenceActivities:
    """At the source site: make sure the original cannot keep running beside its replica."""

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    @activity.defn(name=Activity.FENCE_VM)
    def fence_vm(self, req: VMRef) -> str:
        vm = req.vm
        site = self.ctx.site
        if not isinstance(site, VSphereSite):
            raise _fatal(
                f"{vm}: site {site.name} ({site.kind}) cannot power VMs off; confirm by hand",
                "FenceUnsupported",
            )
        with self.ctx.vsphere() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                return f"{vm}: not found at {site.name} (already gone)"
            conn.power_off(vmobj)
            return f"{vm}: powered off at {site.name}"


def _restorer(
    repo: Any, vm: str, point_id: str, disk: str
) -> Callable[[Callable[[int, bytes], None]], object]:
    """Stream a point's disk into a writer, verified on the way (chunk ids, block hashes, digest)."""

    def restore(writer: Callable[[int, bytes], None]) -> object:
        return repo.restore_disk(vm, point_id, disk, writer)

    return restore


def _progress(disk: str) -> Callable[[int], None]:
    def report(offset: int) -> None:
        activity.heartbeat({"disk": disk, "offset": offset})

    return report


class RecoveryActivities:
    """At the target site: everything that makes, checks or removes a recovered VM."""

    def __init__(self, ctx: SiteContext, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings

    # ---- helpers ---------------------------------------------------------------------------------

    def _plan_vm(self, plan_name: str, vm: str) -> tuple[RecoveryPlan, PlanVM]:
        plan, _ = find_plan(self.settings, plan_name)
        for group in plan.groups:
            for pv in group.vms:
                if pv.name == vm:
                    return plan, pv
        raise _fatal(f"plan {plan_name!r} has no VM {vm!r}", "PlanInvalid")

    def _repository(self, vm: str) -> Any:
        inv = self.ctx.inventory
        pvm = inv.protected_vm(vm)
        return open_repository(inv, pvm.replica_store, inv.policy(pvm.policy))

    def _nics(self, inp: RecoverVMInput, pv: PlanVM, source_ips: list[str]) -> list[NicPlan]:
        try:
            return plan_vm_nics(pv, self.ctx.site, inp.mode, source_ips)
        except IpPlanError as exc:
            raise _fatal(str(exc), "PlanInvalid") from None

    def _tags(self, inp: RecoverVMInput) -> dict[str, str]:
        return {"plan": inp.plan, "run": inp.run, "vm": inp.vm}

    # ---- activities ------------------------------------------------------------------------------

    @activity.defn(name=Activity.CHOOSE_POINT)
    def choose_point(self, inp: RecoverVMInput) -> ChosenPoint:
        """The newest verified point (at or before ``point_time`` when given)."""
        repo = self._repository(inp.vm)
        try:
            points = [p for p in repo.list_points(inp.vm) if p.verified]
        except (StoreError, DataPathError) as exc:
            raise ApplicationError(f"replica of {inp.vm}: {exc}", type="StoreUnavailable") from None
        if inp.point_time:
            limit = datetime.fromisoformat(inp.point_time.replace("Z", "+00:00"))
            points = [p for p in points if p.created_at <= limit]
        if not points:
            when = f" at or before {inp.point_time}" if inp.point_time else ""
            raise _fatal(f"{inp.vm} has no verified recovery point{when}", "NoRecoveryPoint")
        point = points[-1]
        manifest = repo.read_manifest(inp.vm, point.point_id)
        return ChosenPoint(
            point_id=point.point_id,
            created_at=point.created_at.isoformat(),
            disks=[d.disk for d in manifest.disks],
            source_ips=[ip for ip in manifest.meta.get("guest_ips", "").split(",") if ip],
        )

    @activity.defn(name=Activity.MATERIALIZE_DISKS)
    def materialize_disks(self, req: PointRestore) -> Materialized:
        inp, point = req.target, req.point
        repo = self._repository(inp.vm)
        manifest = repo.read_manifest(inp.vm, point.point_id)
        name = target_name(inp)
        resources: list[Resource] = []
        uploaded: list[dict[str, Any]] = []
        site = self.ctx.site
        if isinstance(site, VSphereSite):
            from seawall.sites.vsphere.target import materialize_disk

            with self.ctx.vsphere() as conn:
                resources.append(
                    Resource(kind="datastore-dir", id=name, site=site.name, detail=site.datastore)
                )
                for dm in manifest.disks:
                    disk = materialize_disk(
                        conn,
                        datastore=site.datastore,
                        datacenter=site.datacenter,
                        vm_dir=name,
                        disk_name=dm.disk,
                        size=dm.size,
                        source_digest=dm.digest,
                        restore=_restorer(repo, inp.vm, point.point_id, dm.disk),
                        on_progress=_progress(dm.disk),
                    )
                    uploaded.append(disk.__dict__)
                    activity.heartbeat({"disk": dm.disk, "done": True})
                    failpoints.hit("materialize.disk_done", {"vm": inp.vm, "disk": dm.disk})
        elif isinstance(site, AwsSite):
            from seawall.sites.aws.target import ResourceTags, register_image, write_ebs_snapshot

            ebs, ec2 = self.ctx.aws_client("ebs"), self.ctx.aws_client("ec2")
            tags = ResourceTags(plan=inp.plan, run=inp.run, vm=inp.vm)
            snapshots = []
            for dm in manifest.disks:
                snap = write_ebs_snapshot(
                    ebs,
                    ec2,
                    size=dm.size,
                    restore=_restorer(repo, inp.vm, point.point_id, dm.disk),
                    tags=tags,
                    key=f"{inp.run}/{inp.vm}/{dm.disk}",
                    on_progress=_progress(dm.disk),
                )
                snapshots.append(snap)
                resources.append(Resource(kind="ebs-snapshot", id=snap.snapshot_id, site=site.name))
            image = register_image(
                ec2, name=name, snapshots=snapshots, tags=tags, key=f"{inp.run}/{inp.vm}/image"
            )
            resources.append(Resource(kind="image", id=image, site=site.name))
            uploaded.append({"image_id": image})
        else:
            raise _fatal(f"site {site.name} ({site.kind}) cannot run recovered VMs", "PlanInvalid")
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
        site = self.ctx.site
        if not isinstance(site, VSphereSite):
            raise _fatal(f"failback in place needs a vSphere site, not {site.kind}", "PlanInvalid")
        from seawall.sites.vsphere.client import parse_datastore_path
        from seawall.sites.vsphere.target import materialize_disk, read_guest, wait_guest_ip

        repo = self._repository(inp.vm)
        manifest = repo.read_manifest(inp.vm, point.point_id)
        with self.ctx.vsphere() as conn:
            try:
                vmobj = conn.find_vm(inp.vm)
            except VSphereNotFound:
                raise _fatal(f"{inp.vm}: the original VM is gone from {site.name}", "PlanInvalid") from None
            conn.power_off(vmobj)
            disks = sorted(conn.vm_disks(vmobj), key=lambda d: d.key)
            by_name = {d.disk: d for d in manifest.disks}
            if len(disks) != len(by_name):
                raise _fatal(
                    f"{inp.vm}: the original has {len(disks)} disks, the point {len(by_name)}", "PlanInvalid"
                )
            for index, disk in enumerate(disks):
                dm = by_name.get(f"disk{index}")
                if dm is None:
                    raise _fatal(f"{inp.vm}: point {point.point_id} has no disk{index}", "PlanInvalid")
                datastore, path = parse_datastore_path(disk.file_name)
                folder, _, file_name = path.rpartition("/")
                materialize_disk(
                    conn,
                    datastore=datastore,
                    datacenter=site.datacenter,
                    vm_dir=folder,
                    disk_name=file_name.removesuffix(".vmdk"),
                    size=dm.size,
                    source_digest=dm.digest,
                    restore=_restorer(repo, inp.vm, point.point_id, dm.disk),
                    on_progress=_progress(dm.disk),
                    replace=True,
                )
            conn.power_on(vmobj)
            ips = list(read_guest(conn, vmobj).ips)
            if not ips and point.source_ips:
                wait_guest_ip(conn, vmobj, point.source_ips[0], timeout=120)
                ips = list(read_guest(conn, vmobj).ips)
        return TargetVM(name=inp.vm, ips=[ip for ip in ips if ":" not in ip], resources=[])

    @activity.defn(name=Activity.CREATE_TARGET_VM)
    def create_target_vm(self, req: CreateTargetRequest) -> TargetVM:
        inp, disks = req.target, req.disks
        # vCenter tasks can take minutes: heartbeat meanwhile, so a dead worker is noticed in seconds.
        return with_heartbeats(lambda: self._create_target_vm(inp, disks), lambda: inp.vm)

    def _create_target_vm(self, inp: RecoverVMInput, disks: Materialized) -> TargetVM:
        plan, pv = self._plan_vm(inp.plan, inp.vm)
        nics = self._nics(inp, pv, disks.point.source_ips)
        name = target_name(inp)
        site = self.ctx.site
        cpus = pv.size.cpus if pv.size and pv.size.cpus else 2
        memory = pv.size.memory_mib if pv.size and pv.size.memory_mib else 4096
        ips = [str(n.ip) for n in nics if n.ip is not None]
        if isinstance(site, VSphereSite):
            from seawall.sites.vsphere.target import (
                RunTag,
                UploadedDisk,
                create_vm,
                customize_ip,
                power_on,
                resolve_placement,
            )

            uploaded = [UploadedDisk(**json.loads(d)) for d in disks.disks]
            with self.ctx.vsphere() as conn:
                placement = resolve_placement(conn, site.datacenter, site.datastore)
                vm = create_vm(
                    conn,
                    name,
                    placement=placement,
                    cpus=cpus,
                    memory_mib=memory,
                    disks=uploaded,
                    nics=nics,
                    tag=RunTag(plan=plan.name, run=inp.run, source_vm=inp.vm),
                )
                failpoints.hit("create_target_vm.created", {"vm": inp.vm, "name": name})
                customize_ip(conn, vm, nics, pv.hostname or inp.vm)
                power_on(conn, vm)
            return TargetVM(name=name, ips=ips, resources=[Resource(kind="vm", id=name, site=site.name)])
        if isinstance(site, AwsSite):
            from seawall.sites.aws.target import (
                ResourceTags,
                choose_instance_type,
                find_subnet,
                run_instance,
                wait_running,
            )

            ec2 = self.ctx.aws_client("ec2")
            image = json.loads(disks.disks[0])["image_id"]
            subnet = find_subnet(ec2, nics[0].backing) if nics else None
            if subnet is None:
                raise _fatal(f"{inp.vm}: an AWS target needs a NIC mapping to a subnet", "PlanInvalid")
            itype = (
                pv.size.instance_type if pv.size and pv.size.instance_type else None
            ) or choose_instance_type(cpus, memory)
            info = run_instance(
                ec2,
                image_id=image,
                subnet_id=subnet,
                private_ip=ips[0] if ips else None,
                instance_type=itype,
                tags=ResourceTags(plan=inp.plan, run=inp.run, vm=inp.vm),
                key=f"{inp.run}/{inp.vm}/instance",
                name=name,
            )
            info = wait_running(ec2, info.instance_id)
            return TargetVM(
                name=info.instance_id,
                ips=[info.private_ip] if info.private_ip else ips,
                resources=[Resource(kind="instance", id=info.instance_id, site=site.name)],
            )
        raise _fatal(f"site {site.name} ({site.kind}) cannot run recovered VMs", "PlanInvalid")

    def _check_address(self, ip: str, port: int) -> tuple[str, int]:
        """Where a TCP/HTTP check connects. A lab redirects checks to a stand-in on loopback."""
        if self.settings.health_check_redirect:
            return self.settings.health_check_redirect, port + self.settings.health_check_port_offset
        return ip, port

    @activity.defn(name=Activity.CHECK_HEALTH)
    def check_health(self, req: RecoveredVM) -> HealthOutcome:
        inp, vm = req.target, req.vm
        _, pv = self._plan_vm(inp.plan, inp.vm)
        started = time.monotonic()
        lines: list[str] = []
        ip = vm.ips[0] if vm.ips else None
        site = self.ctx.site
        for check in pv.health_checks:
            timeout = check.timeout.total_seconds()
            activity.heartbeat(check.kind)

            def waiting(seconds: float, kind: str = check.kind) -> None:
                # A check may poll for many minutes: the server must keep seeing this worker alive.
                activity.heartbeat(kind)
                time.sleep(seconds)

            if isinstance(check, GuestIpCheck):
                if ip is None:
                    raise _fatal(f"{inp.vm}: a guest-ip check needs a planned IP", "PlanInvalid")
                result = health.check_guest_ip(self._guest_ips(vm), ip, timeout=timeout, sleep=waiting)
            elif isinstance(check, TcpCheck):
                host, port = self._check_address(ip or "", check.port)
                result = health.check_tcp(host, port, timeout=timeout, sleep=waiting)
            elif isinstance(check, HttpCheck):
                if check.url:
                    url = check.url
                else:
                    host, port = self._check_address(
                        ip or "", check.port or (443 if check.scheme == "https" else 80)
                    )
                    url = f"{check.scheme}://{host}:{port}{check.path}"
                verify: bool | str = (
                    str(self.settings.health_check_ca) if self.settings.health_check_ca else True
                )
                result = health.check_http(
                    url, status=check.status, timeout=timeout, verify_tls=verify, sleep=waiting
                )
            else:
                raise _fatal(f"unknown health check {check.kind!r}", "PlanInvalid")
            lines.append(
                f"{check.kind}: {'ok' if result.ok else 'FAILED'} "
                f"after {result.attempts} tries: {result.detail}"
            )
            if not result.ok:
                raise ApplicationError(
                    f"{inp.vm} is not healthy at {site.name}: " + "; ".join(lines), type="Unhealthy"
                )
        return HealthOutcome(ok=True, checks=lines, elapsed_s=round(time.monotonic() - started, 3))

    def _guest_ips(self, vm: TargetVM) -> Callable[[], list[str]]:
        site = self.ctx.site
        if isinstance(site, VSphereSite):
            from seawall.sites.vsphere.target import find_vm_or_none, read_guest

            def read() -> list[str]:
                with self.ctx.vsphere() as conn:
                    obj = find_vm_or_none(conn, vm.name)
                    return list(read_guest(conn, obj).ips) if obj is not None else []

            return read

        def read_aws() -> list[str]:
            from seawall.sites.aws.target import wait_running

            info = wait_running(self.ctx.aws_client("ec2"), vm.name, timeout=30)
            return [info.private_ip] if info.private_ip else []

        return read_aws

    @activity.defn(name=Activity.UPDATE_DNS)
    def update_dns(self, req: RecoveredVM) -> list[DnsChange]:
        inp, vm = req.target, req.vm
        _, pv = self._plan_vm(inp.plan, inp.vm)
        changes: list[DnsChange] = []
        for record in pv.dns:
            zone = self.ctx.inventory.dns_zone(str(record.zone))
            value = record.value or (vm.ips[record.nic] if record.nic < len(vm.ips) else None)
            if value is None:
                raise _fatal(
                    f"{inp.vm}: DNS {record.name} has no value and NIC {record.nic} has no IP", "PlanInvalid"
                )
            change = self._dns_provider(zone).upsert(
                str(record.zone), str(record.name), record.type, [value], record.ttl
            )
            changes.append(
                DnsChange(
                    name=str(record.name),
                    type=record.type,
                    value=value,
                    previous=",".join(change.previous.values) if change.previous else None,
                    zone=str(record.zone),
                )
            )
        return changes

    def _dns_provider(self, zone: DnsZone | Rfc2136Zone) -> DnsProvider:
        """The zone's provider: Route53 with its AWS site's credentials, or RFC 2136 with its TSIG key."""
        from seawall.sites.dns import Route53Dns

        if zone.provider == "route53":
            return Route53Dns(self._route53(zone.site))
        from seawall.sites.rfc2136 import Rfc2136Dns

        try:
            return Rfc2136Dns.from_zone(zone)
        except SecretError as exc:
            # A missing or malformed key does not fix itself between retries.
            raise ApplicationError(
                f"DNS zone {zone.name!r}: {exc}", type="CredentialsError", non_retryable=True
            ) from None

    def _route53(self, site_name: str) -> Any:
        site = self.ctx.inventory.site(site_name)
        if site.name == self.ctx.site.name:
            return self.ctx.aws_client("route53")
        other = SiteContext(self.ctx.inventory, site_name)
        return other.aws_client("route53")

    @activity.defn(name=Activity.CLEANUP_RUN)
    def cleanup_run(self, req: CleanupRequest) -> CleanupOutcome:
        """Remove everything tagged with ``run`` at this site; what is already gone counts as removed."""
        plan, run = req.plan, req.run
        site = self.ctx.site
        removed: list[Resource] = []
        if isinstance(site, VSphereSite):
            from seawall.sites.vsphere.target import delete_datastore_path, destroy_vm, find_run_vms

            # What a killed earlier attempt found (and may already have destroyed) comes back from its
            # heartbeat, so the outcome lists everything the run made, not just what this attempt saw.
            details = activity.info().heartbeat_details
            previous = details[0].get("found", []) if details and isinstance(details[0], dict) else []
            with self.ctx.vsphere() as conn:
                present = [name for _vm, name, _tag in find_run_vms(conn, run)]
                found = sorted(set(previous) | set(present))
                activity.heartbeat({"found": found})
                for name in present:
                    destroy_vm(conn, name, run_id=run)
                    activity.heartbeat({"found": found, "destroyed": name})
                    failpoints.hit("cleanup_run.destroyed", {"vm": name})
                left = [name for _vm, name, _tag in find_run_vms(conn, run)]
                if left:
                    raise ApplicationError(f"cleanup of run {run}: still present after destroy: {left}")
                removed += [Resource(kind="vm", id=name, site=site.name) for name in found]
                # Disks of a VM that was never created (a run killed after materializing) too.
                for folder in self._run_folders(plan, run):
                    if delete_datastore_path(conn, site.datastore, site.datacenter, folder):
                        removed.append(Resource(kind="datastore-dir", id=folder, site=site.name))
        elif isinstance(site, AwsSite):
            from seawall.sites.aws.target import terminate_run

            result = terminate_run(self.ctx.aws_client("ec2"), run)
            removed += [Resource(kind="instance", id=i, site=site.name) for i in result.instances]
            removed += [Resource(kind="image", id=i, site=site.name) for i in result.images]
            removed += [Resource(kind="ebs-snapshot", id=i, site=site.name) for i in result.snapshots]
            removed += [Resource(kind="volume", id=i, site=site.name) for i in result.volumes]
        return CleanupOutcome(removed=removed, dns_restored=[])

    def _run_folders(self, plan_name: str, run: str) -> list[str]:
        plan, _ = find_plan(self.settings, plan_name)
        return [
            target_name(
                RecoverVMInput(plan=plan_name, run=run, mode="test", vm=v.name, target_site=plan.target_site)
            )
            for g in plan.groups
            for v in g.vms
        ]

    @activity.defn(name=Activity.RUN_HOOK)
    def run_hook(self, req: HookRequest) -> HookOutcome:
        plan_name, group, name = req.plan, req.group, req.name
        plan, _ = find_plan(self.settings, plan_name)
        hooks = list(plan.pre_hooks) + list(plan.post_hooks)
        for g in plan.groups:
            if group is None or g.name == group:
                hooks += list(g.pre_hooks) + list(g.post_hooks)
        hook = next((h for h in hooks if h.name == name), None)
        if hook is None:
            raise _fatal(f"plan {plan_name!r} has no hook {name!r}", "PlanInvalid")
        started = datetime.now(UTC).isoformat()
        timeout = hook.timeout.total_seconds()
        try:
            if isinstance(hook, CommandHook):
                done = subprocess.run(
                    hook.command, capture_output=True, text=True, timeout=timeout, check=False
                )
                ok = done.returncode == 0
                detail = f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-500:]}"
            elif isinstance(hook, HttpHook):
                token = resolve_text(hook.credentials) if hook.credentials != "none" else None
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                answer = requests.request(hook.method, hook.url, headers=headers, timeout=timeout)
                ok = answer.status_code < 400
                detail = f"{hook.method} {hook.url}: {answer.status_code}"
            else:
                raise _fatal(f"hook {name!r} has unknown kind {hook.kind!r}", "PlanInvalid")
        except (subprocess.TimeoutExpired, requests.RequestException, OSError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        outcome = HookOutcome(
            name=name,
            ok=ok,
            detail=self.ctx.redact(detail),
            started_at=started,
            finished_at=datetime.now(UTC).isoformat(),
        )
        if not ok and not hook.continue_on_failure:
            raise _fatal(f"hook {name} failed: {outcome.detail}", "HookFailed")
        return outcome
