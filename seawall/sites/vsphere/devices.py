"""The devices of a recovered vSphere VM: the source's controllers, disk slots and NIC models.

``device_changes`` re-creates what the point's configuration describes (``MachineConfig``): every
controller with its type and bus, each disk on its controller at its unit number, each NIC with its
model and (outside drills) its MAC. What the configuration does not say falls back to what Seawall
always built (one paravirtual SCSI controller, disks in order, vmxnet3), and ``notes`` say so. The
plan's NIC ``model`` overrides the source's.

MACs: a failover keeps the source's MAC (licences and DHCP reservations bind to it; the source is
fenced). A drill runs beside the running source, so it gets generated MACs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from seawall.model.ipplan import NicPlan
from seawall.model.sourceconfig import ControllerConfig, MachineConfig
from seawall.sites.vsphere.disks import UploadedDisk
from seawall.sites.vsphere.placement import PortGroup

SCSI = {
    "pvscsi": vim.vm.device.ParaVirtualSCSIController,
    "lsilogic": vim.vm.device.VirtualLsiLogicController,
    "lsilogic-sas": vim.vm.device.VirtualLsiLogicSASController,
    "buslogic": vim.vm.device.VirtualBusLogicController,
}
OTHER_CONTROLLERS = {
    "nvme": vim.vm.device.VirtualNVMEController,
    "sata": vim.vm.device.VirtualAHCIController,
    "ide": vim.vm.device.VirtualIDEController,
}
NICS = {
    "vmxnet3": vim.vm.device.VirtualVmxnet3,
    "vmxnet2": vim.vm.device.VirtualVmxnet2,
    "vmxnet": vim.vm.device.VirtualVmxnet,
    "e1000e": vim.vm.device.VirtualE1000e,
    "e1000": vim.vm.device.VirtualE1000,
    "pcnet32": vim.vm.device.VirtualPCNet32,
}
DEFAULT_CONTROLLER = ControllerConfig(type="pvscsi", bus=0, sharing="noSharing")
DEFAULT_NIC = "vmxnet3"
# Units a controller offers to disks (SCSI's 7 is the controller's own).
UNITS = {"ide": 2, "sata": 30, "nvme": 15}


@dataclass
class Devices:
    changes: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _controller(ctrl: ControllerConfig, key: int) -> Any:
    if ctrl.type in SCSI:
        sharing = ctrl.sharing or vim.vm.device.VirtualSCSIController.Sharing.noSharing
        return SCSI[ctrl.type](key=key, busNumber=ctrl.bus, sharedBus=sharing)
    return OTHER_CONTROLLERS[ctrl.type](key=key, busNumber=ctrl.bus)


def _free_units(kind: str) -> list[int]:
    if kind in SCSI:
        return [u for u in range(16) if u != 7]
    return list(range(UNITS.get(kind, 16)))


def device_changes(
    disks: Sequence[UploadedDisk],
    nics: Sequence[tuple[NicPlan | None, Any, bool]],
    machine: MachineConfig | None,
    *,
    keep_macs: bool,
) -> Devices:
    """Device specs for a new VM. ``nics``: (plan or None, backing, connected) per NIC, in order."""
    out = Devices()
    known = {c.type for c in (machine.controllers if machine else [])}
    controllers = [
        c for c in (machine.controllers if machine else []) if c.type in SCSI or c.type in OTHER_CONTROLLERS
    ]
    if machine is not None and len(controllers) < len(known):
        out.notes.append(
            f"controller types {sorted(known - {c.type for c in controllers})} are not supported"
        )
    if not controllers:
        controllers = [DEFAULT_CONTROLLER]
    keys: dict[tuple[str, int], int] = {}
    for index, ctrl in enumerate(controllers):
        if ctrl.type == "ide":
            # Every new VM comes with IDE 0 and 1 (keys 200, 201): attach to them, never add a third.
            keys[(ctrl.type, ctrl.bus)] = 200 + ctrl.bus
            continue
        key = -(100 + index)
        keys[(ctrl.type, ctrl.bus)] = key
        out.changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=_controller(ctrl, key)))
    taken: dict[int, set[int]] = {k: set() for k in keys.values()}
    slots = {d.disk: d for d in (machine.disks if machine else [])}
    first = controllers[0]
    for index, disk in enumerate(disks):
        name = disk.descriptor.rsplit("/", 1)[-1].removesuffix(".vmdk")
        slot = slots.get(name)
        if (
            slot is not None
            and (slot.controller, slot.bus) in keys
            and slot.unit not in taken[keys[(slot.controller, slot.bus)]]
        ):
            ckey, unit = keys[(slot.controller, slot.bus)], slot.unit
        else:
            if machine is not None:
                out.notes.append(f"{name}: no captured slot; placed on {first.type} bus {first.bus}")
            ckey = keys[(first.type, first.bus)]
            free = [u for u in _free_units(first.type) if u not in taken[ckey]]
            if not free:
                raise ValueError(f"no free unit on {first.type} bus {first.bus} for {name}")
            unit = free[0]
        taken[ckey].add(unit)
        device = vim.vm.device.VirtualDisk(
            key=-(200 + index),
            controllerKey=ckey,
            unitNumber=unit,
            capacityInKB=disk.capacity_kb,
            capacityInBytes=disk.size,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=disk.datastore_path, diskMode="persistent", thinProvisioned=True
            ),
        )
        # No fileOperation: attach the existing file, never create (or replace) it.
        out.changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=device))
    captured = machine.nics if machine else []
    for index, (plan, backing, connected) in enumerate(nics):
        source = captured[index] if index < len(captured) else None
        model = (
            (plan.model if plan is not None else None) or (source.model if source else None) or DEFAULT_NIC
        )
        if model not in NICS:
            out.notes.append(f"NIC {index}: model {model} is not available here; {DEFAULT_NIC} used")
            model = DEFAULT_NIC
        card = NICS[model](
            key=-(300 + index),
            backing=backing,
            connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                startConnected=connected, connected=connected, allowGuestControl=True
            ),
        )
        if source is not None and source.mac and keep_macs:
            card.addressType = "manual"
            card.macAddress = source.mac
        out.changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=card))
    if machine is not None and len(nics) != len(captured):
        out.notes.append(f"the plan maps {len(nics)} NICs; the source had {len(captured)}")
    return out


def nic_backing(pg: PortGroup) -> Any:
    if pg.key is not None:
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(switchUuid=pg.switch_uuid, portgroupKey=pg.key)
        )
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=pg.name, network=pg.obj)
