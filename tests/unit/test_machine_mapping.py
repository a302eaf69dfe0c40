"""The mapping from a captured configuration to a target: vSphere devices, AWS launch, placement checks."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from pyVmomi import vim

from seawall.model.ipplan import NicPlan
from seawall.model.placement import Placement
from seawall.model.sourceconfig import ControllerConfig, DiskConfig, MachineConfig, NicConfig
from seawall.plans import check
from seawall.sites.aws.launch import block_devices, boot_mode, source_tags
from seawall.sites.vsphere.describe import machine_of
from seawall.sites.vsphere.devices import device_changes
from seawall.sites.vsphere.disks import UploadedDisk
from seawall.sites.vsphere.identity import WindowsIdentity, computer_name, sysprep_spec

MACHINE = MachineConfig(
    guest_id="rhel8_64Guest",
    guest_family="linux",
    firmware="efi",
    cpus=4,
    cores_per_socket=2,
    memory_mib=4096,
    controllers=[ControllerConfig(type="lsilogic-sas", bus=0), ControllerConfig(type="pvscsi", bus=1)],
    disks=[
        DiskConfig(disk="disk0", controller="lsilogic-sas", bus=0, unit=0, size=1 << 20),
        DiskConfig(disk="disk1", controller="pvscsi", bus=1, unit=3, size=1 << 20),
    ],
    nics=[
        NicConfig(model="e1000e", mac="00:50:56:01:02:03"),
        NicConfig(model="vmxnet3", mac="00:50:56:01:02:04"),
    ],
    tags={"owner": "team-db", "aws:reserved": "x", "seawall:run": "forged"},
)


def disk(name: str) -> UploadedDisk:
    return UploadedDisk("ds", f"vm/{name}.vmdk", f"vm/{name}-flat.vmdk", 1 << 20, 1 << 20, "", "", True)


def nic(model: str | None = None) -> NicPlan:
    return NicPlan("net", "pg", True, IPv4Address("10.0.0.5"), 24, None, (), model, ())


def devices(changes: list) -> list:
    return [c.device for c in changes]


def test_devices_recreate_controllers_slots_models_and_macs() -> None:
    out = device_changes(
        [disk("disk0"), disk("disk1")],
        [(nic(), None, True), (nic("vmxnet3"), None, True)],
        MACHINE,
        keep_macs=True,
    )
    made = devices(out.changes)
    ctrls = {d.key: d for d in made if isinstance(d, vim.vm.device.VirtualController)}
    assert [(type(d).__name__, d.busNumber) for d in ctrls.values()] == [
        ("vim.vm.device.VirtualLsiLogicSASController", 0),
        ("vim.vm.device.ParaVirtualSCSIController", 1),
    ]
    slots = [
        (ctrls[d.controllerKey].busNumber, d.unitNumber)
        for d in made
        if isinstance(d, vim.vm.device.VirtualDisk)
    ]
    assert slots == [(0, 0), (1, 3)]
    cards = [d for d in made if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert [type(c).__name__ for c in cards] == [
        "vim.vm.device.VirtualE1000e",
        "vim.vm.device.VirtualVmxnet3",
    ]
    assert [(c.addressType, c.macAddress) for c in cards] == [
        ("manual", "00:50:56:01:02:03"),
        ("manual", "00:50:56:01:02:04"),
    ]
    assert out.notes == []


def test_plan_model_overrides_and_drills_get_new_macs() -> None:
    out = device_changes([disk("disk0")], [(nic("e1000"), None, True)], MACHINE, keep_macs=False)
    [card] = [d for d in devices(out.changes) if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert isinstance(card, vim.vm.device.VirtualE1000) and not card.macAddress
    assert any("maps 1 NICs; the source had 2" in n for n in out.notes)


def test_without_a_configuration_the_old_defaults() -> None:
    out = device_changes([disk("disk0"), disk("disk1")], [(None, None, True)], None, keep_macs=True)
    made = devices(out.changes)
    assert [type(d).__name__ for d in made if isinstance(d, vim.vm.device.VirtualController)] == [
        "vim.vm.device.ParaVirtualSCSIController"
    ]
    assert [d.unitNumber for d in made if isinstance(d, vim.vm.device.VirtualDisk)] == [0, 1]
    assert isinstance(made[-1], vim.vm.device.VirtualVmxnet3) and out.notes == []


def test_machine_of_reads_a_vsphere_config() -> None:
    sas = vim.vm.device.VirtualLsiLogicSASController(key=1000, busNumber=0, sharedBus="noSharing")
    ide = vim.vm.device.VirtualIDEController(key=200, busNumber=0)
    vdisk = vim.vm.device.VirtualDisk(key=2000, controllerKey=1000, unitNumber=2, capacityInKB=1024)
    card = vim.vm.device.VirtualE1000e(key=4000, macAddress="00:50:56:aa:bb:cc")
    config = vim.vm.ConfigInfo(
        guestId="windows2019srv_64Guest",
        firmware="efi",
        annotation="note",
        bootOptions=vim.vm.BootOptions(efiSecureBootEnabled=True),
        hardware=vim.vm.VirtualHardware(
            numCPU=4, numCoresPerSocket=2, memoryMB=8192, device=[sas, ide, vdisk, card]
        ),
    )
    m = machine_of(config, {"owner": "x"})
    assert (m.guest_family, m.firmware, m.secure_boot, m.cpus, m.cores_per_socket) == (
        "windows",
        "efi",
        True,
        4,
        2,
    )
    assert m.controllers == [
        ControllerConfig(type="lsilogic-sas", bus=0, sharing="noSharing")
    ]  # empty IDE left out
    assert m.disks == [DiskConfig(disk="disk0", controller="lsilogic-sas", bus=0, unit=2, size=1 << 20)]
    assert m.nics == [NicConfig(model="e1000e", mac="00:50:56:aa:bb:cc")]
    assert m.tags == {"owner": "x"} and m.annotation == "note"


def test_aws_launch_mapping() -> None:
    assert boot_mode(MACHINE) == "uefi"
    assert boot_mode(MACHINE.model_copy(update={"firmware": "bios"})) == "legacy-bios"
    assert boot_mode(None) is None and boot_mode(MACHINE.model_copy(update={"firmware": None})) is None
    assert source_tags(MACHINE) == {"owner": "team-db"}
    snaps = [{"device": "/dev/xvda", "snapshot_id": "snap-1", "size_gib": 8}]
    [plain] = block_devices(snaps, None)
    assert plain["Ebs"]["VolumeType"] == "gp3" and "KmsKeyId" not in plain["Ebs"]
    [sealed] = block_devices(snaps, Placement(source="a", target="b", volume_type="io2", kms_key="alias/dr"))
    assert sealed == {
        "DeviceName": "/dev/xvda",
        "Ebs": {"SnapshotId": "snap-1", "VolumeSize": 8, "VolumeType": "io2", "DeleteOnTermination": True,
                "Encrypted": True, "KmsKeyId": "alias/dr"},
    }  # fmt: skip


def test_sysprep_spec_keeps_no_password_when_recorded() -> None:
    who = WindowsIdentity("WEB01", "corp.example.com", "CORP\\j", "s3cret", None, "Adm1n", "Org", "Me", 85)
    kept = sysprep_spec([nic()], who, with_secrets=False)
    assert kept.identity.identification.domainAdminPassword is None
    assert kept.identity.guiUnattended.password is None
    sent = sysprep_spec([nic()], who, with_secrets=True)
    assert sent.identity.identification.domainAdminPassword.value == "s3cret"
    assert sent.nicSettingMap[0].adapter.ip.ipAddress == "10.0.0.5"
    assert computer_name("a-very-long-hostname.corp")[0] == "a-very-long-hos"
    assert computer_name("web01.corp") == ("web01", None)


INVENTORY = """\
kind: Inventory
sites:
  - {name: primary, kind: vsphere, host: a, datacenter: dc, datastore: ds}
  - {name: dr, kind: vsphere, host: b, datacenter: dc, datastore: ds}
  - {name: aws, kind: aws, region: us-east-1}
