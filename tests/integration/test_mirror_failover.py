"""With the VMs' S3 store (moto) down, a drill recovers every VM from the store's mirror (Azurite),
byte-identical, and the report names the mirror; after moto is back, the next cycles leave the mirror
lag at zero. Against the lab: moto is stopped by its pid file and started again by ``lab up``, so this
test runs alone (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from seawall.blockstore.repository import Repository
from seawall.contract.messages import ApproveInput, FailoverInput, ProtectInput, ProtectResult, RunReport
from seawall.contract.names import schedule_id
from seawall.control import recovery
from seawall.control.status import vm_status
from seawall.lab import LabInfo, load_lab
from seawall.model import Inventory
from seawall.sites.replica import open_mirror, open_repository
from tests.integration.isolated_namespace import isolated_namespace
from tests.integration.replication_env import replication_env, write_inventory
from tests.integration.test_recovery import PLAN, dr_vms, free_offset, stand_ins, wait_progress, write_plan
from tests.integration.test_replication import lab_images
from tests.integration.test_scrub import no_cycle_running
from tests.integration.test_status_truth import lab_up, stop_moto

ERP = ["db-01", "app-01", "app-02", "web-01", "web-02"]  # the plan's VMs, in its order


def mirror_of(inv: Inventory, vm: str) -> Repository:
    """The VM's store's mirror (Azurite), opened on its own: it answers while moto is down."""
    primary = open_repository(inv, "s3", inv.policy(inv.protected_vm(vm).policy))
    opened = open_mirror(inv, primary, "s3")
    assert opened is not None
    return opened[1]


def mirrored_erp(lab: LabInfo, lab_state: Path, tmp: Path) -> Path:
    path = write_inventory(tmp, lab_state, s3_prefix=f"mfail-{uuid.uuid4().hex[:8]}/", lab=lab)
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "s3":
            store["mirror"] = "azure"
    for vm in data["protected_vms"]:
        vm["replica_store"] = "s3"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.timeout(600)  # every read of the dead store is retried (seconds) before the mirror serves
async def test_a_drill_recovers_from_the_mirror_while_the_store_is_down(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    inventory = mirrored_erp(lab, lab_state_dir, tmp_path)
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
            isolated_namespace(lab.temporal.address, "seawall-mfail") as namespace,
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
            protected = await asyncio.gather(
                *(
                    client.execute_workflow(
                        "ProtectVM",
                        ProtectInput(vm=vm),
                        id=f"protect/{vm}",
                        task_queue=queue,
                        result_type=ProtectResult,
                    )
                    for vm in ERP
                )
            )
            for vm in ERP:
                await client.get_schedule_handle(schedule_id(vm)).pause()
            # A cycle the schedule started before the pause ends with the store up: still running, it
            # would outlast the outage and the trigger below would be skipped as an overlap.
            for vm in ERP:
                await no_cycle_running(client, vm)
            images = {vm: lab_images(lab, vm) for vm in ERP}
            seeds = {p.vm: p.first_point for p in protected}
            # What the drill must recover: each VM's newest point verified in the mirror, the seed or the
            # point of a cycle that ran before the pause (each cycle mirrors what it verified).
            newest = {}
            for vm in ERP:
                listed = mirror_of(env.inventory, vm).list_points(vm)
                mirrored = sorted(p.point_id for p in listed if p.verified)
                assert seeds[vm] in mirrored, (vm, mirrored)
                newest[vm] = mirrored[-1]

            stop_moto(lab_state_dir)
            stopped = True
            with stand_ins(env.settings.health_check_port_offset):
                handle = await recovery.start_failover(client, queue, FailoverInput(plan=PLAN, mode="test"))
                await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=300)
                await recovery.approve(client, PLAN, ApproveInput(gate="web-go-ahead", by="alice"))
                await wait_progress(
                    handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=300
                )
                await recovery.cleanup(client, PLAN)
                report: RunReport = await handle.result()

            lab_up(lab_state_dir)
            stopped = False
            fresh = load_lab(lab_state_dir)
            lab.aws, lab.s3 = fresh.aws, fresh.s3
            # Back: the next cycle of each VM leaves the mirror with every verified point.
            resumed = datetime.now(UTC)
            for vm in ERP:
                await client.get_schedule_handle(schedule_id(vm)).unpause()
                await client.get_schedule_handle(schedule_id(vm)).trigger()
            for vm in ERP:
                await env.wait_cycle_after(vm, resumed, timeout=180)
            statuses = {vm: await vm_status(client, env.inventory, vm) for vm in ERP}

            inv = env.inventory
            far = {vm: mirror_of(inv, vm) for vm in ERP}
            # The mirror alone restores each seed byte-identical to the source as it was.
            for vm in ERP:
                for index, expected in enumerate(images[vm]):
                    out = tmp_path / f"{vm}-{index}.img"
                    far[vm].restore_disk(vm, seeds[vm], f"disk{index}", out)
                    assert out.read_bytes() == expected, (vm, index)
    finally:
        if stopped:
            lab_up(lab_state_dir)
            fresh = load_lab(lab_state_dir)
            lab.aws, lab.s3 = fresh.aws, fresh.s3

    assert report.status == "completed", report.failed_vms
    assert [v.vm for v in report.vms] == ERP
    for v in report.vms:
        # Read from the mirror: the VM's own store did not answer.
        assert v.replica_store == "azure", (v.vm, v.replica_store, v.point_note)
        assert v.point_id == newest[v.vm]
    assert set(dr_vms(lab)) == before
    for vm, status in statuses.items():
        assert (status.mirror, status.mirror_lag, status.mirror_error) == ("azure", 0, None), (vm, status)
