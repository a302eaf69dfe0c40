"""Immutable points: an object lock on every object a point needs, so nothing deletes it early.

With a store that can lock (S3 Object Lock), ``commit_point`` locks the point's table objects
(layers and parts) and the packs they reference *before* the manifest becomes visible, then the
manifest itself, each until ``created_at + period`` (recorded in the manifest as ``lock_until``).
An object shared with an older point has its lock extended, never shortened. Neither GC, retention
nor anyone holding the store's own credentials can then delete or overwrite those objects' data
before the date: S3 refuses to delete a locked version (compliance mode: nobody can; governance:
only with s3:BypassGovernanceRetention, which Seawall never asks for). Retention skips a point
whose lock has not expired and says so; GC keeps a locked object condemned and counts it.

Not locked, because they can be rebuilt or lost without losing a point: pack indexes (dedup
only), the verified marker (losing it makes the point "unverified", not gone), session journals,
the condemned list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from seawall.blockstore.layout import pack_key, point_key, table_key
from seawall.blockstore.manifest import PointManifest
from seawall.blockstore.stores.backend import LockingStore, ObjectStore, StoreError
from seawall.blockstore.tablecache import TableCache

LockMode = Literal["governance", "compliance"]


@dataclass(frozen=True)
class ObjectLock:
    """How a store locks points: S3's mode and how long after its creation a point stays locked."""

    mode: LockMode
    period: timedelta

    def __post_init__(self) -> None:
        if self.mode not in ("governance", "compliance"):
            raise ValueError(f"object lock mode must be governance or compliance, not {self.mode!r}")
        if self.period <= timedelta(0):
            raise ValueError("object lock period must be positive")

    def until(self, created_at: datetime) -> datetime:
        return created_at + self.period


def point_objects(tables: TableCache, m: PointManifest) -> tuple[set[str], set[str]]:
    """The table and pack keys a point needs to be restored (its manifest aside)."""
    ref_tables: set[str] = set()
    ref_packs: set[str] = set()
    for dm in m.disks:
        where = f"point {m.point_id} of {m.vm}"
        for lid in dm.layers:
            ref_tables.add(table_key(bytes.fromhex(lid)))
        for _, prefs in tables.load_layers(dm.layers, where):
            for pr in prefs:
                tkey = table_key(pr.oid)
                if tkey in ref_tables:
                    continue
                ref_tables.add(tkey)
                ref_packs.update(pack_key(p) for p in tables.load_part(pr.oid, where).packs)
    return ref_tables, ref_packs


class Locker:
    """Locks the objects of points in one store (checked once per instance to support locks)."""

    def __init__(self, store: ObjectStore, tables: TableCache, lock: ObjectLock) -> None:
        self.lock = lock
        self._store = store
        self._tables = tables
        self._checked = False

    def _locking(self) -> LockingStore:
        store = self._store
        if not isinstance(store, LockingStore):
            raise StoreError(f"{store.describe()}: this kind of replica store cannot lock objects")
        if not self._checked:
            store.check_lock_support()
            self._checked = True
        return store

    def lock_data(self, m: PointManifest) -> int:
        """Lock everything the point references; returns how many objects were asked for."""
        if m.lock_until is None:
            return 0
        store = self._locking()
        tkeys, pkeys = point_objects(self._tables, m)
        mode = self.lock.mode.upper()
        for k in sorted(pkeys) + sorted(tkeys):
            store.lock(k, mode, m.lock_until)
        return len(tkeys) + len(pkeys)

    def lock_manifest(self, m: PointManifest) -> None:
        if m.lock_until is None:
            return
        self._locking().lock(point_key(m.vm, m.point_id), self.lock.mode.upper(), m.lock_until)
