"""Retention and garbage collection, including ships that run (or died) while GC runs."""

from __future__ import annotations

import random

import pytest

from seawall.blockstore.errors import WrongKeyError
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import CONDEMNED_KEY
from seawall.blockstore.manifest import RetentionPolicy, ShipProgress
from seawall.blockstore.repository import Repository
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial("gc-key", bytes(range(32)))
MiB = 1024 * 1024


def make(store: MemoryStore | None = None, max_chain: int = 8) -> tuple[Repository, MemoryStore, FakeClock]:
    store = store or MemoryStore()
    clock = FakeClock()
    repo = Repository(
        store, KEY, clock=clock, pack_target=128 * 1024, checkpoint_blocks=4, max_chain=max_chain
    )
    return repo, store, clock


def data_keys(store: MemoryStore, prefix: str = "packs/") -> set[str]:
    return {k for k in store.objects if k.startswith(prefix)}


def restore(repo: Repository, vm: str, point: str) -> bytes:
    out: dict[int, bytes] = {}
    res = repo.restore_disk(vm, point, "d0", lambda off, d: out.__setitem__(off, d), sparse=False)
    buf = bytearray(res.size)
    for off, d in out.items():
        buf[off : off + len(d)] = d
    return bytes(buf)


def chain(repo: Repository, clock: FakeClock, n: int, vm: str = "vm", seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(MiB))
    parent = None
    images = []
    for i in range(n):
        if i:
            data[rng.randrange(MiB - 5000) :][:5000] = rng.randbytes(5000)
            start = rng.randrange(MiB - 5000)
            data[start : start + 5000] = rng.randbytes(5000)
        clock.advance(hours=1)
        sd = repo.ship(BytesSource(bytes(data)), vm, "d0", parent=parent)
        parent = repo.commit_point(vm, f"p{i}", [sd], parent=parent)
        images.append(bytes(data))
    return images


def test_retention_keep_last_keep_hours_and_newest_verified() -> None:
    repo, _, clock = make()
    chain(repo, clock, 6)
    assert repo.verify_point("vm", "p1").ok  # the only verified point, old
    res = repo.apply_retention("vm", RetentionPolicy(keep_last=2))
    assert res.kept == ["p1", "p4", "p5"] and res.deleted == ["p0", "p2", "p3"]
    repo2, _, clock2 = make()
    chain(repo2, clock2, 6)
    # Points are 1 h apart; the newest is at clock2.now: keep the last 2.5 hours, i.e. 3 points.
    res = repo2.apply_retention("vm", RetentionPolicy(keep_hours=2.5))
    assert res.kept == ["p3", "p4", "p5"]
    res = repo2.apply_retention("vm", RetentionPolicy(keep_last=1, keep_hours=1.5))  # union
    assert res.kept == ["p4", "p5"]
    assert repo2.apply_retention("vm", RetentionPolicy()).deleted == []  # keep everything


def test_gc_condemns_first_deletes_after_grace_and_kept_points_survive() -> None:
    # With chains of 2 layers, p2 starts a new full layer: p0's and p1's layers become garbage.
    repo, store, clock = make(max_chain=2)
    images = chain(repo, clock, 4)
    repo.apply_retention("vm", RetentionPolicy(keep_last=1))
    before_tables = data_keys(store, "tables/")
    first = repo.gc(now=clock.advance(minutes=5))
    assert first.packs_deleted == first.tables_deleted == 0 and first.condemned > 0
    assert CONDEMNED_KEY in store.objects
    assert repo.gc(now=clock.advance(minutes=30)).tables_deleted == 0  # grace (1 h) not over
    second = repo.gc(now=clock.advance(hours=1))
    assert second.tables_deleted > 0
    assert data_keys(store, "tables/") < before_tables
    # No index is left behind for a deleted pack.
    packs = {k.split("/", 1)[1] for k in data_keys(store, "packs/")}
    assert {k.split("/", 1)[1] for k in data_keys(store, "index/")} <= packs
    assert repo.verify_point("vm", "p3").ok and restore(repo, "vm", "p3") == images[3]
    third = repo.gc(now=clock.advance(hours=3))
    assert third.packs_deleted == third.tables_deleted == 0 and third.condemned == 0


