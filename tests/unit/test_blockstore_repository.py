"""Repository: ship, commit, list, verify, restore; change detection, dedup, chain bound, resume."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from pathlib import Path

import pytest

from seawall.blockstore.errors import PointConflictError, PointNotFoundError
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import session_key
from seawall.blockstore.manifest import SessionJournal, ShipProgress
from seawall.blockstore.repository import Repository
from seawall.blockstore.scan import batches as scan_batches
from seawall.blockstore.source import ChangedArea
from seawall.blockstore.table import BLOCK, PIECE
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial("test-key", bytes(range(32)))
MiB = 1024 * 1024


def image(size: int, seed: int = 0, zero_from: int | None = None) -> bytearray:
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    if zero_from is not None:
        data[zero_from:] = bytes(size - zero_from)
    return data


def repo_of(store: MemoryStore | None = None, **kw: object) -> tuple[Repository, MemoryStore]:
    store = store or MemoryStore()
    return Repository(store, KEY, clock=FakeClock(), **kw), store  # type: ignore[arg-type]


def restore_bytes(repo: Repository, vm: str, point: str, disk: str = "d0") -> bytes:
    out: dict[int, bytes] = {}
    res = repo.restore_disk(vm, point, disk, lambda off, data: out.__setitem__(off, data), sparse=False)
    buf = bytearray(res.size)
    for off, data in out.items():
        buf[off : off + len(data)] = data
    return bytes(buf)


def ship_commit(repo: Repository, data: bytes, point: str, parent=None, vm: str = "vm", **kw: object):
    sd = repo.ship(BytesSource(data, **kw), vm, "d0", parent=parent)  # type: ignore[arg-type]
    return sd, repo.commit_point(vm, point, [sd], parent=parent)


def test_seed_then_incremental_restores_each_point_exactly() -> None:
    repo, _ = repo_of()
    d0 = image(3 * MiB + 777, zero_from=2 * MiB)
    sd0, p0 = ship_commit(repo, bytes(d0), "p0")
    assert sd0.change_path == "full" and sd0.parent_point is None
    assert sd0.zero_blocks == MiB // BLOCK + 1  # the zero tail is recorded, not stored
    d1 = bytearray(d0)
    d1[100:105] = b"hello"
    d1[2 * MiB + 10 : 2 * MiB + 20] = b"x" * 10  # a write into a zero block
    sd1, _ = ship_commit(repo, bytes(d1), "p1", parent=p0)
    assert sd1.change_path == "hash-compare" and sd1.parent_point == "p0"
    assert sd1.bytes_changed == 2 * PIECE and sd1.chunks_new == 2
    assert len(sd1.layers) == 2 and sd1.layers[0] == sd0.layers[0]
    assert restore_bytes(repo, "vm", "p0") == bytes(d0)
    assert restore_bytes(repo, "vm", "p1") == bytes(d1)
    assert sd0.digest != sd1.digest
    assert repo.verify_point("vm", "p1").ok


def test_unchanged_disk_ships_only_a_tiny_table() -> None:
    repo, store = repo_of()
    d = bytes(image(2 * MiB, seed=3))
    _, p0 = ship_commit(repo, d, "p0")
    before = store.size("packs/")
    sd, _ = ship_commit(repo, d, "p1", parent=p0)
    assert sd.bytes_changed == 0 and sd.chunks_new == 0 and store.size("packs/") == before
    assert sd.bytes_shipped < 2000


def test_scattered_4k_writes_store_about_the_changed_bytes() -> None:
    repo, store = repo_of()
    size = 16 * MiB
    d = image(size, seed=4)
    _, p0 = ship_commit(repo, bytes(d), "p0")
    rng = random.Random(5)
    blocks = rng.sample(range(size // 4096), size // 4096 // 100)  # 1 % of the 4 KiB blocks
    for b in blocks:
        d[b * 4096 : (b + 1) * 4096] = rng.randbytes(4096)
    before = sum(len(v) for v in store.objects.values())
    sd, _ = ship_commit(repo, bytes(d), "p1", parent=p0)
    stored = sum(len(v) for v in store.objects.values()) - before
    changed = len(blocks) * 4096
    assert sd.bytes_changed == changed
    assert stored <= 1.25 * changed, stored / changed
    assert restore_bytes(repo, "vm", "p1") == bytes(d)


def test_mostly_rewritten_block_is_stored_whole() -> None:
    repo, _ = repo_of()
    d = image(4 * BLOCK, seed=6)
    _, p0 = ship_commit(repo, bytes(d), "p0")
    d[BLOCK : BLOCK + 13 * PIECE] = os.urandom(13 * PIECE)  # 13 of 16 pieces: rebase
    d[2 * BLOCK : 2 * BLOCK + 3] = b"abc"  # 1 piece: overlay
    sd, _ = ship_commit(repo, bytes(d), "p1", parent=p0)
    assert sd.chunks_new == 2
    assert sd.bytes_changed == BLOCK + PIECE
    assert restore_bytes(repo, "vm", "p1") == bytes(d)


def test_blocks_and_pieces_that_become_zero() -> None:
    repo, store = repo_of()
    d = image(4 * BLOCK, seed=7)
    _, p0 = ship_commit(repo, bytes(d), "p0")
    d[0:BLOCK] = bytes(BLOCK)  # whole block zeroed
    d[BLOCK + PIECE : BLOCK + 2 * PIECE] = bytes(PIECE)  # one piece zeroed
    before = store.size("packs/")
    sd, _ = ship_commit(repo, bytes(d), "p1", parent=p0)
    assert sd.chunks_new == 0 and store.size("packs/") == before
    assert restore_bytes(repo, "vm", "p1") == bytes(d)


def test_dedup_across_vms_and_idempotent_chunks() -> None:
    repo, store = repo_of()
    d = bytes(image(2 * MiB, seed=8))
    ship_commit(repo, d, "p0", vm="vm-a")
    packs = store.size("packs/")
    # A second VM with the same content (a clone of the same template) stores no new chunk, also
    # through a fresh Repository that must load the chunk index from the store.
    fresh, _ = repo_of(store)
    sd, _ = ship_commit(fresh, d, "p0", vm="vm-b")
    assert sd.chunks_new == 0 and store.size("packs/") == packs
    assert restore_bytes(fresh, "vm-b", "p0") == d


def test_commit_is_idempotent_and_ids_are_deterministic() -> None:
    repo, _ = repo_of()
    d = bytes(image(MiB, seed=9))
    sd = repo.ship(BytesSource(d), "vm", "d0")
    ref = repo.commit_point("vm", "wf-123-cycle-7", [sd], meta={"workflow": "wf-123"})
    again = Repository(repo.store, KEY, clock=FakeClock()).commit_point(
        "vm", "wf-123-cycle-7", [sd], meta={"workflow": "wf-123"}
    )
    assert again.point_id == ref.point_id and again.created_at == ref.created_at
    with pytest.raises(PointConflictError):
        repo.commit_point("vm", "wf-123-cycle-7", [sd], meta={"workflow": "other"})


def test_listing_shows_only_committed_points() -> None:
    repo, _ = repo_of()
    d = bytes(image(MiB, seed=10))
    _, p0 = ship_commit(repo, d, "p0")
    repo.ship(BytesSource(d), "vm", "d0", parent=p0)  # shipped, never committed
    assert [p.point_id for p in repo.list_points("vm")] == ["p0"]
    assert repo.latest_point("vm") is None  # nothing verified yet
    assert repo.latest_point("vm", verified_only=False) == p0
    assert repo.verify_point("vm", "p0").marked_verified
    latest = repo.latest_point("vm")
    assert latest is not None and latest.point_id == "p0"
    with pytest.raises(PointNotFoundError):
        repo.read_manifest("vm", "nope")


def test_chain_is_bounded_by_max_chain() -> None:
    repo, _ = repo_of(max_chain=3)
    d = image(MiB, seed=11)
    parent = None
    lengths = []
    for i in range(7):
        d[i * 1000] ^= 0xFF
        sd, parent = ship_commit(repo, bytes(d), f"p{i}", parent=parent)
        lengths.append(len(sd.layers))
    assert lengths == [1, 2, 3, 1, 2, 3, 1]
    assert restore_bytes(repo, "vm", "p6") == bytes(d)


@pytest.mark.parametrize("new_size", [3 * MiB + 5000, MiB - 3, 2 * MiB + BLOCK])
def test_disk_grows_or_shrinks(new_size: int) -> None:
    repo, _ = repo_of()
    d = image(2 * MiB + 1234, seed=12)
    _, p0 = ship_commit(repo, bytes(d), "p0")
    d2 = bytes(d[:new_size]) + os.urandom(max(0, new_size - len(d)))
    sd, _ = ship_commit(repo, d2, "p1", parent=p0)
    assert sd.size == new_size and len(sd.layers) == 1  # a size change writes a full layer
    assert restore_bytes(repo, "vm", "p1") == d2
    assert restore_bytes(repo, "vm", "p0") == bytes(d)
    assert repo.verify_point("vm", "p1").ok


def test_cbt_reads_only_reported_areas_and_rehashes_them() -> None:
    repo, _ = repo_of()
    d = image(4 * MiB, seed=13)
    sd0 = repo.ship(BytesSource(bytes(d), change_id="c0"), "vm", "d0")
    p0 = repo.commit_point("vm", "p0", [sd0])
    assert sd0.change_id == "c0"
    d[MiB + 10 : MiB + 20] = b"0123456789"
    # CBT over-reports (a whole 1 MiB extent) and merges neighbours: only 1 piece really changed.
    src = BytesSource(bytes(d), change_id="c1", areas=[ChangedArea(MiB, MiB), ChangedArea(MiB + 5, 10)])
    sd1 = repo.ship(src, "vm", "d0", parent=p0)
    assert sd1.change_path == "cbt" and sd1.change_id == "c1"
    assert src.bytes_read == MiB and sd1.bytes_read == MiB
    assert sd1.bytes_changed == PIECE and sd1.chunks_new == 1
    repo.commit_point("vm", "p1", [sd1], parent=p0)
    assert restore_bytes(repo, "vm", "p1") == bytes(d)


def test_cbt_unavailable_falls_back_to_hash_compare() -> None:
    repo, _ = repo_of()
    d = bytes(image(MiB, seed=14))
    sd0 = repo.ship(BytesSource(d, change_id="c0"), "vm", "d0")
    p0 = repo.commit_point("vm", "p0", [sd0])
    sd1 = repo.ship(BytesSource(d, change_id="c1", areas=None), "vm", "d0", parent=p0)
    assert sd1.change_path == "hash-compare" and sd1.bytes_read == MiB


def test_progress_is_small_and_resume_continues_after_a_crash() -> None:
    repo, store = repo_of(checkpoint_blocks=16, pack_target=256 * 1024)
    d = bytes(image(4 * MiB, seed=15))
    seen: list[ShipProgress] = []

    class Crash(Exception):
        pass

    def on_progress(p: ShipProgress) -> None:
        seen.append(p)
        assert len(json.dumps(p.model_dump())) < 1024  # fits Temporal heartbeat details easily
        if len(seen) == 2:
            raise Crash

    with pytest.raises(Crash):
        repo.ship(BytesSource(d), "vm", "d0", on_progress=on_progress)
    last = seen[-1]
    assert last.block == 32 and last.packs_committed >= 1
    assert list(store.list("points/")) == []  # nothing visible
    # A new worker (fresh repository) resumes from the heartbeat dict, and reads only the rest.
    worker2, _ = repo_of(store)
    src = BytesSource(d)
    sd = worker2.ship(src, "vm", "d0", resume=last.model_dump())
    assert src.reads[0][0] == 32 * BLOCK and src.bytes_read == len(d) - 32 * BLOCK
    assert sd.session == last.session
    worker2.commit_point("vm", "p0", [sd])
    assert restore_bytes(worker2, "vm", "p0") == d
    assert not list(store.list("sessions/"))  # the lease is gone with the commit


def test_resume_by_deterministic_session_without_heartbeat() -> None:
    repo, _ = repo_of(checkpoint_blocks=8)
    d = bytes(image(2 * MiB, seed=16))

    def crash(p: ShipProgress) -> None:
        if p.block >= 16:
            raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        repo.ship(BytesSource(d), "vm", "d0", session="wf-1.d0", on_progress=crash)
    src = BytesSource(d)
    sd = repo.ship(src, "vm", "d0", session="wf-1.d0")
    assert src.reads[0][0] == 16 * BLOCK
    # Shipping again after success (a retried activity) returns the same result without reading.
    src2 = BytesSource(d)
    assert repo.ship(src2, "vm", "d0", session="wf-1.d0") == sd and src2.reads == []


def test_resume_with_a_different_source_size_starts_over() -> None:
    repo, _ = repo_of(checkpoint_blocks=8)
    d = bytes(image(2 * MiB, seed=17))
    seen: list[ShipProgress] = []

    def crash(p: ShipProgress) -> None:
        seen.append(p)
        raise RuntimeError("die")

    with pytest.raises(RuntimeError):
        repo.ship(BytesSource(d), "vm", "d0", on_progress=crash)
    d2 = d + b"more"
    src = BytesSource(d2)
    sd = repo.ship(src, "vm", "d0", resume=seen[-1])
    assert src.reads[0][0] == 0 and sd.session != seen[-1].session
    repo.commit_point("vm", "p", [sd])
    assert restore_bytes(repo, "vm", "p") == d2


def test_restore_to_file_sparse_and_resume_at_offset(tmp_path: Path) -> None:
    repo, _ = repo_of()
    d = image(3 * MiB, seed=18, zero_from=2 * MiB)
    ship_commit(repo, bytes(d), "p0")
    out = tmp_path / "disk.raw"
    res = repo.restore_disk("vm", "p0", "d0", out)
    assert out.read_bytes() == bytes(d)
    assert res.zero_bytes_skipped == MiB and res.digest_checked
    assert os.stat(out).st_blocks * 512 < 2.5 * MiB  # the zero MiB is a hole
    # Resume: damage the second half, restore from 1.5 MiB on (rounded down to a block).
    with open(out, "r+b") as f:
        f.seek(MiB + MiB // 2)
        f.write(b"\xff" * MiB)
    res = repo.restore_disk("vm", "p0", "d0", out, start_offset=MiB + MiB // 2 + 5)
    assert res.start_offset == MiB + MiB // 2 and not res.digest_checked
    assert out.read_bytes() == bytes(d)


def test_two_disks_in_one_point() -> None:
    repo, _ = repo_of()
    a, b = bytes(image(MiB, seed=19)), bytes(image(MiB // 2, seed=20))
    sa = repo.ship(BytesSource(a), "vm", "os")
    sb = repo.ship(BytesSource(b), "vm", "data")
    repo.commit_point("vm", "p0", [sa, sb])
    assert restore_bytes(repo, "vm", "p0", "os") == a
    assert restore_bytes(repo, "vm", "p0", "data") == b
    res = repo.verify_point("vm", "p0")
    assert res.ok and res.disks == 2 and res.bytes_checked == len(a) + len(b)
    with pytest.raises(ValueError, match="duplicate"):
        repo.commit_point("vm", "p1", [sa, sa])


def test_single_threaded_and_higher_zstd_level_give_the_same_point() -> None:
    d = bytes(image(MiB, seed=21))
    r1, _ = repo_of(threads=1, zstd_level=9)
    sd = r1.ship(BytesSource(d), "vm", "d0")
    r2, _ = repo_of(threads=2)
    assert r2.ship(BytesSource(d), "vm", "d0").digest == sd.digest


def test_names_are_validated() -> None:
    repo, _ = repo_of()
    with pytest.raises(ValueError):
        repo.ship(BytesSource(b"x"), "../etc", "d0")
    with pytest.raises(ValueError):
        repo.list_points("a/b")


@pytest.mark.parametrize(
    "data", [b"", b"x", bytes(5), b"y" * (BLOCK + 1)], ids=["empty", "1", "5zero", "block+1"]
)
def test_tiny_and_odd_sized_disks(data: bytes) -> None:
    repo, _ = repo_of()
    _, p = ship_commit(repo, data, "p0")
    assert restore_bytes(repo, "vm", "p0") == data and repo.verify_point("vm", "p0").ok
    ship_commit(repo, data[::-1], "p1", parent=p)
    assert restore_bytes(repo, "vm", "p1") == data[::-1]


def test_incrementals_skip_the_store_wide_index_unless_asked() -> None:
    class CountingStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.index_lists = 0

        def list(self, prefix: str = ""):  # type: ignore[no-untyped-def]
            self.index_lists += prefix.startswith("index/")
            return super().list(prefix)

    store = CountingStore()
    repo, _ = repo_of(store)
    d = image(MiB, seed=30)
    _, p0 = ship_commit(repo, bytes(d), "p0")
    assert store.index_lists == 1  # a seed dedups store-wide
    d[5] ^= 1
    fresh, _ = repo_of(store)
    ship_commit(fresh, bytes(d), "p1", parent=p0)
    assert store.index_lists == 1  # an incremental does not pay O(packs) requests
    fresh.ship(BytesSource(bytes(d)), "vm", "d0", parent=p0, dedup=True)
    assert store.index_lists == 2


@pytest.mark.parametrize("max_chain", [8, 1], ids=["delta-layer", "full-layer"])
def test_cbt_with_many_scattered_extents(max_chain: int) -> None:
    # Scattered extents share read batches; with max_chain=1 every point is a full layer, so
    # unread blocks between extents are carried from the parent.
    repo, _ = repo_of(max_chain=max_chain, checkpoint_blocks=100)
    size = 8 * MiB + 123
    d = image(size, seed=40)
    sd0 = repo.ship(BytesSource(bytes(d), change_id="c0"), "vm", "d0")
    p0 = repo.commit_point("vm", "p0", [sd0])
    rng = random.Random(41)
    areas = []
    for _ in range(20):
        off = rng.randrange(size - 5000)
        d[off : off + 3000] = rng.randbytes(3000)
        areas.append(ChangedArea(off - off % BLOCK, BLOCK * 2))
    areas.append(ChangedArea(size - 10, 10))  # the partial last block
    d[size - 10 :] = b"0123456789"
    src = BytesSource(bytes(d), change_id="c1", areas=areas)
    sd1 = repo.ship(src, "vm", "d0", parent=p0)
    assert sd1.change_path == "cbt" and src.bytes_read < size / 2
    repo.commit_point("vm", "p1", [sd1], parent=p0)
    assert restore_bytes(repo, "vm", "p1") == bytes(d)
    assert sd1.digest == repo.ship(BytesSource(bytes(d)), "vm", "d0", parent=p0).digest


def test_cbt_on_a_grown_disk_reads_the_new_tail() -> None:
    repo, _ = repo_of()
    d = image(2 * MiB + 100, seed=42)
    sd0 = repo.ship(BytesSource(bytes(d), change_id="c0"), "vm", "d0")
    p0 = repo.commit_point("vm", "p0", [sd0])
    grown = bytes(d) + os.urandom(MiB)
    src = BytesSource(grown, change_id="c1", areas=[ChangedArea(0, 100)])
    sd1 = repo.ship(src, "vm", "d0", parent=p0)
    assert sd1.change_path == "cbt" and src.bytes_read < len(grown) / 2
    repo.commit_point("vm", "p1", [sd1], parent=p0)
    assert restore_bytes(repo, "vm", "p1") == grown


def test_batches_tile_the_disk_and_respect_limits() -> None:
    areas = [(5, 7), (7, 9), (100, 400), (1000, 1001), (5000, 5003)]
    batches = list(scan_batches(3, 6000, areas, checkpoint_blocks=300))
    assert batches[0][0] == 3 and batches[-1][1] == 6000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(batches))
    for b0, b1, runs in batches:
        assert b1 - b0 <= 300 and sum(r1 - r0 for r0, r1 in runs) <= 64
        assert all(b0 <= r0 < r1 <= b1 for r0, r1 in runs)
    read = sorted(i for _, _, runs in batches for r0, r1 in runs for i in range(r0, r1))
    assert read == [*range(5, 9), *range(100, 400), 1000, 5000, 5001, 5002]


def test_a_slow_checkpoint_does_not_stall_the_scan_and_reports_only_durable_ones() -> None:
    """The journal write of a checkpoint runs beside the scan; each progress report names a
    checkpoint whose journal is already in the store, in order, and the point is exact."""

    class SlowJournal(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()
            self.blocked_at_first = threading.Event()
            self.journals = 0

        def put_overwrite(self, key: str, data: bytes) -> None:
            if key.startswith("sessions/"):
                self.journals += 1
                if self.journals == 2:  # the first checkpoint's journal (the first is the lease)
                    self.blocked_at_first.set()
                    assert self.release.wait(10)
            super().put_overwrite(key, data)

    store = SlowJournal()
    repo, _ = repo_of(store, checkpoint_blocks=256, threads=1)
    rng = random.Random(31)
    d = bytearray(1024 * BLOCK)  # mostly zeros (cheap): one random piece per block
    for b in range(1024):
        d[b * BLOCK : b * BLOCK + PIECE] = rng.randbytes(PIECE)

    class Src(BytesSource):
        def read(self, offset: int, length: int) -> bytes:
            # The scan reads on past the first checkpoint (block 256) while its journal waits:
            # further than the batches planned (2 x threads) and read (4) ahead of it reach.
            if offset >= 700 * BLOCK:
                store.release.set()
            return super().read(offset, length)

    seen: list[ShipProgress] = []

    def on_progress(p: ShipProgress) -> None:
        j = repo._shipper._signed.get(session_key(p.session), SessionJournal)
        assert j.position >= p.block and j.checkpoint >= p.checkpoint  # durable before reported
        seen.append(p)

    src = Src(bytes(d))
    sd = repo.ship(src, "vm", "d0", on_progress=on_progress)
    assert store.blocked_at_first.is_set() and store.release.is_set()
    assert [p.block for p in seen] == [256, 512, 768, 1024]
    assert [p.checkpoint for p in seen] == [1, 2, 3, 4]
    repo.commit_point("vm", "p0", [sd])
    assert restore_bytes(repo, "vm", "p0") == bytes(d)
