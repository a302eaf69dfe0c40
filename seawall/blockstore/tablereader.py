"""Reading a disk's table through its layers: rows and block hashes in block order, newest layer wins.

Separate from ``tableformat.py`` (decoding one part or layer): this is the walk over a disk's layers
that scan, verify and restore share, holding only a part or two per layer at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from seawall.blockstore.table import Entry, TableFormatError
from seawall.blockstore.tableformat import Part, PartRef


class _LayerCursor:
    """The parts of one layer around the blocks being asked for; requests must not go backwards."""

    def __init__(self, parts: list[PartRef], load: Callable[[bytes], Part]) -> None:
        self._parts = parts
        self._load = load
        self._pi = 0
        self._loaded: deque[Part] = deque()

    def _ensure(self, lo: int, hi: int) -> None:
        loaded = self._loaded
        while loaded and loaded[0].end <= lo:
            loaded.popleft()
        parts = self._parts
        while self._pi < len(parts) and parts[self._pi].start < hi:
            pref = parts[self._pi]
            self._pi += 1
            if pref.end <= lo:
                continue  # skipped unread: resuming or restoring from an offset stays cheap
            part = self._load(pref.oid)
            if part.start != pref.start or part.end != pref.end:
                raise TableFormatError("table part range differs from its layer's record")
            loaded.append(part)

    def at(self, index: int) -> Entry | None:
        self._ensure(index, index + 1)
        for p in self._loaded:
            if p.start <= index < p.end:
                k = p.find(index)
                return p.entry(k) if k >= 0 else None
        return None

    def rows(self, b0: int, b1: int, out: list[tuple[Entry | None, int]], layer: int) -> int:
        """Fill the still-empty out[i - b0] with (row, layer) from this layer; returns how many."""
        self._ensure(b0, b1)
        found = 0
        for p in self._loaded:
            lo, hi = max(b0, p.start), min(b1, p.end)
            for i in range(lo, hi):
                if out[i - b0][0] is None:
                    k = p.find(i)
                    if k >= 0:
                        out[i - b0] = (p.entry(k), layer)
                        found += 1
        return found

    def fill(self, b0: int, b1: int, out: list[bytes | None]) -> None:
        self._ensure(b0, b1)
        for p in self._loaded:
            p.fill_hashes(b0, b1, out)


class TableReader:
    """A disk's rows in block order, merging its layers (the newest layer's row wins).

    Memory is a part or two per layer, so reading a 1 TiB disk's table never holds 16 M rows.
    Requests must not go backwards.
    """

    def __init__(self, layers: list[tuple[bool, list[PartRef]]], load: Callable[[bytes], Part]) -> None:
        self._oldest_first = [_LayerCursor(parts, load) for _, parts in layers]
        self._newest_first = self._oldest_first[::-1]

    def at(self, index: int) -> Entry | None:
        for c in self._newest_first:
            e = c.at(index)
            if e is not None:
                return e
        return None

    def at_layer(self, index: int) -> tuple[Entry | None, int]:
        """The row and the number of the layer it comes from (0 = the full layer), or (None, -1)."""
        top = len(self._newest_first) - 1
        for k, c in enumerate(self._newest_first):
            e = c.at(index)
            if e is not None:
                return e, top - k
        return None, -1

    def rows(self, b0: int, b1: int) -> list[tuple[Entry | None, int]]:
        """``at_layer`` for every block of [b0, b1) at once (a restore's per-batch walk).

        Each layer's parts are located once per range instead of once per block; rows are decoded
        only from the newest layer that has them.
        """
        out: list[tuple[Entry | None, int]] = [(None, -1)] * (b1 - b0)
        missing = b1 - b0
        top = len(self._newest_first) - 1
        for k, c in enumerate(self._newest_first):
            missing -= c.rows(b0, b1, out, top - k)
            if not missing:
                break
        return out

    def hashes(self, b0: int, b1: int) -> list[bytes | None]:
        """Block hashes of [b0, b1), None where no layer has a row."""
        out: list[bytes | None] = [None] * (b1 - b0)
        for c in self._oldest_first:
            c.fill(b0, b1, out)
        return out
