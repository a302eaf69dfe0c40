"""Replicate a running lab guest (kdb-01 at kvm-a, appending records) through the real workflow and
worker path at a 30 s policy, and check each point against what the test itself read of its backup job:

- the bytes an incremental cycle read are at most 1.5x the dirty extents the job's bitmap reports (read
  here with the test's own libnbd), not the disk's size;
- every point restores byte for byte to the export it was read from (hashed here, before the job ended);
- afterwards libvirt runs no backup job and holds exactly one checkpoint: the newest point's.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from seawall.contract.messages import CycleResult, ProtectInput, ProtectResult, UnprotectInput
from seawall.control.status import cycle_history
from seawall.lab import LabInfo
from seawall.sites.kvm import backup, source
from tests.integration.kvm_env import (
    Observed,
    backup_job_xml,
    checkpoint_names,
    clear_checkpoints,
    domain,
    observe_job,
    write_kvm_inventory,
)
from tests.integration.replication_env import replication_env

VM = "kdb-01"
INCREMENTALS = 3


@pytest.fixture
def kvm_domain(lab: LabInfo) -> Any:
    dom = domain(lab, VM)
    clear_checkpoints(dom)
    yield dom
    clear_checkpoints(dom)


@pytest.fixture
def observed(lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> dict[str, Observed]:
    """Each job, read by the test just before Seawall ends it (the worker runs in this process)."""
    seen: dict[str, Observed] = {}
    real_release = source.release

    def release(site: Any, conn: Any, dom: Any, name: str) -> int:
        mine = domain(lab, VM)
        if backup_job_xml(mine) is not None and name not in seen:
            seen[name] = observe_job(mine)
            assert seen[name].point == name, "the newest checkpoint is not the job's point"
        return real_release(site, conn, dom, name)

    monkeypatch.setattr(source, "release", release)
    return seen


def restored_sha256(env: Any, point_id: str, disk: str, tmp: Path) -> str:
    out = tmp / f"{point_id}-{disk}.img"
    env.repository(VM).restore_disk(VM, point_id, disk, out)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    out.unlink()
    return digest.hexdigest()


async def test_replication_of_a_running_guest_reads_only_dirty_extents_and_restores_exactly(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path, kvm_domain: Any, observed: dict[str, Observed]
) -> None:
    inventory = write_kvm_inventory(tmp_path, lab, lab_state_dir, VM)
    devs = [d.dev for d in backup.domain_disks(kvm_domain.XMLDesc())]  # disk<N> is the N-th of these
    started = datetime.now(UTC)  # cycles of kdb-01 from earlier tests on this server do not count
    async with replication_env(lab, tmp_path, lab_state_dir, inventory=inventory, sites=("kvm-a",)) as env:
        protected = await env.client.execute_workflow(
            "ProtectVM",
            ProtectInput(vm=VM),
            id=f"protect/{VM}",
            task_queue=env.settings.orchestration_queue,
            result_type=ProtectResult,
        )
        assert protected.interval_s == 30
        results: dict[str, CycleResult] = {}
        deadline = asyncio.get_running_loop().time() + 60 + 45 * INCREMENTALS
        while len(results) < INCREMENTALS + 1:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(results)} cycles completed"
            for run in await cycle_history(env.client, VM, limit=50):
                if run.started_at < started:
                    continue
                assert run.status not in ("FAILED", "TERMINATED", "TIMED_OUT"), run
                if run.result is not None:
                    results[run.result.point_id] = run.result
            await asyncio.sleep(1)
        await env.client.execute_workflow(
            "UnprotectVM",
            UnprotectInput(vm=VM, delete_replica=False),
            id=f"unprotect/{VM}",
            task_queue=env.settings.orchestration_queue,
            result_type=int,
        )
        points = env.repository(VM).list_points(VM)
        assert {p.point_id for p in points} == set(results), "a point no completed cycle made, or one missing"
        assert all(p.verified for p in points)
        disk_total = sum(kvm_domain.blockInfo(dev)[0] for dev in devs)
        incrementals = 0
        for point_id, result in sorted(results.items()):
            seen = observed.get(f"seawall-{point_id}")
            assert seen is not None, f"the test did not see the backup job of {point_id}"
            if point_id == protected.first_point:
                assert result.change_path == "full" and result.bytes_read == disk_total
            else:
                incrementals += 1
                assert all(v is not None for v in seen.dirty.values()), seen
                dirty = sum(v or 0 for v in seen.dirty.values())
                assert result.change_path == "cbt", result
                assert dirty > 0, "the guest appends records all the time: its data disk must be dirty"
                assert result.bytes_read <= 1.5 * dirty, (point_id, result.bytes_read, dirty)
                assert result.bytes_read < disk_total / 10
                print(f"{point_id}: read {result.bytes_read} bytes, bitmap dirty {dirty} ({seen.dirty})")
            for index, dev in enumerate(devs):
                assert restored_sha256(env, point_id, f"disk{index}", tmp_path) == seen.sha256[dev], (
                    f"point {point_id} disk{index} ({dev}) differs from the export it was read from"
                )
        assert incrementals >= INCREMENTALS
        # Nothing leaked: no job, and the chain is one checkpoint long (the newest point's).
        newest = max(results)
        assert backup_job_xml(kvm_domain) is None
        assert checkpoint_names(kvm_domain) == [f"seawall-{newest}"]
        assert not any(
            p.name.startswith("sw-") for p in (lab.kvm["kvm-a"].pool_dir.parent / "seawall-backup").glob("*")
        )
