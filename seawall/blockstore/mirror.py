"""Mirroring a point to a second store (another backend or region): copy what the mirror lacks, then
verify it there.

Objects are copied byte for byte under the same keys: chunks are sealed and manifests signed with
the repository key over their *relative* key, so the copies are valid in the mirror as they are
(the mirror repository must be opened with the same key and ring). The order is the commit order —
packs and their indexes, then tables, then the manifest last — so a mirror never lists a point
whose objects are not all there, and an interrupted copy is finished by running it again (only
the missing objects are sent). The mirror's own verify then re-reads every chunk there and writes
its own verified marker: a point counts as mirrored only once that marker exists in the mirror.

The workflow step that runs this after each cycle is ``activities/mirror.py``; retention and GC
of the mirror ride on the primary's; a recovery reads the mirror when the primary cannot be read
(``activities/target.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from seawall.blockstore.configs import META_KEY as CONFIG_META
from seawall.blockstore.immutable import point_objects
from seawall.blockstore.layout import config_key, index_key, key_tail_bytes, point_key, verified_key
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectNotFound
from seawall.blockstore.tablecache import TableCache

__all__ = ["MirrorResult", "mirror_keys", "mirror_pending", "mirror_point", "mirrored"]


class MirrorResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    vm: str
    point_id: str
    objects: int  # objects the point needs
    copied: int  # of those, sent now (the mirror lacked them)
    bytes_copied: int
    verified: bool
    errors: list[str] = []


def mirrored(mirror: Repository, vm: str, point_id: str) -> bool:
    """Whether the mirror holds the point, verified there."""
    return mirror.store.exists(verified_key(vm, point_id))


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
    copied = sent = 0
    for k in [*wanted, okey]:
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
    result = mirror.verify_point(vm, point_id, mark=True, full=True)
    return MirrorResult(
        vm=vm,
        point_id=point_id,
        objects=len(tkeys) + len(pkeys) + 1,
        copied=copied,
        bytes_copied=sent,
        verified=result.ok,
        errors=[*result.errors, *(f"{b.disk} block {b.block}: {b.reason}" for b in result.bad_blocks)],
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
        results.append(mirror_point(primary, mirror, vm, point_id))
    lag = sum(1 for r in results if not r.verified)
    return results, lag
