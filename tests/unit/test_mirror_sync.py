"""A mirror pass on in-memory stores: config back-fill (old mirrored points), retention and pruning
on both stores, the mirror's own object lock, consistency-group points, and a point whose chunks
the mirror lost being repaired or removed, never listed broken."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from seawall.blockstore.groups import group_point_key, new_group_point
from seawall.blockstore.immutable import ObjectLock
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import config_key, point_key
from seawall.blockstore.manifest import RetentionPolicy
from seawall.blockstore.mirror import (
    backfill_configs,
    mirror_groups,
    mirror_point,
    mirror_vm,
    prune_mirror,
)
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectLockedError
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial(key_id="mirror-sync", key=bytes(range(32)))


class LockingMemoryStore(MemoryStore):
    """A MemoryStore with S3 Object Lock's promise: a locked object is neither deleted nor
    overwritten before its date (on the store's own clock)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.locks: dict[str, datetime] = {}

    def check_lock_support(self) -> None:
        return None

    def lock(self, key: str, mode: str, until: datetime) -> None:
        assert mode in ("GOVERNANCE", "COMPLIANCE") and key in self.objects
        self.locks[key] = max(until, self.locks.get(key, until))

    def locked_until(self, key: str) -> datetime | None:
        return self.locks.get(key)

    def _locked(self, key: str) -> bool:
        return key in self.locks and self.locks[key] > self.clock()

    def delete(self, key: str) -> None:
        if self._locked(key):
            raise ObjectLockedError(key, "memory")
        super().delete(key)

    def put_overwrite(self, key: str, data: bytes) -> None:
        if self._locked(key):
            raise ObjectLockedError(key, "memory")
        super().put_overwrite(key, data)


def point(
    repo: Repository, vm: str, pid: str, fill: int, parent: object = None, config: bool = True
) -> object:
    shipped = repo.ship(BytesSource(bytes([fill]) * 65536), vm, "d0", parent=parent)  # type: ignore[arg-type]
    ref = repo.commit_point(
        vm,
        pid,
        [shipped],
        parent=parent,  # type: ignore[arg-type]
        source_config=("raw", b'{"kind": "raw"}') if config else None,
    )
    assert repo.verify_point(vm, pid).ok
    return ref


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def pair(
    clock: FakeClock, mirror_store: MemoryStore | None = None
) -> tuple[Repository, Repository, MemoryStore]:
    far = mirror_store or MemoryStore()
    lock = ObjectLock("governance", timedelta(hours=2)) if isinstance(far, LockingMemoryStore) else None
    primary = Repository(MemoryStore(), KEY, clock=clock)  # type: ignore[arg-type]
    mirror = Repository(far, KEY, clock=clock, object_lock=lock)  # type: ignore[arg-type]
    return primary, mirror, far


def test_configs_of_points_mirrored_before_configs_were_are_backfilled_once(clock: FakeClock) -> None:
    primary, mirror, far = pair(clock)
    point(primary, "vm", "p1", 1)
    clock.advance(minutes=5)
    point(primary, "vm", "p2", 2)
    assert mirror_vm(primary, mirror, "vm").configs_backfilled == []
    # As an old mirror left them: the points verified there, their configurations absent.
    for pid in ("p1", "p2"):
        del far.objects[config_key("vm", pid)]
    puts = far.puts
    done = mirror_vm(primary, mirror, "vm")
    assert done.configs_backfilled == ["p1", "p2"] and done.results == [] and done.lag == 0
    assert far.puts - puts == 2  # only the missing objects
    assert mirror.read_source_config("vm", "p1") == primary.read_source_config("vm", "p1")
    # Idempotent: nothing missing, nothing copied.
    puts = far.puts
    assert backfill_configs(primary, mirror, "vm") == [] and far.puts == puts


def test_retention_removes_a_point_from_the_mirror_too_and_an_empty_primary_prunes_nothing(
    clock: FakeClock,
) -> None:
    primary, mirror, _ = pair(clock)
    for i, pid in enumerate(["p1", "p2", "p3"]):
        point(primary, "vm", pid, i + 1)
        clock.advance(minutes=5)
    mirror_vm(primary, mirror, "vm")
    assert [p.point_id for p in mirror.list_points(vm="vm")] == ["p1", "p2", "p3"]
    kept = primary.apply_retention("vm", RetentionPolicy(keep_last=2))
    assert kept.deleted == ["p1"]
    # The mirror's own policy would keep all three (it keeps the newest 5)...
    assert mirror.apply_retention("vm", RetentionPolicy(keep_last=5)).deleted == []
    # ...but a point the primary's retention removed goes from the mirror too.
    assert prune_mirror(primary, mirror, "vm") == (["p1"], [])
    assert [p.point_id for p in mirror.list_points("vm")] == ["p2", "p3"]
    gc = mirror.gc()
    clock.advance(hours=2)
    gc = mirror.gc()
    assert gc.packs_deleted + gc.tables_deleted > 0  # p1's own data goes at the mirror's GC
    assert mirror.verify_point("vm", "p2").ok and mirror.verify_point("vm", "p3").ok
    # A point newer than the primary's newest is being mirrored, not pruned; an emptied primary
    # (a lost region) never empties its mirror.
    for p in primary.list_points("vm"):
        primary.forget_point("vm", p.point_id)
    assert prune_mirror(primary, mirror, "vm") == ([], [])
    assert [p.point_id for p in mirror.list_points("vm")] == ["p2", "p3"]


def test_the_mirror_locks_what_it_copies_and_prunes_a_locked_point_only_after_the_lock(
    clock: FakeClock,
) -> None:
    primary, mirror, far = pair(clock, LockingMemoryStore(clock))
    assert isinstance(far, LockingMemoryStore)
    point(primary, "vm", "p1", 1)
    clock.advance(minutes=5)
    point(primary, "vm", "p2", 2)
    mirror_vm(primary, mirror, "vm")
    created = primary.read_manifest("vm", "p1").created_at
    # Every object p1 needs is locked in the mirror for the mirror's period, the manifest too.
    assert far.locks[point_key("vm", "p1")] == created + timedelta(hours=2)
    assert any(k.startswith("packs/") for k in far.locks) and any(k.startswith("tables/") for k in far.locks)
    assert not any(k.startswith("index/") for k in far.locks)
    primary.forget_point("vm", "p1")
    # Locked: the mirror keeps it and says so; GC cannot take its data either.
    assert prune_mirror(primary, mirror, "vm") == ([], ["p1"])
    assert mirror.apply_retention("vm", RetentionPolicy(keep_last=1)).locked == ["p1"]
    with pytest.raises(ObjectLockedError):
        far.delete(point_key("vm", "p1"))
    clock.advance(hours=3)
    assert prune_mirror(primary, mirror, "vm") == (["p1"], [])
    assert [p.point_id for p in mirror.list_points("vm")] == ["p2"]


class DamagingStore(MemoryStore):
    """Writes the first ``times`` packs it is given with one byte flipped (a mirror that damages)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def put(self, key: str, data: bytes) -> bool:
        if key.startswith("packs/") and self.times > 0:
            self.times -= 1
            data = data[:-1] + bytes([data[-1] ^ 1])
        return super().put(key, data)


def test_a_point_damaged_in_the_mirror_is_repaired_from_the_primary(clock: FakeClock) -> None:
    primary, mirror, _ = pair(clock, DamagingStore(times=1))
    point(primary, "vm", "p1", 1)
    done = mirror_point(primary, mirror, "vm", "p1")
    assert done.verified and done.repaired >= 1 and not done.dropped
    assert [p.point_id for p in mirror.list_points("vm") if p.verified] == ["p1"]


def test_a_point_the_mirror_cannot_hold_whole_is_not_listed_there(clock: FakeClock) -> None:
    class Lossy(MemoryStore):
        """Loses every pack: as if the mirror's GC deleted them under the copy, each time."""

        def put(self, key: str, data: bytes) -> bool:
            return True if key.startswith("packs/") else super().put(key, data)

        def put_overwrite(self, key: str, data: bytes) -> None:
            if not key.startswith("packs/"):
                super().put_overwrite(key, data)

    primary, mirror, _ = pair(clock, Lossy())
    point(primary, "vm", "p1", 1)
    done = mirror_vm(primary, mirror, "vm")
    (r,) = done.results
    assert not r.verified and r.dropped and done.lag == 1
    assert mirror.list_points("vm") == []  # never listed with chunks it lacks


def test_a_group_point_reaches_the_mirror_once_every_member_is_verified_there(clock: FakeClock) -> None:
    primary, mirror, far = pair(clock)
    for vm, fill in (("db", 1), ("app", 2)):
        point(primary, vm, "g1", fill)
    primary.groups.commit(new_group_point("erp", "g1", ["db", "app"], True, ("a", "b"), []))
    # Only db mirrored so far: the group point is not recoverable from the mirror yet.
    mirror_vm(primary, mirror, "db", ["erp"])
    assert not far.exists(group_point_key("erp", "g1"))
    assert mirror_vm(primary, mirror, "app", ["erp"]).group_points == 1
    assert [g.point_id for g in mirror.groups.list("erp")] == ["g1"]
    assert mirror_groups(primary, mirror, "erp") == 0  # idempotent
    # A member's point gone from the mirror: the group point goes too.
    mirror.forget_point("app", "g1")
    mirror_groups(primary, mirror, "erp")
    assert mirror.groups.list("erp") == []
