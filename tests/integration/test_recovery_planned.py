"""Planned failover to the DR vCenter (sources stopped, a final cycle, zero data loss, DNS moved), then
commit and reprotect: reverse replication ships back only what changed at the DR site."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import (
    ApproveInput,
    CommitOutcome,
    FailoverInput,
    PlanInput,
    PlanRunInput,
    ReprotectOutcome,
    RunReport,
)
from seawall.lab import LabInfo
from seawall.lab.disks import read_disk, restore_disk, write_blocks
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.placement import delete_datastore_path
from seawall.sites.vsphere.target import destroy_vm, find_run_vms
from tests.integration.test_recovery import PLAN, VMS, protected_erp, stand_ins, wait_progress
from tests.integration.test_recovery_aws import aws, clear_zone, set_primary_power
from tests.integration.test_recovery_aws import primary_power_states as primary_power


def dns_records(lab: LabInfo) -> dict[tuple[str, str], list[str]]:
    r53 = aws(lab, "route53")
    zone = next(z["Id"] for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "corp.example.com.")
    return {
        (r["Name"].rstrip("."), r["Type"]): [x["Value"] for x in r.get("ResourceRecords", [])]
        for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    }


def dr_flat_files(lab: LabInfo, vm: str) -> list[Path]:
    folder = Path(lab.vsphere["dr"].datastore_dir) / vm
    return sorted(p for p in folder.glob("*-flat.vmdk"))


async def test_planned_failover_then_reprotect_ships_back_only_dr_changes(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    marker = b"LAST-WRITE-BEFORE-FAILOVER " + os.urandom(16).hex().encode()
    offset = 512 * 1024  # inside the first disk, away from the header
    report: RunReport | None = None
    clear_zone(lab)  # "as before the failover" is judged against a zone no earlier run left records in
    try:
        async with protected_erp(lab, tmp_path, lab_state_dir) as env:
            # The guest's last write lands after the last scheduled cycle: only the final cycle of a
            # planned failover can carry it over.
            write_blocks(lab, "primary", "db-01", offset, marker)
            expected = read_disk(lab, "primary", "db-01")
            records_before = dns_records(lab)
            with stand_ins(env.settings.health_check_port_offset):
                handle = await env.client.start_workflow(
                    "RecoveryPlan",
                    FailoverInput(plan=PLAN, mode="planned"),
                    id=f"recover/{PLAN}",
                    task_queue=env.settings.orchestration_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    result_type=RunReport,
                )
                await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=240)
                await handle.execute_update("approve", ApproveInput(gate="web-go-ahead", by="dave"))
                report = await asyncio.wait_for(handle.result(), timeout=300)
            assert report is not None
            recovered = dr_flat_files(lab, "db-01")[0].read_bytes()  # before the DR side writes on
            records_at_dr = dns_records(lab)
            queue = env.settings.orchestration_queue
            committed = await env.client.execute_workflow(
                "CommitFailover",
                PlanRunInput(plan=PLAN, run=report.run),
                id=f"commit/{PLAN}",
                task_queue=queue,
                result_type=CommitOutcome,
            )
            # Life goes on at the DR site: the guest writes there, then the plan is reprotected.
            rng = random.Random(5)
            dr_disk = dr_flat_files(lab, "db-01")[0]
            changed = 0
            with dr_disk.open("r+b") as f:
                for _ in range(32):
                    f.seek(rng.randrange(dr_disk.stat().st_size // 4096) * 4096)
                    f.write(rng.randbytes(4096))
                    changed += 4096
            reprotected = await env.client.execute_workflow(
                "Reprotect",
                PlanInput(plan=PLAN),
                id=f"reprotect/{PLAN}",
                task_queue=queue,
                result_type=ReprotectOutcome,
            )
            back = {c.vm: c for c in reprotected.cycles}
            reverse_schedule = await env.client.get_schedule_handle("replicate/db-01").describe()
            # More DR-side life, then fail back home: a planned failover the other way, onto the
            # original VMs.
            with dr_disk.open("r+b") as f:
                f.seek(offset)
                f.write(b"WRITTEN-AT-DR-" + marker)
            with stand_ins(env.settings.health_check_port_offset):
                home = await env.client.start_workflow(
                    "RecoveryPlan",
                    FailoverInput(plan=PLAN, mode="planned", direction="failback"),
                    id=f"recover/{PLAN}",
                    task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    result_type=RunReport,
                )
                await wait_progress(home, lambda p: p["pending_gate"] == "web-go-ahead", timeout=240)
                dr_final = dr_flat_files(lab, "db-01")[0].read_bytes()  # the DR copy is fenced by now
                await home.execute_update("approve", ApproveInput(gate="web-go-ahead", by="dave"))
                failback = await asyncio.wait_for(home.result(), timeout=300)
            home_disk = read_disk(lab, "primary", "db-01")

        assert report is not None
        assert report.status == "completed", report.failed_vms
        assert [v.vm for v in report.vms] == VMS
        assert all(n.endswith("powered off at primary") for n in report.fencing), report.fencing
        # Zero data loss: the recovered disk is the source disk as it was when it stopped.
        db = next(v for v in report.vms if v.vm == "db-01")
        assert db.target_name == "db-01"
        assert marker in recovered
        assert recovered[: len(expected)] == expected
        # DNS now points at the DR addresses, and the previous values were recorded for failback.
        assert records_at_dr[("db.corp.example.com", "A")] == ["10.2.3.10"]
        assert [d.name for d in db.dns] == ["db.corp.example.com"]
        # Commit: the old direction's schedules are gone, older points pruned down to the base.
        assert sorted(committed.schedules_deleted) == sorted(VMS)
        # Reprotect: no re-seed. db-01's first reverse cycle built on the point it was recovered from
        # and shipped only what changed at the DR site.
        assert reprotected.from_site == "dr"
        assert back["db-01"].parent == db.point_id
        assert back["db-01"].change_path == "hash-compare"
        print(f"reprotect db-01: shipped {back['db-01'].bytes_shipped} bytes for {changed} changed at DR")
        assert back["db-01"].bytes_shipped <= 1.1 * changed, (back["db-01"].bytes_shipped, changed)
        assert all(back[vm].parent is not None for vm in VMS)
        action = reverse_schedule.schedule.action
        assert getattr(action, "task_queue", None) == "seawall-site-dr"
        # Failback: the original VMs run again with everything the DR site wrote.
        assert failback.status == "completed", failback.failed_vms
        assert all(n.endswith("powered off at dr") for n in failback.fencing), failback.fencing
        assert [v.target_name for v in failback.vms] == VMS
        assert home_disk == dr_final[: len(home_disk)]
        assert b"WRITTEN-AT-DR-" + marker in home_disk
        assert set(primary_power(lab).values()) == {"poweredOn"}
        # DNS: failback put back every record the failover changed, exactly as it was before it (a
        # record that did not exist is gone again), sidecars included.
        assert dns_records(lab) == records_before
        assert {d.outcome for v in failback.vms for d in v.dns} <= {"restored", "unchanged"}
        assert any(d.outcome == "restored" for v in failback.vms for d in v.dns)
    finally:
        set_primary_power(lab, on=True)
        vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == "db-01")
        for index in range(len(vminfo.disks)):
            restore_disk(lab, "primary", "db-01", index)
        if report is not None:
            site = lab.vsphere["dr"]
            with VSphereConnection(
                site.host, site.user, site.password, port=site.port, protocol="http"
            ) as conn:
                for _vm, name, _tag in find_run_vms(conn, report.run):
                    destroy_vm(conn, name, run_id=report.run)
                for vm in VMS:
                    delete_datastore_path(conn, site.datastore, site.datacenter, vm)
