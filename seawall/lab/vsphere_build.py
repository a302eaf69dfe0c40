"""Build a vcsim site's inventory from its ``SiteSpec`` through the vSphere API, and fill its disks.

vcsim keeps its inventory in memory and starts empty (our main runs with ``-dc 0``, and so can an
upstream vcsim), so the lab creates the datacenter, cluster, hosts, datastore, switch, port groups and
VMs after every vcsim start. Datastores are directories in the lab's state dir and outlive a vcsim
restart; a rebuild re-attaches the protected VMs' existing disks, so blocks written by a test survive.
Separate from ``vsphere.py`` (reading a site back, health) because only ``lab up`` builds.
"""

from __future__ import annotations

import shutil
from typing import Any

from pyVmomi import vim

from seawall.lab.disks import fill_disk
from seawall.lab.vsphere_api import collect, connect, find_datacenter, wait_task
from seawall.lab.vsphere_spec import SiteSpec, disk_names, production_ip


class IncompleteSiteError(RuntimeError):
    """The datacenter exists but not all of the site (a set-up was interrupted): rebuild from scratch."""


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
            descriptor, flat = disk_names(vm, index)
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
    descriptor, _ = disk_names(vm, index)
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
        if find_datacenter(si, spec.datacenter) is not None:
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
            flat = spec.datastore_dir / disk_names(vm, index)[1]
            if flat.stat().st_size != spec.disk_size:
                fill_disk(flat, vm, spec.disk_size, index)
