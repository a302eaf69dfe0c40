"""Mirroring a point to a second store (another backend or region): copy what the mirror lacks, then
verify it there.

Objects are copied byte for byte under the same keys: chunks are sealed and manifests signed with
the repository key over their *relative* key, so the copies are valid in the mirror as they are
(the mirror repository must be opened with the same key and ring). The order is the commit order —
packs and their indexes, then tables and the configuration, then the manifest last — so a mirror
never lists a point whose objects are not all there, and an interrupted copy is finished by running
it again (only the missing objects are sent). The mirror's own verify then re-reads every chunk
there and writes its own verified marker: a point counts as mirrored only once that marker exists.
A point that fails that verify (an object the mirror's GC removed mid-copy, or damaged there) is
repaired from the primary and verified again; if it still fails, its manifest is removed from the
mirror, so the mirror never lists a point whose chunks it lost (the next pass copies it again).

A mirror that locks (``object_lock`` on the mirror's store) locks each point's objects there before
its manifest appears, until its own period after the point's creation (never less than the lock
the primary recorded in the manifest).

``mirror_vm`` is one pass for a VM: wrapped keys, every verified point the mirror lacks, the
configuration of points mirrored before configurations were copied (back-fill), the points the
primary's retention removed (removed here too), and the VM's consistency-group points whose every
member the mirror holds verified. It runs after each cycle (``activities/mirror.py``); retention and
GC of the mirror also ride on the primary's (``activities/replica.py``); a recovery reads the mirror
when the primary cannot be read or the operator says so (``activities/target.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from seawall.blockstore.configs import META_KEY as CONFIG_META
from seawall.blockstore.errors import PointNotFoundError
from seawall.blockstore.groups import group_point_key
from seawall.blockstore.immutable import Locker, point_objects
from seawall.blockstore.layout import config_key, index_key, key_tail_bytes, point_key, verified_key
from seawall.blockstore.manifest import PointManifest
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectLockedError, ObjectNotFound
from seawall.blockstore.tablecache import TableCache

__all__ = [
    "MirrorPass",
    "MirrorResult",
    "backfill_configs",
    "mirror_groups",
    "mirror_keys",
    "mirror_pending",
    "mirror_point",
    "mirror_vm",
    "mirrored",
    "prune_mirror",
]


class MirrorResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    vm: str
    point_id: str
    objects: int  # objects the point needs
    copied: int  # of those, sent now (the mirror lacked them)
    bytes_copied: int
    verified: bool
    errors: list[str] = []
    repaired: int = 0  # objects rewritten from the primary after a failed verify in the mirror
    dropped: bool = False  # still failing after the repair: its manifest was removed from the mirror


class MirrorPass(BaseModel):
    """What one pass of ``mirror_vm`` did."""

    model_config = ConfigDict(frozen=True)
    results: list[MirrorResult]
    lag: int  # verified points of the primary the mirror still lacks
    configs_backfilled: list[str] = []  # points whose configuration the mirror lacked, copied now
    pruned: list[str] = []  # points the primary no longer holds, removed from the mirror
    pruned_locked: list[str] = []  # such points the mirror's object lock keeps for now
    group_points: int = 0  # consistency-group points copied to the mirror


def mirrored(mirror: Repository, vm: str, point_id: str) -> bool:
    """Whether the mirror holds the point, verified there."""
    return mirror.store.exists(verified_key(vm, point_id))


def _lock_until(mirror: Repository, m: PointManifest) -> datetime | None:
    """Until when the mirror locks a point's objects; None when the mirror does not lock."""
    if mirror.object_lock is None:
        return None
    own = mirror.object_lock.until(m.created_at)
    return max(own, m.lock_until) if m.lock_until is not None else own


def _copy_missing(primary: Repository, mirror: Repository, keys: Iterable[str]) -> tuple[int, int]:
    """Copy the keys the mirror lacks, in order; returns (objects, bytes) sent."""
    copied = sent = 0
    for k in keys:
        if mirror.store.exists(k):
            continue
        try:
            data = primary.store.get(k)
        except ObjectNotFound:
            if k.startswith("index/"):
                continue  # an index only serves dedup; a pack without one is still restorable
            raise
        mirror.store.put(k, data)
        copied += 1
        sent += len(data)
    return copied, sent


