"""The data-path scenario every replica-store backend must pass, as a reusable helper.

seed + 3 incremental points (changes written between them, one of which grows the disk) ->
verify each -> restore each, byte-identical to the source as it was at that point -> retention
(keep the newest 2) + GC -> the kept points still verify and restore, the dropped ones are gone,
and objects only they referenced were collected.

Call ``run_datapath_scenario(store, tmp_path)`` with any ObjectStore (directory, S3, Azure).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.manifest import RetentionPolicy
from seawall.blockstore.repository import Repository
from seawall.blockstore.source import ChangedArea
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, TransientStoreError
from seawall.sites.directory.source import RawSource

MiB = 1024 * 1024


class FakeClock:
    """A settable clock, so retention and GC grace periods run in no time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@dataclass
class ScenarioReport:
    points: list[str] = field(default_factory=list)
    change_paths: list[str] = field(default_factory=list)
    bytes_changed: list[int] = field(default_factory=list)
    bytes_shipped: list[int] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    packs_deleted: int = 0
    tables_deleted: int = 0


def make_image(path: Path, size: int, rng: random.Random) -> None:
    """Random, zero and repetitive text regions, like a small real disk."""
    text = b"".join(f"line {i}: the quick brown fox {rng.random()}\n".encode() for i in range(size // 40 + 1))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(size - written, rng.choice([64, 256, 512]) * 1024)
            kind = rng.choice(["random", "zero", "text"])
            if kind == "random":
                f.write(rng.randbytes(n))
            elif kind == "zero":
                f.write(bytes(n))
            else:
                off = rng.randrange(0, len(text) - n)
                f.write(text[off : off + n])
            written += n


def scatter_writes(path: Path, rng: random.Random, count: int, zero_share: float = 0.2) -> None:
    """Unaligned and aligned small writes; some turn regions to zeros."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for _ in range(count):
            n = rng.choice([1, 100, 4096, 5000, 70000])
            off = rng.randrange(0, max(1, size - n))
            f.seek(off)
            f.write(bytes(n) if rng.random() < zero_share else rng.randbytes(n))


def run_datapath_scenario(
    store: ObjectStore, workdir: Path, size: int = 6 * MiB, seed: int = 1
) -> ScenarioReport:
    rng = random.Random(seed)
    clock = FakeClock()
    key = KeyMaterial(key_id="scenario", key=bytes(range(32)))
    # Small packs and checkpoints so even a few MiB exercise several packs and table parts.
    repo = Repository(store, key, clock=clock, pack_target=256 * 1024, checkpoint_blocks=32)
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "disk.raw"
    make_image(image, size, rng)
    report = ScenarioReport()
    snapshots: dict[str, bytes] = {}
    parent = None
    for cycle in range(4):
        if cycle:
            scatter_writes(image, rng, 40)
        if cycle == 2:
            with open(image, "ab") as f:  # the disk grows by 1.5 blocks
                f.write(rng.randbytes(96 * 1024))
        clock.advance(minutes=15)
        with RawSource(image) as src:
            shipped = repo.ship(src, "vm-a", "disk0", parent=parent)
        point_id = f"p{cycle}"
        ref = repo.commit_point("vm-a", point_id, [shipped], parent=parent, meta={"cycle": str(cycle)})
        # Committing again (a retried activity) is a no-op.
        assert (
            repo.commit_point("vm-a", point_id, [shipped], parent=parent, meta={"cycle": str(cycle)}) == ref
        )
        snapshots[point_id] = image.read_bytes()
        report.points.append(point_id)
        report.change_paths.append(shipped.change_path)
        report.bytes_changed.append(shipped.bytes_changed)
        report.bytes_shipped.append(shipped.bytes_shipped)
        parent = ref

    for point_id, expected in snapshots.items():
        result = repo.verify_point("vm-a", point_id)
        assert result.ok, result
        out = workdir / f"restore-{point_id}.raw"
        repo.restore_disk("vm-a", point_id, "disk0", out)
        assert out.read_bytes() == expected, f"restore of {point_id} differs from the source"
        out.unlink()

    listed = [p.point_id for p in repo.list_points("vm-a")]
    assert listed == report.points, listed
    latest = repo.latest_point("vm-a")
    assert latest is not None and latest.point_id == "p3"

    # Retention: keep the newest two. GC twice: condemn, then (after the grace period) delete.
    def data_objects() -> set[str]:
        return {k for k in store.list("") if k.startswith(("packs/", "index/", "tables/"))}

    objects_before = data_objects()
    retention = repo.apply_retention("vm-a", RetentionPolicy(keep_last=2))
    report.kept, report.deleted = retention.kept, retention.deleted
    assert retention.kept == ["p2", "p3"] and retention.deleted == ["p0", "p1"], retention
    first = repo.gc(now=clock.advance(minutes=1))
    assert first.packs_deleted == 0 and first.tables_deleted == 0, (
        "GC must not delete before the grace period"
    )
    second = repo.gc(now=clock.advance(hours=2))
    report.packs_deleted, report.tables_deleted = second.packs_deleted, second.tables_deleted
    assert second.tables_deleted > 0, "p0/p1's delta layers should have been collected"
    objects_after = data_objects()
    assert objects_after < objects_before

    for point_id in ("p2", "p3"):
        assert repo.verify_point("vm-a", point_id).ok
        out = workdir / f"restore-after-gc-{point_id}.raw"
        repo.restore_disk("vm-a", point_id, "disk0", out)
        assert out.read_bytes() == snapshots[point_id]
        out.unlink()
    assert [p.point_id for p in repo.list_points("vm-a")] == ["p2", "p3"]
    return report


# ---- small fakes the data-path unit tests share ---------------------------------------------------


class MemoryStore:
    """A dict as an ObjectStore, with counters (and no durability, which tests do not need)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put(self, key: str, data: bytes) -> bool:
        self.puts += 1
        if key in self.objects:
            return False
        self.objects[key] = bytes(data)
        return True

    def put_overwrite(self, key: str, data: bytes) -> None:
        self.puts += 1
        self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(key, "memory") from None

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([k for k in self.objects if k.startswith(prefix)])

    def describe(self) -> str:
        return "memory://"

    def size(self, prefix: str = "") -> int:
        return sum(len(v) for k, v in self.objects.items() if k.startswith(prefix))


class FlakyStore(MemoryStore):
    """Raises TransientStoreError on chosen calls: ``fail(op, n)`` fails the n-th such call from now."""

    def __init__(self) -> None:
        super().__init__()
        self._countdown: dict[str, int] = {}
        self.failures = 0

    def fail(self, op: str, after: int) -> None:
        self._countdown[op] = after

    def _maybe(self, op: str) -> None:
        n = self._countdown.get(op)
        if n is None:
            return
        if n <= 1:
            del self._countdown[op]
            self.failures += 1
            raise TransientStoreError(f"injected {op} failure")
        self._countdown[op] = n - 1

    def put(self, key: str, data: bytes) -> bool:
        self._maybe("put")
        return super().put(key, data)

    def put_overwrite(self, key: str, data: bytes) -> None:
        self._maybe("put_overwrite")
        super().put_overwrite(key, data)

    def get(self, key: str) -> bytes:
        self._maybe("get")
        return super().get(key)


class BytesSource:
    """An in-memory DiskSource with optional change tracking (it may over-report, like CBT)."""

    def __init__(
        self, data: bytes, change_id: str | None = None, areas: list[ChangedArea] | None = None
    ) -> None:
        self.data = bytes(data)
        self._change_id = change_id
        self._areas = areas
        self.reads: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def change_id(self) -> str | None:
        return self._change_id

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        return self._areas

    def describe(self) -> str:
        return "bytes:"

    def close(self) -> None:
        pass

    @property
    def bytes_read(self) -> int:
        return sum(n for _, n in self.reads)
