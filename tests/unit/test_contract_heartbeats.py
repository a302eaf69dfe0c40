"""The ship heartbeat's contract class and the data path's checkpoint describe the same thing."""

from __future__ import annotations

from seawall.blockstore.manifest import ShipProgress
from seawall.contract.heartbeats import ShipCheckpoint, ShipHeartbeat
from seawall.contract.messages import ShippedDiskRef


def test_checkpoint_has_exactly_the_fields_of_ship_progress() -> None:
    # The activity converts one into the other at every checkpoint: a field added to one only would
    # fail the ship (extra fields are refused) or leave status without it.
    assert set(ShipCheckpoint.model_fields) == set(ShipProgress.model_fields)


def test_heartbeat_round_trips_as_the_json_a_retry_and_status_read() -> None:
    progress = ShipProgress(
        session="p1.disk0",
        vm="web",
        disk="disk0",
        block=3,
        blocks_total=12,
        bytes_read=3 << 16,
        bytes_shipped=4096,
        packs_committed=1,
        checkpoint=2,
    )
    done = ShippedDiskRef(disk="disk1", shipped={"k": 1}, bytes_read=1, bytes_shipped=1, change_path="hash")
    beat = ShipHeartbeat(
        done=[done], progress=ShipCheckpoint.model_validate(progress.model_dump(mode="json"))
    )
    # What Temporal hands back without a type hint: the plain JSON object.
    again = ShipHeartbeat.model_validate(beat.model_dump(mode="json"))
    assert again == beat
    assert again.progress is not None and again.progress.fraction == 0.25
    assert ShipHeartbeat.model_validate({"done": [], "progress": None}).progress is None