placements:
  - {source: primary, target: dr, folder: dr/erp, datastore: ds2}
  - {source: primary, target: dr, datastore: ds3}
  - {source: primary, target: aws, datastore: ds4}
  - {source: primary, target: nowhere}
"""


def test_placement_checks_offline(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    errors = [str(e) for e in check([path]).errors]
    assert any(
        ":8: placements[1].target: primary -> dr is already mapped (placements[0])" in e for e in errors
    )
    assert any(
        ":9: placements[2].datastore: 'datastore' does not apply to site 'aws' (aws)" in e for e in errors
    )
    assert any(":10: placements[3].target: unknown site 'nowhere'" in e for e in errors)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(INVENTORY + "  - {source: primary, target: aws, volume_type: gp2, folder: x}\n")
    [error] = [str(e) for e in check([mixed]).errors]
    assert ":11: placements[4]: a placement is for a vSphere target (folder) or an AWS one" in error


def test_placement_names_checked_at_the_site(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        INVENTORY.split("placements:")[0] + "placements:\n  - {source: primary, target: dr, folder: dr/erp}\n"
    )
    asked = []

    def site_check(placement: Placement, site: object) -> list[tuple[str, str]]:
        asked.append((placement.folder, getattr(site, "name", None)))
        return [("folder", "no VM folder 'dr/erp'")]

    assert check([path], site_check=None).ok
    errors = [str(e) for e in check([path], site_check=site_check).errors]
    assert asked == [("dr/erp", "dr")]
    assert errors == [f"{path}:7: placements[0].folder: no VM folder 'dr/erp'"]


@pytest.mark.parametrize(
    ("nic", "message"),
    [
        ("security_groups: [sg-1]", "security groups apply to AWS targets; 'dr' is not one"),
        ("model: ena", "NIC model 'ena' does not exist at site 'dr' (vsphere)"),
    ],
)
def test_nic_fields_for_the_wrong_kind(tmp_path: Path, nic: str, message: str) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        INVENTORY.split("placements:")[0].replace(
            "datastore: ds}", "datastore: ds, networks: [{name: n, cidr: 10.0.0.0/24}]}"
        )
        + "protected_vms:\n"
        + "  - {name: vm, source_site: primary, policy: p, replica_store: s, target_sites: [dr]}\n"
        + "replica_stores: [{name: s, kind: directory, path: /tmp}]\n"
        + "policies: [{name: p, interval: 5m, retention_count: 3, key_ref: env:K}]\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"kind: RecoveryPlan\ninventory: inv.yaml\nname: p1\nsource_site: primary\ntarget_site: dr\n"
        f"groups:\n  - name: g\n    vms:\n      - name: vm\n        nics:\n"
        f"          - {{source_network: n, target_network: n, {nic}}}\n"
    )
    errors = [str(e) for e in check([plan]).errors]
    assert any(message in e for e in errors), errors
