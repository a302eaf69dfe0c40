"""With the S3 store of a consistency group (moto) down, a drill recovers every member of the group
from one group point chosen from the store's mirror (Azurite), and the report names the mirror for
each VM. Against the lab: moto is stopped by its pid file and started again by ``lab up``, so this
test runs alone (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from seawall.contract.messages import (
    ApproveInput,
    FailoverInput,
    GroupCycleInput,
    GroupCycleResult,
    ProtectGroupResult,
    ProtectInput,
    ProtectResult,
    RunReport,
)
from seawall.contract.names import schedule_id
from seawall.contract.queues import site_queue
from seawall.control import recovery
from seawall.control.status import vm_status
from seawall.lab import LabInfo, load_lab
from seawall.sites.replica import open_mirror, open_repository
from tests.integration.isolated_namespace import isolated_namespace
from tests.integration.replication_env import replication_env, write_inventory
from tests.integration.test_recovery import PLAN, dr_vms, free_offset, stand_ins, wait_progress, write_plan
from tests.integration.test_replication import lab_images
from tests.integration.test_status_truth import lab_up, stop_moto

MEMBERS = ["db-01", "app-01", "web-01"]
OTHERS = ["app-02", "web-02"]


def mirrored_group(lab: LabInfo, lab_state: Path, tmp: Path) -> Path:
    """Every VM on the S3 store mirrored to Azure; the ERP tiers one consistency group."""
    path = write_inventory(tmp, lab_state, s3_prefix=f"mgfail-{uuid.uuid4().hex[:8]}/", lab=lab)
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "s3":
            store["mirror"] = "azure"
    for vm in data["protected_vms"]:
        vm["replica_store"] = "s3"
        if vm["name"] in MEMBERS:
            vm["policy"] = "rpo-5m"
    data["consistency_groups"] = [{"name": "erp", "policy": "rpo-5m", "vms": MEMBERS}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def drill(env: Any, inp: FailoverInput) -> RunReport:
    client, queue = env.client, env.settings.orchestration_queue
    with stand_ins(env.settings.health_check_port_offset):
        handle = await recovery.start_failover(client, queue, inp)
        await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=300)
        await recovery.approve(client, PLAN, ApproveInput(gate="web-go-ahead", by="alice"))
        await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=300)
        await recovery.cleanup(client, PLAN)
        report: RunReport = await handle.result()
    return report


@pytest.mark.timeout(900)  # every read of the dead store is retried (seconds) before the mirror serves
async def test_a_group_drill_recovers_from_the_mirror_while_the_store_is_down(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    inventory = mirrored_group(lab, lab_state_dir, tmp_path)
    write_plan(tmp_path, inventory)
    overrides = {
        "plans_dir": tmp_path / "plans",
        "reports_dir": tmp_path / "reports",
        "health_check_redirect": "127.0.0.1",
        "health_check_port_offset": free_offset(),
    }
    before = set(dr_vms(lab))
    stopped = False
    try:
        async with (
            isolated_namespace(lab.temporal.address, "seawall-mgfail") as namespace,
            replication_env(
                lab,
                tmp_path,
                lab_state_dir,
                inventory=inventory,
                sites=("primary", "dr"),
                settings_overrides={**overrides, "temporal_namespace": namespace},
            ) as env,
        ):
            client, queue = env.client, env.settings.orchestration_queue
            group, *_ = await asyncio.gather(
                client.execute_workflow(
                    "ProtectGroup",
                    GroupCycleInput(group="erp"),
                    id="protect-group/erp",
                    task_queue=queue,
                    result_type=ProtectGroupResult,
                ),
                *(
                    client.execute_workflow(
                        "ProtectVM",
                        ProtectInput(vm=vm),
                        id=f"protect/{vm}",
                        task_queue=queue,
                        result_type=ProtectResult,
                    )
                    for vm in OTHERS
                ),
            )
            await client.get_schedule_handle(group.schedule_id).pause()
            for vm in OTHERS:
                await client.get_schedule_handle(schedule_id(vm)).pause()
            images = {vm: lab_images(lab, vm) for vm in MEMBERS}
            inv = env.inventory
            primary = open_repository(inv, "s3", inv.policy("rpo-5m"))
            opened = open_mirror(inv, primary, "s3")
            assert opened is not None
            far = opened[1]
            # The group's seed cycle mirrored its members and then its group point.
            assert [g.point_id for g in far.groups.list("erp")] == [group.first_point]

            stop_moto(lab_state_dir)
            stopped = True
            report = await drill(env, FailoverInput(plan=PLAN, mode="test"))
            lab_up(lab_state_dir)
            stopped = False
            fresh = load_lab(lab_state_dir)
            lab.aws, lab.s3 = fresh.aws, fresh.s3
            # Back: the group's next cycle leaves every member's mirror lag at zero, and status says so.
            after: GroupCycleResult = await client.execute_workflow(
                "GroupReplicationCycle",
                GroupCycleInput(group="erp"),
                id="replicate-group/erp/after-moto",
                task_queue=site_queue("primary"),
                result_type=GroupCycleResult,
            )
            statuses = {vm: await vm_status(client, inv, vm) for vm in MEMBERS}
            assert [g.point_id for g in far.groups.list("erp")] == [group.first_point, after.point_id]
            # The mirror alone restores each member's group point byte-identical to the source.
            for vm in MEMBERS:
                for index, expected in enumerate(images[vm]):
                    out = tmp_path / f"{vm}-{index}.img"
                    far.restore_disk(vm, group.first_point, f"disk{index}", out)
                    assert out.read_bytes() == expected, (vm, index)
    finally:
        if stopped:
            lab_up(lab_state_dir)
            fresh = load_lab(lab_state_dir)
            lab.aws, lab.s3 = fresh.aws, fresh.s3

    assert report.status == "completed", report.failed_vms
    by_vm = {v.vm: v for v in report.vms}
    assert sorted(by_vm) == sorted(MEMBERS + OTHERS)
    for vm in MEMBERS:
        # One group point for all members, chosen from the mirror: the store did not answer.
        assert (by_vm[vm].point_id, by_vm[vm].consistency_group) == (group.first_point, "erp"), vm
        assert by_vm[vm].replica_store == "azure", (vm, by_vm[vm].point_note)
    for vm in OTHERS:
        assert by_vm[vm].replica_store == "azure" and by_vm[vm].consistency_group is None
    assert set(dr_vms(lab)) == before
    assert after.mirror_lags == dict.fromkeys(MEMBERS, 0) and after.mirror_errors == {}
    for vm, status in statuses.items():
        assert (status.group, status.last_point) == ("erp", after.point_id), (vm, status)
        assert (status.mirror, status.mirror_lag, status.mirror_error) == ("azure", 0, None), (vm, status)
    html = (tmp_path / "reports" / PLAN / f"{report.run}.html").read_text()
    assert f"{group.first_point} (group erp)" in html and "azure" in html
