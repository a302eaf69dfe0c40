"""Faults: tampered/truncated/missing objects, wrong keys, transient store errors, moving disks.

The property behind all of them: no fault may yield a point that verifies but restores wrong data.
"""

from __future__ import annotations

import random

import pytest

from seawall.blockstore.errors import (
    BadBlockError,
    CorruptObjectError,
    MissingObjectError,
    PointNotFoundError,
    WrongKeyError,
)
from seawall.blockstore.keys import KeyMaterial, KeyRing
from seawall.blockstore.layout import point_key
from seawall.blockstore.manifest import ShipProgress
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import TransientStoreError
from seawall.blockstore.table import BLOCK
from tests.datapath_scenario import BytesSource, FakeClock, FlakyStore, MemoryStore

KEY = KeyMaterial("key-a", bytes(range(32)))
OTHER = KeyMaterial("key-b", bytes(range(5, 37)))
MiB = 1024 * 1024


def setup(size: int = 2 * MiB, seed: int = 0) -> tuple[Repository, MemoryStore, bytes]:
    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock(), pack_target=512 * 1024)
    data = random.Random(seed).randbytes(size)
    sd = repo.ship(BytesSource(data), "vm", "d0")
    repo.commit_point("vm", "p0", [sd])
    return repo, store, data


def packs(store: MemoryStore) -> list[str]:
    return sorted(k for k in store.objects if k.startswith("packs/"))


def test_tampered_pack_is_reported_per_block_and_restore_refuses() -> None:
    repo, store, _ = setup()
    key = packs(store)[0]
    blob = bytearray(store.objects[key])
    blob[100] ^= 1  # inside the first chunk of the first pack
    store.objects[key] = bytes(blob)
    res = repo.verify_point("vm", "p0")
    assert not res.ok and not res.marked_verified
    assert len(res.bad_blocks) == 1
    bad = res.bad_blocks[0]
    assert bad.disk == "d0" and bad.offset == bad.block * BLOCK and "authentication failed" in bad.reason
    assert any("digest" in e for e in res.errors)
    with pytest.raises(BadBlockError) as ei:
        repo.restore_disk("vm", "p0", "d0", lambda off, data: None)
    assert ei.value.block == bad.block
    assert repo.latest_point("vm") is None


def test_truncated_pack() -> None:
    repo, store, _ = setup()
    key = packs(store)[-1]
    store.objects[key] = store.objects[key][:-10]
    res = repo.verify_point("vm", "p0")
    assert not res.ok and res.bad_blocks
    assert any("truncated" in b.reason or "authentication" in b.reason for b in res.bad_blocks)


def test_swapped_chunks_of_equal_size_fail_authentication() -> None:
    # Random data: every chunk is exactly one sealed 64 KiB block, so two can be swapped in place.
    repo, store, _ = setup()
    key = packs(store)[0]
    blob = store.objects[key]
    n = 65536 + 40
    store.objects[key] = blob[n : 2 * n] + blob[:n] + blob[2 * n :]
    res = repo.verify_point("vm", "p0")
    assert {b.block for b in res.bad_blocks} == {0, 1}


def test_missing_pack_and_missing_table() -> None:
    repo, store, _ = setup()
    del store.objects[packs(store)[0]]
    res = repo.verify_point("vm", "p0")
    assert res.bad_blocks and all("missing" in b.reason for b in res.bad_blocks)
    with pytest.raises(BadBlockError, match="missing"):
        repo.restore_disk("vm", "p0", "d0", lambda off, data: None)
    repo2, store2, _ = setup(seed=1)
    for k in [k for k in store2.objects if k.startswith("tables/")]:
        del store2.objects[k]
    res = repo2.verify_point("vm", "p0")
    assert not res.ok and "table unreadable" in res.errors[0]


def test_missing_manifest() -> None:
    repo, _, _ = setup()
    with pytest.raises(PointNotFoundError, match="p9"):
        repo.verify_point("vm", "p9")
    with pytest.raises(PointNotFoundError):
        repo.restore_disk("vm", "p9", "d0", lambda off, data: None)


def test_tampered_or_moved_manifest() -> None:
    _, store, _ = setup()
    k = point_key("vm", "p0")
    store.objects[k] = store.objects[k].replace(b'"p0"', b'"px"', 1)
    fresh = Repository(store, KEY)
    with pytest.raises(CorruptObjectError, match="MAC"):
        fresh.read_manifest("vm", "p0")
    # A valid manifest copied under another point id fails too: the MAC binds the object key.
    _, store2, _ = setup(seed=2)
    store2.objects[point_key("vm", "p1")] = store2.objects[point_key("vm", "p0")]
    with pytest.raises(CorruptObjectError):
        Repository(store2, KEY).read_manifest("vm", "p1")
    store2.objects[k] = b"{not json"
    with pytest.raises(CorruptObjectError):
        Repository(store2, KEY).read_manifest("vm", "p0")


