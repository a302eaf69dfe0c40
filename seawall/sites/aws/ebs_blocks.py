"""A disk's bytes as EBS blocks: regrouped into the snapshot's block size, checksummed and put with
the EBS direct API (``put_snapshot_block``), with a deterministic sample of what was put kept for the
read-back. ``seawall.sites.aws.ebs`` drives the snapshot around it.
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from seawall.sites.aws.common import AwsError, error_code

Writer = Callable[[int, bytes], None]
RestoreFn = Callable[[Writer], object]


def block_checksum(data: bytes) -> str:
    """Base64 SHA-256, as ``put_snapshot_block`` wants it."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class BlockGrouper:
    """Regroup writes at increasing offsets into ``block_size``-aligned blocks; all-zero blocks dropped.

    Writes may be larger (64 KiB restore blocks into 512 B EBS blocks) or smaller (into 512 KiB
    blocks) than a block, and may leave gaps (zero runs a sparse restore skipped): gaps read as
    zeros, as an EBS block never written does. ``emit(index, data)`` gets each non-zero block, the
    last one padded with zeros to a full block. Call ``close`` after the last write.
    """

    def __init__(self, block_size: int, size: int, emit: Callable[[int, bytes], None]) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.block_size = block_size
        self.size = size
        self._emit = emit
        self._index = -1  # block being gathered
        self._buf = bytearray()
        self._dirty = False
        self._next = 0
        self.emitted = 0

    def _flush(self) -> None:
        if self._index >= 0 and self._dirty and any(self._buf):
            self._emit(self._index, bytes(self._buf))
            self.emitted += 1
        self._index = -1
        self._dirty = False

    def write(self, offset: int, data: bytes) -> None:
        if offset < self._next:
            raise ValueError(f"write at {offset} after {self._next}: writes must move forward")
        if offset + len(data) > self.size:
            raise ValueError(f"write past the disk's end ({offset + len(data)} > {self.size})")
        view = memoryview(data)
        pos = offset
        bs = self.block_size
        while view:
            index, within = divmod(pos, bs)
            if index != self._index:
                self._flush()
                self._index = index
                self._buf = bytearray(bs)
            n = min(len(view), bs - within)
            piece = view[:n]
            self._buf[within : within + n] = piece
            self._dirty = True
            view = view[n:]
            pos += n
            if within + n == bs:
                self._flush()
        self._next = offset + len(data)

    def close(self) -> None:
        self._flush()


class _Sample:
    """A deterministic reservoir sample of the blocks put, plus the first and the last one."""

    def __init__(self, seed: str, size: int) -> None:
        self._rng = random.Random(seed)
        self._size = size
        self._reservoir: list[tuple[int, str]] = []
        self._first: tuple[int, str] | None = None
        self._last: tuple[int, str] | None = None
        self._seen = 0

    def add(self, entry: tuple[int, str]) -> None:
        self._first = self._first or entry
        self._last = entry
        self._seen += 1
        if len(self._reservoir) < self._size:
            self._reservoir.append(entry)
        else:
            j = self._rng.randrange(self._seen)
            if j < self._size:
                self._reservoir[j] = entry

    def picks(self) -> list[tuple[int, str]]:
        """(block index, checksum) to read back, by index."""
        picks = {e[0]: e for e in self._reservoir}
        for edge in (self._first, self._last):
            if edge is not None:
                picks[edge[0]] = edge
        return sorted(picks.values())


def put_blocks(
    ebs: Any,
    snapshot_id: str,
    block_size: int,
    size: int,
    restore: RestoreFn,
    seed: str,
    sample: int,
    workers: int,
    on_progress: Callable[[int], None] | None,
) -> tuple[int, list[tuple[int, str]]]:
    """Put every non-zero block; (blocks put, a reservoir sample of (index, checksum) to read back)."""
    sampled = _Sample(seed, sample)
    slots = threading.BoundedSemaphore(workers * 4)
    futures: list[Future[None]] = []
    errors: list[BaseException] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seawall-ebs-put")

    def put(index: int, data: bytes, checksum: str) -> None:
        try:
            answer = ebs.put_snapshot_block(
                SnapshotId=snapshot_id,
                BlockIndex=index,
                BlockData=data,
                DataLength=len(data),
                Checksum=checksum,
                ChecksumAlgorithm="SHA256",
            )
            if answer.get("Checksum", checksum) != checksum:
                raise AwsError(f"block {index} of {snapshot_id}: the service computed another checksum")
        except BaseException as exc:
            errors.append(exc)
        finally:
            slots.release()

    def failed() -> BaseException:
        err = errors[0]
        if isinstance(err, ClientError):
            return AwsError(f"put_snapshot_block into {snapshot_id} failed: {error_code(err)}: {err}")
        return err

    def emit(index: int, data: bytes) -> None:
        if errors:
            # Stops the restore at the first failed put instead of streaming the rest of the disk.
            raise failed()
        checksum = block_checksum(data)
        sampled.add((index, checksum))
        slots.acquire()
        futures.append(pool.submit(put, index, data, checksum))
        if len(futures) > 4096:
            futures[:] = [f for f in futures if not f.done()]

    grouper = BlockGrouper(block_size, size, emit)
    next_report = 64 * 1024 * 1024

    def writer(offset: int, data: bytes) -> None:
        nonlocal next_report
        grouper.write(offset, data)
        if on_progress is not None and offset + len(data) >= next_report:
            on_progress(offset + len(data))
            next_report += 64 * 1024 * 1024

    try:
        restore(writer)
        grouper.close()
    finally:
        pool.shutdown(wait=True)
    if errors:
        raise failed()
    return grouper.emitted, sampled.picks()
