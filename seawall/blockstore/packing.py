"""The ship's write side: chunks into packs, planned rows into table parts, durable checkpoints.

A checkpoint makes everything before it durable in this order: packs (and their indexes), then
the table part naming them, then the session journal naming the part, then the progress callback.
A worker that dies between checkpoints loses only the work since the last one; the next attempt
resumes from the journal (ship.py).

The durable part of a checkpoint (waiting for the packs' fsyncs, the part, the journal) runs on the
ship's checkpoint thread while the scan goes on: done on the planning thread it stalled the whole
pipeline for every fsync (0.1-0.25 s per 64 MiB shipped on a shared disk, the encoders idle
meanwhile). Checkpoints stay in order and at most one is in flight: the next one first waits for
it and hands its progress to the caller, on the ship's own thread (Temporal heartbeats must be sent
from the activity's thread), so a progress report still always names a durable checkpoint and no
journal ever runs ahead of the last report by more than one checkpoint's work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from seawall.blockstore.chunkindex import ChunkIndex, encode_index
from seawall.blockstore.codec import KIND_INDEX, Codec
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.layout import index_key, pack_key, session_key
from seawall.blockstore.manifest import SessionJournal, ShipProgress
from seawall.blockstore.shipstate import Pending, ShipState
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.table import ChunkRef, Entry, Overlay, block_count
from seawall.blockstore.tablecache import TableCache
from seawall.blockstore.tableformat import Part, encode_part
from seawall.blockstore.tuning import MAX_PACKS_IN_FLIGHT, Tuning

ProgressCallback = Callable[[ShipProgress], None]


class Packer:
    """Turns a ship's planned batches into packs, table parts and journal checkpoints."""

    def __init__(
        self,
        store: ObjectStore,
        codec: Codec,
        signed: SignedObjects,
        tables: TableCache,
        index: ChunkIndex,
        tuning: Tuning,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._codec = codec
        self._signed = signed
        self._tables = tables
        self._index = index
        self._tuning = tuning
        self._clock = clock

    def store_chunk(self, st: ShipState, cid: bytes, sealed: bytes) -> ChunkRef:
        # Chunks of this ship are looked up in st.local until their pack is confirmed durable;
        # only then do they join the shared index (a failed ship leaves nothing stale behind).
        ref = st.local.get(cid)
        if cid in st.damaged and cid not in st.repairs:
            st.repairs[cid] = sealed  # the source's bytes of a damaged chunk: repaired after the ship
        if ref is None and st.use_index and cid not in st.damaged:
            ref = self._index.lookup(cid)
            if ref is not None and ref.pack not in st.written:
                st.deduped.add(ref.pack)
        if ref is None:
            if not st.pack_id:
                st.pack_id = os.urandom(16)
            ref = ChunkRef(cid, st.pack_id, st.pack_len, len(sealed))
            st.pack_chunks.append(sealed)
            st.pack_len += len(sealed)
            st.pack_rows.append((cid, ref.offset, ref.length))
            st.local[cid] = ref
            st.chunks_new += 1
        st.referenced.add(ref.pack)
        return ref

    def finalize(self, st: ShipState, pb: Pending, on_progress: ProgressCallback | None) -> None:
        """Rows of a planned batch, in block order, now that its chunks are sealed."""
        if st.ckpt is not None and st.ckpt.done():
            self.settle(st, on_progress)
        results = pb.future.result() if pb.future is not None else []
        refs: list[ChunkRef] = [self.store_chunk(st, cid, sealed) for cid, sealed, _ in results]
        out = st.part_entries
        for plan in pb.plans:
            kind = plan[0]
            if kind == "carry":
                e = plan[1]
                if e is None:
                    raise DataPathError("parent table has no row for a block it should cover")
                out.append(e)
                for r in e.chunk_refs():
                    st.referenced.add(r.pack)
            elif kind == "zero":
                out.append(Entry(plan[1], plan[2], None))
            elif kind == "block":
                _, i, h, fps, j = plan
                out.append(Entry(i, h, fps if fps is not None else results[j][2], refs[j]))
            else:
                _, i, h, fps, base, ov = plan
                overlays: list[Overlay] = []
                for k in sorted(ov):
                    v = ov[k]
                    if isinstance(v, int):
                        overlays.append((k, refs[v]))
                    else:
                        overlays.append((k, v))
                        if v is not None:
                            st.referenced.add(v.pack)
                if base is not None:
                    st.referenced.add(base.pack)
                out.append(Entry(i, h, fps, base, tuple(overlays)))
        st.position = pb.end
        st.since_ckpt_blocks += pb.end - pb.start
        if st.pack_len >= self._tuning.pack_target:
            self.flush_pack(st)
        if (
            st.since_ckpt_blocks >= self._tuning.checkpoint_blocks
            or st.since_ckpt_bytes >= self._tuning.checkpoint_bytes
        ):
            self.checkpoint(st, on_progress)

    def flush_pack(self, st: ShipState) -> None:
        """Hand the pack to the writer threads (the upload overlaps compression).

        The writer thread also joins the chunks: bytes.join of 8 MiB drops and re-takes the GIL,
        and on the main thread that re-take queues behind the encoders (measured: ~0.9 s per GiB
        of seed spent waiting there). The index is sealed here (a few KB) so the bytes a pack
        ships are known without waiting for its upload.
        """
        if not st.pack_chunks:
            return
        pack = st.pack_id
        chunks = st.pack_chunks
        sealed_idx = self._codec.seal(KIND_INDEX, pack, encode_index(st.pack_rows))

        def write() -> int:
            blob = b"".join(chunks)
            self._store.put(pack_key(pack), blob)
            # The index goes after the pack: an index never names a pack that is not there.
            self._store.put(index_key(pack), sealed_idx)
            return len(blob) + len(sealed_idx)

        # Memory stays bounded: at most MAX_PACKS_IN_FLIGHT packs wait for the store.
        while st.in_flight and st.in_flight[0].done():
            st.in_flight.pop(0).result()
        while len(st.in_flight) >= MAX_PACKS_IN_FLIGHT:
            st.in_flight.pop(0).result()
        assert st.writer is not None
        fut = st.writer.submit(write)
        st.in_flight.append(fut)
        st.writes.append(fut)
        st.unconfirmed.append((pack, [cid for cid, _, _ in st.pack_rows]))
        st.since_ckpt_bytes += st.pack_len
        st.bytes_shipped += st.pack_len + len(sealed_idx)
        st.written.add(pack)
        st.pack_id, st.pack_chunks, st.pack_len, st.pack_rows = b"", [], 0, []

    def checkpoint(self, st: ShipState, on_progress: ProgressCallback | None, wait: bool = False) -> None:
        """Start a checkpoint of everything planned so far (``wait``: and see it durable)."""
        self.flush_pack(st)
        self.settle(st, on_progress)  # one in flight: the previous one is durable and reported first
        writes, st.writes = st.writes, []
        unconfirmed, st.unconfirmed = st.unconfirmed, []
        refs = {cid: st.local[cid] for _, cids in unconfirmed for cid in cids}
        entries, st.part_entries = st.part_entries, []
        start, end = st.part_start, st.position
        j = st.journal
        update = {
            "position": end,
            "bytes_read": st.bytes_read,
            "bytes_changed": st.bytes_changed,
            "chunks_new": st.chunks_new,
            "checkpoint": j.checkpoint + 1,
            "packs_written": sorted(p.hex() for p in st.written),
            "packs_referenced": sorted(p.hex() for p in st.referenced),
        }
        packs_shipped, parts_shipped = st.bytes_shipped, st.part_bytes
        st.part_start = end
        st.since_ckpt_blocks = 0
        st.since_ckpt_bytes = 0

        def durable() -> tuple[SessionJournal, int]:
            # Durable means durable: every pack this checkpoint covers is in the store before the
            # table part that references it and the journal that lets a new worker resume past it.
            for w in writes:
                w.result()
            self._index.add(unconfirmed, refs)
            parts, part_bytes = list(j.parts), parts_shipped
            if end > start and (entries or j.full_layer):
                plain = encode_part(start, end, j.full_layer, entries)
                oid, n = self._tables.put(plain)
                self._tables.cache_part(oid, Part(plain))
                parts.append((oid.hex(), start, end))
                part_bytes += n
            journal = j.model_copy(
                update={
                    **update,
                    "parts": parts,
                    "bytes_shipped": packs_shipped + part_bytes,
                    "renewed_at": self._clock(),
                }
            )
            self._signed.put_overwrite(session_key(journal.session), journal)
            return journal, part_bytes

        assert st.checkpointer is not None
        st.ckpt = st.checkpointer.submit(durable)
        if wait:
            self.settle(st, on_progress)

    def settle(self, st: ShipState, on_progress: ProgressCallback | None) -> None:
        """Wait for the checkpoint in flight (if any), then report it: it is durable now."""
        fut, st.ckpt = st.ckpt, None
        if fut is None:
            return
        j, st.part_bytes = fut.result()
        st.journal = j
        if on_progress is not None:
            on_progress(
                ShipProgress(
                    session=j.session,
                    vm=j.vm,
                    disk=j.disk,
                    block=j.position,
                    blocks_total=block_count(j.size),
                    bytes_read=j.bytes_read,
                    bytes_shipped=j.bytes_shipped,
                    packs_committed=len(j.packs_written),
                    checkpoint=j.checkpoint,
                )
            )
