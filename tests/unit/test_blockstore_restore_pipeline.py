"""Restore's pipeline seen from the store and the target: out-of-order fetches, a failing chunk,
the bounded fetch window, and the writeback started behind the writes."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from pathlib import Path

import pytest

from seawall.blockstore import readback
from seawall.blockstore.errors import BadBlockError
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import pack_key
from seawall.blockstore.readback import Writeback
from seawall.blockstore.repository import Repository
from seawall.blockstore.table import BLOCK
from seawall.blockstore.tuning import READ_BATCH_BLOCKS
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial("restore-pipe-key", bytes(range(1, 33)))
BATCH = READ_BATCH_BLOCKS * BLOCK


def distinct_blocks(batches: int, seed: int) -> bytes:
    """Every block unique (a few random bytes) yet cheap to compress; a zero run in the middle."""
    rng = random.Random(seed)
    data = bytearray(batches * BATCH)
    for b in range(batches * READ_BATCH_BLOCKS):
        if b % 50 in (20, 21, 22):
            continue  # zero blocks: skipped in a sparse file, still in order for a writer
        data[b * BLOCK : b * BLOCK + 32] = rng.randbytes(32)
    return bytes(data)


class ShuffledStore(MemoryStore):
    """Pack fetches finish out of order: the first pack is slow, the rest take random short times."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.slow = True
        self.asked: list[str] = []
        self.done: list[str] = []
        self.gets = 0

    def get(self, key: str) -> bytes:
        if key.startswith("packs/"):
            with self.lock:
                self.gets += 1
                self.asked.append(key)
                first, self.slow = self.slow, False
                delay = 0.2 if first else self.rng.random() * 0.01
            time.sleep(delay)
            with self.lock:
                self.done.append(key)
        return super().get(key)


def repo_on(store: MemoryStore, threads: int = 2) -> Repository:
    # Tiny packs: a restore fetches many, each on its own (one per batch of 64 blocks).
    return Repository(store, KEY, clock=FakeClock(), threads=threads, pack_target=1)  # type: ignore[arg-type]


def test_restore_is_exact_when_fetches_finish_out_of_order(tmp_path: Path) -> None:
    data = distinct_blocks(3, seed=1)
    store = ShuffledStore(seed=2)
    repo = repo_on(store)
    repo.commit_point("vm", "p0", [repo.ship(BytesSource(data), "vm", "d0")])  # type: ignore[arg-type]
    out = tmp_path / "disk.raw"
    res = repo.restore_disk("vm", "p0", "d0", out)
    assert store.done != store.asked  # the fetches really completed out of order
    assert out.read_bytes() == data and res.digest_checked and res.size == len(data)
    # A writer callable (the site targets) gets increasing offsets, and the same bytes.
    store.slow = True
    got = bytearray(len(data))
    offsets: list[int] = []

    def writer(off: int, chunk: bytes) -> None:
        offsets.append(off)
        got[off : off + len(chunk)] = chunk

    repo.restore_disk("vm", "p0", "d0", writer)
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert bytes(got) == data


def test_a_missing_chunk_fails_the_restore_naming_it_and_nothing_after_it_is_written(tmp_path: Path) -> None:
    data = distinct_blocks(3, seed=3)
    store = ShuffledStore(seed=4)
    repo = repo_on(store)
    repo.commit_point("vm", "p0", [repo.ship(BytesSource(data), "vm", "d0")])  # type: ignore[arg-type]
    dm = repo.read_manifest("vm", "p0").disks[0]
    bad = READ_BATCH_BLOCKS  # its pack holds the second batch's chunks (a pack per batch here)
    ref = repo._readback._tables.reader(dm.layers, "test").at(bad).base  # type: ignore[union-attr]
    assert ref is not None
    del store.objects[pack_key(ref.pack)]
    out = tmp_path / "disk.raw"
    with pytest.raises(BadBlockError) as ei:
        repo.restore_disk("vm", "p0", "d0", out)
    err = ei.value
    assert err.block == bad and err.offset == bad * BLOCK and err.disk == "d0"
    # The error names the block, the missing pack and the chunk in it.
    assert f"block {bad}" in str(err) and pack_key(ref.pack) in str(err) and "missing" in str(err)
    assert [c.cid for c in err.damaged] == [ref.cid.hex()]  # type: ignore[attr-defined]
    written = out.read_bytes()
    assert written[: bad * BLOCK] == data[: bad * BLOCK]  # everything before it, in place
    assert written[bad * BLOCK :] == bytes(len(data) - bad * BLOCK)  # nothing at or after it
    seen: list[int] = []
    store.slow = True
    with pytest.raises(BadBlockError):
        repo.restore_disk("vm", "p0", "d0", lambda off, d: seen.append(off))
    assert seen and max(seen) < bad * BLOCK


