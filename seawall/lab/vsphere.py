"""Build each vcsim site's inventory through the vSphere API (pyvmomi), and check it.

vcsim keeps its inventory in memory and starts empty (our main runs with ``-dc 0``, and so can an
upstream vcsim), so the lab creates the datacenter, cluster, hosts, datastore, switch, port groups and
VMs after every vcsim start. Datastores are directories in the lab's state dir and outlive a vcsim
restart; a rebuild re-attaches the protected VMs' existing disks, so blocks written by a test survive.

vcsim 0.24 panics when ``guestHeartbeatStatus`` is read, so this module reads only named properties
through the property collector, never whole managed objects.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from seawall.lab import config as c
from seawall.lab.disks import fill_disk
from seawall.lab.info import LabDisk, LabVM, VSphereSiteInfo


class IncompleteSiteError(RuntimeError):
    """The datacenter exists but not all of the site (a set-up was interrupted): rebuild from scratch."""


@dataclass(frozen=True)
class SiteSpec:
    """What one vSphere site of the lab contains."""

    site: str
    port: int
    datacenter: str
    datastore: str
    datastore_dir: Path
    credentials_file: Path
    networks: tuple[str, ...]
    isolated_networks: tuple[str, ...]
    vms: tuple[str, ...]
    disk_size: int
    second_disk_vm: str | None
    hosts_per_cluster: int

    @property
    def cluster(self) -> str:
        return f"cluster-{self.site}"

    @property
    def switch(self) -> str:
        return f"dvs-{self.site}"

    @property
    def host_names(self) -> list[str]:
        return [f"esx-{self.site}-{i:02d}.lab" for i in range(1, self.hosts_per_cluster + 1)]

    def all_networks(self) -> tuple[str, ...]:
        return self.networks + self.isolated_networks

    def network_for(self, vm: str, index: int) -> str:
        # The contract names say their tier; other VMs are spread over the tiers in turn.
        tier = vm.split("-", 1)[0]
        for net in self.networks:
            if net.endswith(f"-{tier}"):
                return net
        return self.networks[index % len(self.networks)]

    def disk_count(self, vm: str) -> int:
        return 2 if vm == self.second_disk_vm else 1


def site_specs(state: Path, cfg: c.LabConfig) -> dict[str, SiteSpec]:
    common = {"disk_size": cfg.disk_size, "hosts_per_cluster": cfg.hosts_per_cluster}
    return {
        "primary": SiteSpec(
            site="primary",
            port=cfg.vcsim_primary_port,
            datacenter="dc-primary",
            datastore="ds-primary",
            datastore_dir=state / "vcsim" / "primary" / "ds",
            credentials_file=state / "credentials" / "primary.json",
            networks=("prod-web", "prod-app", "prod-db"),
            isolated_networks=(),
            vms=tuple(cfg.vms),
            second_disk_vm=cfg.second_disk_vm,
            **common,
        ),
        "dr": SiteSpec(
            site="dr",
            port=cfg.vcsim_dr_port,
            datacenter="dc-dr",
            datastore="ds-dr",
            datastore_dir=state / "vcsim" / "dr" / "ds",
            credentials_file=state / "credentials" / "dr.json",
            networks=("dr-web", "dr-app", "dr-db"),
            isolated_networks=("drill",),
            vms=(),
            second_disk_vm=None,
            **common,
        ),
    }


@contextmanager
def connect(port: int, host: str = c.HOST, timeout: float = 10.0) -> Iterator[vim.ServiceInstance]:
    # SmartConnect's API-version probe has no timeout, so a frozen vcsim would hang it for good: the
    # same document is fetched here first, with one.
    requests.get(f"http://{host}:{port}/sdk/vimServiceVersions.xml", timeout=timeout).raise_for_status()
    si = SmartConnect(
        host=host,
        port=port,
        user=c.VSPHERE_USER,
        pwd=c.VSPHERE_PASSWORD,
        protocol="http",
        httpConnectionTimeout=int(timeout),
    )
    try:
        yield si
    finally:
        Disconnect(si)


def wait_task(task: vim.Task, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == vim.TaskInfo.State.success:
            return info.result
        if info.state == vim.TaskInfo.State.error:
            fault: Any = info.error
            detail = fault.msg or type(fault).__name__
            if getattr(fault, "invalidProperty", None):
                detail += f" ({fault.invalidProperty})"
            raise RuntimeError(f"vSphere task {info.descriptionId or info.key} failed: {detail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"vSphere task {info.key} still {info.state} after {timeout}s")
        time.sleep(0.02)


def collect(si: vim.ServiceInstance, obj_type: type, props: list[str]) -> list[dict[str, Any]]:
    """Named properties of every object of a type: one round trip, and never a property vcsim chokes on."""
    content = si.RetrieveContent()
    view_manager: Any = content.viewManager
    view = view_manager.CreateContainerView(content.rootFolder, [obj_type], True)
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[
                vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        vmodl.query.PropertyCollector.TraversalSpec(
                            name="view", path="view", skip=False, type=vim.view.ContainerView
                        )
                    ],
                )
            ],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=obj_type, pathSet=props)],
        )
        result = content.propertyCollector.RetrieveContents([spec])
    finally:
        view.Destroy()
    rows = []
    for item in result or []:
        row: dict[str, Any] = {"obj": item.obj}
        row.update({p.name: p.val for p in item.propSet})
        rows.append(row)
    return rows


def _find_datacenter(si: vim.ServiceInstance, name: str) -> vim.Datacenter | None:
    for row in collect(si, vim.Datacenter, ["name"]):
        if row["name"] == name:
            dc: vim.Datacenter = row["obj"]
            return dc
    return None


def _disk_names(vm: str, index: int) -> tuple[str, str]:
    # vSphere's naming: the first disk is <vm>.vmdk, the next <vm>_1.vmdk; each has a -flat extent.
    base = vm if index == 0 else f"{vm}_{index}"
    return f"{vm}/{base}.vmdk", f"{vm}/{base}-flat.vmdk"


def _prepare_datastore(spec: SiteSpec) -> set[str]:
    """Empty the datastore for a new inventory, keeping the protected VMs' intact disks.

    A new vcsim knows no VM, so every file is an orphan, and leftover .vmx files would make vcsim's
    CreateVM fail with FileAlreadyExists. The protected VMs' disk extents are kept when their size is
    what the config asks for, and re-attached: a datastore outlives its vCenter, and a test may have
    changed those blocks on purpose. Returns the descriptor paths kept.
    """
    root = spec.datastore_dir
    root.mkdir(parents=True, exist_ok=True)
    keep: set[str] = set()
    for vm in spec.vms:
        for index in range(spec.disk_count(vm)):
            descriptor, flat = _disk_names(vm, index)
            intact = (root / descriptor).is_file() and (root / flat).is_file()
            if intact and (root / flat).stat().st_size == spec.disk_size:
                keep.update((descriptor, flat))
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            for child in entry.iterdir():
                if f"{entry.name}/{child.name}" not in keep:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            entry.unlink()
    return {k for k in keep if not k.endswith("-flat.vmdk")}


def _disk_spec(
    spec: SiteSpec, vm: str, index: int, controller_key: int, existing: set[str]
) -> vim.vm.device.VirtualDeviceSpec:
    descriptor, _ = _disk_names(vm, index)
    disk = vim.vm.device.VirtualDisk(
        key=-(100 + index),
        controllerKey=controller_key,
        unitNumber=index,
        capacityInKB=spec.disk_size // 1024,
        capacityInBytes=spec.disk_size,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=f"[{spec.datastore}] {descriptor}", diskMode="persistent", thinProvisioned=True
        ),
    )
    change = vim.vm.device.VirtualDeviceSpec(
        operation=vim.vm.device.VirtualDeviceSpec.Operation.add, device=disk
    )
    if descriptor not in existing:
        change.fileOperation = vim.vm.device.VirtualDeviceSpec.FileOperation.create
    return change


def build(spec: SiteSpec) -> None:
    """Create the site's inventory on a vcsim that does not have it yet. Idempotent per vcsim process.

    Longer than 80 lines on purpose: the steps (datacenter, cluster, hosts, datastore, switch, port
    groups, VMs) must run in this order against one connection, and read as the vCenter they build.
    """
    with connect(spec.port) as si:
        content = si.RetrieveContent()
        if _find_datacenter(si, spec.datacenter) is not None:
            names = {row["name"] for row in collect(si, vim.VirtualMachine, ["name"])}
            missing = [vm for vm in spec.vms if vm not in names]
            if missing:
                raise IncompleteSiteError(f"{spec.datacenter} exists but lacks VMs {', '.join(missing)}")
            return
        existing = _prepare_datastore(spec)
        dc = content.rootFolder.CreateDatacenter(name=spec.datacenter)
        cluster = dc.hostFolder.CreateClusterEx(name=spec.cluster, spec=vim.cluster.ConfigSpecEx())
        hosts = [
            wait_task(
                cluster.AddHost_Task(spec=vim.host.ConnectSpec(hostName=name, force=True), asConnected=True)
            )
            for name in spec.host_names
        ]
        for host in hosts:
            host.configManager.datastoreSystem.CreateLocalDatastore(
                name=spec.datastore, path=str(spec.datastore_dir)
            )
        dvs = wait_task(
            dc.networkFolder.CreateDVS_Task(
                vim.DistributedVirtualSwitch.CreateSpec(
                    configSpec=vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(name=spec.switch)
                )
            )
        )
        # Hosts join by reconfigure (vcsim ignores members in the create spec); a VM's NIC only
        # attaches to a switch every host of its cluster is a member of.
        wait_task(
            dvs.ReconfigureDvs_Task(
                vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(
                    configVersion=dvs.config.configVersion,
                    host=[vim.dvs.HostMember.ConfigSpec(operation="add", host=host) for host in hosts],
                )
            )
        )
        wait_task(
            dvs.AddDVPortgroup_Task(
                [
                    vim.dvs.DistributedVirtualPortgroup.ConfigSpec(name=net, type="earlyBinding", numPorts=64)
                    for net in spec.all_networks()
                ]
            )
        )
        portgroups = {
            row["name"]: row["key"]
            for row in collect(si, vim.dvs.DistributedVirtualPortgroup, ["name", "key"])
        }
        switch_uuid = dvs.uuid
        pool = cluster.resourcePool
        for i, name in enumerate(spec.vms):
            controller = vim.vm.device.ParaVirtualSCSIController(
                key=-10, busNumber=0, sharedBus=vim.vm.device.VirtualSCSIController.Sharing.noSharing
            )
            nic = vim.vm.device.VirtualVmxnet3(
                key=-20,
                backing=vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                    port=vim.dvs.PortConnection(
                        switchUuid=switch_uuid, portgroupKey=portgroups[spec.network_for(name, i)]
                    )
                ),
                connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, connected=True),
            )
            changes = [
                vim.vm.device.VirtualDeviceSpec(operation="add", device=controller),
                _disk_spec(spec, name, 0, controller.key, existing),
                vim.vm.device.VirtualDeviceSpec(operation="add", device=nic),
            ]
            config = vim.vm.ConfigSpec(
                name=name,
                guestId="otherLinux64Guest",
                numCPUs=2,
                memoryMB=2048,
                files=vim.vm.FileInfo(vmPathName=f"[{spec.datastore}] {name}/{name}.vmx"),
                deviceChange=changes,
            )
            vm = wait_task(dc.vmFolder.CreateVM_Task(config=config, pool=pool, host=hosts[i % len(hosts)]))
            # A second disk goes in by reconfigure, the way an admin adds a data disk; vcsim honours it.
            for index in range(1, spec.disk_count(name)):
                scsi_key = next(
                    d.key
                    for d in vm.config.hardware.device
                    if isinstance(d, vim.vm.device.VirtualSCSIController)
                )
                reconfig = vim.vm.ConfigSpec(deviceChange=[_disk_spec(spec, name, index, scsi_key, existing)])
                wait_task(vm.ReconfigVM_Task(spec=reconfig))
            address = production_ip(spec.site, name, spec.network_for(name, i), i)
            if address is not None:
                # The guest's production address, as VMware Tools would report it: re-IP rules that
                # translate subnets need the source address, and vcsim shows a customized IP after boot.
                wait_task(vm.CustomizeVM_Task(spec=_linux_prep(name, address)))
            wait_task(vm.PowerOnVM_Task())


# The primary site's production subnets, as examples/inventory.yaml declares them.
PRODUCTION_SUBNETS = {"prod-web": "10.1.1", "prod-app": "10.1.2", "prod-db": "10.1.3"}
_HOST_BASE = {"web": 20, "app": 10, "db": 9}


def production_ip(site: str, vm: str, network: str, index: int) -> str | None:
    """web-01 -> 10.1.1.21, app-02 -> 10.1.2.12, db-01 -> 10.1.3.10; other VMs 10.1.x.(100 + i)."""
    prefix = PRODUCTION_SUBNETS.get(network)
    if site != "primary" or prefix is None:
        return None
    tier, _, number = vm.partition("-")
    host = _HOST_BASE[tier] + int(number) if tier in _HOST_BASE and number.isdigit() else 100 + index
    return f"{prefix}.{host}"


def _linux_prep(name: str, address: str) -> Any:
    custom = vim.vm.customization
    return custom.Specification(
        identity=custom.LinuxPrep(hostName=custom.FixedName(name=name), domain="corp.example.com"),
        globalIPSettings=custom.GlobalIPSettings(),
        nicSettingMap=[
            custom.AdapterMapping(
                adapter=custom.IPSettings(
                    ip=custom.FixedIp(ipAddress=address),
                    subnetMask="255.255.255.0",
                    gateway=[address.rsplit(".", 1)[0] + ".1"],
                )
            )
        ],
    )


def fill_disks(spec: SiteSpec) -> None:
    """Give each protected disk its pattern once: only files vcsim has just created (still empty)."""
    for vm in spec.vms:
        for index in range(spec.disk_count(vm)):
            flat = spec.datastore_dir / _disk_names(vm, index)[1]
            if flat.stat().st_size != spec.disk_size:
                fill_disk(flat, vm, spec.disk_size, index)


def describe(spec: SiteSpec) -> VSphereSiteInfo:
    """Read the site back from vcsim (not from the spec): the LabInfo shows what really exists."""
    with connect(spec.port) as si:
        host_rows = collect(si, vim.HostSystem, ["name"])
        host_names = {row["obj"]._moId: row["name"] for row in host_rows}
        nets = [row["name"] for row in collect(si, vim.dvs.DistributedVirtualPortgroup, ["name"])]
        vm_rows = collect(
            si, vim.VirtualMachine, ["name", "config.hardware.device", "runtime.host", "network"]
        )
        net_names = {row["obj"]._moId: row["name"] for row in collect(si, vim.Network, ["name"])}
    # Only the lab's own VMs: other tests create VMs at both sites (recoveries, drills) and LabInfo
    # describes what the lab built, not what happens to be there.
    ours = sorted((r for r in vm_rows if r["name"] in spec.vms), key=lambda r: spec.vms.index(r["name"]))
    vms: list[LabVM] = []
    for row in ours:
        devices = [
            d for d in row.get("config.hardware.device", []) if isinstance(d, vim.vm.device.VirtualDisk)
        ]
        devices.sort(key=lambda d: (d.controllerKey, d.unitNumber))
        disks = []
        for index, dev in enumerate(devices[: spec.disk_count(row["name"])]):
            # The base disk's names, not the current backing's: while a snapshot exists the backing
            # is its delta file, and LabInfo must keep pointing at the disk the lab made and filled.
            descriptor, flat = _disk_names(row["name"], index)
            disks.append(
                LabDisk(
                    label=dev.deviceInfo.label if dev.deviceInfo else f"disk {dev.unitNumber}",
                    unit=dev.unitNumber,
                    datastore_path=f"[{spec.datastore}] {descriptor}",
                    flat_name=flat,
                    file=spec.datastore_dir / flat,
                    capacity_bytes=dev.capacityInBytes or dev.capacityInKB * 1024,
                )
            )
        networks = [net_names.get(n._moId, n._moId) for n in row.get("network", [])]
        vms.append(
            LabVM(
                name=row["name"],
                network=networks[0] if networks else "",
                host=host_names.get(row["runtime.host"]._moId, ""),
                disks=disks,
            )
        )
    return VSphereSiteInfo(
        site=spec.site,
        host=c.HOST,
        port=spec.port,
        user=c.VSPHERE_USER,
        password=c.VSPHERE_PASSWORD,
        credentials_file=spec.credentials_file,
        datacenter=spec.datacenter,
        cluster=spec.cluster,
        hosts=sorted(host_names.values()),
        datastore=spec.datastore,
        datastore_dir=spec.datastore_dir,
        switch=spec.switch,
        networks=[n for n in spec.all_networks() if n in nets],
        isolated_networks=[n for n in spec.isolated_networks if n in nets],
        vms=vms,
    )


def check(spec: SiteSpec) -> str:
    """Health: the API answers and the site's inventory is there. Raises with the reason when not."""
    with connect(spec.port, timeout=5) as si:
        about = si.RetrieveContent().about.fullName
        if _find_datacenter(si, spec.datacenter) is None:
            raise RuntimeError(f"{about} answers but has no datacenter {spec.datacenter}")
        names = {row["name"] for row in collect(si, vim.VirtualMachine, ["name"])}
    missing = [vm for vm in spec.vms if vm not in names]
    if missing:
        raise RuntimeError(f"{spec.datacenter} lacks VMs {', '.join(missing)}")
    return f"{spec.datacenter}, {len(names)} VMs"


def ping(port: int) -> str:
    """Readiness of a fresh vcsim: the API answers (no inventory yet)."""
    with connect(port, timeout=2) as si:
        about: str = si.RetrieveContent().about.fullName
    return about
