"""The store-wide chunk index: which pack holds a chunk, for dedup across ships, disks and VMs.

Before a chunk is appended to a pack its id is looked up, first among the chunks of the same ship,
then (for seeds, or with ``dedup=True``) here: every pack's ``index/`` object, loaded once per
repository instance and refreshed per ship. A hit is a no-op that references the existing pack,
so content is stored once per store and key across points, disks and VMs (a VM cloned from a
template seeds at the cost of what differs). A ship's own chunks join the shared index only after
their pack is durable. Incrementals skip the global index by default: loading it is O(packs in the
store) requests, and their unchanged data is found through the parent's table anyway. Table rows
carry the full location (chunk id + pack + offset + length), so restore and verify need no global
index at all.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping

from seawall.blockstore.codec import KIND_INDEX, Codec
from seawall.blockstore.damage import read_damage
from seawall.blockstore.errors import CorruptObjectError, WrongKeyError
from seawall.blockstore.layout import CONDEMNED_KEY, index_key, key_tail_bytes, pack_key
from seawall.blockstore.manifest import CondemnedList
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore
from seawall.blockstore.table import ChunkRef

# An index object is rows of chunk id (32 bytes) + offset (u32 LE) + length (u32 LE).
ROW = 40


def encode_index(rows: Iterable[tuple[bytes, int, int]]) -> bytes:
    """A pack's index, before sealing: (chunk id, offset, length) per chunk."""
    return b"".join(cid + off.to_bytes(4, "little") + ln.to_bytes(4, "little") for cid, off, ln in rows)


def read_condemned(signed: SignedObjects) -> CondemnedList:
    """What GC has condemned, and since when (no list yet: nothing)."""
    try:
        return signed.get(CONDEMNED_KEY, CondemnedList)
    except ObjectNotFound:
        return CondemnedList()


class ChunkIndex:
    """chunk id -> ChunkRef over the packs this instance loaded; safe across threads."""

    def __init__(self, store: ObjectStore, codec: Codec, signed: SignedObjects) -> None:
        self._store = store
        self._codec = codec
        self._signed = signed
        self._refs: dict[bytes, ChunkRef] = {}
        self._packs: dict[bytes, list[bytes]] = {}
        # Ships, verifies and restores on one instance may run in parallel threads.
        self._lock = threading.RLock()
        self._damaged: frozenset[bytes] = frozenset()  # never a dedup target (damage.py)

    def lookup(self, cid: bytes) -> ChunkRef | None:
        if cid in self._damaged:
            return None
        return self._refs.get(cid)

    def refresh(self) -> None:
        """Load new packs' indexes; forget packs that are gone or condemned (never dedup to those)."""
        with self._lock:
            self._damaged = frozenset(bytes.fromhex(c) for c in read_damage(self._signed).chunks)
            condemned = read_condemned(self._signed).since
            present: set[bytes] = set()
            for k in self._store.list("index/"):
                try:
                    pack = key_tail_bytes(k)
                except ValueError:
                    continue
                if pack_key(pack) in condemned:
                    continue
                present.add(pack)
            self._forget(p for p in list(self._packs) if p not in present)
            for pack in present - self._packs.keys():
                cids = self._load(pack)
                if cids is not None:
                    self._packs[pack] = cids

    def _load(self, pack: bytes) -> list[bytes] | None:
        try:
            blob = self._store.get(index_key(pack))
        except ObjectNotFound:
            return None
        try:
            plain = self._codec.open(KIND_INDEX, pack, blob, f"index of pack {pack.hex()}", verify_id=False)
        except (CorruptObjectError, WrongKeyError):
            # A pack we cannot read the index of is simply not a dedup candidate.
            return None
        cids = []
        for o in range(0, len(plain) - len(plain) % ROW, ROW):
            cid = plain[o : o + 32]
            off = int.from_bytes(plain[o + 32 : o + 36], "little")
            ln = int.from_bytes(plain[o + 36 : o + 40], "little")
            self._refs.setdefault(cid, ChunkRef(cid, pack, off, ln))
            cids.append(cid)
        return cids

    def add(self, packs: Iterable[tuple[bytes, list[bytes]]], refs: Mapping[bytes, ChunkRef]) -> None:
        """Packs a ship has confirmed durable join the index, with their chunks' refs."""
        with self._lock:
            for pack, cids in packs:
                self._packs[pack] = cids
                for cid in cids:
                    self._refs.setdefault(cid, refs[cid])

    def forget_deleted(self, deleted: Collection[str]) -> None:
        """Drop the packs whose keys GC deleted: no ship of this instance dedups against them again."""
        with self._lock:
            self._forget([p for p in self._packs if pack_key(p) in deleted])

    def _forget(self, packs: Iterable[bytes]) -> None:
        for pack in packs:
            cids = self._packs.pop(pack, None)
            for cid in cids or ():
                ref = self._refs.get(cid)
                if ref is not None and ref.pack == pack:
                    del self._refs[cid]
