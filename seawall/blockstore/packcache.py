"""Whole packs for restore and verify, fetched ahead on a few threads, least recently used out.

Apart from ``blockread.py`` (which decides what to fetch) because it holds the store I/O side of
reading back: the threads, the LRU and the "missing pack" error.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from seawall.blockstore.errors import MissingObjectError
from seawall.blockstore.layout import pack_key
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore
from seawall.blockstore.tuning import FETCH_THREADS, PACK_TARGET


class PackCache:
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
