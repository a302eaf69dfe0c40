"""An AWS region as a recovery target: EBS snapshots and an AMI per point, an instance per VM.

AWS is no replication source (nothing to snapshot from outside the guest), and an instance is not
fenced by Seawall: those verbs give ``BaseAdapter``'s refusals. The boto3 session is made once per
adapter (a worker's lifetime) from the site's credentials; clients are cheap and made per call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar

from seawall.contract.messages import Resource, TargetVM
from seawall.model import AwsSite, Placement
from seawall.model.ipplan import NicPlan
from seawall.sites.base import BaseAdapter, Heartbeat, PointReader, RunLabels, SiteError, VMShape


class AwsAdapter(BaseAdapter):
    kind: ClassVar[str] = "aws"
    site: AwsSite

    @cached_property
    def _session(self) -> Any:
        import boto3

        creds = self.credentials(())
        return boto3.session.Session(
            aws_access_key_id=creds.get("aws_access_key_id"),
            aws_secret_access_key=creds.get("aws_secret_access_key"),
            aws_session_token=creds.get("aws_session_token"),
            region_name=self.site.region,
        )

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` in the site's region (and at its endpoint, e.g. moto)."""
        return self._session.client(service, endpoint_url=self.site.endpoint_url)

    def probe(self) -> str:
        ec2 = self.client("ec2")
        zones = ec2.describe_availability_zones()["AvailabilityZones"]
        return f"region {ec2.meta.region_name}: {len(zones)} availability zones"

    # ---- target ----------------------------------------------------------------------------------

    def materialize(
        self, name: str, labels: RunLabels, reader: PointReader, heartbeat: Heartbeat
    ) -> tuple[list[dict[str, Any]], list[Resource]]:
        from seawall.sites.aws.common import ResourceTags
        from seawall.sites.aws.ebs import write_ebs_snapshot
        from seawall.sites.aws.launch import boot_mode
        from seawall.sites.aws.target import register_image

        site = self.site
        ebs, ec2 = self.client("ebs"), self.client("ec2")
        tags = ResourceTags(plan=labels.plan, run=labels.run, vm=labels.vm)
        resources: list[Resource] = []
        snapshots = []
        config = reader.source_config()
        for dm in reader.disks():
            snap = write_ebs_snapshot(
                ebs,
                ec2,
                size=dm.size,
                restore=reader.restorer(dm.disk),
                tags=tags,
                key=f"{labels.run}/{labels.vm}/{dm.disk}",
                on_progress=reader.progress(dm.disk),
            )
            snapshots.append(snap)
            resources.append(Resource(kind="ebs-snapshot", id=snap.snapshot_id, site=site.name))
        mode = boot_mode(config.machine if config is not None else None)
        image = register_image(
            ec2,
            name=name,
            snapshots=snapshots,
            tags=tags,
            key=f"{labels.run}/{labels.vm}/image",
            boot_mode=mode,
        )
        resources.append(Resource(kind="image", id=image, site=site.name))
        devices = [
            {
                "device": f"/dev/xvd{chr(ord('a') + i)}",
                "snapshot_id": s.snapshot_id,
                "size_gib": s.volume_size_gib,
            }
            for i, s in enumerate(snapshots)
        ]
        return [{"image_id": image, "snapshots": devices, "boot_mode": mode}], resources

    def create_vm(
        self, name: str, labels: RunLabels, shape: VMShape, nics: list[NicPlan], disks: list[str]
    ) -> TargetVM:
        from seawall.sites.aws.common import AwsError, ResourceTags
        from seawall.sites.aws.launch import block_devices, network_interfaces, source_tags
        from seawall.sites.aws.target import (
            choose_instance_type,
            find_subnet,
            run_instance,
            wait_running,
        )

        ips = [str(n.ip) for n in nics if n.ip is not None]
        ec2 = self.client("ec2")
        made = json.loads(disks[0])
        if not nics:
            raise SiteError(f"{labels.vm}: an AWS target needs a NIC mapping to a subnet", "PlanInvalid")
        machine = shape.source.machine if shape.source is not None else None
        notes = []
        if machine is not None and len(machine.nics) != len(nics):
            notes.append(f"the plan maps {len(nics)} NICs; the source had {len(machine.nics)}")
        try:
            interfaces = network_interfaces(ec2, nics)
        except AwsError as exc:
            raise SiteError(self.redact(f"{labels.vm}: {exc}"), "PlanInvalid") from None
        first = nics[0]
        info = run_instance(
            ec2,
            image_id=made["image_id"],
            subnet_id=find_subnet(ec2, first.backing),
            private_ip=str(first.ip) if first.ip is not None else None,
            instance_type=shape.instance_type or choose_instance_type(shape.cpus, shape.memory_mib),
            tags=ResourceTags(plan=labels.plan, run=labels.run, vm=labels.vm),
            key=f"{labels.run}/{labels.vm}/instance",
            name=name,
            network_interfaces=interfaces,
            block_devices=block_devices(made.get("snapshots", []), labels.placement),
            instance_tags=source_tags(machine),
        )
        info = wait_running(ec2, info.instance_id)
        return TargetVM(
            name=info.instance_id,
            ips=ips or ([info.private_ip] if info.private_ip else []),
            resources=[Resource(kind="instance", id=info.instance_id, site=self.site.name)],
            notes=notes,
        )

    def placement_problems(self, placement: Placement) -> list[tuple[str, str]]:
        from seawall.sites.aws.launch import placement_problems

        return placement_problems(self.client("ec2"), self.client("kms"), placement)

    def guest_ips(self, name: str) -> list[str]:
        from seawall.sites.aws.target import wait_running

        info = wait_running(self.client("ec2"), name, timeout=30)
        return [info.private_ip] if info.private_ip else []

    def cleanup_run(
        self, run: str, folders: Callable[[], list[str]], heartbeat: Heartbeat, previous: list[str]
    ) -> list[Resource]:
        # Everything of a run carries its tag, the image's snapshots and placeholder volumes too:
        # ``folders`` (vSphere's datastore directories) has no meaning here.
        from seawall.sites.aws.target import terminate_run

        site = self.site.name
        result = terminate_run(self.client("ec2"), run)
        return [
            *(Resource(kind="instance", id=i, site=site) for i in result.instances),
            *(Resource(kind="image", id=i, site=site) for i in result.images),
            *(Resource(kind="ebs-snapshot", id=i, site=site) for i in result.snapshots),
            *(Resource(kind="volume", id=i, site=site) for i in result.volumes),
        ]
