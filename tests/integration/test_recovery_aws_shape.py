"""An AWS failover launches the machine that was protected (issue #11, item 2), read back with boto3.

Two VMs made at the lab's primary vcsim for the test: an EFI guest with two NICs and a custom
attribute, and a BIOS guest. After an unplanned failover to AWS (moto): each NIC sits in its planned
subnet with its planned address and security groups; the images boot UEFI and legacy BIOS as their
sources did; every volume is of the placement's EBS type, encrypted with its KMS key (a key the test
creates in moto's KMS); the source's attribute is an instance tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from pathlib import Path
from typing import Any

import yaml
from pyVmomi import vim
from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import FailoverInput, ProtectInput, ProtectResult, RunReport, UnprotectInput
from seawall.lab import LabInfo
from seawall.sites.aws.target import terminate_run
from tests.integration import vcsim_shapes as vs
from tests.integration.replication_env import replication_env, write_inventory
from tests.integration.test_recovery_aws import aws

MiB = 1024 * 1024


def _add_nic(si: Any, name: str, network: str) -> None:
    vm = vs.by_name(si, vim.VirtualMachine, name)
    nic = vim.vm.device.VirtualVmxnet3(
        key=-30,
        backing=vs.portgroup_backing(si, network),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, connected=True),
    )
    change = vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)
    vs.wait(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


async def test_aws_failover_two_nics_groups_boot_mode_volumes(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    efi, bios, plan = f"efi-{suffix}", f"bios-{suffix}", f"aws-shape-{suffix}"
    base = random.Random().randrange(20, 240)
    ec2, kms = aws(lab, "ec2"), aws(lab, "kms")
    vpc = lab.aws.vpc_id
    groups = {
        g: ec2.create_security_group(GroupName=f"{g}-{suffix}", Description="seawall test", VpcId=vpc)[
            "GroupId"
        ]
        for g in ("app", "db", "admin")
    }
    key = kms.create_key(Description=f"seawall test {suffix}")["KeyMetadata"]["Arn"]
    with vs.connect(lab, "primary") as si:
        common = {
            "cpus": 2,
            "cores": 1,
            "memory_mib": 2048,
            "nic": vim.vm.device.VirtualVmxnet3(),
            "annotation": "",
        }
        ctrl = [vim.vm.device.ParaVirtualSCSIController(busNumber=0, sharedBus="noSharing")]
        vs.make_source_vm(
            si, efi, guest_id="rhel8_64Guest", firmware="efi", secure_boot=False, controllers=ctrl,
            disks=[(0, 0, MiB)], network="prod-app", attributes={"cost-centre": "erp-42"}, **common,
        )  # fmt: skip
        vs.wait(vs.by_name(si, vim.VirtualMachine, efi).PowerOffVM_Task())
        _add_nic(si, efi, "prod-db")
        vs.wait(vs.by_name(si, vim.VirtualMachine, efi).PowerOnVM_Task())
        ctrl = [vim.vm.device.VirtualLsiLogicController(busNumber=0, sharedBus="noSharing")]
        vs.make_source_vm(
            si, bios, guest_id="otherLinux64Guest", firmware="bios", secure_boot=False, controllers=ctrl,
            disks=[(0, 0, MiB)], network="prod-app", attributes={}, **common,
        )  # fmt: skip
    inventory = write_inventory(tmp_path, lab_state_dir, s3_prefix=f"test-{suffix}/", lab=lab)
    data = yaml.safe_load(inventory.read_text())
    data["protected_vms"] = [
        {
            "name": vm,
            "source_site": "primary",
            "policy": "rpo-5m",
            "replica_store": "local",
            "target_sites": ["aws"],
        }
        for vm in (efi, bios)
    ]
    data["placements"] = [{"source": "primary", "target": "aws", "volume_type": "gp2", "kms_key": key}]
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    ips = {"app": f"10.3.2.{base}", "db": f"10.3.3.{base}", "bios": f"10.3.2.{base + 1}"}
    nic = {"source_network": "prod-app", "target_network": "aws-app"}
    doc = {
        "kind": "RecoveryPlan",
        "inventory": str(inventory),
        "name": plan,
        "source_site": "primary",
        "target_site": "aws",
        "groups": [
            {
                "name": "all",
                "vms": [
                    {
                        "name": efi,
                        "nics": [
                            {
                                **nic,
                                "ip": {"kind": "static", "ip": ips["app"]},
                                "security_groups": [f"app-{suffix}"],
                            },
                            {
                                "source_network": "prod-db",
                                "target_network": "aws-db",
                                "ip": {"kind": "static", "ip": ips["db"]},
                                "security_groups": [f"db-{suffix}", groups["admin"]],
                            },
                        ],
                    },
                    {"name": bios, "nics": [{**nic, "ip": {"kind": "static", "ip": ips["bios"]}}]},
                ],
            }
        ],
    }
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / f"{plan}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    overrides = {"plans_dir": tmp_path / "plans", "reports_dir": tmp_path / "reports"}
    report: RunReport | None = None
    try:
        async with replication_env(
            lab,
            tmp_path,
            lab_state_dir,
            sites=("primary", "aws"),
            inventory=inventory,
            settings_overrides=overrides,
        ) as env:
            queue = env.settings.orchestration_queue
            for vm in (efi, bios):
                await env.client.execute_workflow(
                    "ProtectVM",
                    ProtectInput(vm=vm),
                    id=f"protect/{vm}",
                    task_queue=queue,
                    result_type=ProtectResult,
                )
            handle = await env.client.start_workflow(
                "RecoveryPlan",
                FailoverInput(plan=plan, mode="unplanned"),
                id=f"recover/{plan}",
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                result_type=RunReport,
            )
            report = await asyncio.wait_for(handle.result(), timeout=300)
            for vm in (efi, bios):
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )
        assert report.status == "completed", report.failed_vms
        subnets = lab.aws.subnets
        instances = {}
        for v in report.vms:
            [reservation] = ec2.describe_instances(InstanceIds=[v.target_name])["Reservations"]
            instances[v.vm] = reservation["Instances"][0]
        nics = sorted(instances[efi]["NetworkInterfaces"], key=lambda n: n["Attachment"]["DeviceIndex"])
        assert [(n["SubnetId"], n["PrivateIpAddress"]) for n in nics] == [
            (subnets["aws-app"], ips["app"]),
            (subnets["aws-db"], ips["db"]),
        ]
        assert [sorted(g["GroupId"] for g in n["Groups"]) for n in nics] == [
            [groups["app"]],
            sorted([groups["db"], groups["admin"]]),
        ]
        modes = {}
        for vm, instance in instances.items():
            [image] = ec2.describe_images(ImageIds=[instance["ImageId"]])["Images"]
            modes[vm] = image.get("BootMode")
            volumes = ec2.describe_volumes(
                Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
            )
            assert volumes["Volumes"], vm
            for volume in volumes["Volumes"]:
                assert (volume["VolumeType"], volume["Encrypted"], volume.get("KmsKeyId")) == (
                    "gp2",
                    True,
                    key,
                )
        assert modes == {efi: "uefi", bios: "legacy-bios"}
        tags = {t["Key"]: t["Value"] for t in instances[efi].get("Tags", [])}
        assert tags["cost-centre"] == "erp-42" and tags["seawall:run"] == report.run
    finally:
        if report is not None:
            terminate_run(ec2, report.run)
        for group in groups.values():
            # Still attached to a terminated instance in moto: harmless, the names are the test's own.
            with contextlib.suppress(Exception):
                ec2.delete_security_group(GroupId=group)
        with vs.connect(lab, "primary") as si:
            for vm in (efi, bios):
                vs.destroy(si, vm)