def _repair(primary: Repository, mirror: Repository, keys: Iterable[str]) -> int:
    """Rewrite every object of the mirror that differs from the primary's; returns how many. A
    locked object is left as it is (a lock is only ever put on an object written whole)."""
    rewritten = 0
    for k in keys:
        try:
            want = primary.store.get(k)
        except ObjectNotFound:
            continue
        try:
            have: bytes | None = mirror.store.get(k)
        except ObjectNotFound:
            have = None
        if have == want:
            continue
        try:
            mirror.store.put_overwrite(k, want)
        except ObjectLockedError:
            continue
        rewritten += 1
    return rewritten


def mirror_point(primary: Repository, mirror: Repository, vm: str, point_id: str) -> MirrorResult:
    """Copy ``point_id`` of ``vm`` from ``primary`` to ``mirror`` (missing objects only), then
    verify it in the mirror. Idempotent; safe to run again after a crash at any step."""
    if primary.key.key_id != mirror.key.key_id:
        raise ValueError(
            f"mirror {mirror.store.describe()} is opened with key {mirror.key.key_id!r}, the primary "
            f"with {primary.key.key_id!r}: a mirror holds the same sealed objects, so the same key"
        )
    m = primary.read_manifest(vm, point_id)
    tkeys, pkeys = point_objects(TableCache(primary.store, primary.codec), m)
    wanted: list[str] = []
    for pk in sorted(pkeys):
        wanted.append(pk)
        wanted.append(index_key(key_tail_bytes(pk)))
    wanted += sorted(tkeys)
    if CONFIG_META in m.meta:
        # The VM's configuration at snapshot time: a recovery from the mirror alone re-creates the
        # machine from it (the manifest says it exists, so its absence would fail the recovery).
        wanted.append(config_key(vm, point_id))
    okey = point_key(vm, point_id)
    copied, sent = _copy_missing(primary, mirror, wanted)
    until = _lock_until(mirror, m)
    locker = None
    if until is not None and mirror.object_lock is not None:
        locker = Locker(mirror.store, TableCache(mirror.store, mirror.codec), mirror.object_lock)
        locker.lock_data(m.model_copy(update={"lock_until": until}))  # before the manifest appears
    c, s = _copy_missing(primary, mirror, [okey])
    copied, sent = copied + c, sent + s
    if locker is not None:
        locker.lock_manifest(m.model_copy(update={"lock_until": until}))
    result = mirror.verify_point(vm, point_id, mark=True, full=True)
    repaired = 0
    if not result.ok:
        repaired = _repair(primary, mirror, [*wanted, okey])
        if repaired:
            result = mirror.verify_point(vm, point_id, mark=True, full=True)
    dropped = False
    if not result.ok:
        try:
            mirror.forget_point(vm, point_id)  # never listed with chunks it lacks; the next pass retries
            dropped = True
        except ObjectLockedError:
            pass
    return MirrorResult(
        vm=vm,
        point_id=point_id,
        objects=len(tkeys) + len(pkeys) + 1,
        copied=copied,
        bytes_copied=sent,
        verified=result.ok,
        errors=[*result.errors, *(f"{b.disk} block {b.block}: {b.reason}" for b in result.bad_blocks)],
        repaired=repaired,
        dropped=dropped,
    )


def mirror_keys(primary: Repository, mirror: Repository) -> int:
    """Copy the wrapped data keys of a ``kms:`` store (``keys/``) the mirror lacks, so the mirror
    alone can be opened by a recovery; returns how many were copied (never the current pointer
    over an existing one: the mirror follows the primary's rotations only for new keys)."""
    copied = 0
    for k in primary.store.list("keys/"):
        if not mirror.store.exists(k):
            mirror.store.put(k, primary.store.get(k))
            copied += 1
    return copied