def test_wrong_key_is_a_clear_error_naming_the_key_ids() -> None:
    _, store, _ = setup()
    wrong = Repository(store, OTHER)
    for call in (
        lambda: wrong.verify_point("vm", "p0"),
        lambda: wrong.restore_disk("vm", "p0", "d0", lambda off, data: None),
        lambda: wrong.list_points("vm"),
    ):
        with pytest.raises(WrongKeyError) as ei:
            call()
        assert "'key-a'" in str(ei.value) and "'key-b'" in str(ei.value)
    # Same key id but different bytes (a botched rotation): still not garbage, an error.
    impostor = Repository(store, KeyMaterial("key-a", bytes(32)))
    with pytest.raises(CorruptObjectError):
        impostor.read_manifest("vm", "p0")


def test_rotated_key_reads_old_points_through_the_ring() -> None:
    _, store, data = setup()
    rotated = Repository(store, OTHER, ring=KeyRing(KEY))
    out = bytearray(len(data))
    rotated.restore_disk("vm", "p0", "d0", lambda off, d: out.__setitem__(slice(off, off + len(d)), d))
    assert bytes(out) == data
    # New points under the new key build on the old one.
    parent = rotated.latest_point("vm", verified_only=False)
    changed = b"new!" + data[4:]
    sd = rotated.ship(BytesSource(changed), "vm", "d0", parent=parent)
    rotated.commit_point("vm", "p1", [sd], parent=parent)
    assert rotated.verify_point("vm", "p1").ok


@pytest.mark.parametrize(
    "op,after", [("put", 1), ("put", 3), ("put_overwrite", 1), ("put_overwrite", 2), ("get", 1)]
)
def test_transient_store_errors_surface_and_a_retry_resumes(op: str, after: int) -> None:
    store = FlakyStore()
    clock = FakeClock()
    repo = Repository(store, KEY, clock=clock, pack_target=256 * 1024, checkpoint_blocks=8)
    data = random.Random(3).randbytes(2 * MiB)
    base = repo.ship(BytesSource(data), "vm", "d0")
    p0 = repo.commit_point("vm", "p0", [base])
    data2 = bytearray(data)
    for i in range(0, len(data2), 100_000):
        data2[i] ^= 0xFF
    seen: list[ShipProgress] = []
    store.fail(op, after)
    shipped = None
    with pytest.raises(TransientStoreError):
        shipped = Repository(store, KEY, clock=clock, pack_target=256 * 1024, checkpoint_blocks=8).ship(
            BytesSource(bytes(data2)), "vm", "d0", parent=p0, on_progress=seen.append
        )
        # Some faults hit only the commit.
        repo.commit_point("vm", "p1", [shipped], parent=p0)
    assert store.failures == 1
    assert [p.point_id for p in repo.list_points("vm")] in (["p0"], ["p0", "p1"])
    # The retry (as Temporal would do it) resumes from the last heartbeat, if any.
    retry = Repository(store, KEY, clock=clock, pack_target=256 * 1024, checkpoint_blocks=8)
    if shipped is None:
        shipped = retry.ship(
            BytesSource(bytes(data2)), "vm", "d0", parent=p0, resume=seen[-1] if seen else None
        )
    retry.commit_point("vm", "p1", [shipped], parent=p0)
    assert retry.verify_point("vm", "p1").ok
    out = bytearray(len(data2))
    retry.restore_disk("vm", "p1", "d0", lambda off, d: out.__setitem__(slice(off, off + len(d)), d))
    assert out == data2


