"""A damaged chunk in each kind of replica store (directory, S3 on moto, Azure Blob on Azurite): the full
verify finds it, every point that needs it turns unverified (store and status), the next cycle repairs
it from the source, and everything verifies and restores byte for byte again. Against the lab: vcsim
source, Temporal, a real worker; the damage is done behind Seawall's back, with the backend's own
client (a file write, boto3, azure-storage-blob)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from subprocess import PIPE
from typing import Any

import boto3
import pytest
import yaml
from azure.storage.blob import BlobServiceClient

from seawall.blockstore.layout import pack_key
from seawall.contract.messages import CycleInput, CycleResult
from seawall.contract.names import schedule_id
from seawall.contract.queues import site_queue
from seawall.control import replication
from seawall.control.status import cycle_history, vm_status
from seawall.control.verify import verify
from seawall.lab import LabInfo
from seawall.lab.disks import restore_disk
from tests.integration.isolated_namespace import isolated_namespace
from tests.integration.replication_env import ReplicationEnv, replication_env, write_inventory
from tests.integration.test_replication import (
    assert_point_restores_to,
    lab_images,
    protect,
    scatter_writes,
)

ROOT = Path(__file__).resolve().parents[2]
VM = "db-01"  # replicated into the inventory's directory store


# Overwrites the object at a store-relative key with ``damage(bytes)``, through the backend's own client.
Corrupter = Callable[[str, Callable[[bytes], bytes]], None]


def directory_corrupter(root: Path) -> Corrupter:
    def corrupt(key: str, damage: Callable[[bytes], bytes]) -> None:
        path = root / key
        path.write_bytes(damage(path.read_bytes()))

    return corrupt


def s3_corrupter(lab: LabInfo, prefix: str) -> Corrupter:
    s3 = boto3.client(
        "s3",
        endpoint_url=lab.s3.endpoint_url,
        region_name=lab.s3.region,
        aws_access_key_id=lab.s3.access_key_id,
        aws_secret_access_key=lab.s3.secret_access_key,
    )

    def corrupt(key: str, damage: Callable[[bytes], bytes]) -> None:
        name = prefix + key
        data = s3.get_object(Bucket=lab.s3.bucket, Key=name)["Body"].read()
        s3.put_object(Bucket=lab.s3.bucket, Key=name, Body=damage(data))

    return corrupt


def azure_corrupter(lab: LabInfo, prefix: str) -> Corrupter:
    container = BlobServiceClient.from_connection_string(lab.azure.connection_string).get_container_client(
        lab.azure.container
    )

    def corrupt(key: str, damage: Callable[[bytes], bytes]) -> None:
        blob = container.get_blob_client(prefix + key)
        data = blob.download_blob().readall()
        blob.upload_blob(damage(data), overwrite=True)

    return corrupt


def inventory_on(lab: LabInfo, lab_state_dir: Path, tmp: Path, store: str) -> tuple[Path, Corrupter]:
    """The example inventory with ``VM`` replicated into ``store`` (its own prefix of the lab's bucket
    or container), and how to damage an object of that store in place."""
    prefix = f"scrub-{uuid.uuid4().hex[:8]}/"
    path = write_inventory(tmp, lab_state_dir, s3_prefix=prefix, lab=lab)
    data = yaml.safe_load(path.read_text())
    kinds = {s["name"]: s["kind"] for s in data["replica_stores"]}
    for spec in data["replica_stores"]:
        if spec["kind"] == "s3":
            spec["bucket"] = lab.s3.bucket
        if spec["kind"] == "azure":
            spec["container"] = lab.azure.container
    pvm = next(p for p in data["protected_vms"] if p["name"] == VM)
    pvm["replica_store"] = store
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    kind = kinds[store]
    if kind == "directory":
        return path, directory_corrupter(tmp / "replica")
    if kind == "s3":
        return path, s3_corrupter(lab, prefix)
    assert kind == "azure", kind
    return path, azure_corrupter(lab, prefix)


def flip_byte(at: int) -> Callable[[bytes], bytes]:
    def flip(data: bytes) -> bytes:
        damaged = bytearray(data)
        damaged[at] ^= 0x5A
        return bytes(damaged)

    return flip


def damage_a_seed_chunk(env: ReplicationEnv, corrupt: Corrupter, point: str) -> str:
    """Flip one byte inside a chunk the seed wrote and ``point`` still uses; the chunk's id (hex)."""
    repo = env.repository(VM)
    disk = repo.read_manifest(VM, point).disks[0]
    reader = repo._readback._tables.reader(disk.layers, "test")
    for block in range(disk.size // 65536):
        row, layer = reader.at_layer(block)
        if row is not None and row.base is not None and layer == 0:
            ref = row.base

            corrupt(pack_key(ref.pack), flip_byte(ref.offset + ref.length // 2))
            return ref.cid.hex()
    raise AssertionError("no stored seed chunk found")


async def cli(env: ReplicationEnv, *args: str) -> tuple[int, str, str]:
    """``seawall ARGS`` as a real process (asynchronously: this test's event loop runs the worker)."""
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SEAWALL_TEMPORAL_ADDRESS": env.settings.temporal_address,
        "SEAWALL_INVENTORY": str(env.settings.inventory),
        "SEAWALL_ORCHESTRATION_QUEUE": env.settings.orchestration_queue,
        "SEAWALL_TEMPORAL_NAMESPACE": env.settings.temporal_namespace,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "seawall.cli", *args, env=environ, cwd=ROOT, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def no_cycle_running(client: Any, vm: str, timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout):
        while any(r.status == "RUNNING" for r in await cycle_history(client, vm, limit=10)):
            await asyncio.sleep(0.5)


@pytest.mark.parametrize("store", ["local", "s3", "azure"])
async def test_a_damaged_chunk_is_found_flagged_and_healed_by_the_next_cycle(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path, store: str
) -> None:
    inventory, corrupt = inventory_on(lab, lab_state_dir, tmp_path, store)
    try:
        # A namespace of its own: status reads the VM's cycle history, and a point another test (or the
        # previous store's run) made of the same VM seconds ago is no recovery point of this store.
        async with (
            isolated_namespace(lab.temporal.address, "seawall-scrub") as namespace,
            replication_env(
                lab,
                tmp_path,
                lab_state_dir,
                inventory=inventory,
                settings_overrides={"temporal_namespace": namespace},
            ) as env,
        ):
            assert env.inventory.protected_vm(VM).replica_store == store
            client = env.client
            seed_images = lab_images(lab, VM)
            first = (await protect(client, env, VM)).first_point
            scatter_writes(lab, VM, random.Random(3))
            images = lab_images(lab, VM)
            written_at = datetime.now(UTC)
            await replication.replicate_now(client, VM)
            second = await env.wait_cycle_after(VM, written_at, timeout=120)
            # No cycle of the schedule in between: the test decides when the next one runs. One the
            # schedule started before the pause is let finish, so that every point exists before the
            # damage (its point references the chunk too).
            await client.get_schedule_handle(schedule_id(VM)).pause()
            await no_cycle_running(client, VM)

            cid = damage_a_seed_chunk(env, corrupt, second)
            # The cycles' incremental verify never re-reads inherited chunks: the full verify must.
            report = await verify(client, env.settings.orchestration_queue, VM)
            assert not report.ok
            bad = set(report.corrupt_points)
            assert {first, second} <= bad, report
            assert len(report.damaged_chunks) == 1 and cid[:16] in report.damaged_chunks[0]
            listed = {p.point_id: p for p in env.repository(VM).list_points(VM)}
            assert all(listed[p].corrupt and not listed[p].verified for p in bad)

            status = await vm_status(client, env.inventory, VM)
            assert set(status.corrupt_points) == bad
            # No verified point is left: the truth is a breach, not the age of a damaged point.
            assert status.last_point not in bad and status.breach

            code, out, err = await cli(env, "verify", VM, "--json")
            assert code == 1, err
            assert set(json.loads(out)["points"][0].keys()) >= {"point_id", "ok", "damaged_chunks"}
            code, out, err = await cli(env, "status", "--json")
            assert code == 1, err
            row = next(r for r in json.loads(out) if r["vm"] == VM)
            assert set(row["corrupt_points"]) == bad and row["breach"]

            # The next cycle has no verified parent: it reads the source again and writes the damaged
            # chunk's content back where it lies; the points that need it verify again.
            heal: CycleResult = await client.execute_workflow(
                "ReplicationCycle",
                CycleInput(vm=VM),
                id=f"replicate/{VM}/heal-test",
                task_queue=site_queue("primary"),
                result_type=CycleResult,
            )
            assert heal.verified and heal.parent is None
            assert bad <= set(heal.healed_points) and heal.corrupt_points == []
            repo = env.repository(VM)
            assert repo.damage().chunks == {} and cid in repo.damage().healed

            again = await verify(client, env.settings.orchestration_queue, VM)
            assert again.ok and {first, second, heal.point_id} <= {p.point_id for p in again.points}
            assert all(p.verified and not p.corrupt for p in repo.list_points(VM))
            status = await vm_status(client, env.inventory, VM)
            assert status.corrupt_points == [] and status.last_point == heal.point_id and not status.breach
            code, out, err = await cli(env, "verify", VM)
            assert code == 0, (out, err)

            # No data loss: every point restores byte-identical to its source snapshot.
            assert_point_restores_to(env, VM, first, seed_images, tmp_path)
            assert_point_restores_to(env, VM, second, images, tmp_path)
            assert_point_restores_to(env, VM, heal.point_id, images, tmp_path)
    finally:
        vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == VM)
        for index in range(len(vminfo.disks)):
            restore_disk(lab, "primary", VM, index)
