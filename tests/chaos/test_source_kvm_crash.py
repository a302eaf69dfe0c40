"""SIGKILL the worker in the middle of shipping a KVM cycle (the seed of kdb-01 at kvm-a, a running
guest); a second worker must finish it exactly once, and libvirt must be left with no backup job, no
NBD export or scratch file, and no checkpoint but the point's own.

The backup job is the point's instant and outlives the killed worker by design: the new attempt reads
the same export and resumes from the store's last checkpoint; the cycle's release ends the job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from seawall.blockstore.table import BLOCK
from seawall.contract.messages import ProtectInput, ProtectResult, UnprotectInput
from seawall.control.status import cycle_history
from seawall.lab import LabInfo
from seawall.sites.kvm import backup
from tests.chaos.workers import WorkerProcess, wait_for_failpoint
from tests.integration.kvm_env import (
    backup_job_xml,
    checkpoint_names,
    clear_checkpoints,
    domain,
    write_kvm_inventory,
)
from tests.integration.replication_env import replication_env

VM = "kdb-01"
CHECKPOINT_MIB = 1
INTERVAL = CHECKPOINT_MIB * 1024 * 1024


async def test_a_kvm_cycle_killed_mid_ship_completes_once_and_leaks_nothing(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    dom: Any = domain(lab, VM)
    clear_checkpoints(dom)
    devs = [d.dev for d in backup.domain_disks(dom.XMLDesc())]
    disk_total = sum(dom.blockInfo(dev)[0] for dev in devs)
    backup_dir = lab.kvm["kvm-a"].pool_dir.parent / "seawall-backup"
    inventory = write_kvm_inventory(tmp_path, lab, lab_state_dir, VM)
    try:
        async with replication_env(
            lab,
            tmp_path,
            lab_state_dir,
            inventory=inventory,
            sites=("kvm-a",),
            checkpoint_mib=CHECKPOINT_MIB,
            heartbeat_timeout_s=5,
            worker=False,
        ) as env:
            fp_dir = tmp_path / "failpoints"
            first = WorkerProcess(
                env.settings,
                tmp_path / "worker-1.log",
                sites=("kvm-a",),
                failpoints="ship.checkpoint=3",
                failpoint_dir=fp_dir,
            )
            second: WorkerProcess | None = None
            try:
                handle = await env.client.start_workflow(
                    "ProtectVM",
                    ProtectInput(vm=VM),
                    id=f"protect/{VM}",
                    task_queue=env.settings.orchestration_queue,
                    result_type=ProtectResult,
                )
                frozen = await asyncio.to_thread(wait_for_failpoint, fp_dir, "ship.checkpoint", first)
                first.kill()
                # The killed worker's job is the point's instant: it is still there for the next attempt.
                assert backup_job_xml(dom) is not None
                second = WorkerProcess(env.settings, tmp_path / "worker-2.log", sites=("kvm-a",))
                result = await asyncio.wait_for(handle.result(), timeout=240)
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=VM, delete_replica=False),
                    id=f"unprotect/{VM}",
                    task_queue=env.settings.orchestration_queue,
                    result_type=int,
                )
                runs = await cycle_history(env.client, VM, limit=50)
                seed = next(r.result for r in runs if r.result and r.result.point_id == result.first_point)
                points = env.repository(VM).list_points(VM)
                ids = [p.point_id for p in points]
                completed = {r.result.point_id for r in runs if r.result}
                assert ids.count(result.first_point) == 1, ids
                assert set(ids) <= completed, f"a point exists that no completed cycle made: {ids}"
                assert all(p.verified for p in points)
                # Resumed, not restarted: at most one progress interval was read twice.
                progress = frozen["progress"]
                assert 0 < progress["block"] < progress["blocks_total"], progress
                # Byte counters are cumulative through the store's journal (as in test_replication_crash).
                disk_size = progress["blocks_total"] * BLOCK
                resumed_reads = seed.bytes_read - (disk_total - disk_size) - progress["bytes_read"]
                not_yet_committed = disk_size - progress["block"] * BLOCK
                assert 0 < resumed_reads <= not_yet_committed + INTERVAL, (
                    resumed_reads,
                    not_yet_committed,
                    progress,
                )
                # Nothing leaked at libvirt: no job (no NBD export), one checkpoint per kept chain.
                assert backup_job_xml(dom) is None
                assert dom.jobInfo()[0] == 0  # VIR_DOMAIN_JOB_NONE
                newest = max(ids)
                assert checkpoint_names(dom) == [f"seawall-{newest}"]
                assert not [p.name for p in backup_dir.glob("sw-*")], "a socket or scratch file was left"
            finally:
                first.kill()
                if second is not None:
                    second.stop()
    finally:
        clear_checkpoints(dom)
