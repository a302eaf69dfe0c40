"""The replication data path: ship disks into a replica store, commit, verify, restore, retain, GC.

Public API (no Temporal imports anywhere in this package)::

    from seawall.blockstore import Repository, DirectoryStore, load_key

    repo = Repository(store, load_key("file:/etc/seawall/replica.key"))
    shipped = repo.ship(source, vm, disk, parent=parent_ref, resume=progress, on_progress=heartbeat)
    ref = repo.commit_point(vm, point_id, [shipped], parent=parent_ref, meta={...})
    repo.verify_point(vm, point_id)            # -> VerifyResult (bad blocks listed), marks verified
    repo.restore_disk(vm, point_id, disk, path_or_writer, start_offset=0)
    repo.latest_point(vm, verified_only=True)  # -> PointRef | None
    repo.apply_retention(vm, RetentionPolicy(keep_last=30)); repo.gc()

Names resolve lazily, so importing ``seawall.blockstore.stores.backend`` stays as light as it was.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Repository": "seawall.blockstore.repository",
    "MAX_CHAIN": "seawall.blockstore.tuning",
    "DirectoryStore": "seawall.blockstore.stores.directory",
    "KeyMaterial": "seawall.blockstore.keys",
    "KeyRing": "seawall.blockstore.keys",
    "KeyRefError": "seawall.blockstore.keys",
    "load_key": "seawall.blockstore.keys",
    "PointRef": "seawall.blockstore.manifest",
    "PointInfo": "seawall.blockstore.manifest",
    "PointManifest": "seawall.blockstore.manifest",
    "DiskManifest": "seawall.blockstore.manifest",
    "ShippedDisk": "seawall.blockstore.manifest",
    "ShipProgress": "seawall.blockstore.manifest",
    "RetentionPolicy": "seawall.blockstore.manifest",
    "RetentionResult": "seawall.blockstore.manifest",
    "VerifyResult": "seawall.blockstore.manifest",
    "BadBlock": "seawall.blockstore.manifest",
    "RestoreResult": "seawall.blockstore.manifest",
    "GcResult": "seawall.blockstore.manifest",
    "DataPathError": "seawall.blockstore.errors",
    "WrongKeyError": "seawall.blockstore.errors",
    "CorruptObjectError": "seawall.blockstore.errors",
    "MissingObjectError": "seawall.blockstore.errors",
    "PointNotFoundError": "seawall.blockstore.errors",
    "PointConflictError": "seawall.blockstore.errors",
    "BadBlockError": "seawall.blockstore.errors",
    "DigestMismatchError": "seawall.blockstore.errors",
}

__all__ = [
    "MAX_CHAIN",
    "BadBlock",
    "BadBlockError",
    "CorruptObjectError",
    "DataPathError",
    "DigestMismatchError",
    "DirectoryStore",
    "DiskManifest",
    "GcResult",
    "KeyMaterial",
    "KeyRefError",
    "KeyRing",
    "MissingObjectError",
    "PointConflictError",
    "PointInfo",
    "PointManifest",
    "PointNotFoundError",
    "PointRef",
    "Repository",
    "RestoreResult",
    "RetentionPolicy",
    "RetentionResult",
    "ShipProgress",
    "ShippedDisk",
    "VerifyResult",
    "WrongKeyError",
    "load_key",
]

if TYPE_CHECKING:
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
    from seawall.blockstore.keys import KeyMaterial, KeyRefError, KeyRing, load_key
    from seawall.blockstore.manifest import (
        BadBlock,
        DiskManifest,
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
    )
    from seawall.blockstore.repository import Repository
    from seawall.blockstore.stores.directory import DirectoryStore
    from seawall.blockstore.tuning import MAX_CHAIN


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seawall.blockstore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
