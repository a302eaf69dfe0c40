"""What a vSphere VM is, as of a snapshot: the configuration stored with each recovery point.

Read from the snapshot's own ``config`` (the VM as it was when the snapshot was taken), falling back
to the live VM's when the server keeps none. Captured: guest OS id, firmware and secure boot, CPUs and
cores per socket, memory, disk controllers (type, bus) and each disk's controller and unit, NIC models
and MACs, the annotation, and custom attributes as tags (this API's tagging service is vAPI REST,
which vcsim 0.24 lacks; custom attributes are what the SOAP API carries). Nothing secret is read: no
extraConfig (guestinfo variables may hold anything).

Disks are named as replication names them: ``disk<i>`` in device-key order (``adapter.create_snapshot``).
"""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from seawall.model.sourceconfig import (
    ControllerConfig,
    DiskConfig,
    MachineConfig,
    NicConfig,
    SourceConfig,
    guest_family,
)
from seawall.sites.vsphere.client import VSphereConnection

# Most specific first: ParaVirtualSCSIController is a VirtualSCSIController, Vmxnet3 a Vmxnet.
CONTROLLER_TYPES: list[tuple[type, str]] = [
    (vim.vm.device.ParaVirtualSCSIController, "pvscsi"),
    (vim.vm.device.VirtualLsiLogicSASController, "lsilogic-sas"),
    (vim.vm.device.VirtualLsiLogicController, "lsilogic"),
    (vim.vm.device.VirtualBusLogicController, "buslogic"),
    (vim.vm.device.VirtualNVMEController, "nvme"),
    (vim.vm.device.VirtualAHCIController, "sata"),
    (vim.vm.device.VirtualIDEController, "ide"),
]
NIC_TYPES: list[tuple[type, str]] = [
    (vim.vm.device.VirtualVmxnet3, "vmxnet3"),
    (vim.vm.device.VirtualVmxnet2, "vmxnet2"),
    (vim.vm.device.VirtualE1000e, "e1000e"),
    (vim.vm.device.VirtualE1000, "e1000"),
    (vim.vm.device.VirtualPCNet32, "pcnet32"),
    (vim.vm.device.VirtualVmxnet, "vmxnet"),
]


def controller_type(device: Any) -> str | None:
    return next((name for cls, name in CONTROLLER_TYPES if isinstance(device, cls)), None)


def nic_model(device: Any) -> str | None:
    return next((name for cls, name in NIC_TYPES if isinstance(device, cls)), None)


def _config_of(conn: VSphereConnection, vm: Any, snapshot: str) -> Any:
    snap = conn.find_snapshot(vm, snapshot)
    if snap is not None:
        config = conn.properties(snap, ["config"]).get("config")
        if config is not None and getattr(config, "hardware", None) is not None:
            return config
    return conn.properties(vm, ["config"]).get("config")


def _tags(conn: VSphereConnection, vm: Any) -> dict[str, str]:
    props = conn.properties(vm, ["customValue", "availableField"])
    names = {int(f.key): str(f.name) for f in props.get("availableField") or []}
    values = props.get("customValue") or []
    if any(int(v.key) not in names for v in values):
        # A VM's availableField may lag the manager's definitions (vcsim fills it only for entities
        # that existed when a field was defined): the manager has every field.
        fields = conn.properties(conn.content.customFieldsManager, ["field"]).get("field") or []
        names.update({int(f.key): str(f.name) for f in fields if int(f.key) not in names})
    return {
        names[int(v.key)]: str(v.value)
        for v in values
        if int(v.key) in names and getattr(v, "value", None) is not None
    }


def machine_of(config: Any, tags: dict[str, str]) -> MachineConfig:
    """The kind-neutral description of a ``VirtualMachineConfigInfo`` (pure: unit-testable)."""
    hardware = config.hardware
    devices = list(hardware.device or [])
    controllers: dict[int, ControllerConfig] = {}
    for device in devices:
        kind = controller_type(device)
        if kind is None:
            continue
        sharing = getattr(device, "sharedBus", None)
        controllers[int(device.key)] = ControllerConfig(
            type=kind, bus=int(device.busNumber or 0), sharing=str(sharing) if sharing else None
        )
    disks = []
    vdisks = sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)), key=lambda d: d.key)
    for index, disk in enumerate(vdisks):
        ctrl = controllers.get(int(disk.controllerKey or 0))
        size = int(getattr(disk, "capacityInBytes", 0) or 0) or int(disk.capacityInKB or 0) * 1024
        disks.append(
            DiskConfig(
                disk=f"disk{index}",
                controller=ctrl.type if ctrl else "unknown",
                bus=ctrl.bus if ctrl else 0,
                unit=int(disk.unitNumber or 0),
                size=size,
            )
        )
    used = {(d.controller, d.bus) for d in disks}
    # IDE controllers come with every VM: keep only those that carry a disk. The others are kept
    # even when empty (an operator added them: a second SCSI bus for a database's logs...).
    kept = [c for c in controllers.values() if c.type != "ide" or (c.type, c.bus) in used]
    nics = []
    for device in sorted(devices, key=lambda d: d.key):
        model = nic_model(device)
        if model is None:
            continue
        backing = getattr(device, "backing", None)
        nics.append(
            NicConfig(
                model=model,
                mac=str(device.macAddress) if getattr(device, "macAddress", None) else None,
                network=str(getattr(backing, "deviceName", "") or "") or None,
            )
        )
    boot = getattr(config, "bootOptions", None)
    firmware = str(config.firmware) if getattr(config, "firmware", None) in ("bios", "efi") else None
    return MachineConfig(
        guest_id=str(config.guestId) if config.guestId else None,
        guest_family=guest_family(config.guestId),
        firmware=firmware,  # type: ignore[arg-type]
        secure_boot=bool(getattr(boot, "efiSecureBootEnabled", False)),
        cpus=int(hardware.numCPU) if hardware.numCPU else None,
        cores_per_socket=int(hardware.numCoresPerSocket) if hardware.numCoresPerSocket else None,
        memory_mib=int(hardware.memoryMB) if hardware.memoryMB else None,
        controllers=sorted(kept, key=lambda c: (c.type, c.bus)),
        disks=disks,
        nics=nics,
        annotation=str(config.annotation or ""),
        tags=tags,
    )


def describe(conn: VSphereConnection, vm: Any, snapshot: str) -> SourceConfig:
    config = _config_of(conn, vm, snapshot)
    machine = machine_of(config, _tags(conn, vm))
    document = {
        "vm_version": str(getattr(config, "version", "") or ""),
        "uuid": str(getattr(config, "uuid", "") or ""),
        "snapshot": snapshot,
    }
    return SourceConfig(kind="vsphere", document=document, machine=machine)