def test_fetches_run_a_bounded_window_ahead_of_a_stalled_writer() -> None:
    threads = 1
    batches = 12
    data = distinct_blocks(batches, seed=5)
    store = ShuffledStore(seed=6)
    repo = repo_on(store, threads=threads)
    repo.commit_point("vm", "p0", [repo.ship(BytesSource(data), "vm", "d0")])  # type: ignore[arg-type]
    store.gets = 0
    started = threading.Event()

    def stalled(off: int, chunk: bytes) -> None:
        started.set()
        time.sleep(0.5)  # a slow target: the pipeline must wait for it, not read the disk ahead
        raise RuntimeError("target gone")

    with pytest.raises(RuntimeError, match="target gone"):
        repo.restore_disk("vm", "p0", "d0", stalled)
    assert started.is_set()
    total_packs = sum(1 for k in store.objects if k.startswith("packs/"))
    per_batch = total_packs // batches  # the seed flushes a pack per batch here (pack_target=1)
    window = (4 * threads + 2) * per_batch  # batches queued on the pool, one being walked
    assert store.gets <= window < total_packs


def test_restore_starts_writeback_behind_itself_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = distinct_blocks(2, seed=7)
    repo = repo_on(MemoryStore())
    repo.commit_point("vm", "p0", [repo.ship(BytesSource(data), "vm", "d0")])  # type: ignore[arg-type]
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(readback, "WRITEBACK_BYTES", 8 * BLOCK)
    monkeypatch.setattr(readback, "start_writeback", lambda fd, off, n: calls.append((off, n)))
    out = tmp_path / "disk.raw"
    repo.restore_disk("vm", "p0", "d0", out)
    assert out.read_bytes() == data
    assert calls and calls[0][0] == 0
    for (o1, n1), (o2, _) in itertools.pairwise(calls):
        assert o1 + n1 == o2  # contiguous, moving forward
    assert all(n >= 8 * BLOCK for _, n in calls)
    # Never past what was written (a range whose advice was still running merges into the next).
    assert calls[-1][0] + calls[-1][1] <= len(data)


def test_writeback_follows_a_writer_from_its_first_offset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(8 * BLOCK))
    fd = os.open(path, os.O_RDWR)
    try:
        readback.start_writeback(fd, 0, 8 * BLOCK)  # the real advice on a real file: accepted
        calls: list[tuple[int, int]] = []
        monkeypatch.setattr(readback, "WRITEBACK_BYTES", 2 * BLOCK)
        monkeypatch.setattr(readback, "start_writeback", lambda fd, off, n: calls.append((off, n)))
        wb = Writeback(fd)
        wb.wrote(3 * BLOCK, BLOCK)  # a resumed restore starts mid-disk
        wb.settle()
        assert calls == []
        wb.wrote(4 * BLOCK, BLOCK)
        wb.settle()
        assert calls == [(3 * BLOCK, 2 * BLOCK)]
        wb.wrote(6 * BLOCK, BLOCK)  # a skipped zero block in between: its hole goes with the range
        wb.settle()
        assert calls == [(3 * BLOCK, 2 * BLOCK), (5 * BLOCK, 2 * BLOCK)]
        wb.wrote(7 * BLOCK, BLOCK)  # one block past the last range: not yet
        wb.close()
        assert calls == [(3 * BLOCK, 2 * BLOCK), (5 * BLOCK, 2 * BLOCK)]
    finally:
        os.close(fd)
