"""vcsim helpers for the "what comes up is the machine that was protected" tests, in plain pyvmomi.

They make source VMs of a given shape at the lab's primary, the placement targets at dr (resource
pool, folder, datastore), and read a recovered VM back: independently of Seawall's own code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from seawall.lab import LabInfo


@contextlib.contextmanager
def connect(lab: LabInfo, site: str) -> Iterator[Any]:
    info = lab.vsphere[site]
    si = SmartConnect(
        host=info.host,
        port=info.port,
        user=info.user,
        pwd=info.password,
        protocol="http",
        disableSslCertValidation=True,
    )
    try:
        yield si
    finally:
        Disconnect(si)


def wait(task: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while task.info.state not in ("success", "error"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task} did not finish")
        time.sleep(0.1)
    if task.info.state == "error":
        raise RuntimeError(str(task.info.error))
    return task.info.result


def objects(si: Any, kind: Any) -> list[Any]:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


def by_name(si: Any, kind: Any, name: str) -> Any:
    found = [o for o in objects(si, kind) if o.name == name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} {kind.__name__} named {name!r}")
    return found[0]


def portgroup_backing(si: Any, network: str) -> Any:
    pg = by_name(si, vim.dvs.DistributedVirtualPortgroup, network)
    return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
        port=vim.dvs.PortConnection(switchUuid=pg.config.distributedVirtualSwitch.uuid, portgroupKey=pg.key)
    )


def make_source_vm(
    si: Any,
    name: str,
    *,
    guest_id: str,
    firmware: str,
    secure_boot: bool,
    cpus: int,
    cores: int,
    memory_mib: int,
    controllers: list[Any],
    disks: list[tuple[int, int, int]],  # (controller index, unit, size bytes)
    nic: Any,
    network: str,
    annotation: str,
    attributes: dict[str, str],
) -> Any:
    """Create and power on a VM at primary with exactly this shape (disks created empty)."""
    dc = by_name(si, vim.Datacenter, "dc-primary")
    cluster = objects(si, vim.ClusterComputeResource)[0]
    changes = []
    for index, ctrl in enumerate(controllers):
        ctrl.key = -(10 + index)
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=ctrl))
    for index, (ctrl_index, unit, size) in enumerate(disks):
        base = name if index == 0 else f"{name}_{index}"
        disk = vim.vm.device.VirtualDisk(
            key=-(100 + index),
            controllerKey=controllers[ctrl_index].key,
            unitNumber=unit,
            capacityInKB=size // 1024,
            capacityInBytes=size,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=f"[ds-primary] {name}/{base}.vmdk", diskMode="persistent", thinProvisioned=True
            ),
        )
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=disk, fileOperation="create"))
    nic.key = -20
    nic.backing = portgroup_backing(si, network)
    nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, connected=True)
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=nic))
    config = vim.vm.ConfigSpec(
        name=name,
        guestId=guest_id,
        numCPUs=cpus,
        numCoresPerSocket=cores,
        memoryMB=memory_mib,
        firmware=firmware,
        annotation=annotation,
        files=vim.vm.FileInfo(vmPathName=f"[ds-primary] {name}/{name}.vmx"),
        deviceChange=changes,
    )
    if firmware == "efi":
        config.bootOptions = vim.vm.BootOptions(efiSecureBootEnabled=secure_boot)
    vm = wait(dc.vmFolder.CreateVM_Task(config=config, pool=cluster.resourcePool))
    fields = si.RetrieveContent().customFieldsManager
    for key, value in attributes.items():
        field = next((f for f in fields.field or [] if f.name == key), None)
        if field is None:
            field = fields.AddCustomFieldDef(name=key, moType=vim.VirtualMachine)
        fields.SetField(entity=vm, key=field.key, value=value)
    wait(vm.PowerOnVM_Task())
    return vm


def destroy(si: Any, name: str) -> None:
    for vm in [o for o in objects(si, vim.VirtualMachine) if o.name == name]:
        with contextlib.suppress(Exception):
            wait(vm.PowerOffVM_Task())
        with contextlib.suppress(Exception):
            wait(vm.Destroy_Task())


def make_placement(si: Any, suffix: str, datastore_dir: Path) -> dict[str, str]:
    """A resource pool below dr's cluster, a VM folder below dc-dr's, a datastore on every host."""
    dc = by_name(si, vim.Datacenter, "dc-dr")
    cluster = objects(si, vim.ClusterComputeResource)[0]
    pool = f"rp-{suffix}"
    cluster.resourcePool.CreateResourcePool(name=pool, spec=_pool_spec())
    parent = dc.vmFolder.CreateFolder(name=f"dr-{suffix}")
    parent.CreateFolder(name="erp")
    datastore = f"ds-alt-{suffix}"
    datastore_dir.mkdir(parents=True, exist_ok=True)
    for host in cluster.host:
        host.configManager.datastoreSystem.CreateLocalDatastore(name=datastore, path=str(datastore_dir))
    return {
        "cluster": cluster.name,
        "resource_pool": pool,
        "folder": f"dr-{suffix}/erp",
        "datastore": datastore,
    }


def _pool_spec() -> Any:
    alloc = vim.ResourceAllocationInfo(
        reservation=0, limit=-1, expandableReservation=True, shares=vim.SharesInfo(level="normal", shares=0)
    )
    return vim.ResourceConfigSpec(cpuAllocation=alloc, memoryAllocation=alloc)


CONTROLLER_NAMES = {
    vim.vm.device.ParaVirtualSCSIController: "pvscsi",
    vim.vm.device.VirtualLsiLogicSASController: "lsilogic-sas",
    vim.vm.device.VirtualLsiLogicController: "lsilogic",
    vim.vm.device.VirtualBusLogicController: "buslogic",
    vim.vm.device.VirtualAHCIController: "sata",
    vim.vm.device.VirtualNVMEController: "nvme",
}
NIC_NAMES = {
    vim.vm.device.VirtualVmxnet3: "vmxnet3",
    vim.vm.device.VirtualE1000e: "e1000e",
    vim.vm.device.VirtualE1000: "e1000",
}


def shape(vm: Any) -> dict[str, Any]:
    """The VM as pyvmomi reads it: what the recovered VM must share with its source."""
    cfg = vm.config
    devices = list(cfg.hardware.device)
    ctrls = {d.key: (CONTROLLER_NAMES[type(d)], d.busNumber) for d in devices if type(d) in CONTROLLER_NAMES}
    disks = sorted(
        (ctrls[d.controllerKey], d.unitNumber) for d in devices if isinstance(d, vim.vm.device.VirtualDisk)
    )
    nics = [
        (NIC_NAMES.get(type(d), type(d).__name__), d.macAddress)
        for d in devices
        if isinstance(d, vim.vm.device.VirtualEthernetCard)
    ]
    fields = {f.key: f.name for f in vm.availableField or []}
    return {
        "guest_id": cfg.guestId,
        "firmware": cfg.firmware,
        "secure_boot": bool(cfg.bootOptions and cfg.bootOptions.efiSecureBootEnabled),
        "cpus": cfg.hardware.numCPU,
        "cores_per_socket": cfg.hardware.numCoresPerSocket,
        "memory_mib": cfg.hardware.memoryMB,
        "controllers": sorted(ctrls.values()),
        "disks": disks,
        "nics": nics,
        "annotation": cfg.annotation,
        "attributes": {fields[v.key]: v.value for v in vm.customValue or [] if v.key in fields},
    }
