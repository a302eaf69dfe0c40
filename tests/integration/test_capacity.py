"""Capacity from real cycles: protect a VM, change its disks and let cycles ship the changes; `capacity`
(the control function and the CLI) measures a change rate consistent with the bytes the cycles shipped,
and against an inventory whose store limit is far below that need it flags the VM, and `status` says
why the RPO will be breached before it is. Against the lab: vcsim source, Temporal (a namespace of the
test's own, so its cycle history is this test's alone), a real worker, the directory store."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from seawall.contract.names import schedule_id
from seawall.control.capacity import PERCENTILE, capacity_report, percentile
from seawall.control.status import cycle_history, vm_status
from seawall.lab import LabInfo
from seawall.lab.disks import restore_disk, write_blocks
from seawall.plans import load_inventory
from tests.integration.isolated_namespace import isolated_namespace
from tests.integration.replication_env import ReplicationEnv, replication_env
from tests.integration.test_replication import protect
from tests.integration.test_scrub import cli, no_cycle_running

VM = "db-01"  # policy rpo-30s, replica store "local" (a directory)
CHANGED = 3 * 1024 * 1024  # random (incompressible) bytes rewritten per disk per round
LIMIT = 64 * 1024  # the smallest limit an inventory may give: far below ~6 MiB per 30 s


def change_disks(lab: LabInfo, rng: random.Random) -> None:
    vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == VM)
    for index, disk in enumerate(vminfo.disks):
        offset = rng.randrange((disk.capacity_bytes - CHANGED) // 4096 + 1) * 4096
        write_blocks(lab, "primary", VM, offset, rng.randbytes(CHANGED), index)


def limited_inventory(env: ReplicationEnv, tmp_path: Path) -> Path:
    """The test's inventory with its VM's store limited to ``LIMIT`` (the worker ships unlimited)."""
    data = yaml.safe_load(Path(env.settings.inventory).read_text())
    store = env.inventory.protected_vm(VM).replica_store
    for spec in data["replica_stores"]:
        if spec["name"] == store:
            spec["bandwidth_limit"] = LIMIT
    path = tmp_path / "limited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def test_capacity_measures_the_change_rate_and_flags_a_limit_below_the_need(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    try:
        await _measure_and_flag(lab, lab_state_dir, tmp_path)
    finally:
        # The lab's disks as the other tests expect them.
        vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == VM)
        for index in range(len(vminfo.disks)):
            restore_disk(lab, "primary", VM, index)


async def _measure_and_flag(lab: LabInfo, lab_state_dir: Path, tmp_path: Path) -> None:
    async with (
        isolated_namespace(lab.temporal.address, "seawall-capacity") as namespace,
        replication_env(
            lab, tmp_path, lab_state_dir, settings_overrides={"temporal_namespace": namespace}
        ) as env,
    ):
        client = env.client
        await protect(client, env, VM)
        # Bytes no earlier run wrote: a rerun's same seed would rewrite what the disk already holds.
        seed = uuid.uuid4().int
        print(f"seed {seed}")
        rng = random.Random(seed)
        for _ in range(3):
            change_disks(lab, rng)
            written_at = datetime.now(UTC)
            await client.get_schedule_handle(schedule_id(VM)).trigger()
            await env.wait_cycle_after(VM, written_at, timeout=120)
        # The window is fixed from here on: no cycle starts or finishes while capacity is read.
        await client.get_schedule_handle(schedule_id(VM)).pause()
        await no_cycle_running(client, VM)

        history = await cycle_history(client, VM, limit=50)
        shipped = [r.result.bytes_shipped for r in history if r.result and r.result.parent is not None]
        assert len(shipped) >= 3 and sorted(shipped)[-3] >= 1.5 * CHANGED, shipped

        rows = await capacity_report(client, env.inventory)
        cap = next(r for r in rows if r.vm == VM)
        assert cap.interval_s == 30.0 and cap.cycles == len(shipped)
        assert cap.change_rate_bps == pytest.approx(sum(shipped) / len(shipped) / 30.0)
        assert cap.needed_bps == pytest.approx(percentile(shipped, PERCENTILE) / 30.0)
        assert cap.needed_bps is not None and cap.needed_bps > 1.5 * CHANGED / 30.0 > 2 * LIMIT
        assert cap.observed_bps is not None and cap.observed_bps > 0
        # The example inventory limits nothing: nothing is flagged, `capacity` exits 0.
        assert cap.limit_bps is None and not cap.under_provisioned
        code, out, err = await cli(env, "capacity", "--json")
        assert code == 0, err
        row = next(r for r in json.loads(out) if r["vm"] == VM)
        assert row["change_rate_bps"] == pytest.approx(cap.change_rate_bps)
        assert row["needed_bps"] == pytest.approx(cap.needed_bps)
        print(
            f"{VM}: {len(shipped)} incremental cycles, shipped {shipped}; change rate "
            f"{cap.change_rate_bps:.0f} B/s, needs {cap.needed_bps:.0f} B/s, "
            f"achieved {cap.observed_bps:.0f} B/s"
        )

        # The same cycles against a store limited far below the need: flagged, and status says why.
        limited_path = limited_inventory(env, tmp_path)
        limited = load_inventory(limited_path)
        cap = next(r for r in await capacity_report(client, limited) if r.vm == VM)
        store = limited.protected_vm(VM).replica_store
        assert cap.under_provisioned and cap.limit_bps == LIMIT and cap.limit_scope == f"store:{store}"
        assert cap.reason is not None and f"store:{store}" in cap.reason
        code, out, err = await cli(env, "capacity", "--json", "-i", str(limited_path))
        assert code == 1, err
        row = next(r for r in json.loads(out) if r["vm"] == VM)
        assert row["under_provisioned"] and f"store:{store}" in row["reason"]

        status = await vm_status(client, limited, VM)
        # Before any breach: the newest point is fresh, yet status names the limit that will breach it.
        assert status.problem is not None and f"store:{store}" in status.problem, status
        assert "bandwidth limit" in status.problem
        print(f"status problem: {status.problem}")
        # With the unlimited inventory, status names no problem.
        assert (await vm_status(client, env.inventory, VM)).problem is None
