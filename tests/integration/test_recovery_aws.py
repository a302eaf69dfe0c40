"""Unplanned failover of the example ERP plan to AWS (moto): fencing, gate, EBS, instances, Route53."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import boto3
import yaml
from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import (
    ApproveInput,
    FailoverInput,
    ProtectInput,
    ProtectResult,
    RunReport,
    UnprotectInput,
)
from seawall.lab import LabInfo
from seawall.sites.aws.target import terminate_run
from seawall.sites.vsphere.client import VSphereConnection
from tests.integration.replication_env import EXAMPLES, replication_env
from tests.integration.test_recovery import VMS, free_offset, stand_ins, wait_progress

PLAN = "erp-aws"


def write_plan(tmp: Path, inventory: Path, base: int) -> dict[str, str]:
    """The example plan with this run's own addresses (moto keeps a terminated instance's address for
    the life of its process) and the lab adjustments of test_recovery.write_plan. Returns vm -> IP."""
    plan = yaml.safe_load((EXAMPLES / "erp-aws.yaml").read_text())
    plan["inventory"] = str(inventory)
    subnets = {"aws-db": "10.3.3", "aws-app": "10.3.2", "aws-web": "10.3.1"}
    ips: dict[str, str] = {}
    counter = 0
    for group in plan["groups"]:
        if group.get("boot_delay"):
            group["boot_delay"] = "2s"
        for index, vm in enumerate(group["vms"]):
            for nic in vm["nics"]:
                ip = f"{subnets[nic['target_network']]}.{base + index}"
                nic["ip"] = {"kind": "static", "ip": ip}
                nic["test_ip"] = {"kind": "static", "ip": f"10.3.100.{base + counter}"}
                counter += 1
                ips[vm["name"]] = ip
            for check in vm.get("health_checks", []):
                check["timeout"] = "1m"
                if check.get("scheme") == "https":
                    check["scheme"] = "http"
    folder = tmp / "plans"
    folder.mkdir(exist_ok=True)
    (folder / f"{PLAN}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return ips


def set_primary_power(lab: LabInfo, on: bool) -> dict[str, str]:
    site = lab.vsphere["primary"]
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        states = {}
        for vm in VMS:
            obj = conn.find_vm(vm)
            states[vm] = conn.power_state(obj)
            if on:
                conn.power_on(obj)
        return states


def primary_power_states(lab: LabInfo) -> dict[str, str]:
    site = lab.vsphere["primary"]
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        return {vm: conn.power_state(conn.find_vm(vm)) for vm in VMS}


def aws(lab: LabInfo, service: str) -> Any:
    session = boto3.session.Session()
    return session.client(  # type: ignore[call-overload]
        service,
        endpoint_url=lab.s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def clear_zone(lab: LabInfo) -> None:
    """Remove every record but the zone's own (SOA, NS) from the lab's Route53 zone.

    A real failover that is never failed back leaves its records (and their sidecars) behind, as it
    must in production; in the lab the next test would inherit them as its "before"."""
    r53 = aws(lab, "route53")
    zone = next(z["Id"] for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "corp.example.com.")
    changes = [
        {"Action": "DELETE", "ResourceRecordSet": r}
        for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        if r["Type"] not in ("SOA", "NS")
    ]
    if changes:
        r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})


async def test_unplanned_failover_to_aws_fences_boots_and_moves_dns(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    base = random.Random().randrange(20, 200)
    overrides = {
        "plans_dir": tmp_path / "plans",
        "reports_dir": tmp_path / "reports",
        "health_check_redirect": "127.0.0.1",
        "health_check_port_offset": free_offset(),
    }
    report: RunReport | None = None
    try:
        async with replication_env(
            lab, tmp_path, lab_state_dir, sites=("primary", "aws"), settings_overrides=overrides
        ) as env:
            ips = write_plan(tmp_path, env.settings.inventory, base)
            queue = env.settings.orchestration_queue
            await asyncio.gather(
                *(
                    env.client.execute_workflow(
                        "ProtectVM",
                        ProtectInput(vm=vm),
                        id=f"protect/{vm}",
                        task_queue=queue,
                        result_type=ProtectResult,
                    )
                    for vm in VMS
                )
            )
            with stand_ins(env.settings.health_check_port_offset):
                handle = await env.client.start_workflow(
                    "RecoveryPlan",
                    FailoverInput(plan=PLAN, mode="unplanned"),
                    id=f"recover/{PLAN}",
                    task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    result_type=RunReport,
                )
                await wait_progress(handle, lambda p: p["pending_gate"] == "confirm-region")
                # Fencing came first: the sources are off before anything boots at the target.
                assert set(set_primary_power(lab, on=False).values()) == {"poweredOff"}
                await handle.execute_update("approve", ApproveInput(gate="confirm-region", by="carol"))
                report = await asyncio.wait_for(handle.result(), timeout=300)
            for vm in VMS:
                sched = await env.client.get_schedule_handle(f"replicate/{vm}").describe()
                assert sched.schedule.state.paused, (
                    f"{vm}'s replication must pause while its source is fenced"
                )
            for vm in VMS:
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )

        assert report is not None
        assert report.status == "completed", report.failed_vms
        assert [v.vm for v in report.vms] == VMS
        assert all(f.endswith("powered off at primary") for f in report.fencing), report.fencing
        ec2, r53 = aws(lab, "ec2"), aws(lab, "route53")
        for v in report.vms:
            [reservation] = ec2.describe_instances(InstanceIds=[v.target_name])["Reservations"]
            [instance] = reservation["Instances"]
            assert instance["State"]["Name"] == "running"
            assert instance["PrivateIpAddress"] == ips[v.vm]
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            assert report.run in tags.values() and v.vm in tags.values()
        zone = next(
            z["Id"] for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "corp.example.com."
        )
        records = {
            (r["Name"].rstrip("."), r["Type"]): [x["Value"] for x in r.get("ResourceRecords", [])]
            for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        }
        assert records[("db.corp.example.com", "A")] == [ips["db-01"]]
        assert records[("app-01.corp.example.com", "A")] == [ips["app-01"]]
        assert [v.rstrip(".") for v in records[("erp.corp.example.com", "CNAME")]] == [
            "web-01.corp.example.com"
        ]
        db = next(v for v in report.vms if v.vm == "db-01")
        assert [d.name for d in db.dns] == ["db.corp.example.com"]
    finally:
        set_primary_power(lab, on=True)
        if report is not None:
            terminate_run(aws(lab, "ec2"), report.run)
        clear_zone(lab)
