"""The replica repository: ship disks into it, commit recovery points, verify, restore, retain, GC.

Object layout in the store (every data object sealed, see codec.py)::

    packs/<xx>/<pack id>       sealed chunks back to back, ~8 MiB (PACK_TARGET)
    index/<xx>/<pack id>       the pack's chunk list: chunk id -> offset, length
    tables/<xx>/<table id>     table parts and layers (table.py), content-addressed
    points/<vm>/<point>.json   the manifest: written last, so a listed point is complete
    verified/<vm>/<point>.json marker written after a clean verify ("latest verified" is a listing)
    sessions/<session>.json    lease + resume journal of a ship in progress
    gc/condemned.json          objects GC found unreferenced, and since when

Why packs: at 1 % change of 1 GiB with scattered 4 KiB writes a point holds ~2,600 chunks. One
object per chunk would be 2,600 PUTs per cycle per GiB (S3 allows ~3,500 PUT/s per prefix);
packed, it is 2 packs + 2 indexes + 2-4 table objects + 1 manifest.

Dedup and packs: before a chunk is appended to a pack its id is looked up, first among the
chunks of the same ship, then (for seeds, or with ``dedup=True``) in the store-wide chunk index:
every pack's ``index/`` object, loaded once per repository instance and refreshed per ship. A hit
is a no-op that references the existing pack, so content is stored once per store and key across
points, disks and VMs (a VM cloned from a template seeds at the cost of what differs). A ship's
own chunks join the shared index only after their pack is durable. Incrementals skip the global
index by default: loading it is O(packs in the store) requests, and their unchanged data is found
through the parent's table anyway. Table rows carry the full location (chunk id + pack + offset +
length), so restore and verify need no global index at all.

Manifest size vs the 1.25x storage target (1 GiB disk, 1 % scattered 4 KiB change = 10.7 MB):
a full table is 2.7-3.2 MB per GiB (16,384 rows x ~190 B: block hash, 16 piece fingerprints, a
chunk reference; less with zero blocks). Rewriting it every cycle would add 25-30 %. So a point's
table is a *synthetic full*: the parent's layers plus one delta layer holding only the changed
rows (~2,400 rows x ~210 B = 0.5 MB, +5 %); pack indexes (+1 %) and the 40-byte seal per 4 KiB
chunk (+1 %) complete it. Measured by benchmarks/datapath.py at 1 GiB: 11.46 MB stored for
10.74 MB changed = 1.067x, everything the point wrote included. The bound: a disk has at most
MAX_CHAIN (8) layers, one full and up to 7 deltas; the ship that would make the 9th writes a new
full layer instead (consolidation: that cycle also stores ~0.3 % of the disk size, 0.35 MB per
cycle averaged over the chain at 1 GiB). A disk whose size changed also gets a full layer.
Restoring any point (the last 30 or any other) reads at most 8 layer objects plus their parts
(one part per GiB scanned); no point replays its ancestors' manifests, and retention may delete a
parent because its child names the layers it needs directly.

Garbage collection and concurrent writers (the rule, implemented in ``gc``):

1. Every ship first writes its lease (``sessions/<id>.json``, renewed at each checkpoint), then
   reads ``gc/condemned.json`` and never dedups against a condemned pack.
2. GC lists packs and tables, then sessions, then manifests (in that order, so an object
   committed during the run is seen as referenced), and computes the unreferenced set.
3. An unreferenced object is first *condemned* (recorded with the time GC saw it so); it is deleted
   only by a later GC run, if it is still unreferenced, the grace period (``gc_grace``) has
   passed, and every live session started after the condemn time plus CLOCK_SKEW. Sessions that
   started earlier could have loaded an index that still offered the object, or wrote it
   themselves; they finish (commit or die) first. A session is dead once its lease is older than
   ``lease_ttl``; a resumed ship re-checks that everything its journal names still exists.
4. A pack stays while any kept point references any chunk in it (no repacking): space held by
   partly dead packs is the price of never rewriting data.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import blake3
import xxhash
from pydantic import BaseModel, ValidationError

from seawall.blockstore.codec import KIND_INDEX, KIND_TABLE, Codec
from seawall.blockstore.errors import (
    BadBlockError,
    CorruptObjectError,
    DataPathError,
    DigestMismatchError,
    MissingObjectError,
    PointConflictError,
    PointNotFoundError,
    WrongKeyError,
)
from seawall.blockstore.keys import KeyMaterial, KeyRing
from seawall.blockstore.manifest import (
    BadBlock,
    ChangePath,
    CondemnedList,
    DiskManifest,
    GcResult,
    PointInfo,
    PointManifest,
    PointRef,
    RestoreResult,
    RetentionPolicy,
    RetentionResult,
    SessionJournal,
    ShippedDisk,
    ShipProgress,
    VerifiedMarker,
    VerifyResult,
    check_name,
    utcnow,
)
from seawall.blockstore.source import DiskSource
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore
from seawall.blockstore.table import (
    BLOCK,
    PIECE,
    REBASE_PIECES,
    ChunkRef,
    Entry,
    Hasher,
    Overlay,
    Part,
    PartRef,
    TableFormatError,
    TableReader,
    block_count,
    block_len,
    decode_layer,
    decode_part,
    encode_layer,
    encode_part,
)

MAX_CHAIN = 8
PACK_TARGET = 8 * 1024 * 1024
# A checkpoint (pack flush + table part + journal + progress callback) every 1 GiB scanned or
# 64 MiB shipped: a restarted worker re-reads at most ~1 GiB (~0.15 s from cache, ~2 s from a
# 500 MB/s datastore) and a 1 TiB seed writes ~10,000 small parts, not millions.
CHECKPOINT_BLOCKS = 16384
CHECKPOINT_BYTES = 64 * 1024 * 1024
MAX_PACKS_IN_FLIGHT = 4  # 32 MiB of sealed data waiting for the store at most
FETCH_THREADS = 4
# CBT extents closer than this are read as one run: reading a 256 KiB gap costs less than another
# request (an HTTP range read to a datastore, or ~20 us of per-read overhead locally), and the
# gap's blocks are then simply found unchanged by their hashes.
CBT_GAP_BLOCKS = 4
READ_BATCH_BLOCKS = 64  # 4 MiB reads: large enough for HTTP range reads, small for the pipeline
CLOCK_SKEW = timedelta(minutes=5)
ZERO_BLOCK = bytes(BLOCK)
ZERO_VIEW = memoryview(ZERO_BLOCK)  # slicing a view compares against zeros without copying them
SKIP = DataPathError("not read: trusted from a verified parent")
TRUSTED = b""  # content placeholder of a block not read back (real blocks are never empty)

T = TypeVar("T", bound=BaseModel)
ProgressCallback = Callable[[ShipProgress], None]
Writer = Callable[[int, bytes], None]


def pack_key(pack: bytes) -> str:
    h = pack.hex()
    return f"packs/{h[:2]}/{h}"


def index_key(pack: bytes) -> str:
    h = pack.hex()
    return f"index/{h[:2]}/{h}"


def table_key(oid: bytes) -> str:
    h = oid.hex()
    return f"tables/{h[:2]}/{h}"


def point_key(vm: str, point_id: str) -> str:
    return f"points/{vm}/{point_id}.json"


def verified_key(vm: str, point_id: str) -> str:
    return f"verified/{vm}/{point_id}.json"


def session_key(session: str) -> str:
    return f"sessions/{session}.json"


CONDEMNED_KEY = "gc/condemned.json"


def _key_tail_bytes(key: str) -> bytes:
    return bytes.fromhex(key.rsplit("/", 1)[-1])


@dataclass
class _Pending:
    start: int
    end: int
    plans: list[tuple[Any, ...]]
    future: Future[list[tuple[bytes, bytes, bytes | None]]] | None
    buf: bytearray | None = None


@dataclass
class _ShipState:
    journal: SessionJournal
    pack_id: bytes = b""
    pack_chunks: list[bytes] = field(default_factory=list)
    pack_len: int = 0
    writes: list[Future[int]] = field(default_factory=list)
    pack_rows: list[tuple[bytes, int, int]] = field(default_factory=list)
    part_entries: list[Entry] = field(default_factory=list)
    part_start: int = 0
    since_ckpt_blocks: int = 0
    since_ckpt_bytes: int = 0
    referenced: set[bytes] = field(default_factory=set)
    written: set[bytes] = field(default_factory=set)
    # Hot counters live here, not in the frozen journal model, and are copied in at checkpoints.
    position: int = 0
    bytes_read: int = 0
    bytes_changed: int = 0
    bytes_shipped: int = 0
    chunks_new: int = 0
    hasher: Hasher = field(default_factory=lambda: Hasher(0))
    writer: ThreadPoolExecutor | None = None
    local: dict[bytes, ChunkRef] = field(default_factory=dict)
    use_index: bool = True
    deduped: set[bytes] = field(default_factory=set)  # other ships' packs found via the index
    unconfirmed: list[tuple[bytes, list[bytes]]] = field(default_factory=list)

    @classmethod
    def start(cls, journal: SessionJournal, hasher: Hasher) -> _ShipState:
        return cls(
            journal=journal,
            hasher=hasher,
            part_start=journal.position,
            referenced={bytes.fromhex(p) for p in journal.packs_referenced},
            written={bytes.fromhex(p) for p in journal.packs_written},
            # A resumed ship re-checks everything its earlier parts referenced beyond its own packs.
            deduped={bytes.fromhex(p) for p in journal.packs_referenced}
            - {bytes.fromhex(p) for p in journal.packs_written},
            position=journal.position,
            bytes_read=journal.bytes_read,
            bytes_changed=journal.bytes_changed,
            bytes_shipped=journal.bytes_shipped,
            chunks_new=journal.chunks_new,
        )


class _PackCache:
    """Whole packs for restore and verify: fetched ahead on a few threads, least recently used out.

    Seed packs are written in disk order and used once in a sequential restore; delta packs hold
    rows from all over the disk and are touched throughout, so they stay recent. 256 MiB holds
    32 packs, enough that a sequential pass fetches each pack once in the layouts ship produces.
    Fetches run on FETCH_THREADS so an object store's latency (~50-100 ms per GET) overlaps
    decoding instead of adding up: the table tells which packs the next batches need.
    """

    def __init__(self, store: ObjectStore, capacity: int, referenced_by: str) -> None:
        self._store = store
        self._max = max(2, capacity // PACK_TARGET)
        self._by: OrderedDict[bytes, Future[bytes]] = OrderedDict()
        self._referenced_by = referenced_by
        self._pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="seawall-fetch")
        self.fetched = 0

    def _fetch(self, pack: bytes) -> bytes:
        try:
            return self._store.get(pack_key(pack))
        except ObjectNotFound:
            raise MissingObjectError(pack_key(pack), self._referenced_by) from None

    def future(self, pack: bytes) -> Future[bytes]:
        fut = self._by.get(pack)
        if fut is not None:
            self._by.move_to_end(pack)
            return fut
        fut = self._pool.submit(self._fetch, pack)
        self.fetched += 1
        self._by[pack] = fut
        while len(self._by) > self._max:
            # Evicted packs stay alive for the batches already holding their future.
            self._by.popitem(last=False)
        return fut

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._by.clear()


class Repository:
    """The data path over one ObjectStore, sealing with one key (older keys readable via ``ring``)."""

    def __init__(
        self,
        store: ObjectStore,
        key: KeyMaterial,
        *,
        ring: KeyRing | None = None,
        zstd_level: int = 1,
        threads: int | None = None,
        pack_target: int = PACK_TARGET,
        max_chain: int = MAX_CHAIN,
        checkpoint_blocks: int = CHECKPOINT_BLOCKS,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        lease_ttl: timedelta = timedelta(hours=6),
        gc_grace: timedelta = timedelta(hours=1),
        pack_cache_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if max_chain < 1:
            raise ValueError("max_chain must be at least 1")
        self.store = store
        self.key = key
        self.codec = Codec(key, zstd_level, ring)
        self._ring = ring
        self._hashers: dict[int, Hasher] = {}
        # Encoder threads: one more than cores. zstd runs without the GIL, but every chunk also
        # needs it briefly (BLAKE3, AES-GCM, piece fingerprints); a spare thread keeps both cores
        # compressing while another waits for the GIL. Measured seed of 1 GiB on 2 cores: 2.35 s
        # with 2 threads, 1.9 s with 3, 2.0 s with 4 (single-threaded zstd-1 alone: 1.67 s).
        self.threads = max(1, threads if threads is not None else (os.cpu_count() or 1) + 1)
        self.pack_target = pack_target
        self.max_chain = max_chain
        self.checkpoint_blocks = checkpoint_blocks
        self.checkpoint_bytes = checkpoint_bytes
        self.lease_ttl = lease_ttl
        self.gc_grace = gc_grace
        self.pack_cache_bytes = pack_cache_bytes
        self.clock = clock
        self._index: dict[bytes, ChunkRef] = {}
        self._index_packs: dict[bytes, list[bytes]] = {}
        # Ships, verifies and restores on one instance may run in parallel threads.
        self._index_lock = threading.RLock()
        self._parts: OrderedDict[bytes, Part] = OrderedDict()
        self._parts_rows = 0
        self._manifests: dict[str, PointManifest] = {}

    def hasher(self, seed: int) -> Hasher:
        """Change-detection hashes. The seed is per disk lineage (inherited from the parent point),
        so a key rotation does not make every block of the next point look changed."""
        h = self._hashers.get(seed)
        if h is None:
            h = self._hashers[seed] = Hasher(seed)
        return h

    # ---- signed JSON (manifests, journals, markers) ----------------------------------------------

    def _mac_key_for(self, key_id: str) -> KeyMaterial | None:
        if key_id == self.key.key_id:
            return self.key
        return self._ring.get(key_id) if self._ring is not None else None

    @staticmethod
    def _mac(k: KeyMaterial, okey: str, body: bytes) -> str:
        return blake3.blake3(okey.encode() + b"\n" + body, key=k.mac_key).hexdigest()

    def _signed(self, okey: str, model: BaseModel) -> bytes:
        body = model.model_dump_json().encode()
        head = json.dumps({"key_id": self.key.key_id, "mac": self._mac(self.key, okey, body)}).encode()
        return head + b"\n" + body

    def _unsigned(self, okey: str, data: bytes, cls: type[T]) -> T:
        head_raw, sep, body = data.partition(b"\n")
        try:
            head = json.loads(head_raw) if sep else None
        except ValueError:
            head = None
        if not isinstance(head, dict) or not isinstance(head.get("key_id"), str):
            raise CorruptObjectError(okey, "not a signed object (truncated or overwritten)")
        k = self._mac_key_for(head["key_id"])
        if k is None:
            raise WrongKeyError(okey, head["key_id"], self.key.key_id)
        if head.get("mac") != self._mac(k, okey, body):
            raise CorruptObjectError(okey, "MAC mismatch (tampered, truncated or copied from another key)")
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise CorruptObjectError(okey, f"invalid content: {exc.error_count()} errors") from exc

    def _get_signed(self, okey: str, cls: type[T]) -> T:
        return self._unsigned(okey, self.store.get(okey), cls)

    # ---- tables -----------------------------------------------------------------------------------

    def _put_table(self, plain: bytes) -> tuple[bytes, int]:
        oid = self.codec.object_id(plain)
        sealed = self.codec.seal(KIND_TABLE, oid, plain)
        self.store.put(table_key(oid), sealed)
        return oid, len(sealed)

    def _get_table(self, oid: bytes, referenced_by: str) -> bytes:
        try:
            blob = self.store.get(table_key(oid))
        except ObjectNotFound:
            raise MissingObjectError(table_key(oid), referenced_by) from None
        return self.codec.open(KIND_TABLE, oid, blob, f"table {oid.hex()[:16]} of {referenced_by}")

    def _cache_part(self, oid: bytes, part: Part) -> None:
        with self._index_lock:
            if oid in self._parts:
                return
            self._parts[oid] = part
            self._parts_rows += part.n
            # A part keeps its encoded form, ~200 B per row: at most ~40 MB of parts are cached.
            while self._parts_rows > 200_000 and len(self._parts) > 1:
                _, old = self._parts.popitem(last=False)
                self._parts_rows -= old.n

    def _load_part(self, oid: bytes, referenced_by: str) -> Part:
        with self._index_lock:
            part = self._parts.get(oid)
            if part is not None:
                self._parts.move_to_end(oid)
                return part
        plain = self._get_table(oid, referenced_by)
        try:
            part = decode_part(plain)
        except TableFormatError as exc:
            raise CorruptObjectError(f"table part {oid.hex()[:16]}", str(exc)) from exc
        self._cache_part(oid, part)
        return part

    def _load_layers(self, layers: list[str], referenced_by: str) -> list[tuple[bool, list[PartRef]]]:
        out = []
        for lid in layers:
            plain = self._get_table(bytes.fromhex(lid), referenced_by)
            try:
                out.append(decode_layer(plain))
            except TableFormatError as exc:
                raise CorruptObjectError(f"table layer {lid[:16]}", str(exc)) from exc
        if out and not out[0][0]:
            raise CorruptObjectError(referenced_by, "first table layer is not a full layer")
        return out

    def _reader(self, dm: DiskManifest, referenced_by: str) -> TableReader:
        layers = self._load_layers(dm.layers, referenced_by)
        return TableReader(layers, lambda oid: self._load_part(oid, referenced_by))

    # ---- chunk index ------------------------------------------------------------------------------

    def _condemned(self) -> CondemnedList:
        try:
            return self._get_signed(CONDEMNED_KEY, CondemnedList)
        except ObjectNotFound:
            return CondemnedList()

    def _refresh_index(self) -> None:
        """Load new packs' indexes; forget packs that are gone or condemned (never dedup to those)."""
        with self._index_lock:
            condemned = self._condemned().since
            present: set[bytes] = set()
            for k in self.store.list("index/"):
                try:
                    pack = _key_tail_bytes(k)
                except ValueError:
                    continue
                if pack_key(pack) in condemned:
                    continue
                present.add(pack)
            for pack in list(self._index_packs):
                if pack not in present:
                    for cid in self._index_packs.pop(pack):
                        ref = self._index.get(cid)
                        if ref is not None and ref.pack == pack:
                            del self._index[cid]
            for pack in present - self._index_packs.keys():
                try:
                    blob = self.store.get(index_key(pack))
                except ObjectNotFound:
                    continue
                try:
                    plain = self.codec.open(
                        KIND_INDEX, pack, blob, f"index of pack {pack.hex()}", verify_id=False
                    )
                except (CorruptObjectError, WrongKeyError):
                    # A pack we cannot read the index of is simply not a dedup candidate.
                    continue
                cids = []
                for o in range(0, len(plain) - len(plain) % 40, 40):
                    cid = plain[o : o + 32]
                    off = int.from_bytes(plain[o + 32 : o + 36], "little")
                    ln = int.from_bytes(plain[o + 36 : o + 40], "little")
                    self._index.setdefault(cid, ChunkRef(cid, pack, off, ln))
                    cids.append(cid)
                self._index_packs[pack] = cids

    # ---- manifests and points ---------------------------------------------------------------------

    def read_manifest(self, vm: str, point_id: str) -> PointManifest:
        okey = point_key(vm, point_id)
        m = self._manifests.get(okey)
        if m is not None:
            return m
        try:
            m = self._get_signed(okey, PointManifest)
        except ObjectNotFound:
            raise PointNotFoundError(vm, point_id) from None
        if m.vm != vm or m.point_id != point_id:
            raise CorruptObjectError(okey, "manifest names another point")
        self._manifests[okey] = m
        return m

    def _disk_of(self, m: PointManifest, disk: str) -> DiskManifest | None:
        return next((d for d in m.disks if d.disk == disk), None)

    def list_points(self, vm: str) -> list[PointInfo]:
        """Complete points of ``vm``, oldest first. Only committed manifests are listed."""
        check_name("vm", vm)
        verified = {k.rsplit("/", 1)[-1][:-5] for k in self.store.list(f"verified/{vm}/")}
        out = []
        for k in self.store.list(f"points/{vm}/"):
            name = k.rsplit("/", 1)[-1]
            if not name.endswith(".json"):
                continue
            m = self.read_manifest(vm, name[:-5])
            out.append(
                PointInfo(
                    vm=vm,
                    point_id=m.point_id,
                    parent=m.parent,
                    created_at=m.created_at,
                    verified=m.point_id in verified,
                    disks={d.disk: d.size for d in m.disks},
                )
            )
        out.sort(key=lambda p: (p.created_at, p.point_id))
        return out

    def latest_point(self, vm: str, verified_only: bool = True) -> PointRef | None:
        points = [p for p in self.list_points(vm) if p.verified or not verified_only]
        return points[-1].ref if points else None

    def commit_point(
        self,
        vm: str,
        point_id: str,
        disks: list[ShippedDisk],
        parent: PointRef | str | None = None,
        meta: dict[str, str] | None = None,
    ) -> PointRef:
        """Make a recovery point visible by writing its manifest, after everything it references.

        Idempotent: committing the same point again (a retried activity) returns the existing ref;
        committing different content under an existing id raises PointConflictError.
        """
        check_name("vm", vm)
        check_name("point id", point_id)
        parent_id = parent.point_id if isinstance(parent, PointRef) else parent
        names = [d.disk for d in disks]
        if len(set(names)) != len(names):
            raise ValueError(f"point {point_id}: duplicate disk names {names}")
        for d in disks:
            if d.key_id != self.key.key_id:
                raise WrongKeyError(f"shipped disk {d.disk}", d.key_id, self.key.key_id)
            if d.parent_point not in (None, parent_id):
                raise ValueError(
                    f"disk {d.disk} was shipped against {d.parent_point}, not parent {parent_id}"
                )
            for lid in d.layers:
                if not self.store.exists(table_key(bytes.fromhex(lid))):
                    raise MissingObjectError(table_key(bytes.fromhex(lid)), f"shipped disk {d.disk}")
        manifest = PointManifest(
            vm=vm,
            point_id=point_id,
            parent=parent_id,
            created_at=self.clock(),
            key_id=self.key.key_id,
            disks=[DiskManifest.model_validate(d.model_dump(exclude={"session", "key_id"})) for d in disks],
            meta=meta or {},
        )
        okey = point_key(vm, point_id)
        written = self.store.put(okey, self._signed(okey, manifest))
        if not written:
            existing = self.read_manifest(vm, point_id)
            if not manifest.same_content(existing):
                raise PointConflictError(
                    f"point {point_id!r} of {vm!r} already exists with different content"
                )
            manifest = existing
        self._manifests[okey] = manifest
        for d in disks:
            self.store.delete(session_key(d.session))
        return PointRef(vm=vm, point_id=point_id, created_at=manifest.created_at)

    # ---- ship -------------------------------------------------------------------------------------

    def ship(
        self,
        source: DiskSource,
        vm: str,
        disk: str,
        parent: PointRef | None = None,
        resume: ShipProgress | dict[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        session: str | None = None,
        dedup: bool | None = None,
    ) -> ShippedDisk:
        """Read ``source``, store what changed since ``parent`` and return the disk for commit_point.

        ``on_progress`` is called at every durable checkpoint with a small ShipProgress; pass the
        last one back as ``resume`` (or pass a deterministic ``session``) and a restarted worker
        continues after the last checkpoint the store confirms. Store errors (TransientStoreError)
        propagate unchanged; nothing becomes visible before commit_point.

        ``dedup``: look new chunks up in the store-wide chunk index. Loading it costs a LIST of
        ``index/`` and a GET per pack not yet loaded by this instance, i.e. O(packs in the store),
        so the default (None) does it only for ships without a parent -- seeds, where a VM cloned
        from a template dedups against its siblings. An incremental compares against its parent's
        table instead (unchanged data is never re-sent) and dedups within itself, at O(1) requests.
        """
        check_name("vm", vm)
        check_name("disk", disk)
        progress = ShipProgress.coerce(resume)
        size = source.size
        n = block_count(size)
        parent_disk: DiskManifest | None = None
        parent_id = parent.point_id if parent is not None else None
        if parent is not None:
            parent_disk = self._disk_of(self.read_manifest(parent.vm, parent.point_id), disk)
        journal: SessionJournal | None = None
        sid = progress.session if progress is not None else session
        if sid is not None:
            journal = self._try_resume(sid, vm, disk, parent_id if parent_disk else None, size)
            if journal is not None and journal.shipped is not None:
                return journal.shipped
        areas = self._cbt_runs(source, parent_disk, n)
        if journal is None:
            full = (
                parent_disk is None or parent_disk.size != size or len(parent_disk.layers) >= self.max_chain
            )
            path: ChangePath = (
                "full" if parent_disk is None else ("cbt" if areas is not None else "hash-compare")
            )
            now = self.clock()
            journal = SessionJournal(
                session=sid if sid is not None and progress is None else f"{vm}.{disk}.{uuid.uuid4().hex}",
                vm=vm,
                disk=disk,
                parent_point=parent_id if parent_disk else None,
                key_id=self.key.key_id,
                size=size,
                full_layer=full,
                change_path=path,
                started_at=now,
                renewed_at=now,
                hash_seed=parent_disk.hash_seed if parent_disk is not None else self.key.seed64,
            )
            check_name("session", journal.session)
            # The lease is durable before any pack: GC never collects what a live session wrote.
            self.store.put_overwrite(
                session_key(journal.session), self._signed(session_key(journal.session), journal)
            )
        elif journal.change_path == "cbt" and areas is None:
            journal = journal.model_copy(update={"change_path": "hash-compare"})
        if journal.change_path != "cbt":
            areas = None
        st = _ShipState.start(journal, self.hasher(journal.hash_seed))
        st.use_index = dedup if dedup is not None else parent_disk is None
        if st.use_index:
            self._refresh_index()
        cursor = self._reader(parent_disk, f"parent point {parent_id}") if parent_disk else None
        parent_size = parent_disk.size if parent_disk else 0
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="seawall-encode")
        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seawall-read")
        # Pack uploads get their own threads: a slow PUT or fsync must not stall the read-ahead.
        st.writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="seawall-write")
        try:
            self._scan(source, st, cursor, parent_size, size, areas, pool, io, on_progress)
            return self._finish(st, parent_disk, size, n, source.change_id, io, on_progress)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            io.shutdown(wait=True, cancel_futures=True)
            st.writer.shutdown(wait=True, cancel_futures=True)

    def _try_resume(
        self, sid: str, vm: str, disk: str, parent_id: str | None, size: int
    ) -> SessionJournal | None:
        try:
            j = self._get_signed(session_key(sid), SessionJournal)
        except (ObjectNotFound, CorruptObjectError):
            return None
        if (j.vm, j.disk, j.parent_point, j.size, j.key_id) != (vm, disk, parent_id, size, self.key.key_id):
            return None
        if j.shipped is not None:
            if all(self.store.exists(table_key(bytes.fromhex(lid))) for lid in j.shipped.layers):
                return j
            return None
        # Trust the store, not the heartbeat: everything the journal names must still be there
        # (a lease that expired may have let GC collect it).
        for pid, _, _ in j.parts:
            if not self.store.exists(table_key(bytes.fromhex(pid))):
                return None
        if not self._packs_exist({bytes.fromhex(p) for p in j.packs_referenced}):
            return None
        j = j.model_copy(update={"renewed_at": self.clock()})
        self.store.put_overwrite(session_key(sid), self._signed(session_key(sid), j))
        return j

    def _packs_exist(self, packs: set[bytes]) -> bool:
        if len(packs) <= 64:
            return all(self.store.exists(pack_key(p)) for p in packs)
        present = {_key_tail_bytes(k) for k in self.store.list("packs/")}
        return packs <= present

    def _cbt_runs(
        self, source: DiskSource, parent_disk: DiskManifest | None, n: int
    ) -> list[tuple[int, int]] | None:
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
        merged: list[tuple[int, int]] = []
        for b0, b1 in runs:
            if merged and b0 <= merged[-1][1] + CBT_GAP_BLOCKS:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b1))
            else:
                merged.append((b0, b1))
        return merged

    def _batches(
        self, start: int, n: int, areas: list[tuple[int, int]] | None
    ) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
        """Batches (b0, b1, runs to read) tiling [start, n) in block order.

        A batch reads at most READ_BATCH_BLOCKS blocks, from one run (hash-compare: the whole
        disk) or from several small ones (CBT: scattered 64 KiB extents share a batch instead of
        paying a batch each); blocks of [b0, b1) outside its runs are unchanged. A batch never
        spans more than a checkpoint interval, so checkpoints keep their spacing.
        """
        batch = max(1, min(READ_BATCH_BLOCKS, self.checkpoint_blocks))
        span_cap = max(batch, min(self.checkpoint_blocks, 4096))
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

    def _scan(
        self,
        source: DiskSource,
        st: _ShipState,
        cursor: TableReader | None,
        parent_size: int,
        size: int,
        areas: list[tuple[int, int]] | None,
        pool: ThreadPoolExecutor,
        io: ThreadPoolExecutor,
        on_progress: ProgressCallback | None,
    ) -> None:
        n = block_count(size)
        parent_n = block_count(parent_size)
        full = st.journal.full_layer
        hasher = st.hasher
        seed = hasher.seed
        xxh128 = xxhash.xxh3_128_digest
        pending: deque[_Pending] = deque()
        depth = 2 * self.threads
        encode = self._encode_jobs

        # Sources that can read into a caller's buffer (RawSource) get recycled 4 MiB buffers:
        # a fresh 4 MiB bytes per read costs page faults and zeroing, ~1 ms per batch, which is
        # more than the copy itself (0.13 s per GiB at page-cache speed).
        readinto = getattr(source, "readinto", None)
        free: list[bytearray] = []

        def read(runs: list[tuple[int, int]]) -> tuple[memoryview, bytearray | None]:
            buf: bytearray | None = None
            parts: list[bytes] = []
            if readinto is not None:
                buf = free.pop() if free else bytearray(READ_BATCH_BLOCKS * BLOCK)
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
            return view, buf

        # Reads run one thread ahead (pread releases the GIL; xxh3 does not), so copying the next
        # 4 MiB out of the page cache or the network overlaps hashing this one.
        batches = self._batches(st.position, n, areas)
        ahead: deque[
            tuple[int, int, list[tuple[int, int]], Future[tuple[memoryview, bytearray | None]] | None]
        ]
        ahead = deque()

        def top_up() -> None:
            while len(ahead) < 3:
                nxt = next(batches, None)
                if nxt is None:
                    return
                b0, b1, runs = nxt
                ahead.append((b0, b1, runs, io.submit(read, runs) if runs else None))

        top_up()
        while ahead:
            b0, b1, runs, fut_data = ahead.popleft()
            top_up()
            plans: list[tuple[Any, ...]] = []
            jobs: list[tuple[memoryview, bool]] = []
            buf = None
            if fut_data is None:
                if full and cursor is not None:
                    for i in range(b0, b1):
                        plans.append(("carry", cursor.at(i)))
                pending.append(_Pending(b0, b1, plans, None))
            else:
                mv, buf = fut_data.result()
                st.bytes_read += len(mv)
                hs = [xxh128(mv[o : o + BLOCK], seed=seed) for o in range(0, len(mv), BLOCK)]
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

                def plan(
                    k: int,
                    i: int,
                    hs: list[bytes] = hs,
                    ph: list[bytes | None] = ph,
                    mv: memoryview = mv,
                    plans: list[tuple[Any, ...]] = plans,
                    jobs: list[tuple[memoryview, bool]] = jobs,
                ) -> int:
                    """Plan block i (k-th read block); returns the changed bytes."""
                    h = hs[k]
                    L = block_len(size, i)
                    same_len = i < parent_n and block_len(parent_size, i) == L
                    if same_len and ph[k] == h:
                        plans.append(("carry", cursor.at(i) if cursor is not None else None))
                        return 0
                    blk = mv[k * BLOCK : k * BLOCK + L]
                    p = cursor.at(i) if cursor is not None and i < parent_n else None
                    if h == hasher.zero_hash(L) and blk == ZERO_VIEW[:L]:
                        plans.append(("zero", i, h))
                        return L if p is not None and not p.is_zero else 0
                    if same_len and p is not None:
                        pl, nbytes = self._plan_pieces(hasher, i, blk, h, p, jobs)
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
                fut = pool.submit(encode, hasher, jobs) if jobs else None
                st.bytes_changed += changed
                pending.append(_Pending(b0, b1, plans, fut, buf))
            while len(pending) > depth or (pending and pending[0].future is None):
                done = pending.popleft()
                self._finalize(st, done, io, on_progress)
                if done.buf is not None:
                    free.append(done.buf)  # every job that viewed it has finished
        while pending:
            self._finalize(st, pending.popleft(), io, on_progress)

    def _plan_pieces(
        self, hasher: Hasher, i: int, blk: memoryview, h: bytes, p: Entry, jobs: list[tuple[memoryview, bool]]
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
        zero_piece = ZERO_VIEW[:PIECE]
        for k in changed:
            piece = blk[k * PIECE : (k + 1) * PIECE]
            nbytes += len(piece)
            if piece == zero_piece[: len(piece)]:
                if base is None:
                    ov.pop(k, None)
                else:
                    ov[k] = None
            else:
                jobs.append((piece, False))
                ov[k] = len(jobs) - 1  # a job number, replaced by the chunk's ref in _finalize
        return ("pieces", i, h, fps, base, ov), nbytes

    def _encode_jobs(
        self, hasher: Hasher, jobs: list[tuple[memoryview, bool]]
    ) -> list[tuple[bytes, bytes, bytes | None]]:
        """Runs on the pool: zstd (most of the work) releases the GIL, so two threads use both cores."""
        out = []
        seal = self.codec.seal_chunk
        pieces = hasher.pieces
        for data, want_fps in jobs:
            fps = pieces(data) if want_fps else None
            cid, sealed = seal(data)
            out.append((cid, sealed, fps))
        return out

    def _store_chunk(self, st: _ShipState, cid: bytes, sealed: bytes) -> ChunkRef:
        # Chunks of this ship are looked up in st.local until their pack is confirmed durable;
        # only then do they join the shared index (a failed ship leaves nothing stale behind).
        ref = st.local.get(cid)
        if ref is None and st.use_index:
            ref = self._index.get(cid)
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

    def _finalize(
        self, st: _ShipState, pb: _Pending, io: ThreadPoolExecutor, on_progress: ProgressCallback | None
    ) -> None:
        results = pb.future.result() if pb.future is not None else []
        refs: list[ChunkRef] = [self._store_chunk(st, cid, sealed) for cid, sealed, _ in results]
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
        if st.pack_len >= self.pack_target:
            self._flush_pack(st, io)
        if st.since_ckpt_blocks >= self.checkpoint_blocks or st.since_ckpt_bytes >= self.checkpoint_bytes:
            self._checkpoint(st, io, on_progress)

    def _flush_pack(self, st: _ShipState, io: ThreadPoolExecutor) -> None:
        """Hand the pack to the writer threads (the upload overlaps compression).

        The writer thread also joins the chunks: bytes.join of 8 MiB drops and re-takes the GIL,
        and on the main thread that re-take queues behind the encoders (measured: ~0.9 s per GiB
        of seed spent waiting there).
        """
        if not st.pack_chunks:
            return
        pack = st.pack_id
        chunks, rows = st.pack_chunks, st.pack_rows

        def write() -> int:
            blob = b"".join(chunks)
            idx = b"".join(
                cid + off.to_bytes(4, "little") + ln.to_bytes(4, "little") for cid, off, ln in rows
            )
            sealed_idx = self.codec.seal(KIND_INDEX, pack, idx)
            self.store.put(pack_key(pack), blob)
            # The index goes after the pack: an index never names a pack that is not there.
            self.store.put(index_key(pack), sealed_idx)
            return len(blob) + len(sealed_idx)

        while len(st.writes) >= MAX_PACKS_IN_FLIGHT:
            st.bytes_shipped += st.writes.pop(0).result()
        assert st.writer is not None
        st.writes.append(st.writer.submit(write))
        st.unconfirmed.append((pack, [cid for cid, _, _ in rows]))
        st.since_ckpt_bytes += st.pack_len
        st.written.add(pack)
        st.pack_id, st.pack_chunks, st.pack_len, st.pack_rows = b"", [], 0, []

    def _checkpoint(
        self, st: _ShipState, io: ThreadPoolExecutor, on_progress: ProgressCallback | None
    ) -> None:
        self._flush_pack(st, io)
        # Durable means durable: every pack this checkpoint covers is in the store before the
        # table part that references it and the journal that lets a new worker resume past it.
        while st.writes:
            st.bytes_shipped += st.writes.pop(0).result()
        with self._index_lock:
            for pack, cids in st.unconfirmed:
                self._index_packs[pack] = cids
                for cid in cids:
                    self._index.setdefault(cid, st.local[cid])
        st.unconfirmed.clear()
        j = st.journal
        parts = list(j.parts)
        if st.position > st.part_start and (st.part_entries or j.full_layer):
            plain = encode_part(st.part_start, st.position, j.full_layer, st.part_entries)
            oid, n = self._put_table(plain)
            self._cache_part(oid, Part(plain))
            parts.append((oid.hex(), st.part_start, st.position))
            st.bytes_shipped += n
        st.journal = j = j.model_copy(
            update={
                "parts": parts,
                "position": st.position,
                "bytes_read": st.bytes_read,
                "bytes_changed": st.bytes_changed,
                "bytes_shipped": st.bytes_shipped,
                "chunks_new": st.chunks_new,
                "checkpoint": j.checkpoint + 1,
                "renewed_at": self.clock(),
                "packs_written": sorted(p.hex() for p in st.written),
                "packs_referenced": sorted(p.hex() for p in st.referenced),
            }
        )
        skey = session_key(j.session)
        self.store.put_overwrite(skey, self._signed(skey, j))
        st.part_entries = []
        st.part_start = j.position
        st.since_ckpt_blocks = 0
        st.since_ckpt_bytes = 0
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

    def _finish(
        self,
        st: _ShipState,
        parent_disk: DiskManifest | None,
        size: int,
        n: int,
        change_id: str | None,
        io: ThreadPoolExecutor,
        on_progress: ProgressCallback | None,
    ) -> ShippedDisk:
        if st.position > st.part_start or st.pack_chunks or st.writes or st.journal.checkpoint == 0:
            self._checkpoint(st, io, on_progress)  # else the last checkpoint already covers it all
        j = st.journal
        lid, nbytes = self._put_table(
            encode_layer(j.full_layer, [PartRef(bytes.fromhex(p), s, e) for p, s, e in j.parts])
        )
        layers = ([] if j.full_layer or parent_disk is None else list(parent_disk.layers)) + [lid.hex()]
        if len(layers) > self.max_chain:
            raise DataPathError(f"engine error: chain of {len(layers)} layers exceeds {self.max_chain}")
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
            key_id=self.key.key_id,
        )
        j = j.model_copy(update={"shipped": shipped, "renewed_at": self.clock()})
        skey = session_key(j.session)
        self.store.put_overwrite(skey, self._signed(skey, j))
        return shipped

    def _table_digest(
        self, layers: list[str], size: int, hasher: Hasher, referenced_by: str
    ) -> tuple[str, int]:
        """The disk digest from the block hashes the ship computed from the source bytes.

        Reads only the hash columns of the table parts (no row decoding): ~20 ms per GiB.
        """
        reader = TableReader(
            self._load_layers(layers, referenced_by), lambda oid: self._load_part(oid, referenced_by)
        )
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

    # ---- reading back: verify and restore ---------------------------------------------------------

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
            return self.codec.open_chunk(ref.cid, view, key_id)

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

    def _read_back(
        self,
        dm: DiskManifest,
        key_id: str,
        first: int,
        where: str,
        stats: dict[str, int],
        newest_layer_only: bool = False,
    ) -> Iterator[tuple[int, Entry | None, bytes | None, bytes | None, Exception | None]]:
        """(block, row, content or None for zero, block hash, error) in block order.

        The main thread walks the table and fetches packs (store I/O, cached); the pool decrypts,
        decompresses and re-hashes 64-block batches (both cores). Errors are per block, except a
        wrong key, which is raised: it would make every block "bad". With ``newest_layer_only``
        rows of older layers are not read: their hash is the table's and their content TRUSTED.
        """
        reader = self._reader(dm, where)
        cache = _PackCache(self.store, self.pack_cache_bytes, where)
        hasher = self.hasher(dm.hash_seed)
        n = block_count(dm.size)
        Item = tuple[int, int, Entry | None, dict[bytes, Future[bytes]], Exception | None]
        Out = tuple[int, Entry | None, bytes | None, bytes | None, Exception | None]

        top = len(dm.layers) - 1

        def work(items: list[Item]) -> tuple[list[Out], int]:
            out: list[Out] = []
            chunks = 0
            for i, L, e, blobs, err in items:
                if err is SKIP and e is not None:
                    out.append((i, e, TRUSTED, e.bhash, None))
                    continue
                if err is not None or e is None:
                    out.append(
                        (i, e, None, None, err or CorruptObjectError("table", "no row for this block"))
                    )
                    continue
                try:
                    data, nc = self._assemble(e, L, {p: f.result() for p, f in blobs.items()}, key_id)
                    actual = hasher.zero_hash(L) if data is None else hasher.block(data)
                    if actual != e.bhash:
                        raise CorruptObjectError(
                            "block", "content does not match the block hash in the manifest"
                        )
                    chunks += nc
                    out.append((i, e, data, actual, None))
                except WrongKeyError:
                    raise
                except (DataPathError, TableFormatError) as exc:
                    out.append((i, e, None, None, exc))
            return out, chunks

        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="seawall-restore")
        pending: deque[Future[tuple[list[Out], int]]] = deque()

        def drain() -> list[Out]:
            out, chunks = pending.popleft().result()
            stats["chunks"] += chunks
            return out

        try:
            for b0 in range(first, n, READ_BATCH_BLOCKS):
                items: list[Item] = []
                for i in range(b0, min(n, b0 + READ_BATCH_BLOCKS)):
                    L = block_len(dm.size, i)
                    blobs: dict[bytes, Future[bytes]] = {}
                    try:
                        e, layer = reader.at_layer(i)
                        if newest_layer_only and e is not None and layer < top:
                            items.append((i, L, e, blobs, SKIP))
                            continue
                        if e is not None:
                            for r in e.chunk_refs():
                                if r.pack not in blobs:
                                    blobs[r.pack] = cache.future(r.pack)
                        items.append((i, L, e, blobs, None))
                    except (DataPathError, TableFormatError) as exc:
                        items.append((i, L, None, blobs, exc))
                pending.append(pool.submit(work, items))
                while len(pending) > 4 * self.threads:  # deep enough to fetch packs ahead
                    yield from drain()
            while pending:
                yield from drain()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            cache.close()
            stats["packs_fetched"] = stats.get("packs_fetched", 0) + cache.fetched

    def verify_point(self, vm: str, point_id: str, mark: bool = True, full: bool = True) -> VerifyResult:
        """Re-read the chunks of a point, check each, and rebuild each disk's digest from them.

        ``full`` re-reads every chunk the point references (a 1 TiB disk: ~0.5 TB of reads).
        ``full=False`` re-reads only the rows of the disk's newest table layer, when the parent
        point is verified and the disk's older layers are exactly the parent's: those rows are
        then already proven, and the digest is rebuilt from their table hashes plus the re-read
        blocks. Disks without such a parent are verified fully. Problems are reported per block
        (disk, block index, offset, reason), never raised, except a wrong key (WrongKeyError).
        """
        m = self.read_manifest(vm, point_id)
        bad: list[BadBlock] = []
        errors: list[str] = []
        blocks = nbytes = trusted = 0
        stats = {"chunks": 0}
        parent_disks: dict[str, DiskManifest] = {}
        if not full and m.parent is not None and self.store.exists(verified_key(vm, m.parent)):
            with contextlib.suppress(PointNotFoundError):
                parent_disks = {d.disk: d for d in self.read_manifest(vm, m.parent).disks}
        for dm in m.disks:
            where = f"point {point_id} disk {dm.disk}"
            pd = parent_disks.get(dm.disk)
            incremental = pd is not None and len(dm.layers) > 1 and pd.layers == dm.layers[:-1]
            h = blake3.blake3(dm.size.to_bytes(8, "little"))
            try:
                for i, _, data, actual, err in self._read_back(
                    dm, m.key_id, 0, where, stats, newest_layer_only=incremental
                ):
                    blocks += 1
                    if err is not None or actual is None:
                        bad.append(BadBlock(disk=dm.disk, block=i, offset=i * BLOCK, reason=str(err)))
                        actual = b"\0" * 16
                    elif data is TRUSTED:
                        trusted += 1
                    else:
                        nbytes += block_len(dm.size, i)
                    h.update(actual)
            except (MissingObjectError, CorruptObjectError, TableFormatError) as exc:
                errors.append(f"disk {dm.disk}: table unreadable: {exc}")
                continue
            if h.hexdigest() != dm.digest:
                errors.append(f"disk {dm.disk}: digest of the stored blocks differs from the source digest")
        ok = not bad and not errors
        marked = False
        if ok and mark:
            marker = VerifiedMarker(
                vm=vm,
                point_id=point_id,
                verified_at=self.clock(),
                digests={d.disk: d.digest for d in m.disks},
            )
            vkey = verified_key(vm, point_id)
            self.store.put_overwrite(vkey, self._signed(vkey, marker))
            marked = True
        return VerifyResult(
            vm=vm,
            point_id=point_id,
            ok=ok,
            disks=len(m.disks),
            blocks_checked=blocks,
            chunks_checked=stats["chunks"],
            bytes_checked=nbytes,
            blocks_trusted=trusted,
            bad_blocks=bad,
            errors=errors,
            marked_verified=marked,
        )

    def restore_disk(
        self,
        vm: str,
        point_id: str,
        disk: str,
        target: str | os.PathLike[str] | Writer,
        start_offset: int = 0,
        sparse: bool = True,
        on_progress: Callable[[int], None] | None = None,
    ) -> RestoreResult:
        """Write a disk of a point into a file / block device path, or to ``writer(offset, data)``.

        Every chunk is checked against its id and every block against its hash on the way; a
        mismatch raises BadBlockError and neither that block nor any after it is written. A
        restore from offset 0 also checks the whole-disk digest at the end. ``start_offset``
        resumes (rounded down to a block). With ``sparse`` zero blocks are skipped: a new file
        target is created sparse at its full size (a resumed one gets real zeros), a writer must
        start zero-filled. ``on_progress(offset)`` is called every 64 MiB.
        """
        m = self.read_manifest(vm, point_id)
        dm = self._disk_of(m, disk)
        if dm is None:
            raise DataPathError(f"point {point_id} of {vm} has no disk {disk!r}")
        where = f"point {point_id} disk {disk}"
        first = min(start_offset, dm.size) // BLOCK
        fd: int | None = None
        writer: Writer
        if callable(target):
            writer = target
        else:
            fd = os.open(Path(target), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            is_blk = stat.S_ISBLK(os.fstat(fd).st_mode)
            if not is_blk and first == 0:
                os.ftruncate(fd, 0)  # a fresh sparse file: holes read as zeros
                os.ftruncate(fd, dm.size)
            else:
                # A device, or a file a previous attempt wrote into: zeros must really be written.
                if not is_blk:
                    os.ftruncate(fd, dm.size)
                sparse = False
            f = fd

            def writer(off: int, data: bytes) -> None:
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(f, view, off + len(data) - len(view)) :]

        written = skipped = 0
        h = blake3.blake3(dm.size.to_bytes(8, "little")) if first == 0 else None
        next_report = 64 * 1024 * 1024
        try:
            for i, _e, data, actual, err in self._read_back(dm, m.key_id, first, where, {"chunks": 0}):
                if err is not None or actual is None:
                    raise BadBlockError(disk, i, i * BLOCK, str(err)) from err
                L = block_len(dm.size, i)
                if h is not None:
                    h.update(actual)
                if data is None:
                    if sparse:
                        skipped += L
                    else:
                        writer(i * BLOCK, ZERO_BLOCK[:L])
                        written += L
                else:
                    writer(i * BLOCK, data)
                    written += L
                if on_progress is not None and (i + 1) * BLOCK >= next_report:
                    on_progress((i + 1) * BLOCK)
                    next_report += 64 * 1024 * 1024
            if fd is not None:
                os.fsync(fd)
        finally:
            if fd is not None:
                os.close(fd)
        if h is not None and h.hexdigest() != dm.digest:
            raise DigestMismatchError(f"{where}: restored blocks do not match the source digest")
        return RestoreResult(
            vm=vm,
            point_id=point_id,
            disk=disk,
            size=dm.size,
            start_offset=first * BLOCK,
            bytes_written=written,
            zero_bytes_skipped=skipped,
            digest_checked=h is not None,
        )

    # ---- retention and GC -------------------------------------------------------------------------

    def apply_retention(
        self, vm: str, policy: RetentionPolicy, now: datetime | None = None
    ) -> RetentionResult:
        """Delete the manifests of points the policy does not keep (data goes at the next gc()).

        A child point names its table layers itself, so deleting a parent never breaks a child.
        """
        now = now or self.clock()
        points = self.list_points(vm)[::-1]  # newest first
        keep: set[str] = set()
        if policy.keep_last is None and policy.keep_hours is None:
            keep = {p.point_id for p in points}
        if policy.keep_last is not None:
            keep.update(p.point_id for p in points[: policy.keep_last])
        if policy.keep_hours is not None:
            horizon = now - timedelta(hours=policy.keep_hours)
            keep.update(p.point_id for p in points if p.created_at >= horizon)
        newest_verified = next((p for p in points if p.verified), None)
        if newest_verified is not None:
            keep.add(newest_verified.point_id)
        deleted = []
        for p in points:
            if p.point_id in keep:
                continue
            okey = point_key(vm, p.point_id)
            self.store.delete(okey)
            self.store.delete(verified_key(vm, p.point_id))
            self._manifests.pop(okey, None)
            deleted.append(p.point_id)
        return RetentionResult(
            vm=vm, kept=[p.point_id for p in points[::-1] if p.point_id in keep], deleted=deleted[::-1]
        )

    def _lease_times(self, okey: str) -> tuple[datetime, datetime] | None:
        try:
            body = json.loads(self.store.get(okey).partition(b"\n")[2])
            return datetime.fromisoformat(body["started_at"]), datetime.fromisoformat(body["renewed_at"])
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            return None

    def gc(self, now: datetime | None = None) -> GcResult:
        """Delete packs and tables no point references, safely against ships running meanwhile.

        See the module docstring for the rule. Raises (and deletes nothing more) if any manifest
        cannot be read: an unreadable manifest's references are unknown.
        """
        now = now or self.clock()
        # 1. objects, 2. sessions, 3. manifests: anything committed during the run is seen.
        packs = {k for k in self.store.list("packs/")}
        tables = {k for k in self.store.list("tables/")}
        indexes = {k for k in self.store.list("index/")}
        old = self._condemned().since
        live: list[tuple[datetime, datetime]] = []  # (started_at, renewed_at) of live leases
        unreadable: dict[str, datetime] = {}
        expired = 0
        for k in list(self.store.list("sessions/")):
            try:
                j = self._get_signed(k, SessionJournal)
                started, renewed = j.started_at, j.renewed_at
            except ObjectNotFound:
                continue
            except (CorruptObjectError, WrongKeyError):
                # Another key's writer, or a damaged lease. Its times can only make GC keep more,
                # so they are used unverified; with none readable it protects everything until it
                # has been seen for a whole lease_ttl, then it is removed like an expired lease.
                times = self._lease_times(k)
                if times is None:
                    first_seen = old.get(k, now)
                    if now - first_seen < self.lease_ttl:
                        unreadable[k] = first_seen
                        live.append((datetime.min.replace(tzinfo=now.tzinfo), now))
                        continue
                    started, renewed = first_seen, first_seen
                else:
                    started, renewed = times
            if renewed + self.lease_ttl > now:
                live.append((started, renewed))
            else:
                self.store.delete(k)
                expired += 1
        ref_tables: set[str] = set()
        ref_packs: set[str] = set()
        self._manifests.clear()
        for k in list(self.store.list("points/")):
            vm, _, name = k[len("points/") :].partition("/")
            if not name.endswith(".json"):
                continue
            try:
                m = self.read_manifest(vm, name[:-5])
            except PointNotFoundError:
                # Retention of another VM deleted it after the listing: a gone point protects nothing.
                continue
            for dm in m.disks:
                for lid in dm.layers:
                    ref_tables.add(table_key(bytes.fromhex(lid)))
                where = f"point {m.point_id} of {vm}"
                for _, prefs in self._load_layers(dm.layers, where):
                    for pr in prefs:
                        tkey = table_key(pr.oid)
                        if tkey in ref_tables:
                            continue
                        ref_tables.add(tkey)
                        ref_packs.update(pack_key(p) for p in self._load_part(pr.oid, where).packs)
        unreferenced = (packs - ref_packs) | (tables - ref_tables)
        # An index whose pack is gone is unreferenced too (a crash between the two deletes).
        for ik in indexes:
            pk = "packs/" + ik[len("index/") :]
            if pk not in packs and pk not in ref_packs:
                unreferenced.add(ik)
        keep_since: dict[str, datetime] = {}
        packs_deleted = tables_deleted = 0
        to_delete: list[str] = []
        for k in unreferenced:
            since = old.get(k)
            if (
                since is not None
                and now - since >= self.gc_grace
                and all(started > since + CLOCK_SKEW for started, _ in live)
            ):
                to_delete.append(k)
            else:
                keep_since[k] = since if since is not None else now
        # Record the newly condemned before deleting anything, so a ship starting from here on
        # already avoids them.
        stamp = max(now, self.clock())
        keep_since = {k: (v if k in old else stamp) for k, v in keep_since.items()}
        keep_since.update(unreadable)
        self.store.put_overwrite(CONDEMNED_KEY, self._signed(CONDEMNED_KEY, CondemnedList(since=keep_since)))
        for k in sorted(to_delete):
            if k.startswith("packs/"):
                # Index first: a crash in between leaves a pack no writer will dedup against.
                self.store.delete("index/" + k[len("packs/") :])
                self.store.delete(k)
                packs_deleted += 1
            elif k.startswith("tables/"):
                self.store.delete(k)
                tables_deleted += 1
            else:
                self.store.delete(k)
        with self._index_lock:
            for pack in [p for p in self._index_packs if pack_key(p) in to_delete]:
                for cid in self._index_packs.pop(pack):
                    ref = self._index.get(cid)
                    if ref is not None and ref.pack == pack:
                        del self._index[cid]
            self._parts.clear()
            self._parts_rows = 0
        return GcResult(
            packs_deleted=packs_deleted,
            tables_deleted=tables_deleted,
            condemned=len(keep_since) - len(unreadable),
            sessions_expired=expired,
            live_sessions=len(live),
        )
