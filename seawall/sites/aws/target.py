"""Recover a VM into AWS: its disks become EBS snapshots (EBS direct API), then an AMI, then an instance.

Plain boto3, blocking, called from activity threads. Every resource is tagged with the plan, run and
source VM (``seawall:plan``/``seawall:run``/``seawall:vm``) plus ``seawall:key``, a deterministic
identity of that one resource; a retried call looks the key up first and finds what an earlier
attempt made, so it never makes a second one. ``terminate_run`` removes everything tagged with a run.

Disk upload: ``start_snapshot`` (VolumeSize in GiB), ``put_snapshot_block`` for each *non-zero*
block with its SHA-256 (base64, ``ChecksumAlgorithm='SHA256'``), ``complete_snapshot`` with the
count, then a deterministic sample of blocks is read back (``get_snapshot_block``) and compared. The
block size is whatever ``start_snapshot`` answers (AWS: 512 KiB; moto: 512 B; the lab's: 64 KiB):
the restore's writes (64 KiB blocks, zero runs skipped) are regrouped into blocks of that size by
``BlockGrouper``.
Nothing reads ``list_changed_blocks`` (moto's answer is not trustworthy). ``import_snapshot`` is not
used (moto does not implement it, and it needs an S3 staging copy of the whole disk).

Observed on moto 5.2 (the lab), which the code tolerates:

- ``start_snapshot`` ignores ``ClientToken`` (a repeat makes a second snapshot), EC2 shows the
  snapshot ``completed`` from the start (before any block or ``complete_snapshot``), and it creates a
  placeholder EC2 volume for each snapshot; lookups by tag give the idempotency, and the placeholder
  volume is tagged with the run so cleanup removes it too (on AWS the snapshot names vol-ffffffff).
- ``put_snapshot_block`` accepts a wrong checksum: the read-back sample is what verifies the data.
- ``register_image`` ignores the block device mappings and ``TagSpecifications`` (the AMI gets a
  fake 15 GiB root snapshot) and allows duplicate names: tags are added by ``create_tags`` after.
- ``run_instances`` ignores ``ClientToken`` and a ``client-token`` filter makes the server fail;
  instances are found by tag instead.
- A terminated instance keeps its private IP taken (moto frees it only when the object is garbage
  collected, and terminated instances stay listed): a planned address can be used once per moto
  process, and asking again answers an HTML 500 page (botocore ``ResponseParserError``), which is
  reported as ``AwsError``. AWS frees the address on termination.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from seawall.sites.aws.common import (
    TAG_KEY,
    TAG_RUN,
    AwsError,
    ResourceTags,
    SuppressNotFound,
    call,
    client_token,
)
from seawall.sites.aws.ebs import EbsSnapshot

__all__ = [
    "CleanupResult",
    "InstanceInfo",
    "choose_instance_type",
    "find_subnet",
    "register_image",
    "run_instance",
    "terminate_run",
    "wait_running",
]

log = logging.getLogger(__name__)

LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def register_image(
    ec2: Any,
    *,
    name: str,
    snapshots: list[EbsSnapshot],
    tags: ResourceTags,
    key: str,
    architecture: str = "x86_64",
    boot_mode: str | None = None,
) -> str:
    """An AMI over ``snapshots`` (the first is the root disk, /dev/xvda; then xvdb, ...); its id.

    Idempotent by ``name`` (AWS keeps AMI names unique per account and region) and by the key tag.
    """
    if not snapshots:
        raise ValueError("an image needs at least a root snapshot")
    found = call(
        "describe_images",
        lambda: ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]),
    ).get("Images", [])
    found = [i for i in found if i.get("State") not in ("deregistered", "failed")]
    if found:
        image_id = str(found[0]["ImageId"])
    else:
        mappings = [
            {
                "DeviceName": f"/dev/xvd{chr(ord('a') + i)}",
                "Ebs": {
                    "SnapshotId": s.snapshot_id,
                    "VolumeSize": s.volume_size_gib,
                    "DeleteOnTermination": True,
                    "VolumeType": "gp3",
                },
            }
            for i, s in enumerate(snapshots)
        ]
        extra: dict[str, Any] = {"BootMode": boot_mode} if boot_mode else {}
        answer = call(
            "register_image",
            lambda: ec2.register_image(
                Name=name,
                Description=f"seawall {tags.run} {tags.vm}",
                Architecture=architecture,
                RootDeviceName="/dev/xvda",
                VirtualizationType="hvm",
                EnaSupport=True,
                BlockDeviceMappings=mappings,
                TagSpecifications=[{"ResourceType": "image", "Tags": tags.tags(key=key, name=name)}],
                **extra,
            ),
        )
        image_id = str(answer["ImageId"])
    # Again by create_tags: an endpoint may ignore TagSpecifications (moto does), and cleanup finds
    # images by tag.
    call("create_tags", lambda: ec2.create_tags(Resources=[image_id], Tags=tags.tags(key=key, name=name)))
    return image_id


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    state: str
    private_ip: str | None
    subnet_id: str | None
    instance_type: str
    image_id: str
    tags: dict[str, str]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> InstanceInfo:
        return cls(
            instance_id=str(raw["InstanceId"]),
            state=str(raw.get("State", {}).get("Name", "unknown")),
            private_ip=raw.get("PrivateIpAddress"),
            subnet_id=raw.get("SubnetId"),
            instance_type=str(raw.get("InstanceType", "")),
            image_id=str(raw.get("ImageId", "")),
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        )


def find_subnet(ec2: Any, name: str, vpc_id: str | None = None) -> str:
    """The id of the one subnet tagged ``Name=name`` (in ``vpc_id`` if given)."""
    filters = [{"Name": "tag:Name", "Values": [name]}]
    if vpc_id is not None:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    subnets = call("describe_subnets", lambda: ec2.describe_subnets(Filters=filters)).get("Subnets", [])
    if len(subnets) != 1:
        raise AwsError(f"{len(subnets)} subnets are tagged Name={name}; expected exactly one")
    return str(subnets[0]["SubnetId"])


def _describe_instances(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Filters": filters}
    while True:
        answer = call("describe_instances", lambda: ec2.describe_instances(**kwargs))
        for reservation in answer.get("Reservations", []):
            out.extend(reservation.get("Instances", []))
        token = answer.get("NextToken")
        if not token:
            return out
        kwargs["NextToken"] = token


def run_instance(
    ec2: Any,
    *,
    image_id: str,
    subnet_id: str,
    private_ip: str | None,
    instance_type: str,
    tags: ResourceTags,
    key: str,
    name: str | None = None,
    security_group_ids: list[str] | None = None,
    network_interfaces: list[dict[str, Any]] | None = None,
    block_devices: list[dict[str, Any]] | None = None,
    instance_tags: dict[str, str] | None = None,
) -> InstanceInfo:
    """Launch one instance (idempotent by ``key``: a live instance with that tag is returned).

    ``network_interfaces`` (every NIC, each in its subnet and groups) replaces ``subnet_id``,
    ``private_ip`` and ``security_group_ids``, which then only name the first NIC for the checks.
    ``instance_tags``: more tags for the instance (the source's), never over Seawall's own.
    """
    live = _describe_instances(
        ec2,
        [
            {"Name": f"tag:{TAG_KEY}", "Values": [key]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ],
    )
    if live:
        return InstanceInfo.of(live[0])
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(key),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": _merged(tags.tags(key=key, name=name), instance_tags)},
            {"ResourceType": "volume", "Tags": tags.tags(key=key + "/volume", name=name)},
        ],
    }
    if network_interfaces:
        params["NetworkInterfaces"] = network_interfaces
    else:
        params["SubnetId"] = subnet_id
    if block_devices:
        params["BlockDeviceMappings"] = block_devices
    if private_ip is not None:
        if not network_interfaces:
            params["PrivateIpAddress"] = private_ip
        holders = _describe_instances(
            ec2,
            [
                {"Name": "subnet-id", "Values": [subnet_id]},
                {"Name": "private-ip-address", "Values": [private_ip]},
                {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
            ],
        )
        if holders:
            raise AwsError(
                f"{private_ip} in {subnet_id} is taken by {holders[0]['InstanceId']}, "
                "not by this run's instance"
            )
    if security_group_ids and not network_interfaces:
        params["SecurityGroupIds"] = security_group_ids
    answer = call("run_instances", lambda: ec2.run_instances(**params))
    instance = InstanceInfo.of(answer["Instances"][0])
    if private_ip is not None and instance.private_ip != private_ip:
        raise AwsError(f"instance {instance.instance_id} got {instance.private_ip}, not {private_ip}")
    return instance


def _merged(own: list[dict[str, str]], extra: dict[str, str] | None) -> list[dict[str, str]]:
    keys = {t["Key"] for t in own}
    return own + [{"Key": k, "Value": v} for k, v in sorted((extra or {}).items()) if k not in keys]


def wait_running(
    ec2: Any, instance_id: str, *, timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep
) -> InstanceInfo:
    deadline = time.monotonic() + timeout
    delay = 1.0
    while True:
        found = _describe_instances(ec2, [{"Name": "instance-id", "Values": [instance_id]}])
        if not found:
            raise AwsError(f"instance {instance_id} does not exist")
        info = InstanceInfo.of(found[0])
        if info.state == "running":
            return info
        if info.state in ("shutting-down", "terminated", "stopping", "stopped"):
            raise AwsError(f"instance {instance_id} is {info.state}, not starting")
        if time.monotonic() > deadline:
            raise AwsError(f"instance {instance_id} still {info.state} after {timeout:.0f}s")
        sleep(delay)
        delay = min(delay * 2, 10.0)


@dataclass
class CleanupResult:
    instances: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.instances or self.images or self.snapshots or self.volumes)


def terminate_run(
    ec2: Any, run_id: str, *, timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep
) -> CleanupResult:
    """Delete everything tagged ``seawall:run=run_id``: instances, then AMIs, snapshots, volumes.

    Idempotent (a second call finds nothing). Order matters on AWS: an AMI must go before its
    snapshots, and an instance's volumes are only free once it is terminated.
    """
    run_filter = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    result = CleanupResult()
    instances = _describe_instances(
        ec2, [*run_filter, {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]}]
    )
    ids = [str(i["InstanceId"]) for i in instances]
    if ids:
        call("terminate_instances", lambda: ec2.terminate_instances(InstanceIds=ids))
        result.instances = ids
        deadline = time.monotonic() + timeout
        while True:
            left = [
                i
                for i in _describe_instances(ec2, [{"Name": "instance-id", "Values": ids}])
                if i.get("State", {}).get("Name") != "terminated"
            ]
            if not left:
                break
            if time.monotonic() > deadline:
                raise AwsError(f"instances {', '.join(i['InstanceId'] for i in left)} not terminated")
            sleep(2.0)
    images = call("describe_images", lambda: ec2.describe_images(Owners=["self"], Filters=run_filter))
    for image in images.get("Images", []):
        with SuppressNotFound():
            ec2.deregister_image(ImageId=image["ImageId"])
            result.images.append(str(image["ImageId"]))
    snaps = call("describe_snapshots", lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=run_filter))
    for snap in snaps.get("Snapshots", []):
        with SuppressNotFound():
            ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
            result.snapshots.append(str(snap["SnapshotId"]))
    volumes = call("describe_volumes", lambda: ec2.describe_volumes(Filters=run_filter))
    for volume in volumes.get("Volumes", []):
        if volume.get("State") in ("available", "error"):
            with SuppressNotFound():
                ec2.delete_volume(VolumeId=volume["VolumeId"])
                result.volumes.append(str(volume["VolumeId"]))
    return result


# (vCPUs, MiB) of general-purpose and memory-optimised sizes, smallest first per family.
_INSTANCE_TYPES: list[tuple[str, int, int]] = [
    ("t3.micro", 2, 1024),
    ("t3.small", 2, 2048),
    ("t3.medium", 2, 4096),
    ("m6i.large", 2, 8192),
    ("r6i.large", 2, 16384),
    ("m6i.xlarge", 4, 16384),
    ("r6i.xlarge", 4, 32768),
    ("m6i.2xlarge", 8, 32768),
    ("r6i.2xlarge", 8, 65536),
    ("m6i.4xlarge", 16, 65536),
    ("r6i.4xlarge", 16, 131072),
    ("m6i.8xlarge", 32, 131072),
    ("r6i.8xlarge", 32, 262144),
    ("m6i.16xlarge", 64, 262144),
    ("r6i.16xlarge", 64, 524288),
    ("m6i.32xlarge", 128, 524288),
    ("r6i.32xlarge", 128, 1048576),
]


def choose_instance_type(cpus: int, memory_mib: int) -> str:
    """The smallest listed type with at least ``cpus`` vCPUs and ``memory_mib`` MiB."""
    fits = [t for t in _INSTANCE_TYPES if t[1] >= cpus and t[2] >= memory_mib]
    if not fits:
        raise AwsError(f"no instance type has {cpus} vCPUs and {memory_mib} MiB; give instance_type")
    return min(fits, key=lambda t: (t[2], t[1]))[0]
