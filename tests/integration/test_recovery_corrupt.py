"""A drill never waits on bad data: db-01's newest point has a damaged chunk (no scrub has seen it
yet); materialize fails at once as CorruptReplica, the VM falls back to the newest older point that
passes a full verify, and the report says which point was refused and which was used, and why.
Against the lab: vcsim (primary, dr), Temporal, real workers, the directory store."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import WorkflowFailureError

from seawall.contract.failures import failure_reason
from seawall.contract.names import schedule_id
from seawall.lab import LabInfo
from seawall.lab.disks import restore_disk
from tests.integration.test_recovery import (
    VMS,
    protected_erp,
    stand_ins,
    start_drill,
    wait_progress,
)
from tests.integration.test_replication import scatter_writes

VM = "db-01"


def damage_newest_layer(env: object, replica: Path, point: str) -> str:
    """Flip a byte in a chunk that only ``point``'s own (newest) table layer references."""
    repo = env.repository(VM)  # type: ignore[attr-defined]
    disk = repo.read_manifest(VM, point).disks[0]
    top = len(disk.layers) - 1
    assert top > 0, "the point must be an incremental one"
    reader = repo._readback._tables.reader(disk.layers, "test")
    for block in range(disk.size // 65536):
        row, layer = reader.at_layer(block)
        if row is None or layer != top:
            continue
        # A new 4 KiB piece of this point (its base, if any, is the parent's chunk, shared with it).
        for _, ref in row.overlays:
            if ref is None:
                continue
            pack = replica / "packs" / ref.pack.hex()[:2] / ref.pack.hex()
            data = bytearray(pack.read_bytes())
            data[ref.offset + ref.length // 2] ^= 0xA5
            pack.write_bytes(bytes(data))
            return ref.cid.hex()
    raise AssertionError("the newest layer stores no chunk")


async def test_a_drill_falls_back_from_a_corrupt_point_and_says_so(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    try:
        async with protected_erp(lab, tmp_path, lab_state_dir) as env:
            client = env.client
            seed = env.repository(VM).latest_point(VM).point_id
            scatter_writes(lab, VM, random.Random(11))
            written_at = datetime.now(UTC)
            await client.get_schedule_handle(schedule_id(VM)).trigger()
            newest = await env.wait_cycle_after(VM, written_at, timeout=120)
            await client.get_schedule_handle(schedule_id(VM)).pause()
            # A cycle of the 30 s schedule may have started meanwhile: the newest verified point then.
            points = [p for p in env.repository(VM).list_points(VM) if p.verified]
            newest = points[-1].point_id
            cid = damage_newest_layer(env, tmp_path / "replica", newest)

            with stand_ins(env.settings.health_check_port_offset):
                handle = await start_drill(env, ttl_s=3600)
                try:
                    await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=300)
                except AssertionError:
                    try:
                        await handle.result()
                    except WorkflowFailureError as exc:
                        raise AssertionError(f"the drill failed: {failure_reason(exc)}") from None
                    raise
                await handle.execute_update("approve", {"gate": "web-go-ahead", "by": "alice"})
                await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))
                await handle.execute_update("cleanup")
                report = await handle.result()
    finally:
        vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == VM)
        for index in range(len(vminfo.disks)):
            restore_disk(lab, "primary", VM, index)

    assert report.status == "completed" and [v.vm for v in report.vms] == VMS, report.failed_vms
    db = next(v for v in report.vms if v.vm == VM)
    assert db.point_id != newest and db.point_id <= newest, (db.point_id, newest)
    assert f"point {newest} of {VM} is corrupt" in db.point_note and cid[:16] in db.point_note, db.point_note
    assert "passed a full verify" in db.point_note, db.point_note
    assert db.health.ok
    # The refused point is now marked: no later cycle builds on it, no later recovery chooses it.
    assert seed <= db.point_id
