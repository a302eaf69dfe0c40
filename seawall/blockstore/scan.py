"""The ship's read side: which blocks to read, reading them ahead, and planning each block's row.

A scan walks the disk in batches of up to READ_BATCH_BLOCKS (4 MiB). Each block read is hashed
(xxh3-128) and compared with the parent's row: equal -> the row is carried over; all zeros -> a
zero row; changed and the same length as the parent's block -> only its changed 4 KiB pieces are
encoded (per-piece fingerprints); otherwise the whole block is. Encoding (zstd, AES-GCM, BLAKE3)
runs on a thread pool; the planned rows wait in order in ``Pending`` batches until their chunks
are sealed, then the caller's ``finalize`` turns them into table rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from seawall.blockstore.errors import DataPathError
from seawall.blockstore.fasthash import block_hashes
from seawall.blockstore.manifest import DiskManifest
from seawall.blockstore.shipstate import Encoded, Pending, ShipState
from seawall.blockstore.source import DiskSource
from seawall.blockstore.table import (
    BLOCK,
    PIECE,
    REBASE_PIECES,
    Entry,
    Hasher,
    block_count,
    block_len,
)
from seawall.blockstore.tablereader import TableReader
from seawall.blockstore.tuning import CBT_GAP_BLOCKS, READ_BATCH_BLOCKS

ZERO_BLOCK = bytes(BLOCK)


def is_zero(view: memoryview) -> bool:
    """Whether ``view`` (at most BLOCK bytes) is all zeros: one memcmp.

    ``view == memoryview(zeros)`` compares item by item through the struct machinery, ~575 us per
    64 KiB here under the GIL, 70x slower than this; it was 10 % of a seed's main-thread time.
    """
    return ZERO_BLOCK.startswith(view)


Job = tuple[memoryview, bool]  # bytes to encode, whether to fingerprint its pieces
Batch = tuple[int, int, list[tuple[int, int]]]  # blocks [b0, b1), the runs of them to read
Sealer = Callable[[list[memoryview]], list[tuple[bytes, bytes]]]
READ_AHEAD = 4  # batches read (and hashed) ahead of the planning: 16 MiB
Read = tuple[memoryview, bytearray | None, list[bytes]]  # bytes read, their buffer, block hashes


def cbt_runs(source: DiskSource, parent_disk: DiskManifest | None, n: int) -> list[tuple[int, int]] | None:
    """Block runs CBT says changed (coalesced), or None when hash-compare must run."""
    if parent_disk is None or not parent_disk.change_id or not source.change_id:
        return None
    areas = source.changed_areas(parent_disk.change_id)
    if areas is None:
        return None
    runs: list[tuple[int, int]] = []
    for a in areas:
        if a.length <= 0:
            continue
        b0 = a.offset // BLOCK
        b1 = min(n, (a.offset + a.length + BLOCK - 1) // BLOCK)
        if b0 < b1:
            runs.append((b0, b1))
    if parent_disk.size != source.size:
        # The old last block and everything past it changed length or are new.
        runs.append((max(0, min(block_count(parent_disk.size), n) - 1), n))
    runs.sort()
    # Reading a short gap beats another request to a remote disk; a source whose seeks cost nothing
    # (NBD on a local socket) says so with ``cbt_gap_blocks`` and reads exactly what changed.
    gap = int(getattr(source, "cbt_gap_blocks", CBT_GAP_BLOCKS))
    merged: list[tuple[int, int]] = []
    for b0, b1 in runs:
        if merged and b0 <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b1))
        else:
            merged.append((b0, b1))
    return merged


def batches(
    start: int, n: int, areas: list[tuple[int, int]] | None, checkpoint_blocks: int
) -> Iterator[Batch]:
    """Batches (b0, b1, runs to read) tiling [start, n) in block order.

    A batch reads at most READ_BATCH_BLOCKS blocks, from one run (hash-compare: the whole
    disk) or from several small ones (CBT: scattered 64 KiB extents share a batch instead of
    paying a batch each); blocks of [b0, b1) outside its runs are unchanged. A batch never
    spans more than a checkpoint interval, so checkpoints keep their spacing.
    """
    batch = max(1, min(READ_BATCH_BLOCKS, checkpoint_blocks))
    span_cap = max(batch, min(checkpoint_blocks, 4096))
    pieces: list[tuple[int, int, bool]] = []
    pos = start
    for r0, r1 in [(start, n)] if areas is None else areas:
        r0, r1 = max(r0, pos), min(r1, n)
        if r0 >= r1:
            continue
        pieces.extend((g, min(r0, g + span_cap), False) for g in range(pos, r0, span_cap))
        pieces.extend((b, min(r1, b + batch), True) for b in range(r0, r1, batch))
        pos = r1
    pieces.extend((g, min(n, g + span_cap), False) for g in range(pos, n, span_cap))
    b0, nread = start, 0
    runs: list[tuple[int, int]] = []
    for p0, p1, is_read in pieces:
        grow = p1 - p0 if is_read else 0
        if (runs or p0 > b0) and (nread + grow > batch or p1 - b0 > span_cap):
            yield b0, p0, runs
            b0, nread, runs = p0, 0, []
        if is_read:
            if runs and runs[-1][1] == p0 and nread + grow <= batch:
                runs[-1] = (runs[-1][0], p1)
            else:
                runs.append((p0, p1))
            nread += grow
    if b0 < n:
        yield b0, n, runs


def encode_jobs(seal: Sealer, hasher: Hasher, jobs: list[Job]) -> list[Encoded]:
    """Runs on the pool: zstd (most of the work) releases the GIL, so two threads use both cores.

    A batch's chunks are sealed in one call (``Codec.seal_chunks``: one zstd call for all of them),
    and its blocks' piece fingerprints computed in another (``Hasher.pieces_of``).
    """
    sealed = seal([data for data, _ in jobs])
    fps = iter(hasher.pieces_of([data for data, want_fps in jobs if want_fps]))
    return [
        (cid, s, next(fps) if want_fps else None)
        for (_, want_fps), (cid, s) in zip(jobs, sealed, strict=True)
    ]


def plan_pieces(
    hasher: Hasher, i: int, blk: memoryview, h: bytes, p: Entry, jobs: list[Job]
) -> tuple[tuple[Any, ...], int]:
    """A changed block whose parent has the same length: ship only the changed 4 KiB pieces."""
    L = len(blk)
    fps = hasher.pieces(blk)
    pfps = p.fps if p.fps is not None else hasher.zero_fps(L)
    npieces = len(fps) // 8
    changed = [k for k in range(npieces) if fps[8 * k : 8 * k + 8] != pfps[8 * k : 8 * k + 8]]
    ov: dict[int, Any] = dict(p.overlays)
    base = p.base
    if not changed or len(ov.keys() | set(changed)) >= REBASE_PIECES:
        # No piece differs although the block hash does (a 64-bit fingerprint collision), or
        # most of the block changed: store it whole.
        jobs.append((blk, False))
        return ("block", i, h, fps, len(jobs) - 1), L
    nbytes = 0
    for k in changed:
        piece = blk[k * PIECE : (k + 1) * PIECE]
        nbytes += len(piece)
        if is_zero(piece):
            if base is None:
                ov.pop(k, None)
            else:
                ov[k] = None
        else:
            jobs.append((piece, False))
            ov[k] = len(jobs) - 1  # a job number, replaced by the chunk's ref in finalize
    return ("pieces", i, h, fps, base, ov), nbytes


class _ReadAhead:
    """Batches with their bytes and block hashes, read and hashed one thread ahead of the planning.

    pread and the batch's hashing (``fasthash.block_hashes``: one call, without the GIL when the
    extension is built) both release the GIL, so reading and hashing the next 4 MiB overlaps
    planning this one. The hashing is here, not on the planning thread: without the extension it is
    64 python-xxhash calls per batch that hold the GIL, which on the main thread was the largest
    share of a seed's GIL time (py-spy --gil); here it only delays a batch that is not needed yet.
    Sources that can read into a caller's buffer (RawSource) get recycled 4 MiB buffers: a fresh 4
    MiB bytes per read costs page faults and zeroing, ~1 ms per batch, which is more than the copy
    itself (0.13 s per GiB at page-cache speed). Positional sources (``readinto``: pread, no cursor)
    are read on two threads, so reading and hashing use both cores on the hash-compare path; a
    source with internal state (vSphere's read window) is read on one, in order.
    """

    def __init__(
        self, source: DiskSource, size: int, io: ThreadPoolExecutor, todo: Iterator[Batch], seed: int
    ) -> None:
        self._seed = seed
        self._source = source
        self._size = size
        self._io = io
        self._todo = todo
        self._readinto = getattr(source, "readinto", None)
        self._free: list[bytearray] = []

    def _read(self, runs: list[tuple[int, int]]) -> Read:
        source, size, readinto = self._source, self._size, self._readinto
        buf: bytearray | None = None
        parts: list[bytes] = []
        if readinto is not None:
            try:  # two read threads may pop at once: no check-then-pop
                buf = self._free.pop()
            except IndexError:
                buf = bytearray(READ_BATCH_BLOCKS * BLOCK)
        pos = 0
        for r0, r1 in runs:
            off = r0 * BLOCK
            want = min(size, r1 * BLOCK) - off
            if readinto is not None and buf is not None:
                got = readinto(off, memoryview(buf)[pos : pos + want])
            else:
                parts.append(source.read(off, want))
                got = len(parts[-1])
            if got != want:
                raise DataPathError(f"{source.describe()}: short read at {off}: {got} of {want} bytes")
            pos += want
        view = memoryview(buf)[:pos] if buf is not None else memoryview(b"".join(parts))
        return view, buf, block_hashes(view, BLOCK, self._seed)

    def __iter__(
        self,
    ) -> Iterator[tuple[int, int, list[tuple[int, int]], Future[Read] | None]]:
        ahead: deque[tuple[int, int, list[tuple[int, int]], Future[Read] | None]]
        ahead = deque()

        def top_up() -> None:
            while len(ahead) < READ_AHEAD:
                nxt = next(self._todo, None)
                if nxt is None:
                    return
                b0, b1, runs = nxt
                ahead.append((b0, b1, runs, self._io.submit(self._read, runs) if runs else None))

        top_up()
        while ahead:
            item = ahead.popleft()
            top_up()
            yield item

    def recycle(self, buf: bytearray) -> None:
        """Every job that viewed ``buf`` has finished: the next read may fill it."""
        self._free.append(buf)


class Scan:
    """One ship's pass over its source, from the journal's position to the end of the disk."""

    def __init__(
        self,
        source: DiskSource,
        st: ShipState,
        cursor: TableReader | None,
        parent_size: int,
        size: int,
        pool: ThreadPoolExecutor,
        seal: Sealer,
    ) -> None:
        self.source = source
        self.st = st
        self.cursor = cursor
        self.parent_size = parent_size
        self.parent_n = block_count(parent_size)
        self.size = size
        self.pool = pool
        self.seal = seal

    def run(
        self,
        areas: list[tuple[int, int]] | None,
        io: ThreadPoolExecutor,
        checkpoint_blocks: int,
        depth: int,
        finalize: Callable[[Pending], None],
    ) -> None:
        """Plan every batch and hand them to ``finalize`` in order, at most ``depth`` in flight."""
        st, cursor = self.st, self.cursor
        full = st.journal.full_layer
        pending: deque[Pending] = deque()
        reads = _ReadAhead(
            self.source,
            self.size,
            io,
            batches(st.position, block_count(self.size), areas, checkpoint_blocks),
            st.hasher.seed,
        )
        for b0, b1, runs, fut_data in reads:
            if fut_data is None:
                plans: list[tuple[Any, ...]] = []
                if full and cursor is not None:
                    for i in range(b0, b1):
                        plans.append(("carry", cursor.at(i)))
                pending.append(Pending(b0, b1, plans, None))
            else:
                mv, buf, hs = fut_data.result()
                pending.append(self._plan_batch(b0, b1, runs, mv, buf, hs))
            while len(pending) > depth or (pending and pending[0].future is None):
                done = pending.popleft()
                finalize(done)
                if done.buf is not None:
                    reads.recycle(done.buf)
        while pending:
            finalize(pending.popleft())

    def _plan_batch(
        self,
        b0: int,
        b1: int,
        runs: list[tuple[int, int]],
        mv: memoryview,
        buf: bytearray | None,
        hs: list[bytes],
    ) -> Pending:
        """Compare the blocks read for [b0, b1) (hashed by the read-ahead), plan a row for each
        and start encoding what changed.

        ``plan`` is the per-block hot path, so it stays a closure over this batch's locals rather
        than a method paying attribute lookups per block.
        """
        st, cursor, size, parent_size, parent_n = (
            self.st,
            self.cursor,
            self.size,
            self.parent_size,
            self.parent_n,
        )
        full = st.journal.full_layer
        hasher = st.hasher
        plans: list[tuple[Any, ...]] = []
        jobs: list[Job] = []
        st.bytes_read += len(mv)
        span = cursor.hashes(b0, min(b1, parent_n)) if cursor is not None else []
        if len(runs) == 1 and runs[0] == (b0, b1):
            idx: range | list[int] = range(b0, b1)
            ph = span
        else:
            idx = [i for r0, r1 in runs for i in range(r0, r1)]
            ph = [span[i - b0] if i - b0 < len(span) else None for i in idx]
        if len(ph) < len(hs):  # blocks past the parent's end (the disk grew)
            ph = list(ph) + [None] * (len(hs) - len(ph))
        changed = 0

        def plan(k: int, i: int) -> int:
            """Plan block i (k-th read block); returns the changed bytes."""
            h = hs[k]
            L = block_len(size, i)
            same_len = i < parent_n and block_len(parent_size, i) == L
            if same_len and ph[k] == h:
                plans.append(("carry", cursor.at(i) if cursor is not None else None))
                return 0
            blk = mv[k * BLOCK : k * BLOCK + L]
            p = cursor.at(i) if cursor is not None and i < parent_n else None
            if h == hasher.zero_hash(L) and is_zero(blk):
                plans.append(("zero", i, h))
                return L if p is not None and not p.is_zero else 0
            if same_len and p is not None:
                pl, nbytes = plan_pieces(hasher, i, blk, h, p, jobs)
                plans.append(pl)
                return nbytes
            jobs.append((blk, True))
            plans.append(("block", i, h, None, len(jobs) - 1))
            return L

        if full:
            # A full layer lists every block: read ones planned, the rest carried.
            k = 0
            for i in range(b0, b1):
                if k < len(idx) and idx[k] == i:
                    changed += plan(k, i)
                    k += 1
                else:
                    plans.append(("carry", cursor.at(i) if cursor is not None else None))
        else:
            # A delta layer only needs the blocks whose hash moved; one C-speed pass finds them.
            for k in [k for k, h in enumerate(hs) if ph[k] != h]:
                changed += plan(k, idx[k])
        fut = self.pool.submit(encode_jobs, self.seal, hasher, jobs) if jobs else None
        st.bytes_changed += changed
        return Pending(b0, b1, plans, fut, buf)
