"""A vSphere site (vCenter or ESXi): source of replicated VMs, target of recovered ones, fencing.

Every verb uses the adapter's one shared API session (``seawall.sites.vsphere.shared``); a probe logs
in on its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from seawall.contract.messages import ChosenPoint, DiskRef, Resource, SnapshotTaken, TargetVM
from seawall.contract.names import SNAPSHOT_PREFIX
from seawall.model import AnySite, Placement, VSphereSite
from seawall.model.ipplan import NicPlan
from seawall.model.sourceconfig import SourceConfig
from seawall.runtime import failpoints
from seawall.security.secrets import resolve
from seawall.sites.base import BaseAdapter, Heartbeat, OpenDisk, PointReader, RunLabels, SiteError, VMShape
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.session import VSphereError, VSphereNotFound
from seawall.sites.vsphere.shared import SharedSession


class VSphereAdapter(BaseAdapter):
    kind: ClassVar[str] = "vsphere"
    site: VSphereSite

    def __init__(self, site: AnySite) -> None:
        from seawall.sites.vsphere.placement import PlacementCache

        super().__init__(site)
        self._placements = PlacementCache()
        self._shared = SharedSession(self._session)

    @contextlib.contextmanager
    def connect(self) -> Iterator[VSphereConnection]:
        """The adapter's API session with the site's own credentials (logged in on first use)."""
        creds = self.credentials(("user", "password"))
        with self._shared.use(str(creds["user"]), str(creds["password"])) as conn:
            yield conn

    def _session(self, user: str, password: str) -> VSphereConnection:
        site = self.site
        return VSphereConnection(
            site.host,
            user,
            password,
            port=site.port,
            protocol=site.protocol,
            verify_tls=not site.insecure_tls,
        )

    def probe(self) -> str:
        # A probe says whether the site answers now: a login of its own, never the shared session.
        creds = self.credentials(("user", "password"))
        conn = self._session(str(creds["user"]), str(creds["password"]))
        try:
            about = conn.content.about
            return f"{about.fullName} (api {about.apiVersion})"
        finally:
            conn.disconnect()

    # ---- source ----------------------------------------------------------------------------------

    @staticmethod
    def _find_vm(conn: VSphereConnection, vm: str) -> Any:
        try:
            return conn.find_vm(vm)
        except VSphereNotFound as exc:
            raise SiteError(
                f"{exc}: was it deleted or renamed? unprotect it or fix the inventory", "VMGone"
            ) from None

    def enable_cbt(self, vm: str) -> bool:
        with self.connect() as conn:
            status = conn.enable_cbt(self._find_vm(conn, vm))
            return bool(status.enabled and status.supported)

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool, only: list[str] | None) -> SnapshotTaken:
        # ``only`` names image files of a directory site; a vSphere snapshot covers every disk.
        with self.connect() as conn:
            vmobj = self._find_vm(conn, vm)
            try:
                snap = conn.create_snapshot(vmobj, name, quiesce=quiesce)
                disks = conn.snapshot_disks(snap)
                cbt = conn.cbt_status(vmobj)
                guest = conn.properties(vmobj, ["guest.net"]).get("guest.net") or []
            except VSphereError as exc:
                raise SiteError(
                    self.redact(f"snapshot of {vm!r}: {exc}"), "SnapshotFailed", retryable=True
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

    def describe_vm(self, vm: str, snapshot: str) -> SourceConfig | None:
        from seawall.sites.vsphere.describe import describe

        with self.connect() as conn:
            vmobj = self._find_vm(conn, vm)
            try:
                return describe(conn, vmobj, snapshot)
            except VSphereError as exc:
                raise SiteError(self.redact(f"describe {vm!r}: {exc}"), retryable=True) from None

    @contextlib.contextmanager
    def open_disks(self, vm: str, snapshot: str) -> Iterator[OpenDisk]:
        # Imported here: the reader pulls in the HTTP range machinery, which probing does not need.
        from seawall.sites.vsphere.source import VSphereDiskSource

        with self.connect() as conn:
            vmobj = self._find_vm(conn, vm)
            yield lambda disk: VSphereDiskSource(conn, vmobj, snapshot, int(disk.key))

    def release_snapshot(self, vm: str, name: str) -> int:
        with self.connect() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                return 0
            try:
                return conn.remove_snapshot(vmobj, name)
            except VSphereError as exc:
                raise SiteError(self.redact(f"release snapshot of {vm!r}: {exc}"), retryable=True) from None

    def release_orphan_snapshots(self, vm: str) -> list[str]:
        with self.connect() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                return []
            released = []
            try:
                for name in dict.fromkeys(conn.snapshot_names(vmobj)):
                    if name.startswith(SNAPSHOT_PREFIX) and conn.remove_snapshot(vmobj, name):
                        released.append(name)
            except VSphereError as exc:
                raise SiteError(self.redact(f"orphan snapshots of {vm!r}: {exc}"), retryable=True) from None
            return released

    def fence(self, vm: str) -> str:
        with self.connect() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                return f"{vm}: not found at {self.site.name} (already gone)"
            conn.power_off(vmobj)
            return f"{vm}: powered off at {self.site.name}"

    def ensure_run_network(self, name: str) -> str:
        from seawall.sites.vsphere.placement import ensure_network

        with self.connect() as conn:
            try:
                # A new port group without uplinks: the drill's VMs reach each other and nothing else.
                key = ensure_network(conn, name)
            except VSphereError as exc:
                raise SiteError(self.redact(f"drill network {name}: {exc}"), retryable=True) from None
            return f"port group {name} ({key}) at {self.site.name}"

    def remove_run_network(self, name: str) -> bool:
        from seawall.sites.vsphere.placement import remove_network

        with self.connect() as conn:
            try:
                return remove_network(conn, name)
            except VSphereError as exc:
                raise SiteError(self.redact(f"remove drill network {name}: {exc}"), retryable=True) from None

    def start_source(self, vm: str) -> str:
        with self.connect() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                raise SiteError(
                    f"{vm}: not found at {self.site.name}; nothing to start", "NotFound"
                ) from None
            conn.power_on(vmobj)  # already on: nothing to do (a retried activity)
            return f"{vm}: powered on at {self.site.name}"

    def restore_in_place(
        self, vm: str, point: ChosenPoint, reader: PointReader, heartbeat: Heartbeat
    ) -> TargetVM:
        from seawall.sites.vsphere.diskpaths import parse_datastore_path
        from seawall.sites.vsphere.disks import materialize_disk
        from seawall.sites.vsphere.target import read_guest, wait_guest_ip

        site = self.site
        by_name = {d.disk: d for d in reader.disks()}
        with self.connect() as conn:
            try:
                vmobj = conn.find_vm(vm)
            except VSphereNotFound:
                raise SiteError(f"{vm}: the original VM is gone from {site.name}", "PlanInvalid") from None
            conn.power_off(vmobj)
            disks = sorted(conn.vm_disks(vmobj), key=lambda d: d.key)
            if len(disks) != len(by_name):
                raise SiteError(
                    f"{vm}: the original has {len(disks)} disks, the point {len(by_name)}", "PlanInvalid"
                )
            for index, disk in enumerate(disks):
                dm = by_name.get(f"disk{index}")
                if dm is None:
                    raise SiteError(f"{vm}: point {point.point_id} has no disk{index}", "PlanInvalid")
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
                    restore=reader.restorer(dm.disk),
                    on_progress=reader.progress(dm.disk),
                    replace=True,
                )
            conn.power_on(vmobj)
            ips = list(read_guest(conn, vmobj).ips)
            if not ips and point.source_ips:
                wait_guest_ip(conn, vmobj, point.source_ips[0], timeout=120)
                ips = list(read_guest(conn, vmobj).ips)
        return TargetVM(name=vm, ips=[ip for ip in ips if ":" not in ip], resources=[])

    # ---- target ----------------------------------------------------------------------------------

    def materialize(
        self, name: str, labels: RunLabels, reader: PointReader, heartbeat: Heartbeat
    ) -> tuple[list[dict[str, Any]], list[Resource]]:
        from seawall.sites.vsphere.disks import materialize_disk

        site = self.site
        datastore, datacenter = self._where(labels)
        uploaded: list[dict[str, Any]] = []
        resources: list[Resource] = []
        with self.connect() as conn:
            resources.append(Resource(kind="datastore-dir", id=name, site=site.name, detail=datastore))
            for dm in reader.disks():
                disk = materialize_disk(
                    conn,
                    datastore=datastore,
                    datacenter=datacenter,
                    vm_dir=name,
                    disk_name=dm.disk,
                    size=dm.size,
                    source_digest=dm.digest,
                    restore=reader.restorer(dm.disk),
                    on_progress=reader.progress(dm.disk),
                )
                uploaded.append(disk.__dict__)
                heartbeat({"disk": dm.disk, "done": True})
                failpoints.hit("materialize.disk_done", {"vm": labels.vm, "disk": dm.disk})
        return uploaded, resources

    def create_vm(
        self, name: str, labels: RunLabels, shape: VMShape, nics: list[NicPlan], disks: list[str]
    ) -> TargetVM:
        from seawall.sites.vsphere.disks import UploadedDisk
        from seawall.sites.vsphere.identity import (
            customize_windows,
            set_custom_attributes,
            spec_name,
            windows_identity,
        )
        from seawall.sites.vsphere.target import RunTag, create_vm, customize_ip, power_on

        site = self.site
        uploaded = [UploadedDisk(**json.loads(d)) for d in disks]
        machine = shape.source.machine if shape.source is not None else None
        windows = machine is not None and machine.guest_family == "windows"
        notes: list[str] = []
        who = windows_identity(shape, notes, self._remember) if windows else None
        if shape.windows is not None and not windows:
            notes.append("the plan's Windows customization is not used: the source is not a Windows guest")
        datastore, datacenter = self._where(labels)
        p = labels.placement
        with self.connect() as conn:
            try:
                placement = self._placements.resolve(conn, datacenter, datastore, p)
            except VSphereNotFound as exc:
                raise SiteError(self.redact(f"placement of {name}: {exc}"), "PlanInvalid") from None
            try:
                vm = create_vm(
                    conn,
                    name,
                    placement=placement,
                    cpus=shape.cpus,
                    memory_mib=shape.memory_mib,
                    disks=uploaded,
                    nics=nics,
                    tag=RunTag(plan=labels.plan, run=labels.run, source_vm=labels.vm),
                    machine=machine,
                    cores_per_socket=shape.cores_per_socket,
                    keep_macs=not shape.drill,
                    notes=notes,
                )
            except Exception:
                self._placements.forget(conn, datacenter, datastore, p)
                raise
            failpoints.hit("create_target_vm.created", {"vm": labels.vm, "name": name})
            if machine is not None:
                set_custom_attributes(conn, vm, machine.tags)
            if who is not None:
                customize_windows(conn, vm, nics, who, record_as=spec_name(labels.run, name))
                # Queued, not yet applied (that happens at power-on): the crash tests stop here.
                failpoints.hit("create_target_vm.customized", {"vm": labels.vm, "name": name})
            else:
                customize_ip(conn, vm, nics, shape.hostname)
            power_on(conn, vm)
        ips = [str(n.ip) for n in nics if n.ip is not None]
        return TargetVM(
            name=name, ips=ips, resources=[Resource(kind="vm", id=name, site=site.name)], notes=notes
        )

    def _remember(self, ref: str) -> None:
        secret = resolve(ref)
        if secret is not None:
            self._secrets.append(secret)

    def _where(self, labels: RunLabels) -> tuple[str, str]:
        """(datastore, datacenter) for a run's VM: the site pair's placement, else the site's own."""
        p = labels.placement
        return (
            (p.datastore if p and p.datastore else self.site.datastore),
            (p.datacenter if p and p.datacenter else self.site.datacenter),
        )

    def placement_problems(self, placement: Placement) -> list[tuple[str, str]]:
        from seawall.sites.vsphere.placement import placement_problems

        with self.connect() as conn:
            return placement_problems(
                conn,
                placement.datacenter or self.site.datacenter,
                placement.datastore or self.site.datastore,
                placement.cluster,
                placement.resource_pool,
                placement.folder,
            )

    def guest_ips(self, name: str) -> list[str]:
        from seawall.sites.vsphere.target import find_vm_or_none, read_guest

        with self.connect() as conn:
            obj = find_vm_or_none(conn, name)
            return list(read_guest(conn, obj).ips) if obj is not None else []

    def cleanup_run(
        self, run: str, folders: Callable[[], list[str]], heartbeat: Heartbeat, previous: list[str]
    ) -> list[Resource]:
        from seawall.sites.vsphere.diskpaths import parse_datastore_path
        from seawall.sites.vsphere.identity import remove_run_specs
        from seawall.sites.vsphere.placement import delete_datastore_path
        from seawall.sites.vsphere.target import destroy_vm, find_run_vms

        site = self.site
        with self.connect() as conn:
            present = [name for _vm, name, _tag in find_run_vms(conn, run)]
            found = sorted(set(previous) | set(present))
            heartbeat({"found": found})
            for name in present:
                destroy_vm(conn, name, run_id=run)
                heartbeat({"found": found, "destroyed": name})
                failpoints.hit("cleanup_run.destroyed", {"vm": name})
            left = [name for _vm, name, _tag in find_run_vms(conn, run)]
            if left:
                raise SiteError(f"cleanup of run {run}: still present after destroy: {left}", retryable=True)
            removed = [Resource(kind="vm", id=name, site=site.name) for name in found]
            # Disks of a VM that was never created (a run killed after materializing) too.
            for entry in folders():
                # "[datastore] folder" when a placement put the run's disks on another datastore.
                datastore, folder = (
                    parse_datastore_path(entry) if entry.startswith("[") else (site.datastore, entry)
                )
                if delete_datastore_path(conn, datastore, site.datacenter, folder):
                    removed.append(
                        Resource(kind="datastore-dir", id=folder, site=site.name, detail=datastore)
                    )
            for spec in remove_run_specs(conn, run):
                removed.append(Resource(kind="customization-spec", id=spec, site=site.name))
        return removed
