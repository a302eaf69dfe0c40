"""Recovery points: commit a manifest (last, after everything it names), read, list, forget.

A manifest is signed JSON at ``points/<vm>/<point>.json``; a point is listed only once its
manifest exists, and "verified" is the separate marker ``verified/<vm>/<point>.json``. The VM's
configuration (``configs.py``) is written just before the manifest and deleted just after it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from seawall.blockstore.errors import (
    CorruptObjectError,
    MissingObjectError,
    PointConflictError,
    PointNotFoundError,
    WrongKeyError,
)
from seawall.blockstore.immutable import Locker
from seawall.blockstore.keys import KeyMaterial, KeyRing
from seawall.blockstore.layout import config_key, point_key, session_key, table_key, verified_key
from seawall.blockstore.manifest import (
    DiskManifest,
    PointInfo,
    PointManifest,
    PointRef,
    ShippedDisk,
    check_name,
)
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore


def disk_of(m: PointManifest, disk: str) -> DiskManifest | None:
    return next((d for d in m.disks if d.disk == disk), None)


class Points:
    """The manifests of one store; read manifests are cached (a manifest never changes)."""

    def __init__(
        self,
        store: ObjectStore,
        signed: SignedObjects,
        key: KeyMaterial,
        clock: Callable[[], datetime],
        locker: Locker | None = None,
        ring: KeyRing | None = None,
    ) -> None:
        self._store = store
        self._ring = ring
        self._locker = locker
        self._signed = signed
        self._key = key
        self._clock = clock
        self._manifests: dict[str, PointManifest] = {}

    def read_manifest(self, vm: str, point_id: str) -> PointManifest:
        okey = point_key(vm, point_id)
        m = self._manifests.get(okey)
        if m is not None:
            return m
        try:
            m = self._signed.get(okey, PointManifest)
        except ObjectNotFound:
            raise PointNotFoundError(vm, point_id) from None
        if m.vm != vm or m.point_id != point_id:
            raise CorruptObjectError(okey, "manifest names another point")
        self._manifests[okey] = m
        return m

    def list_points(self, vm: str) -> list[PointInfo]:
        """Complete points of ``vm``, oldest first. Only committed manifests are listed."""
        check_name("vm", vm)
        verified = {k.rsplit("/", 1)[-1][:-5] for k in self._store.list(f"verified/{vm}/")}
        # A point a verify found damaged is never verified, whatever marker a race left (damage.py).
        corrupt = {k.rsplit("/", 1)[-1][:-5] for k in self._store.list(f"corrupt/{vm}/")}
        out = []
        for k in self._store.list(f"points/{vm}/"):
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
                    verified=m.point_id in verified and m.point_id not in corrupt,
                    corrupt=m.point_id in corrupt,
                    disks={d.disk: d.size for d in m.disks},
                    locked_until=m.lock_until,
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
        before_manifest: Callable[[], None] | None = None,
    ) -> PointRef:
        """Make a recovery point visible by writing its manifest, after everything it references.

        Idempotent: committing the same point again (a retried activity) returns the existing ref;
        committing different content under an existing id raises PointConflictError.
        ``before_manifest`` writes what the manifest names besides disks (the source configuration);
        it runs only while the point is not committed yet, so a committed point never changes.
        """
        check_name("vm", vm)
        check_name("point id", point_id)
        parent_id = parent.point_id if isinstance(parent, PointRef) else parent
        names = [d.disk for d in disks]
        if len(set(names)) != len(names):
            raise ValueError(f"point {point_id}: duplicate disk names {names}")
        for d in disks:
            # A key rotation between the ship and the commit leaves the disk sealed with a key the
            # ring still holds: the point is as readable as any older one, so it is committed.
            if d.key_id != self._key.key_id and (self._ring is None or d.key_id not in self._ring):
                raise WrongKeyError(f"shipped disk {d.disk}", d.key_id, self._key.key_id)
            if d.parent_point not in (None, parent_id):
                raise ValueError(
                    f"disk {d.disk} was shipped against {d.parent_point}, not parent {parent_id}"
                )
            for lid in d.layers:
                if not self._store.exists(table_key(bytes.fromhex(lid))):
                    raise MissingObjectError(table_key(bytes.fromhex(lid)), f"shipped disk {d.disk}")
        created_at = self._clock()
        manifest = PointManifest(
            vm=vm,
            point_id=point_id,
            parent=parent_id,
            created_at=created_at,
            # The key the data is sealed with (recorded per point): the ship's, normally the current one.
            key_id=disks[0].key_id
            if disks and all(d.key_id == disks[0].key_id for d in disks)
            else self._key.key_id,
            disks=[DiskManifest.model_validate(d.model_dump(exclude={"session", "key_id"})) for d in disks],
            meta=meta or {},
            lock_until=self._locker.lock.until(created_at) if self._locker is not None else None,
        )
        okey = point_key(vm, point_id)
        if self._locker is not None:
            # Data first: once the manifest is visible, everything it names is already locked.
            self._locker.lock_data(manifest)
        if before_manifest is not None and not self._store.exists(okey):
            before_manifest()
        if not self._signed.put(okey, manifest):
            existing = self.read_manifest(vm, point_id)
            if not manifest.same_content(existing):
                raise PointConflictError(
                    f"point {point_id!r} of {vm!r} already exists with different content"
                )
            manifest = existing
            if self._locker is not None:
                self._locker.lock_data(manifest)  # a retry after a crash between the two steps
        if self._locker is not None:
            self._locker.lock_manifest(manifest)
        self._manifests[okey] = manifest
        for d in disks:
            self._store.delete(session_key(d.session))
        return PointRef(vm=vm, point_id=point_id, created_at=manifest.created_at)

    def delete(self, vm: str, point_id: str) -> None:
        """Remove a point's manifest and verified marker (its data goes at the next GC)."""
        okey = point_key(vm, point_id)
        self._store.delete(okey)
        self._store.delete(verified_key(vm, point_id))
        # After the manifest: a listed point always has the configuration its manifest names.
        self._store.delete(config_key(vm, point_id))
        self._manifests.pop(okey, None)

    def forget_cached(self) -> None:
        """Drop cached manifests, so the next reads see only what the store holds now."""
        self._manifests.clear()
