"""A point's source configuration: the VM's description at snapshot time, sealed beside the manifest.

The repository treats it as an opaque JSON document (``seawall.model.sourceconfig`` gives it its
shape). It is sealed like a chunk (AES-256-GCM under the repository key, zstd first) with the object
key as the authenticated id, so a configuration copied under another point fails to open, and
reading it needs the repository key: a VM's MACs, annotation and tags are as private as its disks.

Written before the manifest (the manifest's ``meta["source_config"]`` says one exists, so a deleted
configuration is reported, not silently replaced by defaults); deleted with the manifest.
"""

from __future__ import annotations

from seawall.blockstore.codec import KIND_CONFIG, Codec
from seawall.blockstore.errors import MissingObjectError
from seawall.blockstore.layout import config_key
from seawall.blockstore.manifest import check_name
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore

# The manifest's meta entry that records a configuration was stored (its value: who described it).
META_KEY = "source_config"


class SourceConfigs:
    """Seal, store, open and forget points' configurations in one store."""

    def __init__(self, store: ObjectStore, codec: Codec) -> None:
        self._store = store
        self._codec = codec

    def put(self, vm: str, point_id: str, document: bytes) -> None:
        """Store (or replace, before the manifest exists) the configuration of a point being committed."""
        check_name("vm", vm)
        check_name("point id", point_id)
        okey = config_key(vm, point_id)
        self._store.put_overwrite(okey, self._codec.seal(KIND_CONFIG, okey.encode(), document))

    def get(self, vm: str, point_id: str, *, expected: bool) -> bytes | None:
        """The stored document, or None when there is none; ``expected`` (the manifest says one was
        stored) turns a missing object into MissingObjectError."""
        okey = config_key(vm, point_id)
        try:
            blob = self._store.get(okey)
        except ObjectNotFound:
            if expected:
                raise MissingObjectError(okey, f"point {point_id} of {vm}") from None
            return None
        return self._codec.open(KIND_CONFIG, okey.encode(), blob, okey, verify_id=False)

    def delete(self, vm: str, point_id: str) -> None:
        self._store.delete(config_key(vm, point_id))
