"""SIGKILL the worker at three phases of a seed cycle; a new worker must finish it exactly once.

Each test protects db-01 (two disks) through separate worker *processes*. The first one is frozen at a
failpoint and killed with SIGKILL, then a second one is started. Asserts: the workflow completes; the
resumed transfer re-read and re-sent at most one progress interval; exactly one complete, verified point
exists; no snapshot is left on the vcsim VM.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from seawall.blockstore.table import BLOCK
from seawall.contract.messages import CycleResult, ProtectInput, ProtectResult, UnprotectInput
from seawall.control.status import cycle_history
from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection
from tests.chaos.snapshots import seawall_snapshots
from tests.chaos.workers import WorkerProcess, wait_for_failpoint
from tests.integration.replication_env import ReplicationEnv, replication_env

VM = "db-01"
CHECKPOINT_MIB = 1
INTERVAL = CHECKPOINT_MIB * 1024 * 1024


async def left_behind(env: ReplicationEnv, lab: LabInfo) -> str:
    """What a failed check names: the VM's snapshots (by any name) and its cycles with their states."""
    site = lab.vsphere["primary"]
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        names = conn.snapshot_names(conn.find_vm(VM))
    query = f'WorkflowType = "ReplicationCycle" AND SeawallVM = "{VM}"'
    cycles = [
        f"{wf.id} {wf.status.name if wf.status else '?'} {wf.start_time:%H:%M:%S.%f} -> {wf.close_time}"
        async for wf in env.client.list_workflows(query)
    ]
    return f"snapshots of {VM}: {names}; its cycles: {cycles}"


async def seed_result(env: ReplicationEnv, point_id: str) -> CycleResult:
    for run in await cycle_history(env.client, VM, limit=50):
        if run.result is not None and run.result.point_id == point_id:
            return run.result
    raise AssertionError(f"no completed cycle made point {point_id}")


async def unprotect(env: ReplicationEnv) -> None:
    await env.client.execute_workflow(
        "UnprotectVM",
        UnprotectInput(vm=VM, delete_replica=False),
        id=f"unprotect/{VM}",
        task_queue=env.settings.orchestration_queue,
        result_type=int,
    )


async def control_seed(lab: LabInfo, lab_state: Path, tmp: Path) -> CycleResult:
    """The same seed without a crash, into its own empty store: what an undisturbed ship reads and sends."""
    async with replication_env(lab, tmp, lab_state, checkpoint_mib=CHECKPOINT_MIB) as env:
        result = await env.client.execute_workflow(
            "ProtectVM",
            ProtectInput(vm=VM),
            id=f"protect/{VM}",
            task_queue=env.settings.orchestration_queue,
            result_type=ProtectResult,
        )
        seed = await seed_result(env, result.first_point)
        await unprotect(env)
        return seed


async def crash_seed(
    lab: LabInfo, lab_state: Path, tmp: Path, failpoint: str
) -> tuple[ReplicationEnv, CycleResult, dict[str, object]]:
    async with replication_env(
        lab, tmp, lab_state, checkpoint_mib=CHECKPOINT_MIB, heartbeat_timeout_s=5, worker=False
    ) as env:
        fp_dir = tmp / "failpoints"
        first = WorkerProcess(env.settings, tmp / "worker-1.log", failpoints=failpoint, failpoint_dir=fp_dir)
        second: WorkerProcess | None = None
        try:
            handle = await env.client.start_workflow(
                "ProtectVM",
                ProtectInput(vm=VM),
                id=f"protect/{VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectResult,
            )
            frozen = await asyncio.to_thread(wait_for_failpoint, fp_dir, failpoint.split("=")[0], first)
            first.kill()
            second = WorkerProcess(env.settings, tmp / "worker-2.log")
            result = await asyncio.wait_for(handle.result(), timeout=180)
            seed = await seed_result(env, result.first_point)
            # Unprotect first: it cancels (and waits out) any cycle the new schedule may have started.
            await unprotect(env)
            points = env.repository(VM).list_points(VM)
            ids = [p.point_id for p in points]
            completed = {r.result.point_id for r in await cycle_history(env.client, VM, limit=50) if r.result}
            assert ids.count(result.first_point) == 1, ids
            assert set(ids) <= completed, f"a point exists that no completed cycle made: {ids}"
            assert all(p.verified for p in points), "a partial or unverified point is visible"
            assert seawall_snapshots(lab, [VM]) == {}, await left_behind(env, lab)
            return env, seed, frozen
        finally:
            first.kill()
            if second is not None:
                second.stop()


@pytest.mark.parametrize(
    "failpoint",
    [
        "ship.checkpoint=2",  # (a) in the middle of the seed's shipping
        "commit.done=1",  # (b) the point is committed, the workflow has not recorded it: before verify
        "release.start=1",  # (c) while releasing the snapshot
    ],
)
async def test_seed_survives_sigkill(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path, failpoint: str
) -> None:
    control = await control_seed(lab, lab_state_dir, tmp_path / "control")
    _, seed, frozen = await crash_seed(lab, lab_state_dir, tmp_path / "crash", failpoint)
    assert seed.verified
    # Nothing is sent twice: what the store received is what an undisturbed seed sends, give or take
    # one checkpoint interval of packs the dead attempt had written but not yet recorded.
    assert seed.bytes_shipped <= control.bytes_shipped + INTERVAL, (control, seed)
    if not failpoint.startswith("ship."):
        # The transfer had finished before the kill: the retry found it complete and read nothing.
        assert seed.bytes_read == control.bytes_read, (control, seed)
        return
    progress = frozen["progress"]
    assert isinstance(progress, dict)
    block_size = BLOCK
    # The kill happened mid-disk, after a durable checkpoint and before the end of that disk.
    assert 0 < progress["block"] < progress["blocks_total"], progress
    # Byte counters are cumulative through the store's journal: the resumed attempt's reads on the
    # killed disk are the final total minus the other disks (read once) minus what the journal held.
    disk_size = progress["blocks_total"] * block_size
    other_disks = control.bytes_read - disk_size
    resumed_reads = seed.bytes_read - other_disks - progress["bytes_read"]
    not_yet_committed = disk_size - progress["block"] * block_size
    assert 0 < resumed_reads <= not_yet_committed + INTERVAL, (resumed_reads, not_yet_committed, progress)
