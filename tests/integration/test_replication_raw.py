"""Raw disk images (a KVM guest's, a physical server's) replicate like vSphere VMs: the hash-compare path."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.fleet import touch_blocks, vm_name, write_fleet
from seawall.contract.messages import GcInput, GcOutcome, ProtectInput, ProtectResult, UnprotectInput
from seawall.control import replication
from seawall.lab import LabInfo
from seawall.sites.directory import imagesnap
from tests.integration.replication_env import replication_env


async def test_raw_image_vms_protect_replicate_and_restore(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    site = f"fleet-{uuid.uuid4().hex[:8]}"  # a queue of its own: no other run's worker takes its tasks
    inventory = write_fleet(tmp_path, 2, disk_bytes=1 << 20, interval_s=300, site=site, prefix=site)
    vms = [vm_name(0, site), vm_name(1, site)]
    rng = random.Random(3)
    async with replication_env(lab, tmp_path, lab_state_dir, inventory=inventory, sites=(site,)) as env:
        queue = env.settings.orchestration_queue
        expected: dict[str, dict[str, bytes]] = {vm: {} for vm in vms}
        incremental: dict[str, str] = {}
        images = {vm: (tmp_path / "site" / vm / "disk0.img").read_bytes() for vm in vms}
        results = await asyncio.gather(
            *(
                env.client.execute_workflow(
                    "ProtectVM",
                    ProtectInput(vm=vm),
                    id=f"protect/{vm}",
                    task_queue=queue,
                    result_type=ProtectResult,
                )
                for vm in vms
            )
        )
        for vm, result in zip(vms, results, strict=True):
            expected[vm][result.first_point] = images[vm]
        for vm in vms:
            touch_blocks(tmp_path, vm, rng, blocks=5)
            image = (tmp_path / "site" / vm / "disk0.img").read_bytes()
            written_at = datetime.now(UTC)
            await replication.replicate_now(env.client, vm)
            point = await env.wait_cycle_after(vm, written_at)
            incremental[vm] = point
            expected[vm][point] = image

        for vm in vms:
            repo = env.repository(vm)
            points = {p.point_id: p for p in repo.list_points(vm)}
            assert set(expected[vm]) <= set(points)
            for point_id, image in expected[vm].items():
                assert points[point_id].verified
                out = tmp_path / f"{vm}-{point_id}.img"
                repo.restore_disk(vm, point_id, "disk0.img", out)
                assert out.read_bytes() == image, f"{vm} point {point_id} is not the image at its snapshot"
            # By the point itself: ids sort by second, and a seed and a cycle can share one.
            manifest = repo.read_manifest(vm, incremental[vm])
            assert manifest.disks[0].change_path == "hash-compare"
            # Five 4 KiB writes: the incremental point stored a small fraction of the 1 MiB image.
            assert manifest.disks[0].bytes_changed <= 5 * 4096
            left = await env.snapshots_left(vm, lambda vm=vm: imagesnap.list_snapshots(tmp_path / "site", vm))
            assert left == [], "a snapshot copy was left behind"

        # Retention keeps 3 points: a fourth cycle of vm-0000 retires its seed; GC then condemns the
        # seed's now unreferenced data (deleted only after the grace period, by a later run).
        for _ in range(2):
            touch_blocks(tmp_path, vms[0], rng, blocks=5)
            written_at = datetime.now(UTC)
            await replication.replicate_now(env.client, vms[0])
            await env.wait_cycle_after(vms[0], written_at)
        assert len(env.repository(vms[0]).list_points(vms[0])) == 3
        # vm-0001 goes with its replica: its data is referenced by no point any more, so GC condemns it
        # (deleting only after the grace period, in a later run); vm-0000's points are untouched.
        await env.client.execute_workflow(
            "UnprotectVM",
            UnprotectInput(vm=vms[1], delete_replica=True),
            id=f"unprotect/{vms[1]}",
            task_queue=queue,
            result_type=int,
        )
        gc = await env.client.execute_workflow(
            "CollectGarbage",
            GcInput(store=f"{site}-store", site=site),
            id=f"gc/{site}-store-now",
            task_queue=queue,
            result_type=GcOutcome,
        )
        assert gc.condemned > 0 and gc.packs_deleted == 0, gc
        gc_schedule = env.client.get_schedule_handle(f"gc/{site}-store")
        assert (await gc_schedule.describe()).schedule.action is not None
        await gc_schedule.delete()
        repo = env.repository(vms[0])
        for p in repo.list_points(vms[0]):
            assert repo.verify_point(vms[0], p.point_id, mark=False).ok

        for vm in vms:
            await env.client.execute_workflow(
                "UnprotectVM", UnprotectInput(vm=vm), id=f"unprotect/{vm}", task_queue=queue, result_type=int
            )
