"""A replication cycle of a VM whose store is mirrored (S3 on moto, mirror on Azurite): every point is
copied to the mirror and verified there as the cycle's own step, the cycle's result and ``status`` say
how far the mirror lags, and a point restores byte-identical from the mirror alone."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml

from seawall.blockstore.repository import Repository
from seawall.contract.names import schedule_id
from seawall.control.status import cycle_history, vm_status
from seawall.lab import LabInfo
from seawall.lab.disks import restore_disk, write_blocks
from seawall.sites.replica import open_mirror, open_repository
from tests.integration.isolated_namespace import isolated_namespace
from tests.integration.replication_env import ReplicationEnv, replication_env, write_inventory
from tests.integration.test_replication import lab_images, protect, unprotect

VM = "app-01"


def mirrored_inventory(lab: LabInfo, lab_state: Path, tmp: Path) -> Path:
    """The example inventory with ``VM`` alone on the S3 store, mirrored to the Azure one."""
    path = write_inventory(tmp, lab_state, s3_prefix=f"mcycle-{uuid.uuid4().hex[:8]}/", lab=lab)
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "s3":
            store["mirror"] = "azure"
    data["protected_vms"] = [dict(vm, replica_store="s3") for vm in data["protected_vms"] if vm["name"] == VM]
    data.pop("consistency_groups", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def both_stores(env: ReplicationEnv) -> tuple[Repository, Repository]:
    inv = env.inventory
    primary = open_repository(inv, "s3", inv.policy(inv.protected_vm(VM).policy))
    opened = open_mirror(inv, primary, "s3")
    assert opened is not None and opened[0] == "azure"
    return primary, opened[1]


@asynccontextmanager
async def mirrored_env(lab: LabInfo, lab_state: Path, tmp: Path) -> AsyncIterator[ReplicationEnv]:
    """A worker in a namespace of its own (status reads the VM's cycle history by name)."""
    inventory = mirrored_inventory(lab, lab_state, tmp)
    async with (
        isolated_namespace(lab.temporal.address, "seawall-mirror") as namespace,
        replication_env(
            lab, tmp, lab_state, inventory=inventory, settings_overrides={"temporal_namespace": namespace}
        ) as env,
    ):
        try:
            yield env
        finally:
            for repo in both_stores(env):
                for key in list(repo.store.list()):
                    repo.store.delete(key)
            restore_disk(lab, "primary", VM, 0)


async def test_each_cycle_copies_its_point_to_the_mirror_and_verifies_it_there(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with mirrored_env(lab, lab_state_dir, tmp_path) as env:
        client = env.client
        first = (await protect(client, env, VM)).first_point
        write_blocks(lab, "primary", VM, 8192, os.urandom(4096))
        images = lab_images(lab, VM)
        written = datetime.now(UTC)
        await client.get_schedule_handle(schedule_id(VM)).trigger()
        second = await env.wait_cycle_after(VM, written, timeout=120)
        await client.get_schedule_handle(schedule_id(VM)).pause()

        results = {r.result.point_id: r.result for r in await cycle_history(client, VM) if r.result}
        for point in (first, second):
            assert (results[point].mirror, results[point].mirror_lag) == ("azure", 0), results[point]
            assert results[point].mirror_error is None
        status = await vm_status(client, env.inventory, VM)
        assert (status.mirror, status.mirror_lag, status.last_point) == ("azure", 0, second)

        primary, far = both_stores(env)
        on_primary = {p.point_id for p in primary.list_points(VM) if p.verified}
        on_mirror = {p.point_id for p in far.list_points(VM) if p.verified}
        assert {first, second} <= on_mirror and on_mirror <= on_primary
        assert far.verify_point(VM, second).ok
        # The mirror alone holds what the point needs: the disk as it was at the second cycle.
        out = tmp_path / "from-mirror.img"
        far.restore_disk(VM, second, "disk0", out)
        assert out.read_bytes() == images[0]
        await unprotect(client, env, VM)
