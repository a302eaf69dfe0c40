"""Shipping a disk: read the source, store what changed since the parent point, resumably.

A ship writes its lease (the session journal) first, then packs and table parts, checkpointing
every CHECKPOINT_BLOCKS scanned or CHECKPOINT_BYTES shipped (packing.py); at the end one table
layer naming the parts, and the journal records the finished ShippedDisk. Nothing is visible as a
point before commit_point (points.py) writes the manifest. A new worker given the same session
(or the last ShipProgress) resumes after the last checkpoint the store confirms.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import blake3

from seawall.blockstore.chunkindex import ChunkIndex
from seawall.blockstore.codec import Codec
from seawall.blockstore.damage import Damage
from seawall.blockstore.errors import CorruptObjectError, DataPathError, MissingObjectError
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import key_tail_bytes, pack_key, session_key, table_key
from seawall.blockstore.manifest import (
    ChangePath,
    DiskManifest,
    PointRef,
    SessionJournal,
    ShippedDisk,
    ShipProgress,
    check_name,
)
from seawall.blockstore.packing import Packer, ProgressCallback
from seawall.blockstore.points import Points, disk_of
from seawall.blockstore.scan import Scan, cbt_runs
from seawall.blockstore.shipstate import ShipState
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.source import DiskSource
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore
from seawall.blockstore.table import BLOCK, PIECE, Hasher, block_count, block_len
from seawall.blockstore.tablecache import TableCache
from seawall.blockstore.tableformat import PartRef, encode_layer
from seawall.blockstore.tuning import Tuning


class Shipper:
    """Ships disks into one repository (see ``Repository.ship``)."""

    def __init__(
        self,
        store: ObjectStore,
        key: KeyMaterial,
        codec: Codec,
        signed: SignedObjects,
        tables: TableCache,
        index: ChunkIndex,
        points: Points,
        tuning: Tuning,
        hasher: Callable[[int], Hasher],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._key = key
        self._codec = codec
        self._signed = signed
        self._tables = tables
        self._index = index
        self._points = points
        self._tuning = tuning
        self._hasher = hasher
        self._clock = clock
        self._packer = Packer(store, codec, signed, tables, index, tuning, clock)
        self._damage = Damage(store, signed, clock)

    def ship(
        self,
        source: DiskSource,
        vm: str,
        disk: str,
        parent: PointRef | None,
        resume: ShipProgress | dict[str, Any] | None,
        on_progress: ProgressCallback | None,
        session: str | None,
        dedup: bool | None,
    ) -> ShippedDisk:
        check_name("vm", vm)
        check_name("disk", disk)
        progress = ShipProgress.coerce(resume)
        size = source.size
        n = block_count(size)
        parent_disk: DiskManifest | None = None
        parent_id = parent.point_id if parent is not None else None
        if parent is not None:
            parent_disk = disk_of(self._points.read_manifest(parent.vm, parent.point_id), disk)
        journal: SessionJournal | None = None
        sid = progress.session if progress is not None else session
        if sid is not None:
            journal = self._try_resume(sid, vm, disk, parent_id if parent_disk else None, size)
            if journal is not None and journal.shipped is not None:
                return journal.shipped
        areas = cbt_runs(source, parent_disk, n)
        if journal is None:
            journal = self._start(sid, progress, vm, disk, parent_id, parent_disk, size, areas)
        elif journal.change_path == "cbt" and areas is None:
            journal = journal.model_copy(update={"change_path": "hash-compare"})
        if journal.change_path != "cbt":
            areas = None
        st = ShipState.start(journal, self._hasher(journal.hash_seed))
        st.damaged = frozenset(self._damage.damaged_refs())  # one GET; absent: nothing damaged
        st.use_index = dedup if dedup is not None else parent_disk is None
        if st.use_index:
            self._index.refresh()
        cursor = self._tables.reader(parent_disk.layers, f"parent point {parent_id}") if parent_disk else None
        threads = self._tuning.threads
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="seawall-encode")
        # Positional sources (pread) are safe to read from two threads; others keep one, in order.
        readers = 2 if callable(getattr(source, "readinto", None)) else 1
        io = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="seawall-read")
        # Pack uploads get their own threads: a slow PUT or fsync must not stall the read-ahead.
        st.writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="seawall-write")
        st.checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seawall-checkpoint")
        try:
            parent_size = parent_disk.size if parent_disk else 0
            scan = Scan(source, st, cursor, parent_size, size, pool, self._codec.seal_chunks)
            scan.run(
                areas,
                io,
                self._tuning.checkpoint_blocks,
                2 * threads,
                lambda pb: self._packer.finalize(st, pb, on_progress),
            )
            return self._finish(st, parent_disk, size, n, source.change_id, on_progress)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            io.shutdown(wait=True, cancel_futures=True)
            st.checkpointer.shutdown(wait=True, cancel_futures=True)
            st.writer.shutdown(wait=True, cancel_futures=True)

    def _start(
        self,
        sid: str | None,
        progress: ShipProgress | None,
        vm: str,
        disk: str,
        parent_id: str | None,
        parent_disk: DiskManifest | None,
        size: int,
        areas: list[tuple[int, int]] | None,
    ) -> SessionJournal:
        """A new session: its journal (the lease) is durable before any pack it writes."""
        full = (
            parent_disk is None
            or parent_disk.size != size
            or len(parent_disk.layers) >= self._tuning.max_chain
        )
        path: ChangePath = "full" if parent_disk is None else ("cbt" if areas is not None else "hash-compare")
        now = self._clock()
        journal = SessionJournal(
            session=sid if sid is not None and progress is None else f"{vm}.{disk}.{uuid.uuid4().hex}",
            vm=vm,
            disk=disk,
            parent_point=parent_id if parent_disk else None,
            key_id=self._key.key_id,
            size=size,
            full_layer=full,
            change_path=path,
            started_at=now,
            renewed_at=now,
            hash_seed=parent_disk.hash_seed if parent_disk is not None else self._key.seed64,
        )
        check_name("session", journal.session)
        # The lease is durable before any pack: GC never collects what a live session wrote.
        self._signed.put_overwrite(session_key(journal.session), journal)
        return journal

    def _try_resume(
        self, sid: str, vm: str, disk: str, parent_id: str | None, size: int
    ) -> SessionJournal | None:
        try:
            j = self._signed.get(session_key(sid), SessionJournal)
        except (ObjectNotFound, CorruptObjectError):
            return None
        if (j.vm, j.disk, j.parent_point, j.size, j.key_id) != (vm, disk, parent_id, size, self._key.key_id):
            return None
        if j.shipped is not None:
            if all(self._store.exists(table_key(bytes.fromhex(lid))) for lid in j.shipped.layers):
                return j
            return None
        # Trust the store, not the heartbeat: everything the journal names must still be there
        # (a lease that expired may have let GC collect it).
        for pid, _, _ in j.parts:
            if not self._store.exists(table_key(bytes.fromhex(pid))):
                return None
        if not self._packs_exist({bytes.fromhex(p) for p in j.packs_referenced}):
            return None
        j = j.model_copy(update={"renewed_at": self._clock()})
        self._signed.put_overwrite(session_key(sid), j)
        return j

    def _packs_exist(self, packs: set[bytes]) -> bool:
        if len(packs) <= 64:
            return all(self._store.exists(pack_key(p)) for p in packs)
        present = {key_tail_bytes(k) for k in self._store.list("packs/")}
        return packs <= present

    def _finish(
        self,
        st: ShipState,
        parent_disk: DiskManifest | None,
        size: int,
        n: int,
        change_id: str | None,
        on_progress: ProgressCallback | None,
    ) -> ShippedDisk:
        self._packer.settle(st, on_progress)
        if st.position > st.part_start or st.pack_chunks or st.writes or st.journal.checkpoint == 0:
            # else the last checkpoint already covers it all
            self._packer.checkpoint(st, on_progress, wait=True)
        j = st.journal
        lid, nbytes = self._tables.put(
            encode_layer(j.full_layer, [PartRef(bytes.fromhex(p), s, e) for p, s, e in j.parts])
        )
        layers = ([] if j.full_layer or parent_disk is None else list(parent_disk.layers)) + [lid.hex()]
        if len(layers) > self._tuning.max_chain:
            raise DataPathError(
                f"engine error: chain of {len(layers)} layers exceeds {self._tuning.max_chain}"
            )
        # A dedup hit may name a pack a GC removed after this repository loaded its index; never
        # hand out a point with a hole in it. (Packs reached through the parent's rows need no
        # check: the parent's manifest, or this ship's lease, keeps them.)
        if not self._packs_exist(st.deduped):
            raise MissingObjectError(
                "packs/...", f"session {j.session}: a deduplicated pack vanished; ship again"
            )
        digest, zero_blocks = self._table_digest(layers, size, st.hasher, f"session {j.session}")
        shipped = ShippedDisk(
            disk=j.disk,
            size=size,
            block_size=BLOCK,
            piece_size=PIECE,
            hash_seed=j.hash_seed,
            layers=layers,
            digest=digest,
            change_path=j.change_path,
            change_id=change_id,
            parent_point=j.parent_point,
            blocks=n,
            zero_blocks=zero_blocks,
            bytes_read=j.bytes_read,
            bytes_changed=j.bytes_changed,
            bytes_shipped=j.bytes_shipped + nbytes,
            chunks_new=j.chunks_new,
            packs_written=len(j.packs_written),
            session=j.session,
            key_id=self._key.key_id,
        )
        j = j.model_copy(update={"shipped": shipped, "renewed_at": self._clock()})
        self._signed.put_overwrite(session_key(j.session), j)
        if st.repairs:
            # The source still holds the content of damaged chunks: write it back where they lie, so
            # the older points that reference them verify again (damage.py).
            self._damage.repair(st.repairs)
        return shipped

    def _table_digest(
        self, layers: list[str], size: int, hasher: Hasher, referenced_by: str
    ) -> tuple[str, int]:
        """The disk digest from the block hashes the ship computed from the source bytes.

        Reads only the hash columns of the table parts (no row decoding): ~20 ms per GiB.
        """
        reader = self._tables.reader(layers, referenced_by)
        h = blake3.blake3(size.to_bytes(8, "little"))
        n = block_count(size)
        zero_full = hasher.zero_hash(BLOCK)
        zeros = 0
        for b0 in range(0, n, 4096):
            hashes = reader.hashes(b0, min(n, b0 + 4096))
            if None in hashes:
                missing = b0 + hashes.index(None)
                raise DataPathError(f"engine error: table of {referenced_by} has no row for block {missing}")
            h.update(b"".join(hashes))  # type: ignore[arg-type]
            zeros += hashes.count(zero_full)
            tail = block_len(size, n - 1)
            if b0 + len(hashes) == n and tail != BLOCK:
                zeros += hashes[-1] == hasher.zero_hash(tail)
        return h.hexdigest(), zeros