def backfill_configs(primary: Repository, mirror: Repository, vm: str) -> list[str]:
    """Copy the configurations the mirror's points lack (points mirrored before configurations
    were copied with them); only missing objects, so a second run copies nothing. Returns the
    points whose configuration was copied."""
    prefix = f"configs/{vm}/"
    on_primary = {k for k in primary.store.list(prefix)}
    on_mirror = {k for k in mirror.store.list(prefix)}
    done = []
    for p in mirror.list_points(vm):
        k = config_key(vm, p.point_id)
        if k in on_mirror or k not in on_primary:
            continue
        try:
            mirror.store.put(k, primary.store.get(k))
        except ObjectNotFound:
            continue  # removed with its point by the primary's retention meanwhile
        done.append(p.point_id)
    return done


def prune_mirror(primary: Repository, mirror: Repository, vm: str) -> tuple[list[str], list[str]]:
    """Remove from the mirror the points of ``vm`` the primary's retention (or a failover's prune)
    removed: every point the primary no longer holds that is older than the primary's newest one.
    Newer ones are being mirrored. A primary holding no point at all prunes nothing: an emptied
    primary must not empty its mirror. Returns (removed, kept by the mirror's object lock)."""
    held = primary.list_points(vm)
    if not held:
        return [], []
    newest = max((p.created_at, p.point_id) for p in held)
    on_primary = {p.point_id for p in held}
    removed: list[str] = []
    locked: list[str] = []
    for p in mirror.list_points(vm):
        if p.point_id in on_primary or (p.created_at, p.point_id) >= newest:
            continue
        try:
            mirror.forget_point(vm, p.point_id)
        except ObjectLockedError:
            locked.append(p.point_id)  # the mirror's lock keeps it; pruned once the lock expires
            continue
        removed.append(p.point_id)
    return removed, locked


def mirror_groups(primary: Repository, mirror: Repository, group: str) -> int:
    """Copy the group points of ``group`` whose every member the mirror holds verified, and drop
    from the mirror the group points one of whose members it no longer holds (as the primary does
    after retention): a group point listed in the mirror is recoverable from it as a whole.
    Returns how many were copied."""
    held: dict[str, dict[str, bool]] = {}

    def members(vm: str) -> dict[str, bool]:
        if vm not in held:
            held[vm] = {p.point_id: p.verified for p in mirror.list_points(vm)}
        return held[vm]

    copied = 0
    for gp in primary.groups.list(group):
        k = group_point_key(group, gp.point_id)
        if mirror.store.exists(k) or not all(members(vm).get(gp.point_id) for vm in gp.vms):
            continue
        try:
            mirror.store.put(k, primary.store.get(k))
        except ObjectNotFound:
            continue  # removed on the primary meanwhile
        copied += 1
    for gp in mirror.groups.list(group):
        if any(gp.point_id not in members(vm) for vm in gp.vms):
            mirror.groups.delete(group, gp.point_id)
    return copied


def mirror_pending(
    primary: Repository, mirror: Repository, vm: str, on_point: Callable[[str], None] | None = None
) -> tuple[list[MirrorResult], int]:
    """Mirror every verified point of ``vm`` the mirror lacks, oldest first (a mirror that was down
    catches up here); returns the results and how many verified points it still lacks."""
    mirror_keys(primary, mirror)
    done = {p.point_id for p in mirror.list_points(vm) if p.verified}
    pending = [p.point_id for p in primary.list_points(vm) if p.verified and p.point_id not in done]
    results = []
    for point_id in pending:
        if on_point is not None:
            on_point(point_id)
        try:
            results.append(mirror_point(primary, mirror, vm, point_id))
        except PointNotFoundError:
            continue  # the primary's retention removed it meanwhile: nothing to mirror
    lag = sum(1 for r in results if not r.verified)
    return results, lag


def mirror_vm(
    primary: Repository,
    mirror: Repository,
    vm: str,
    groups: Iterable[str] = (),
    on_point: Callable[[str], None] | None = None,
) -> MirrorPass:
    """One mirror pass for ``vm`` (see the module's docstring); idempotent."""
    results, lag = mirror_pending(primary, mirror, vm, on_point)
    configs = backfill_configs(primary, mirror, vm)
    pruned, pruned_locked = prune_mirror(primary, mirror, vm)
    copied = sum(mirror_groups(primary, mirror, g) for g in groups)
    return MirrorPass(
        results=results,
        lag=lag,
        configs_backfilled=configs,
        pruned=pruned,
        pruned_locked=pruned_locked,
        group_points=copied,
    )
