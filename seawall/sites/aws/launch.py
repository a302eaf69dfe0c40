"""How a recovered VM is launched on AWS: every NIC in its subnet and security groups, the boot mode
of the source's firmware, volumes of the placement's EBS type encrypted with its KMS key, and the
source's tags.

Pure mapping (``boot_mode``, ``source_tags``, ``block_devices``) plus the look-ups that turn names
into ids (``network_interfaces``: subnet by its Name tag, security group by name or id in the
subnet's VPC). All NICs go in ``run_instances``' ``NetworkInterfaces`` (device index = NIC order),
so an instance never starts with fewer NICs than the plan maps; AWS requires them in one AZ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seawall.model.ipplan import NicPlan
from seawall.model.placement import Placement
from seawall.model.sourceconfig import MachineConfig
from seawall.sites.aws.common import AwsError, call

DEFAULT_VOLUME_TYPE = "gp3"
_BOOT = {"efi": "uefi", "bios": "legacy-bios"}
_RESERVED = ("aws:", "seawall:")


def boot_mode(machine: MachineConfig | None) -> str | None:
    """``uefi`` for an EFI source, ``legacy-bios`` for a BIOS one; None: the AMI's default."""
    if machine is None or machine.firmware is None:
        return None
    return _BOOT[machine.firmware]


def source_tags(machine: MachineConfig | None) -> dict[str, str]:
    """The source's tags as AWS tags (keys <= 128, values <= 256; reserved prefixes left out)."""
    if machine is None:
        return {}
    out = {}
    for key, value in machine.tags.items():
        if not key or key.lower().startswith(_RESERVED) or key == "Name":
            continue
        out[key[:128]] = value[:256]
    return out


def block_devices(snapshots: Sequence[dict[str, Any]], placement: Placement | None) -> list[dict[str, Any]]:
    """Launch-time mappings of the image's snapshots: the volume type, and encryption with the key."""
    volume_type = placement.volume_type if placement and placement.volume_type else DEFAULT_VOLUME_TYPE
    kms_key = placement.kms_key if placement else None
    out = []
    for snap in snapshots:
        ebs: dict[str, Any] = {
            "SnapshotId": snap["snapshot_id"],
            "VolumeSize": int(snap["size_gib"]),
            "VolumeType": volume_type,
            "DeleteOnTermination": True,
        }
        if kms_key:
            ebs["Encrypted"] = True
            ebs["KmsKeyId"] = kms_key
        out.append({"DeviceName": snap["device"], "Ebs": ebs})
    return out


def _subnet(ec2: Any, name: str) -> dict[str, Any]:
    subnets = call(
        "describe_subnets", lambda: ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [name]}])
    ).get("Subnets", [])
    if len(subnets) != 1:
        raise AwsError(f"{len(subnets)} subnets are tagged Name={name}; expected exactly one")
    return dict(subnets[0])


def security_group_ids(ec2: Any, groups: Sequence[str], vpc_id: str) -> list[str]:
    """Ids of ``groups`` (names or sg- ids) in ``vpc_id``; AwsError naming a group that is not there."""
    out = []
    for group in groups:
        field = "group-id" if group.startswith("sg-") else "group-name"
        filters = [{"Name": field, "Values": [group]}, {"Name": "vpc-id", "Values": [vpc_id]}]

        def describe(filters: list[dict[str, Any]] = filters) -> Any:
            return ec2.describe_security_groups(Filters=filters)

        found = call("describe_security_groups", describe).get("SecurityGroups", [])
        if len(found) != 1:
            raise AwsError(f"security group {group!r}: {len(found)} found in {vpc_id}; expected one")
        out.append(str(found[0]["GroupId"]))
    return out


def network_interfaces(ec2: Any, nics: Sequence[NicPlan]) -> list[dict[str, Any]]:
    """``run_instances``' NetworkInterfaces: one per NIC, in order, in its subnet and groups."""
    out = []
    for index, nic in enumerate(nics):
        subnet = _subnet(ec2, nic.backing)
        spec: dict[str, Any] = {"DeviceIndex": index, "SubnetId": str(subnet["SubnetId"])}
        if nic.ip is not None:
            spec["PrivateIpAddress"] = str(nic.ip)
        if nic.security_groups:
            spec["Groups"] = security_group_ids(ec2, nic.security_groups, str(subnet["VpcId"]))
        out.append(spec)
    return out


def placement_problems(ec2: Any, kms: Any, placement: Placement) -> list[tuple[str, str]]:
    """The placement's names the region does not have (for ``seawall plan check``)."""
    problems = []
    if placement.kms_key:
        try:
            meta = kms.describe_key(KeyId=placement.kms_key)["KeyMetadata"]
            if meta.get("KeyState") not in (None, "Enabled"):
                problems.append(("kms_key", f"KMS key {placement.kms_key!r} is {meta.get('KeyState')}"))
        except Exception as exc:  # NotFoundException and friends: the key is not usable
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            problems.append(("kms_key", f"KMS key {placement.kms_key!r} does not exist here ({code})"))
    return problems
