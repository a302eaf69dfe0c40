"""Protect three VMs (directory, S3 and Azure replicas), run cycles, restore every point byte for byte."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError

from seawall.contract.messages import ProtectInput, ProtectResult, UnprotectInput
from seawall.contract.names import schedule_id
from seawall.control import replication
from seawall.control.status import vm_status
from seawall.lab import LabInfo
from seawall.lab.disks import read_disk, restore_disk, write_blocks
from seawall.sites.vsphere.client import VSphereConnection
from tests.integration.replication_env import ReplicationEnv, replication_env

VMS = ["db-01", "web-01", "web-02"]  # local directory, S3 on moto, Azure Blob on Azurite


def lab_images(lab: LabInfo, vm: str) -> list[bytes]:
    ndisks = len(next(v for v in lab.vsphere["primary"].vms if v.name == vm).disks)
    return [read_disk(lab, "primary", vm, i) for i in range(ndisks)]


def scatter_writes(lab: LabInfo, vm: str, rng: random.Random, count: int = 12) -> int:
    """Guest-like writes: scattered 4 KiB blocks on every disk. Returns the bytes written."""
    written = 0
    vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == vm)
    for index, disk in enumerate(vminfo.disks):
        for _ in range(count):
            offset = rng.randrange(disk.capacity_bytes // 4096) * 4096
            write_blocks(lab, "primary", vm, offset, rng.randbytes(4096), index)
            written += 4096
    return written


async def protect(client: Client, env: ReplicationEnv, vm: str) -> ProtectResult:
    return await client.execute_workflow(
        "ProtectVM",
        ProtectInput(vm=vm),
        id=f"protect/{vm}",
        task_queue=env.settings.orchestration_queue,
        result_type=ProtectResult,
    )


async def unprotect(client: Client, env: ReplicationEnv, vm: str) -> None:
    await client.execute_workflow(
        "UnprotectVM",
        UnprotectInput(vm=vm, delete_replica=True),
        id=f"unprotect/{vm}",
        task_queue=env.settings.orchestration_queue,
        result_type=int,
    )


def assert_point_restores_to(
    env: ReplicationEnv, vm: str, point_id: str, images: list[bytes], tmp: Path
) -> None:
    repo = env.repository(vm)
    manifest = repo.read_manifest(vm, point_id)
    # Disks are named by their position on the VM (disk0, disk1...), the lab's disks by index.
    disks = sorted((d.disk for d in manifest.disks), key=lambda name: int(name.removeprefix("disk")))
    assert len(disks) == len(images), (vm, point_id, disks)
    for name, expected in zip(disks, images, strict=True):
        out = tmp / f"{vm}-{point_id}-{name}.img"
        repo.restore_disk(vm, point_id, name, out)
        got = out.read_bytes()
        assert len(got) == len(expected)
        assert got == expected, f"{vm} point {point_id} disk {name} differs from the source at its snapshot"
        out.unlink()


def snapshot_names(lab: LabInfo, vm: str) -> list[str]:
    site = lab.vsphere["primary"]
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        return conn.snapshot_names(conn.find_vm(vm))


async def test_cycles_make_verified_points_that_restore_byte_identical(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(7)
    expected: dict[str, dict[str, list[bytes]]] = {vm: {} for vm in VMS}
    try:
        async with replication_env(lab, tmp_path, lab_state_dir) as env:
            client = env.client
            before = {vm: lab_images(lab, vm) for vm in VMS}
            results = await asyncio.gather(*(protect(client, env, vm) for vm in VMS))
            for vm, result in zip(VMS, results, strict=True):
                assert result.schedule_id == schedule_id(vm)
                expected[vm][result.first_point] = before[vm]

            # Two rounds of guest writes, each followed by a cycle; db-01's 30 s schedule fires by itself
            # in the second round, the others are triggered through their schedules (replicate-now).
            for round_ in range(2):
                for vm in VMS:
                    scatter_writes(lab, vm, rng)
                    expected_images = lab_images(lab, vm)
                    written_at = datetime.now(UTC)
                    if not (vm == "db-01" and round_ == 1):
                        # The operator's replicate-now: one that lands while a cycle runs (a scheduled
                        # one, which may have snapshotted before the writes) starts when that one ends.
                        assert await replication.replicate_now(client, vm) == schedule_id(vm)
                    point = await env.wait_cycle_after(vm, written_at, timeout=120)
                    expected[vm][point] = expected_images

            for vm in VMS:
                points = env.repository(vm).list_points(vm)
                ids = [p.point_id for p in points]
                assert set(expected[vm]) <= set(ids), (vm, ids)
                assert all(p.verified for p in points if p.point_id in expected[vm])
                for point_id, images in expected[vm].items():
                    assert_point_restores_to(env, vm, point_id, images, tmp_path)
                left = await env.snapshots_left(vm, lambda vm=vm: snapshot_names(lab, vm))
                assert left == [], f"{vm}: a replication snapshot was left behind"

                status = await vm_status(client, env.inventory, vm)
                assert status.scheduled and not status.breach
                assert status.last_point in expected[vm]
                assert status.last_change_path in ("hash-compare", "cbt")

            for vm in VMS:
                await unprotect(client, env, vm)
                assert env.repository(vm).list_points(vm) == []
                status = await vm_status(client, env.inventory, vm)
                assert not status.scheduled
    finally:
        for vm in VMS:
            vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == vm)
            for index in range(len(vminfo.disks)):
                restore_disk(lab, "primary", vm, index)


async def test_protecting_an_unknown_vm_fails_fast_with_a_clear_reason(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with replication_env(lab, tmp_path, lab_state_dir) as env:
        try:
            await env.client.execute_workflow(
                "ProtectVM",
                ProtectInput(vm="no-such-vm"),
                id="protect/no-such-vm",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectResult,
            )
        except WorkflowFailureError as exc:
            cause = exc.cause
            inner = getattr(cause, "cause", None)
            message = str(inner or cause)
            assert "no-such-vm" in message and "not protected" in message, message
        else:
            raise AssertionError("protecting a VM the inventory does not list must fail")
