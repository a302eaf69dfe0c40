"""Recover a real recovery point of a primary lab VM into AWS (moto): EBS snapshot, AMI, instance, cleanup."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import boto3
import pytest

from seawall.lab import LabInfo
from seawall.model import AwsSite, Network, NicMapping, RecoveryMode, StaticIP
from seawall.model.ipplan import plan_nic
from seawall.sites.aws import common as aws_common
from seawall.sites.aws import ebs as aws_ebs
from seawall.sites.aws import ebs_blocks
from seawall.sites.aws import target as aws
from tests.integration.test_target_vsphere import ship_lab_disk

pytestmark = pytest.mark.lab


def _clients(lab: LabInfo) -> tuple[Any, Any]:
    kw: dict[str, Any] = {
        "endpoint_url": lab.aws.endpoint_url,
        "region_name": lab.aws.region,
        "aws_access_key_id": lab.aws.access_key_id,
        "aws_secret_access_key": lab.aws.secret_access_key,
    }
    session = boto3.session.Session()
    return session.client("ebs", **kw), session.client("ec2", **kw)


def _read_snapshot(ebs: Any, snapshot_id: str, size: int) -> bytes:
    """The whole disk as the snapshot holds it: listed blocks, zeros elsewhere."""
    blocks = list(aws_ebs._list_blocks(ebs, snapshot_id))
    block_size = int(ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["BlockSize"])
    image = bytearray(-(-size // block_size) * block_size)

    def get(item: tuple[int, str]) -> None:
        index, token = item
        answer = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockToken=token)
        data = answer["BlockData"].read()
        assert answer["Checksum"] == ebs_blocks.block_checksum(data)
        image[index * block_size : index * block_size + len(data)] = data

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, blocks))
    return bytes(image[:size])


def _tagged(ec2: Any, run: str) -> dict[str, list[str]]:
    run_filter = [{"Name": "tag:seawall:run", "Values": [run]}]
    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=run_filter)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {
        "instances": instances,
        "images": [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=run_filter)["Images"]],
        "snapshots": [
            s["SnapshotId"]
            for s in ec2.describe_snapshots(OwnerIds=["self"], Filters=run_filter)["Snapshots"]
        ],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=run_filter)["Volumes"]],
    }


def test_recover_a_point_into_aws(lab: LabInfo, tmp_path: Path) -> None:
    source_vm = "app-01"
    point = ship_lab_disk(lab, source_vm, tmp_path / "store")
    ebs, ec2 = _clients(lab)
    run = f"t{uuid.uuid4().hex[:8]}"
    tags = aws_common.ResourceTags(plan="erp-aws", run=run, vm=source_vm)
    # moto keeps a terminated instance's address taken for good, and other runs share the subnet:
    # take an address no instance there ever had.
    subnet_cidr = IPv4Network(lab.aws.subnet_cidrs["aws-app"])
    taken = {
        i.get("PrivateIpAddress")
        for r in ec2.describe_instances(
            Filters=[{"Name": "subnet-id", "Values": [lab.aws.subnets["aws-app"]]}]
        )["Reservations"]
        for i in r["Instances"]
    }
    hosts = list(subnet_cidr.hosts())[10:-1]
    start = int(run[1:], 16) % len(hosts)
    address = next(str(ip) for ip in hosts[start:] + hosts[:start] if str(ip) not in taken)
    site = AwsSite(
        name="aws",
        region=lab.aws.region,
        endpoint_url=lab.aws.endpoint_url,
        networks=[Network(name="aws-app", cidr=IPv4Network(lab.aws.subnet_cidrs["aws-app"]))],
    )
    nic = plan_nic(
        NicMapping(
            source_network="prod-app", target_network="aws-app", ip=StaticIP.model_validate({"ip": address})
        ),
        site,
        RecoveryMode.UNPLANNED,
    )
    assert nic.ip is not None

    def restore(writer: ebs_blocks.Writer) -> object:
        return point.repo.restore_disk(point.vm, point.point_id, point.disk, writer)

    def recover() -> tuple[aws_ebs.EbsSnapshot, str, aws.InstanceInfo]:
        snapshot = aws_ebs.write_ebs_snapshot(
            ebs,
            ec2,
            size=point.size,
            restore=restore,
            tags=tags,
            key=f"{run}/{source_vm}/disk0/{point.point_id}",
        )
        image = aws.register_image(
            ec2,
            name=f"seawall-{run}-{source_vm}",
            snapshots=[snapshot],
            tags=tags,
            key=f"{run}/{source_vm}/ami",
        )
        instance = aws.run_instance(
            ec2,
            image_id=image,
            subnet_id=aws.find_subnet(ec2, nic.backing, vpc_id=lab.aws.vpc_id),
            private_ip=str(nic.ip),
            instance_type="t3.medium",
            tags=tags,
            key=f"{run}/{source_vm}/instance",
            name=source_vm,
        )
        return snapshot, image, instance

    try:
        snapshot, image, instance = recover()
        # The lab's moto answers 64 KiB blocks (seawall/lab/moto_server.py); AWS answers 512 KiB.
        assert not snapshot.reused and snapshot.block_size == 64 * 1024
        non_zero = sum(
            1
            for i in range(0, point.size, snapshot.block_size)
            if any(point.source[i : i + snapshot.block_size])
        )
        assert snapshot.blocks_written == non_zero < point.size // snapshot.block_size
        assert snapshot.blocks_checked >= 2
        assert _read_snapshot(ebs, snapshot.snapshot_id, point.size) == point.source

        running = aws.wait_running(ec2, instance.instance_id, timeout=60)
        assert running.private_ip == str(nic.ip)
        assert running.subnet_id == lab.aws.subnets["aws-app"]
        assert running.instance_type == "t3.medium" and running.image_id == image
        assert {k: v for k, v in running.tags.items() if k != "seawall:key"} == {
            "Name": source_vm,
            "seawall:plan": "erp-aws",
            "seawall:run": run,
            "seawall:vm": source_vm,
        }

        # A retried activity finds what the first attempt made.
        snapshot2, image2, instance2 = recover()
        assert snapshot2.reused and snapshot2.snapshot_id == snapshot.snapshot_id
        assert snapshot2.blocks_written == snapshot.blocks_written
        assert (image2, instance2.instance_id) == (image, instance.instance_id)
        # Another VM planned onto the same address is refused before anything is launched.
        with pytest.raises(aws_common.AwsError, match=f"{address} in .* is taken by {instance.instance_id}"):
            aws.run_instance(
                ec2,
                image_id=image,
                subnet_id=lab.aws.subnets["aws-app"],
                private_ip=address,
                instance_type="t3.micro",
                tags=tags,
                key=f"{run}/other-vm/instance",
            )
        made = _tagged(ec2, run)
        assert made["instances"] == [instance.instance_id]
        assert made["images"] == [image]
        assert made["snapshots"] == [snapshot.snapshot_id]
    finally:
        cleaned = aws.terminate_run(ec2, run, timeout=60)
    assert instance.instance_id in cleaned.instances and image in cleaned.images
    assert snapshot.snapshot_id in cleaned.snapshots
    assert aws.terminate_run(ec2, run, timeout=60).empty, "a second cleanup finds nothing"
    assert _tagged(ec2, run) == {"instances": [], "images": [], "snapshots": [], "volumes": []}


def test_a_failed_restore_never_completes_the_snapshot(lab: LabInfo) -> None:
    ebs, ec2 = _clients(lab)
    run = f"t{uuid.uuid4().hex[:8]}"
    tags = aws_common.ResourceTags(plan="p", run=run, vm="v")
    size = 1024 * 1024
    data = bytes(range(256)) * (size // 256)

    def broken(writer: ebs_blocks.Writer) -> object:
        writer(0, data[:65536])
        raise RuntimeError("digest mismatch")

    def whole(writer: ebs_blocks.Writer) -> object:
        for off in range(0, size, 65536):
            writer(off, data[off : off + 65536])
        return None

    key = f"{run}/v/disk0"
    try:
        with pytest.raises(RuntimeError, match="digest mismatch"):
            aws_ebs.write_ebs_snapshot(ebs, ec2, size=size, restore=broken, tags=tags, key=key)
        attempts = ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:seawall:key", "Values": [key]}]
        )["Snapshots"]
        assert len(attempts) == 1
        assert "seawall:verified-blocks" not in {t["Key"] for t in attempts[0]["Tags"]}
        # The retry does not trust the unverified attempt (moto even calls it "completed").
        snap = aws_ebs.write_ebs_snapshot(ebs, ec2, size=size, restore=whole, tags=tags, key=key)
        assert not snap.reused
        assert _read_snapshot(ebs, snap.snapshot_id, size) == data
        now = ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:seawall:key", "Values": [key]}]
        )
        assert [s["SnapshotId"] for s in now["Snapshots"]] == [snap.snapshot_id]
        again = aws_ebs.write_ebs_snapshot(ebs, ec2, size=size, restore=broken, tags=tags, key=key)
        assert again.reused and again.snapshot_id == snap.snapshot_id, (
            "a verified snapshot is never rewritten"
        )
    finally:
        aws.terminate_run(ec2, run, timeout=60)
    assert _tagged(ec2, run) == {"instances": [], "images": [], "snapshots": [], "volumes": []}