def test_a_live_ship_protects_what_it_may_use_and_a_dead_one_stops_protecting() -> None:
    repo, store, clock = make()
    rng = random.Random(1)
    base = rng.randbytes(MiB)
    sd = repo.ship(BytesSource(base), "vm", "d0")
    repo.commit_point("vm", "p0", [sd])
    # A ship for another VM dies after its first checkpoint: its lease stays, its packs are
    # referenced by no manifest.
    seen: list[ShipProgress] = []

    def die(p: ShipProgress) -> None:
        seen.append(p)
        raise RuntimeError("worker killed")

    other = rng.randbytes(MiB)
    with pytest.raises(RuntimeError):
        repo.ship(BytesSource(other), "vm-b", "d0", on_progress=die)
    orphan_packs = data_keys(store)
    assert len(list(store.list("sessions/"))) == 1
    # p0 goes away; everything becomes unreferenced.
    clock.advance(minutes=1)
    sd1 = repo.ship(BytesSource(rng.randbytes(MiB)), "vm", "d0")
    repo.commit_point("vm", "p1", [sd1])
    repo.apply_retention("vm", RetentionPolicy(keep_last=1))
    repo.gc(now=clock.advance(minutes=1))
    result = repo.gc(now=clock.advance(hours=2))
    # The dead-looking ship's lease is still within its TTL (6 h): nothing it could use is deleted.
    assert result.live_sessions == 1 and result.packs_deleted == 0
    assert orphan_packs <= data_keys(store)
    # The worker comes back within the TTL and resumes: its point is complete and correct.
    resumed = repo.ship(BytesSource(other), "vm-b", "d0", resume=seen[-1])
    repo.commit_point("vm-b", "p0", [resumed])
    assert restore(repo, "vm-b", "p0") == other
    # Now p0 of vm (deleted by retention) can go.
    result = repo.gc(now=clock.advance(hours=2))
    assert result.live_sessions == 0 and result.packs_deleted > 0
    assert restore(repo, "vm", "p1") and repo.verify_point("vm-b", "p0").ok


def test_expired_lease_lets_gc_collect_and_a_late_resume_starts_over() -> None:
    repo, store, clock = make()
    data = random.Random(2).randbytes(MiB)
    seen: list[ShipProgress] = []

    def die(p: ShipProgress) -> None:
        seen.append(p)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        repo.ship(BytesSource(data), "vm", "d0", on_progress=die)
    written = data_keys(store)
    assert written
    repo.gc(now=clock.advance(hours=1))
    result = repo.gc(now=clock.advance(hours=7))  # past the 6 h lease TTL
    assert result.sessions_expired == 1 and result.packs_deleted == len(written)
    assert not data_keys(store) and not list(store.list("sessions/"))
    # A very late retry must not trust its heartbeat: the store no longer has what it names.
    src = BytesSource(data)
    sd = repo.ship(src, "vm", "d0", resume=seen[-1])
    assert src.reads[0][0] == 0 and sd.session != seen[-1].session
    repo.commit_point("vm", "p0", [sd])
    assert restore(repo, "vm", "p0") == data


def test_condemned_packs_are_never_dedup_targets() -> None:
    repo, store, clock = make()
    content = random.Random(3).randbytes(MiB)
    sd = repo.ship(BytesSource(content), "vm-a", "d0")
    repo.commit_point("vm-a", "p0", [sd])
    repo.apply_retention("vm-a", RetentionPolicy(keep_last=1))  # keeps p0
    store.objects.pop("points/vm-a/p0.json")  # p0 deleted (as retention of a later point would)
    repo.gc(now=clock.advance(minutes=1))  # condemns p0's packs
    old = data_keys(store)
    # A new ship of the same content (another VM) after the condemnation must not reuse them.
    clock.advance(minutes=1)
    fresh = Repository(store, KEY, clock=clock)
    sd2 = fresh.ship(BytesSource(content), "vm-b", "d0")
    assert sd2.chunks_new > 0
    fresh.commit_point("vm-b", "p0", [sd2])
    result = fresh.gc(now=clock.advance(hours=2))
    assert result.packs_deleted == len(old) and not (old & data_keys(store))
    assert restore(fresh, "vm-b", "p0") == content


def test_gc_refuses_to_work_with_a_manifest_it_cannot_read() -> None:
    repo, store, clock = make()
    chain(repo, clock, 2)
    other = Repository(store, KeyMaterial("other-key", bytes(32)), clock=clock)
    before = dict(store.objects)
    with pytest.raises(WrongKeyError):
        other.gc(now=clock.advance(hours=5))
    assert {k for k in store.objects if not k.startswith("sessions/")} == {
        k for k in before if not k.startswith("sessions/")
    }


def test_unreadable_leases_protect_for_one_ttl_then_go() -> None:
    repo, store, clock = make()
    chain(repo, clock, 2)
    repo.apply_retention("vm", RetentionPolicy(keep_last=1))
    # A lease written under another key (its times are readable) and a damaged one (not).
    foreign = Repository(store, KeyMaterial("other-key", bytes(32)), clock=clock)
    seen: list[ShipProgress] = []

    def die(p: ShipProgress) -> None:
        seen.append(p)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        foreign.ship(BytesSource(random.Random(7).randbytes(MiB)), "vm-x", "d0", on_progress=die)
    store.objects["sessions/garbage.json"] = b"\x00\x01 not a lease"
    repo.gc(now=clock.advance(minutes=1))
    blocked = repo.gc(now=clock.advance(hours=2))
    assert blocked.live_sessions == 2 and blocked.packs_deleted == blocked.tables_deleted == 0
    late = repo.gc(now=clock.advance(hours=7))
    assert late.sessions_expired == 2 and late.live_sessions == 0
    assert not list(store.list("sessions/"))
    final = repo.gc(now=clock.advance(hours=2))
    assert final.tables_deleted + late.tables_deleted > 0
