"""Table objects in the store: sealed, content-addressed, and their decoded parts cached.

A table part holds the rows of a run of blocks (table.py); a layer lists parts; a disk's table is
its manifest's layers, the full layer first. Parts are cached by id (they never change), so the
ships, verifies and restores of one repository instance share what they decoded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from seawall.blockstore.codec import KIND_TABLE, Codec
from seawall.blockstore.errors import CorruptObjectError, MissingObjectError
from seawall.blockstore.layout import table_key
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore
from seawall.blockstore.table import TableFormatError
from seawall.blockstore.tableformat import Part, PartRef, decode_layer, decode_part
from seawall.blockstore.tablereader import TableReader

# A part keeps its encoded form, ~200 B per row: at most ~40 MB of parts are cached.
MAX_CACHED_ROWS = 200_000


class TableCache:
    """Put and get table objects; decoded parts cached least-recently-used by row count."""

    def __init__(self, store: ObjectStore, codec: Codec) -> None:
        self._store = store
        self._codec = codec
        self._parts: OrderedDict[bytes, Part] = OrderedDict()
        self._parts_rows = 0
        # Ships, verifies and restores on one instance may run in parallel threads.
        self._lock = threading.RLock()

    def put(self, plain: bytes) -> tuple[bytes, int]:
        """Seal and store one table object; returns its id and stored size."""
        oid = self._codec.object_id(plain)
        sealed = self._codec.seal(KIND_TABLE, oid, plain)
        self._store.put(table_key(oid), sealed)
        return oid, len(sealed)

    def get(self, oid: bytes, referenced_by: str) -> bytes:
        try:
            blob = self._store.get(table_key(oid))
        except ObjectNotFound:
            raise MissingObjectError(table_key(oid), referenced_by) from None
        return self._codec.open(KIND_TABLE, oid, blob, f"table {oid.hex()[:16]} of {referenced_by}")

    def cache_part(self, oid: bytes, part: Part) -> None:
        with self._lock:
            if oid in self._parts:
                return
            self._parts[oid] = part
            self._parts_rows += part.n
            while self._parts_rows > MAX_CACHED_ROWS and len(self._parts) > 1:
                _, old = self._parts.popitem(last=False)
                self._parts_rows -= old.n

    def load_part(self, oid: bytes, referenced_by: str) -> Part:
        with self._lock:
            part = self._parts.get(oid)
            if part is not None:
                self._parts.move_to_end(oid)
                return part
        plain = self.get(oid, referenced_by)
        try:
            part = decode_part(plain)
        except TableFormatError as exc:
            raise CorruptObjectError(f"table part {oid.hex()[:16]}", str(exc)) from exc
        self.cache_part(oid, part)
        return part

    def load_layers(self, layers: list[str], referenced_by: str) -> list[tuple[bool, list[PartRef]]]:
        out = []
        for lid in layers:
            plain = self.get(bytes.fromhex(lid), referenced_by)
            try:
                out.append(decode_layer(plain))
            except TableFormatError as exc:
                raise CorruptObjectError(f"table layer {lid[:16]}", str(exc)) from exc
        if out and not out[0][0]:
            raise CorruptObjectError(referenced_by, "first table layer is not a full layer")
        return out

    def reader(self, layers: list[str], referenced_by: str) -> TableReader:
        """A disk's table: its layers loaded now, their parts on demand (through the cache)."""
        loaded = self.load_layers(layers, referenced_by)
        return TableReader(loaded, lambda oid: self.load_part(oid, referenced_by))

    def clear(self) -> None:
        """Forget every cached part (after GC: a collected part must not be served from here)."""
        with self._lock:
            self._parts.clear()
            self._parts_rows = 0
