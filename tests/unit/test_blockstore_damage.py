"""Scrub and repair: a damaged chunk unlists every point that needs it, new points never inherit it,
and the next ship that reads its content from the source repairs it in place."""

from __future__ import annotations

import pytest

from seawall.blockstore.errors import BadBlockError
from seawall.blockstore.table import BLOCK
from tests.unit.test_blockstore_repository import image, repo_of, restore_bytes, ship_commit

MiB = 1024 * 1024


def flip_chunk(store, repo, vm: str, point: str, block: int) -> str:  # type: ignore[no-untyped-def]
    """Damage the stored chunk behind ``block`` of ``point`` (one byte in its sealed body)."""
    m = repo.read_manifest(vm, point)
    reader = repo._readback._tables.reader(m.disks[0].layers, "test")
    e, _ = reader.at_layer(block)
    ref = e.base
    key = f"packs/{ref.pack.hex()[:2]}/{ref.pack.hex()}"
    data = bytearray(store.objects[key])
    data[ref.offset + ref.length // 2] ^= 0xFF
    store.objects[key] = bytes(data)
    return ref.cid.hex()


def test_scrub_marks_every_point_referencing_a_damaged_chunk_and_a_ship_repairs_it() -> None:
    repo, store = repo_of()
    d0 = image(2 * MiB, seed=7)
    _, p0 = ship_commit(repo, bytes(d0), "p0")
    d1 = bytearray(d0)
    d1[BLOCK * 20 : BLOCK * 20 + 10] = b"0123456789"  # block 20 changes; block 3 is inherited
    _, p1 = ship_commit(repo, bytes(d1), "p1", parent=p0)
    ship_commit(repo, bytes(d1), "p2", parent=p1)
    for p in ("p0", "p1", "p2"):
        assert repo.verify_point("vm", p, full=False).ok

    cid = flip_chunk(store, repo, "vm", "p2", 3)
    # The incremental verify of the cycles never re-reads inherited rows: it cannot see the damage.
    assert repo.verify_point("vm", "p2", full=False).ok

    result = repo.scrub("vm")
    assert not result.ok and [c.cid for c in result.damaged] == [cid]
    assert {p.point_id for p in result.points if not p.ok} == {"p0", "p1", "p2"}
    assert all(cid in [c.cid for c in p.chunks] for p in result.points)
    listed = repo.list_points("vm")
    assert all(p.corrupt and not p.verified for p in listed)
    assert repo.latest_point("vm") is None  # no cycle builds on, no recovery chooses, a corrupt point
    with pytest.raises(BadBlockError, match=cid[:16]):
        restore_bytes(repo, "vm", "p2")

    # The next cycle has no verified parent: it reads the source in full. The damaged chunk is not a
    # dedup target; its content, sealed again, is written where the damaged copy lies.
    ship_commit(repo, bytes(d1), "p3")
    assert repo.damage().chunks == {} and cid in repo.damage().healed
    assert repo.verify_point("vm", "p3").ok
    rechecked = repo.reverify_repaired("vm")
    assert {c.point_id for c in rechecked} == {"p0", "p1", "p2"} and all(c.ok for c in rechecked)
    assert all(p.verified and not p.corrupt for p in repo.list_points("vm"))
    assert repo.scrub("vm").ok
    assert restore_bytes(repo, "vm", "p0") == bytes(d0)
    assert restore_bytes(repo, "vm", "p2") == bytes(d1)


def test_a_known_damaged_chunk_fails_an_incremental_verify_that_would_trust_it() -> None:
    repo, store = repo_of()
    d0 = image(1 * MiB, seed=3)
    _, p0 = ship_commit(repo, bytes(d0), "p0")
    assert repo.verify_point("vm", "p0").ok
    flip_chunk(store, repo, "vm", "p0", 2)
    repo.scrub("vm", ["p0"])
    # A point built on p0 before the scrub (its verified marker is gone now, but say a race kept it):
    d1 = bytearray(d0)
    d1[0:4] = b"abcd"
    ship_commit(repo, bytes(d1), "p1", parent=p0)
    store.objects["verified/vm/p0.json"] = store.objects.get("verified/vm/p0.json", b"")
    result = repo.verify_point("vm", "p1", full=False)
    assert not result.ok and result.bad_blocks[0].block == 2


def test_a_restore_that_meets_a_damaged_block_marks_the_point_with_what_it_found() -> None:
    repo, store = repo_of()
    d0 = image(1 * MiB, seed=5)
    ship_commit(repo, bytes(d0), "p0")
    assert repo.verify_point("vm", "p0").ok
    cid = flip_chunk(store, repo, "vm", "p0", 4)
    with pytest.raises(BadBlockError) as failed:
        restore_bytes(repo, "vm", "p0")
    repo.mark_bad_block("vm", "p0", failed.value)
    (p0,) = repo.list_points("vm")
    assert p0.corrupt and not p0.verified
    assert cid in repo.damage().chunks