def test_random_faults_never_yield_a_point_that_verifies_but_is_wrong() -> None:
    rng = random.Random(42)
    for trial in range(12):
        store, clock = FlakyStore(), FakeClock()
        repo = Repository(store, KEY, clock=clock, pack_target=128 * 1024, checkpoint_blocks=4)
        data = bytearray(rng.randbytes(MiB))
        data[rng.randrange(MiB) :] = bytes(0)
        store.fail(rng.choice(["put", "put_overwrite", "get"]), rng.randint(1, 12))
        progress: list[ShipProgress] = []
        for _attempt in range(3):
            try:
                sd = repo.ship(
                    BytesSource(bytes(data)),
                    "vm",
                    "d0",
                    resume=progress[-1] if progress else None,
                    on_progress=progress.append,
                )
                repo.commit_point("vm", f"t{trial}", [sd])
                break
            except TransientStoreError:
                continue
        store._countdown.clear()  # the fault is spent or disarmed: reading back must work
        # A pack written after the last checkpoint of a failed attempt is shipped again by the
        # retry and left unreferenced: GC (past the lease and the grace) sweeps it, and must
        # keep every pack the point needs. Only a referenced pack's damage can fail the point.
        clock.advance(hours=8)
        repo.gc()
        clock.advance(hours=2)
        repo.gc()
        # Corrupt a random stored byte half of the time: the point must then fail verification.
        corrupt = trial % 2 == 1
        if corrupt:
            k = rng.choice(sorted(k for k in store.objects if k.startswith("packs/")))
            blob = bytearray(store.objects[k])
            blob[rng.randrange(len(blob))] ^= 0x10
            store.objects[k] = bytes(blob)
        res = repo.verify_point("vm", f"t{trial}")
        out = bytearray(len(data))

        def write(off: int, d: bytes, out: bytearray = out) -> None:
            out[off : off + len(d)] = d

        try:
            repo.restore_disk("vm", f"t{trial}", "d0", write, sparse=False)
            restored_ok = out == data
        except BadBlockError:
            restored_ok = False
        assert res.ok == restored_ok, (trial, res)
        assert res.ok != corrupt


def test_a_failed_ship_leaves_no_stale_dedup_entries_in_the_same_repository() -> None:
    # The pack that was being filled when the store failed never got written: the same
    # Repository instance must not dedup the retry against it.
    store = FlakyStore()
    repo = Repository(store, KEY, clock=FakeClock(), pack_target=4 * MiB, checkpoint_blocks=1024)
    data = random.Random(9).randbytes(MiB)
    store.fail("put", 1)  # the lease is put_overwrite; the first put is the (only) pack
    with pytest.raises(TransientStoreError):
        repo.ship(BytesSource(data), "vm", "d0")
    sd = repo.ship(BytesSource(data), "vm", "d0")
    assert sd.chunks_new == MiB // BLOCK
    repo.commit_point("vm", "p0", [sd])
    assert repo.verify_point("vm", "p0").ok


def test_concurrent_ships_on_one_repository() -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock(), pack_target=256 * 1024, checkpoint_blocks=4)
    images = {f"vm{i}": random.Random(i).randbytes(MiB) for i in range(4)}
    images["vm-clone"] = images["vm0"]
    with ThreadPoolExecutor(4) as ex:
        results = ex.map(lambda kv: repo.ship(BytesSource(kv[1]), kv[0], "d0"), images.items())
        shipped = dict(zip(images, results, strict=True))
    for vm, sd in shipped.items():
        repo.commit_point(vm, "p0", [sd])
        assert repo.verify_point(vm, "p0").ok


def test_incremental_verify_reads_only_the_newest_layer_and_still_catches_damage() -> None:
    repo, store, data = setup(size=4 * MiB, seed=11)
    assert repo.verify_point("vm", "p0").ok  # p1's parent is verified
    p0 = repo.latest_point("vm")
    changed = bytearray(data)
    changed[3 * MiB : 3 * MiB + 10] = b"0123456789"
    sd = repo.ship(BytesSource(bytes(changed)), "vm", "d0", parent=p0)
    repo.commit_point("vm", "p1", [sd], parent=p0)
    quick = repo.verify_point("vm", "p1", full=False)
    # The changed block: its base chunk and the new 4 KiB piece on top.
    assert quick.ok and quick.chunks_checked == 2 and quick.blocks_trusted == 4 * MiB // BLOCK - 1
    # Damage to the new chunk is caught by the quick verify ...
    newest = [k for k in store.objects if k.startswith("packs/")]
    for k in newest:
        blob = store.objects[k]
        if len(blob) < 65536:  # the incremental's pack holds a single 4 KiB piece
            store.objects[k] = blob[:-1] + bytes([blob[-1] ^ 1])
    assert not repo.verify_point("vm", "p1", full=False).ok
    # ... and without a verified parent the quick verify falls back to a full one.
    store.objects.pop("verified/vm/p0.json")
    res = repo.verify_point("vm", "p1", full=False, mark=False)
    assert res.blocks_trusted == 0 and res.chunks_checked >= 4 * MiB // BLOCK - 1 and not res.ok


def test_a_dedup_hit_on_a_vanished_pack_is_refused() -> None:
    # The pack disappeared behind the index's back (only a damaged store or a broken GC can do
    # that): the ship must fail rather than commit a point with a hole in it.
    repo, store, data = setup()
    victim = packs(store)[0]
    del store.objects[victim]
    with pytest.raises(MissingObjectError, match="vanished"):
        repo.ship(BytesSource(data), "vm-clone", "d0")
    assert [p.point_id for p in repo.list_points("vm-clone")] == []
