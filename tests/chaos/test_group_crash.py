"""SIGKILL the worker inside a consistency group's barrier, and after its group point is written.

A group cycle of the ERP tiers runs on a worker *process* frozen at a failpoint and killed with SIGKILL
(``snapshot.taken=2``: two members snapshotted, the third maybe; ``group.committed=1``: the group
point written, the workflow not yet told). A second worker finishes the cycle. Asserts: exactly one
group point, naming the three members, each member's point verified and committed once; the thaw ran
for it; no Seawall snapshot is left on any member (read from vcsim).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from seawall.contract.messages import GroupCycleInput, GroupCycleResult
from seawall.contract.queues import site_queue
from seawall.lab import LabInfo
from tests.chaos.snapshots import seawall_snapshots
from tests.chaos.workers import WorkerProcess, wait_for_failpoint
from tests.integration.replication_env import replication_env
from tests.integration.test_consistency_group import MEMBERS, _inventory, _log


@pytest.mark.parametrize("failpoint", ["snapshot.taken=2", "group.committed=1"])
async def test_group_cycle_survives_sigkill(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path, failpoint: str
) -> None:
    inventory, logs = _inventory(lab, tmp_path)
    async with replication_env(
        lab, tmp_path, lab_state_dir, inventory=inventory, heartbeat_timeout_s=5, worker=False
    ) as env:
        fp_dir = tmp_path / "failpoints"
        first = WorkerProcess(
            env.settings, tmp_path / "worker-1.log", failpoints=failpoint, failpoint_dir=fp_dir
        )
        second: WorkerProcess | None = None
        try:
            handle = await env.client.start_workflow(
                "GroupReplicationCycle",
                GroupCycleInput(group="erp"),
                id=f"replicate-group/erp/chaos-{tmp_path.name[-8:]}",
                task_queue=site_queue("primary"),
                result_type=GroupCycleResult,
            )
            await asyncio.to_thread(wait_for_failpoint, fp_dir, failpoint.split("=")[0], first)
            first.kill()
            second = WorkerProcess(env.settings, tmp_path / "worker-2.log")
            result = await asyncio.wait_for(handle.result(), timeout=240)
            repo = env.repository("db-01")
            group_points = repo.groups.list("erp")
            members = {vm: [p for p in repo.list_points(vm)] for vm in MEMBERS}
        finally:
            first.kill()
            if second is not None:
                # A failed test: the cycle is cancelled while a worker still runs, so it releases
                # its snapshots instead of leaving them to the next test.
                with contextlib.suppress(Exception):
                    await handle.cancel()
                    await asyncio.wait_for(handle.result(), timeout=60)
                second.stop()
    assert [g.point_id for g in group_points] == [result.point_id], (
        "the group point is committed exactly once"
    )
    assert sorted(group_points[0].vms) == sorted(MEMBERS)
    for vm, points in members.items():
        assert [p.point_id for p in points] == [result.point_id], (vm, points)
        assert points[0].verified
    assert result.point_id in _log(logs / "thaw"), "the thaw ran for the point"
    assert seawall_snapshots(lab, MEMBERS) == {}, "a member snapshot was left behind"
