"""The read-back pipeline: block order under out-of-order batches, errors, bounded memory, cancellation."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from seawall.blockstore.errors import BadBlockError
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import pack_key
from seawall.blockstore.readback import ReadBack
from seawall.blockstore.repository import Repository
from seawall.blockstore.table import BLOCK
from seawall.blockstore.tuning import READ_BATCH_BLOCKS
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial("pipe-key", bytes(range(32)))
MiB = 1024 * 1024
BATCH = READ_BATCH_BLOCKS * BLOCK


def disk(batches: int, seed: int = 0) -> bytes:
    """Mostly zeros (cheap to ship), a random block at the start of every batch."""
    rng = random.Random(seed)
    data = bytearray(batches * BATCH)
    for b in range(batches):
        data[b * BATCH : b * BATCH + BLOCK] = rng.randbytes(BLOCK)
    return bytes(data)


def shipped(data: bytes, threads: int, store: MemoryStore | None = None) -> Repository:
    repo = Repository(store or MemoryStore(), KEY, clock=FakeClock(), threads=threads)  # type: ignore[arg-type]
    repo.commit_point("vm", "p0", [repo.ship(BytesSource(data), "vm", "d0")])  # type: ignore[arg-type]
    return repo


class Counting:
    """Wraps ReadBack._check: how many batches started, how many are running now."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay_first: float = 0.0) -> None:
        self.started = 0
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()
        orig = ReadBack._check

        def check(rb: ReadBack, hasher: Any, key_id: str, items: list[Any]) -> Any:
            with self.lock:
                first = self.started == 0
                self.started += 1
                self.running += 1
                self.max_running = max(self.max_running, self.running)
            try:
                if first and delay_first:
                    time.sleep(delay_first)  # later batches finish first
                return orig(rb, hasher, key_id, items)
            finally:
                with self.lock:
                    self.running -= 1

        monkeypatch.setattr(ReadBack, "_check", check)


def blocks_of(repo: Repository, **kw: Any) -> Any:
    dm = repo.read_manifest("vm", "p0").disks[0]
    return repo._readback.blocks(dm, KEY.key_id, 0, "test", {"chunks": 0}, **kw)


def test_blocks_come_in_order_when_batches_finish_out_of_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = disk(6)
    repo = shipped(data, threads=3)
    c = Counting(monkeypatch, delay_first=0.3)
    got = [i for i, *_ in blocks_of(repo)]
    assert got == list(range(len(data) // BLOCK))
    assert c.max_running > 1  # batches really ran side by side
    # The same through a file target: each batch written in one go, bytes in their places.
    out = tmp_path / "disk.raw"
    res = repo.restore_disk("vm", "p0", "d0", out)
    assert out.read_bytes() == data and res.digest_checked


def test_bad_block_raises_naming_it_and_is_not_written(tmp_path: Path) -> None:
    store = MemoryStore()
    data = random.Random(3).randbytes(3 * BATCH)  # random: one chunk per block, in block order
    repo = shipped(data, threads=3, store=store)
    dm = repo.read_manifest("vm", "p0").disks[0]
    ref = repo._readback._tables.reader(dm.layers, "test").at(70).base  # type: ignore[union-attr]
    assert ref is not None
    blob = bytearray(store.objects[pack_key(ref.pack)])
    blob[ref.offset + 100] ^= 1  # inside the sealed chunk of block 70 (second batch)
    store.objects[pack_key(ref.pack)] = bytes(blob)
    out = tmp_path / "disk.raw"
    with pytest.raises(BadBlockError) as ei:
        repo.restore_disk("vm", "p0", "d0", out)
    assert ei.value.block == 70 and ei.value.offset == 70 * BLOCK and ei.value.disk == "d0"
    assert "authentication failed" in str(ei.value) and "block 70" in str(ei.value)
    written = out.read_bytes()
    assert written[70 * BLOCK : 71 * BLOCK] == bytes(BLOCK)  # the bad block never reached the file
    assert written[: 64 * BLOCK] == data[: 64 * BLOCK]  # the batch before it did
    # A writer callable sees every good block before the bad one, in order, and none after it.
    seen: list[int] = []
    with pytest.raises(BadBlockError):
        repo.restore_disk("vm", "p0", "d0", lambda off, d: seen.append(off // BLOCK))
    assert seen == list(range(70))


def test_memory_is_bounded_by_batches_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = 1
    repo = shipped(disk(24), threads=threads)
    c = Counting(monkeypatch)
    gen = blocks_of(repo)
    next(gen)
    time.sleep(0.2)  # the pool would run ahead here if nothing bounded it
    assert c.started <= 4 * threads + 1
    gen.close()


def test_closing_the_generator_cancels_batches_and_stops_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = shipped(disk(24), threads=2)
    c = Counting(monkeypatch)
    gen = blocks_of(repo)
    next(gen)
    gen.close()
    started = c.started
    assert c.running == 0  # close() waited for the running batches
    time.sleep(0.2)
    assert c.started == started < 24  # and the rest were cancelled, not run
    # A consumer failing mid-restore (here: the progress callback) leaves no write behind it.
    out = tmp_path / "disk.raw"

    def boom(offset: int) -> None:
        raise RuntimeError("operator cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        repo.restore_disk("vm", "p0", "d0", out, on_progress=boom)
    assert c.running == 0  # every batch (and its writes) finished before restore_disk returned
    after = c.started
    time.sleep(0.2)
    assert c.started == after


class SlowFirstRead(BytesSource):
    """A positional source (``readinto``) whose first read is slow: later batches arrive first."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.threads: set[str] = set()
        self.first = True

    def readinto(self, offset: int, buf: memoryview) -> int:
        self.threads.add(threading.current_thread().name)
        if self.first:
            self.first = False
            time.sleep(0.3)
        chunk = self.data[offset : offset + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)


def test_parallel_reads_keep_block_order_and_stateful_sources_read_on_one_thread() -> None:
    data = random.Random(5).randbytes(5 * BATCH)
    src = SlowFirstRead(data)
    repo = Repository(MemoryStore(), KEY, clock=FakeClock(), threads=2)  # type: ignore[arg-type]
    base = repo.ship(src, "vm", "d0")  # type: ignore[arg-type]
    assert len(src.threads) == 2  # a positional source is read on two threads
    p0 = repo.commit_point("vm", "p0", [base])
    assert b"".join(d for _, _, d, _, _ in blocks_of(repo)) == data
    changed = bytearray(data)
    changed[3 * BATCH + 5] ^= 0xFF
    src2 = SlowFirstRead(bytes(changed))
    sd = repo.ship(src2, "vm", "d0", parent=p0)  # type: ignore[arg-type]
    assert sd.bytes_changed == 4096  # one piece, found by its hash despite the out-of-order reads
    # A source without readinto (vSphere keeps a read window) is read on one thread, in order.
    plain = BytesSource(data)
    seen: list[str] = []
    orig = plain.read

    def read(offset: int, length: int) -> bytes:
        seen.append(threading.current_thread().name)
        return orig(offset, length)

    plain.read = read  # type: ignore[method-assign]
    repo.ship(plain, "vm", "d1")  # type: ignore[arg-type]
    assert len(set(seen)) == 1 and [o for o, _ in plain.reads] == sorted(o for o, _ in plain.reads)
