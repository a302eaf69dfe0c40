"""The replica repository: ship disks into it, commit recovery points, verify, restore, retain, GC.

``Repository`` is the public face; the work is done by its rooms, which share one store, key and
set of caches:

    layout.py      object keys: the on-store format
    signed.py      signed JSON objects (manifests, journals, markers, the condemned list)
    tuning.py      the numbers, and the measurements that chose them
    tablecache.py  table objects (table.py, tableformat.py, tablereader.py); decoded parts cached
    chunkindex.py  the store-wide chunk index (dedup)
    points.py      manifests: commit, read, list
    configs.py     a point's source configuration (the VM's description), sealed beside its manifest
    groups.py      consistency group points (``self.groups``): written after every member verified
    ship.py        shipping a disk: scan.py reads, hashes and plans blocks; packing.py writes
                   packs, table parts and checkpoints; shipstate.py is what a ship carries
    readback.py    verify and restore (blockread.py reads blocks back, packcache.py fetches packs)
    damage.py      damaged chunks: found by a scrub, kept out of new points, repaired by a ship
    scrub.py       scrubbing points: read every chunk, mark the damaged, verify repaired ones again
    retention.py   retention and GC, with the GC-versus-concurrent-writers rule

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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from seawall.blockstore import allocator
from seawall.blockstore.blockread import Writer
from seawall.blockstore.chunkindex import ChunkIndex
from seawall.blockstore.codec import Codec
from seawall.blockstore.configs import META_KEY, SourceConfigs
from seawall.blockstore.damage import Damage, DamageList, PointCheck, ScrubResult
from seawall.blockstore.errors import BadBlockError
from seawall.blockstore.groups import GroupPoints
from seawall.blockstore.immutable import Locker, ObjectLock
from seawall.blockstore.keys import KeyMaterial, KeyRing
from seawall.blockstore.manifest import (
    GcResult,
    PointInfo,
    PointManifest,
    PointRef,
    RestoreResult,
    RetentionPolicy,
    RetentionResult,
    ShippedDisk,
    ShipProgress,
    VerifyResult,
    utcnow,
)
from seawall.blockstore.packing import ProgressCallback
from seawall.blockstore.points import Points
from seawall.blockstore.readback import ReadBack
from seawall.blockstore.retention import Retention
from seawall.blockstore.scrub import Scrubber
from seawall.blockstore.ship import Shipper
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.source import DiskSource
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.table import Hasher
from seawall.blockstore.tablecache import TableCache
from seawall.blockstore.tuning import (
    CHECKPOINT_BLOCKS,
    CHECKPOINT_BYTES,
    MAX_CHAIN,
    PACK_TARGET,
    Tuning,
    default_threads,
)

__all__ = ["Repository"]


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
        object_lock: ObjectLock | None = None,
    ) -> None:
        """``object_lock``: lock every object a committed point needs (immutable.py); the store
        must support it (S3 with Object Lock), checked at the first commit."""
        if max_chain < 1:
            raise ValueError("max_chain must be at least 1")
        allocator.tune()  # once per process: the data path's buffers (allocator.py)
        self.store = store
        self.key = key
        self.ring = ring
        self.codec = Codec(key, zstd_level, ring)
        self.clock = clock
        self.tuning = Tuning(
            threads=max(1, threads if threads is not None else default_threads()),
            pack_target=pack_target,
            max_chain=max_chain,
            checkpoint_blocks=checkpoint_blocks,
            checkpoint_bytes=checkpoint_bytes,
            lease_ttl=lease_ttl,
            gc_grace=gc_grace,
            pack_cache_bytes=pack_cache_bytes,
        )
        self._hashers: dict[int, Hasher] = {}
        signed = SignedObjects(store, key, ring)
        tables = TableCache(store, self.codec)
        index = ChunkIndex(store, self.codec, signed)
        self.object_lock = object_lock
        locker = Locker(store, tables, object_lock) if object_lock is not None else None
        self._points = Points(store, signed, key, clock, locker, ring)
        self._configs = SourceConfigs(store, self.codec)
        self.groups = GroupPoints(store, signed)
        t = self.tuning
        self._shipper = Shipper(
            store, key, self.codec, signed, tables, index, self._points, t, self.hasher, clock
        )
        self._readback = ReadBack(store, self.codec, signed, tables, self._points, t, self.hasher, clock)
        self._retention = Retention(store, signed, tables, index, self._points, t, clock)
        self._damage = Damage(store, signed, clock)
        self._scrubber = Scrubber(self._points, self._readback, self._damage)

    @property
    def threads(self) -> int:
        return self.tuning.threads

    @property
    def pack_target(self) -> int:
        return self.tuning.pack_target

    @property
    def max_chain(self) -> int:
        return self.tuning.max_chain

    @property
    def checkpoint_blocks(self) -> int:
        return self.tuning.checkpoint_blocks

    @property
    def checkpoint_bytes(self) -> int:
        return self.tuning.checkpoint_bytes

    @property
    def lease_ttl(self) -> timedelta:
        return self.tuning.lease_ttl

    @property
    def gc_grace(self) -> timedelta:
        return self.tuning.gc_grace

    @property
    def pack_cache_bytes(self) -> int:
        return self.tuning.pack_cache_bytes

    def hasher(self, seed: int) -> Hasher:
        """Change-detection hashes. The seed is per disk lineage (inherited from the parent point),
        so a key rotation does not make every block of the next point look changed."""
        h = self._hashers.get(seed)
        if h is None:
            h = self._hashers[seed] = Hasher(seed)
        return h

    # ---- points -----------------------------------------------------------------------------------

    def read_manifest(self, vm: str, point_id: str) -> PointManifest:
        return self._points.read_manifest(vm, point_id)

    def list_points(self, vm: str) -> list[PointInfo]:
        """Complete points of ``vm``, oldest first. Only committed manifests are listed."""
        return self._points.list_points(vm)

    def latest_point(self, vm: str, verified_only: bool = True) -> PointRef | None:
        return self._points.latest_point(vm, verified_only)

    def commit_point(
        self,
        vm: str,
        point_id: str,
        disks: list[ShippedDisk],
        parent: PointRef | str | None = None,
        meta: dict[str, str] | None = None,
        source_config: tuple[str, bytes] | None = None,
    ) -> PointRef:
        """Make a recovery point visible by writing its manifest, after everything it references.

        Idempotent: committing the same point again (a retried activity) returns the existing ref;
        committing different content under an existing id raises PointConflictError.
        ``source_config``: (who described it, the JSON document) -- the VM's configuration at
        snapshot time, sealed and written before the manifest, which records that it exists.
        """
        if source_config is None:
            return self._points.commit_point(vm, point_id, disks, parent, meta)
        kind, document = source_config
        return self._points.commit_point(
            vm,
            point_id,
            disks,
            parent,
            {**(meta or {}), META_KEY: kind},
            before_manifest=lambda: self._configs.put(vm, point_id, document),
        )

    def read_source_config(self, vm: str, point_id: str) -> bytes | None:
        """The point's source configuration (JSON), or None for a point committed without one.

        A point whose manifest says it has one but whose object is gone raises MissingObjectError;
        a tampered or moved one raises CorruptObjectError.
        """
        manifest = self._points.read_manifest(vm, point_id)
        return self._configs.get(vm, point_id, expected=META_KEY in manifest.meta)

    def forget_point(self, vm: str, point_id: str) -> None:
        """Delete a point's manifest, verified marker and configuration (its data goes at GC)."""
        self._points.delete(vm, point_id)

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
        return self._shipper.ship(source, vm, disk, parent, resume, on_progress, session, dedup)

    # ---- reading back: verify and restore ---------------------------------------------------------

    def verify_point(self, vm: str, point_id: str, mark: bool = True, full: bool = True) -> VerifyResult:
        """Re-read the chunks of a point, check each, and rebuild each disk's digest from them.

        ``full`` re-reads every chunk the point references (a 1 TiB disk: ~0.5 TB of reads).
        ``full=False`` re-reads only the rows of the disk's newest table layer, when the parent
        point is verified and the disk's older layers are exactly the parent's: those rows are
        then already proven, and the digest is rebuilt from their table hashes plus the re-read
        blocks. Disks without such a parent are verified fully. Problems are reported per block
        (disk, block index, offset, reason), never raised, except a wrong key (WrongKeyError).
        """
        damaged = frozenset(self._damage.damaged_refs())
        return self._readback.verify_point(vm, point_id, mark, full, None, damaged)

    # ---- scrub: find damage, keep it out of new points, let ships repair it (damage.py) -------------

    def scrub(
        self,
        vm: str,
        point_ids: list[str] | None = None,
        on_point: Callable[[PointCheck], None] | None = None,
    ) -> ScrubResult:
        """Read every chunk the points need (all of ``vm``'s, or ``point_ids``), newest first (scrub.py)."""
        return self._scrubber.scrub(vm, point_ids, on_point)

    def mark_corrupt(self, vm: str, result: VerifyResult) -> None:
        """Record a failed verify: the point is unlisted as verified and its damaged chunks kept
        out of dedup until a ship repairs them."""
        self._damage.mark_corrupt(vm, result)

    def last_scrub(self, vm: str) -> datetime | None:
        """When every point of ``vm`` was last read in full (None: never)."""
        return self._damage.last_scrub(vm)

    def mark_bad_block(self, vm: str, point_id: str, err: BadBlockError) -> None:
        """A restore met a damaged block: the point is marked corrupt with what it found (scrub.py)."""
        self._scrubber.mark_bad_block(vm, point_id, err)

    def corrupt_points(self, vm: str) -> list[str]:
        return sorted(self._damage.corrupt_points(vm))

    def damage(self) -> DamageList:
        """The store's damaged chunks not yet repaired, and those repaired (with when)."""
        return self._damage.load()

    def reverify_repaired(self, vm: str) -> list[PointCheck]:
        """Verify again the corrupt points of ``vm`` whose damaged chunks were all repaired (scrub.py)."""
        return self._scrubber.reverify_repaired(vm)

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
        return self._readback.restore_disk(vm, point_id, disk, target, start_offset, sparse, on_progress)

    # ---- retention and GC -------------------------------------------------------------------------

    def apply_retention(
        self, vm: str, policy: RetentionPolicy, now: datetime | None = None
    ) -> RetentionResult:
        """Delete the manifests of points the policy does not keep (data goes at the next gc()).

        A point whose object lock has not expired is kept and listed in ``locked``.

        A child point names its table layers itself, so deleting a parent never breaks a child.
        """
        return self._retention.apply_retention(vm, policy, now)

    def gc(self, now: datetime | None = None) -> GcResult:
        """Delete packs and tables no point references, safely against ships running meanwhile.

        See retention.py's docstring for the rule. Raises (and deletes nothing more) if any
        manifest cannot be read: an unreadable manifest's references are unknown.
        """
        return self._retention.gc(now)
