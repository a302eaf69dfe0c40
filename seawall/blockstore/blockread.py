"""Reading a disk's blocks back from a point, in block order: the pipeline verify and restore share.

The main thread walks a disk's table and fetches packs (store I/O, cached and fetched ahead by
``packcache.py``); a pool decrypts, decompresses and re-hashes 64-block batches. Table rows carry
each chunk's full location, so reading needs no chunk index. ``readback.py`` builds the two verbs
(verify a point, restore a disk) on ``BlockReader.blocks``; this module is only the reading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from seawall.blockstore.codec import Codec
from seawall.blockstore.errors import (
    BadRowError,
    CorruptObjectError,
    DataPathError,
    MissingObjectError,
    WrongKeyError,
)
from seawall.blockstore.layout import pack_key
from seawall.blockstore.manifest import BadChunk, DiskManifest
from seawall.blockstore.packcache import PackCache
from seawall.blockstore.points import Points
from seawall.blockstore.scan import ZERO_BLOCK
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.table import (
    PIECE,
    ChunkRef,
    Entry,
    Hasher,
    TableFormatError,
    block_count,
    block_len,
)
from seawall.blockstore.tablecache import TableCache
from seawall.blockstore.tuning import READ_BATCH_BLOCKS, Tuning

SKIP = DataPathError("not read: trusted from a verified parent")
DAMAGED = CorruptObjectError("chunk", "damaged: an earlier verify found it and no ship has repaired it yet")
TRUSTED = b""  # content placeholder of a block not read back (real blocks are never empty)

Writer = Callable[[int, bytes], None]
# One scrub's verdicts by (table layer id, block): None when the row checked out, else its error.
Seen = dict[tuple[str, int], Exception | None]
# (block, row, content or None for zero, block hash, error)
Block = tuple[int, Entry | None, bytes | None, bytes | None, Exception | None]
# (block, length, row, its packs being fetched, error found while walking the table)
_Item = tuple[int, int, Entry | None, dict[bytes, Future[bytes]], Exception | None]


def bad_chunks(err: Exception | None) -> list[BadChunk]:
    """The damaged chunks a per-block error names (none for a table-level error)."""
    if not isinstance(err, BadRowError):
        return []
    return [BadChunk(cid=c.hex(), pack=p.hex(), offset=o, length=n) for c, p, o, n in err.refs]


class BlockReader:
    """The block reader of one repository; ``readback.ReadBack`` adds verify and restore on it."""

    def __init__(
        self,
        store: ObjectStore,
        codec: Codec,
        signed: SignedObjects,
        tables: TableCache,
        points: Points,
        tuning: Tuning,
        hasher: Callable[[int], Hasher],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._codec = codec
        self._signed = signed
        self._tables = tables
        self._points = points
        self._tuning = tuning
        self._hasher = hasher
        self._clock = clock

    def _assemble(
        self, e: Entry, length: int, blobs: dict[bytes, bytes], key_id: str
    ) -> tuple[bytes | None, int]:
        """Block content from its chunks, each checked against its id; (None, 0) for a zero block."""
        if e.is_zero:
            return None, 0
        nchunks = 0

        def chunk(ref: ChunkRef) -> bytes:
            blob = blobs[ref.pack]
            if ref.offset + ref.length > len(blob):
                raise CorruptObjectError(f"pack {ref.pack.hex()}", "truncated (chunk extends past its end)")
            view = memoryview(blob)[ref.offset : ref.offset + ref.length]
            return self._codec.open_chunk(ref.cid, view, key_id)

        if e.base is not None:
            data = chunk(e.base)
            nchunks += 1
            if len(data) != length:
                raise CorruptObjectError(
                    f"chunk {e.base.cid.hex()[:16]}", f"is {len(data)} bytes, block {length}"
                )
        else:
            data = ZERO_BLOCK[:length]
        if e.overlays:
            buf = bytearray(data)
            for k, ref in e.overlays:
                lo, hi = k * PIECE, min(length, (k + 1) * PIECE)
                if lo >= length:
                    raise CorruptObjectError("table row", f"overlay piece {k} past the block end")
                if ref is None:
                    buf[lo:hi] = ZERO_BLOCK[: hi - lo]
                else:
                    piece = chunk(ref)
                    nchunks += 1
                    if len(piece) != hi - lo:
                        raise CorruptObjectError(f"chunk {ref.cid.hex()[:16]}", "piece has the wrong length")
                    buf[lo:hi] = piece
            data = bytes(buf)
        return data, nchunks

    def _check(self, hasher: Hasher, key_id: str, items: list[_Item]) -> tuple[list[Block], int]:
        """Runs on the pool: assemble and re-hash one batch; errors are per block, a wrong key raises."""
        out: list[Block] = []
        chunks = 0
        for i, L, e, blobs, err in items:
            if err is SKIP and e is not None:
                out.append((i, e, TRUSTED, e.bhash, None))
                continue
            if err is not None or e is None:
                out.append((i, e, None, None, err or CorruptObjectError("table", "no row for this block")))
                continue
            try:
                data, nc = self._assemble(e, L, {p: f.result() for p, f in blobs.items()}, key_id)
                actual = hasher.zero_hash(L) if data is None else hasher.block(data)
                if actual != e.bhash:
                    raise CorruptObjectError("block", "content does not match the block hash in the manifest")
                chunks += nc
                out.append((i, e, data, actual, None))
            except WrongKeyError:
                raise
            except (DataPathError, TableFormatError) as exc:
                out.append((i, e, None, None, BadRowError(exc, self._bad_refs(e, blobs, key_id))))
        return out, chunks

    def _bad_refs(
        self, e: Entry, blobs: dict[bytes, Future[bytes]], key_id: str
    ) -> list[tuple[bytes, bytes, int, int]]:
        """Which of a failed row's chunks do not open (a missing pack fails all of its chunks).

        Only on the error path: each chunk is opened once more on its own, so a scrub can name, mark
        and later repair exactly the damaged chunk, not every chunk of the block.
        """
        bad: list[tuple[bytes, bytes, int, int]] = []
        for ref in e.chunk_refs():
            try:
                fut = blobs.get(ref.pack)
                if fut is None:
                    raise MissingObjectError(pack_key(ref.pack), "table row")
                blob = fut.result()
                if ref.offset + ref.length > len(blob):
                    raise CorruptObjectError("pack", "truncated")
                self._codec.open_chunk(
                    ref.cid, memoryview(blob)[ref.offset : ref.offset + ref.length], key_id
                )
            except WrongKeyError:
                raise
            except DataPathError:
                bad.append((ref.cid, ref.pack, ref.offset, ref.length))
        return bad

    def blocks(
        self,
        dm: DiskManifest,
        key_id: str,
        first: int,
        where: str,
        stats: dict[str, int],
        newest_layer_only: bool = False,
        seen: Seen | None = None,
        damaged: frozenset[bytes] = frozenset(),
    ) -> Iterator[Block]:
        """(block, row, content or None for zero, block hash, error) in block order.

        The main thread walks the table and fetches packs (store I/O, cached); the pool decrypts,
        decompresses and re-hashes 64-block batches (both cores). Errors are per block, except a
        wrong key, which is raised: it would make every block "bad". With ``newest_layer_only``
        rows of older layers are not read: their hash is the table's and their content TRUSTED.
        ``seen`` carries what one scrub already checked, by (table layer, block): points share most
        rows, so each row is read once per scrub. A row that references a ``damaged`` chunk fails
        without being trusted or read.
        """
        reader = self._tables.reader(dm.layers, where)
        cache = PackCache(self._store, self._tuning.pack_cache_bytes, where)
        hasher = self._hasher(dm.hash_seed)
        n = block_count(dm.size)
        top = len(dm.layers) - 1
        threads = self._tuning.threads
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="seawall-restore")
        pending: deque[Future[tuple[list[Block], int]]] = deque()
        keys: dict[int, tuple[str, int]] = {}

        def drain() -> list[Block]:
            out, chunks = pending.popleft().result()
            stats["chunks"] += chunks
            if seen is not None:
                for i, _e, _d, _a, err in out:
                    k = keys.pop(i, None)
                    if k is not None:
                        seen[k] = err
            return out

        try:
            for b0 in range(first, n, READ_BATCH_BLOCKS):
                items: list[_Item] = []
                for i in range(b0, min(n, b0 + READ_BATCH_BLOCKS)):
                    L = block_len(dm.size, i)
                    blobs: dict[bytes, Future[bytes]] = {}
                    try:
                        e, layer = reader.at_layer(i)
                        if e is not None and damaged:
                            hit = [
                                (r.cid, r.pack, r.offset, r.length)
                                for r in e.chunk_refs()
                                if r.cid in damaged
                            ]
                            if hit:
                                items.append((i, L, e, blobs, BadRowError(DAMAGED, hit)))
                                continue
                        if newest_layer_only and e is not None and layer < top:
                            items.append((i, L, e, blobs, SKIP))
                            continue
                        if seen is not None and e is not None:
                            k = (dm.layers[layer], i)
                            if k in seen:
                                items.append((i, L, e, blobs, seen[k] or SKIP))
                                continue
                            keys[i] = k
                        if e is not None:
                            for r in e.chunk_refs():
                                if r.pack not in blobs:
                                    blobs[r.pack] = cache.future(r.pack)
                        items.append((i, L, e, blobs, None))
                    except (DataPathError, TableFormatError) as exc:
                        items.append((i, L, None, blobs, exc))
                pending.append(pool.submit(self._check, hasher, key_id, items))
                while len(pending) > 4 * threads:  # deep enough to fetch packs ahead
                    yield from drain()
            while pending:
                yield from drain()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            cache.close()
            stats["packs_fetched"] = stats.get("packs_fetched", 0) + cache.fetched
