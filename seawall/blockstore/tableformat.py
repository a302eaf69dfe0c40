"""The binary form of block tables: parts (a block range's rows, columnar) and layers (lists of parts).

Kept apart from ``table.py`` (geometry and row types) because it is the on-store format: every
change here is a format change, and its encoder and decoder must be read side by side.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import pairwise

from seawall.blockstore.table import (
    FP_BYTES,
    HASH_BYTES,
    PIECES,
    ChunkRef,
    Entry,
    Overlay,
    TableFormatError,
)

PART_MAGIC = b"SWP1"
LAYER_MAGIC = b"SWL1"


# ---- serialization -------------------------------------------------------------------------------
#
# A part is columnar so that reading it costs O(1) Python work, not O(rows): the hash-compare scan
# only needs the block hashes (one slice per block), GC only the part's pack list, and full rows
# are decoded one at a time, on demand, for the few changed blocks.
#
#   header | pack ids (16 B each) | row index u32 (rel. to start) | block hash 16 B | row offset u32
#   (n + 1) | rows
#
# A row: flags u8 | if data: n fps u8, fps, [base ref], n overlays u8, (piece u8, has u8, [ref])*
# A ref: chunk id 32 B | pack ordinal u32 | offset u32 | length u32.

_HDR = struct.Struct("<4sBQQII")  # magic, full?, start, end, n packs, n rows
_REF = struct.Struct("<32sIII")
# flags, n fps (16), fps, base ref (as _REF), n overlays (0): the same bytes as the general path.
_ROW_WHOLE = struct.Struct(f"<BB{PIECES * FP_BYTES}s32sIIIB")
_F_DATA = 1
_F_BASE = 2


def encode_part(start: int, end: int, full: bool, entries: list[Entry]) -> bytes:
    packs: dict[bytes, int] = {}

    def ref(r: ChunkRef) -> bytes:
        o = packs.get(r.pack)
        if o is None:
            o = packs[r.pack] = len(packs)
        return _REF.pack(r.cid, o, r.offset, r.length)

    idx = array("I")
    hashes: list[bytes] = []
    offs = array("I", [0])
    rows: list[bytes] = []
    pos = 0
    whole = _ROW_WHOLE.pack
    nfps = PIECES * FP_BYTES
    flags_whole = _F_DATA | _F_BASE
    for e in entries:
        idx.append(e.block - start)
        hashes.append(e.bhash)
        fps, b = e.fps, e.base
        if fps is None:
            row = b"\0"
        elif b is not None and not e.overlays and len(fps) == nfps:
            # The common row (a whole block, no overlays) in one pack call: a seed writes 16,384
            # of them per GiB on the ship's main thread, and the general path costs ~4x more.
            o = packs.get(b.pack)
            if o is None:
                o = packs[b.pack] = len(packs)
            row = whole(flags_whole, PIECES, fps, b.cid, o, b.offset, b.length, 0)
        else:
            bits = [bytes((_F_DATA | (_F_BASE if b is not None else 0), len(fps) // FP_BYTES)), fps]
            if b is not None:
                bits.append(ref(b))
            bits.append(bytes((len(e.overlays),)))
            for piece, r in e.overlays:
                bits.append(bytes((piece, 0 if r is None else 1)))
                if r is not None:
                    bits.append(ref(r))
            row = b"".join(bits)
        rows.append(row)
        pos += len(row)
        offs.append(pos)
    head = _HDR.pack(PART_MAGIC, 1 if full else 0, start, end, len(packs), len(entries))
    if sys.byteorder != "little":
        idx.byteswap()
        offs.byteswap()
    return b"".join([head, *packs, idx.tobytes(), *hashes, offs.tobytes(), *rows])


class Part:
    """A decoded table part: block hashes and row index as columns, rows decoded on demand."""

    __slots__ = ("_hashes", "_idx", "_offs", "_packs", "_rows", "contiguous", "end", "full", "n", "start")

    def __init__(self, data: bytes) -> None:
        try:
            magic, full, start, end, npacks, n = _HDR.unpack_from(data, 0)
        except struct.error as exc:
            raise TableFormatError(f"table part is malformed: {exc}") from exc
        if magic != PART_MAGIC:
            raise TableFormatError("not a table part")
        pos = _HDR.size
        self._packs = [data[pos + 16 * i : pos + 16 * (i + 1)] for i in range(npacks)]
        pos += 16 * npacks
        self._idx = array("I")
        self._idx.frombytes(data[pos : pos + 4 * n])
        pos += 4 * n
        self._hashes = data[pos : pos + HASH_BYTES * n]
        pos += HASH_BYTES * n
        self._offs = array("I")
        self._offs.frombytes(data[pos : pos + 4 * (n + 1)])
        pos += 4 * (n + 1)
        if sys.byteorder != "little":
            self._idx.byteswap()
            self._offs.byteswap()
        self._rows = memoryview(data)[pos:]
        if (
            len(self._idx) != n
            or len(self._offs) != n + 1
            or len(self._hashes) != HASH_BYTES * n
            or self._offs[-1] != len(self._rows)
            or end < start
            or (n and self._idx[-1] >= end - start)
        ):
            raise TableFormatError("table part is truncated or inconsistent")
        self.start, self.end, self.full, self.n = start, end, bool(full), n
        self.contiguous = n == end - start
        if full and not self.contiguous:
            raise TableFormatError("full table part does not list every block")

    @classmethod
    def build(cls, start: int, end: int, full: bool, entries: list[Entry]) -> Part:
        return cls(encode_part(start, end, full, entries))

    @property
    def packs(self) -> list[bytes]:
        """Every pack a row of this part references (GC needs no more than this)."""
        return list(self._packs)

    def find(self, index: int) -> int:
        """Row number of block ``index``, or -1."""
        rel = index - self.start
        if self.contiguous:
            return rel if 0 <= rel < self.n else -1
        k = bisect_left(self._idx, rel)
        return k if k < self.n and self._idx[k] == rel else -1

    def bhash(self, k: int) -> bytes:
        return self._hashes[HASH_BYTES * k : HASH_BYTES * (k + 1)]

    def fill_hashes(self, b0: int, b1: int, out: list[bytes | None]) -> None:
        """out[i - b0] = block hash of block i, for the rows of this part in [b0, b1)."""
        lo, hi = max(b0, self.start), min(b1, self.end)
        if lo >= hi:
            return
        h = self._hashes
        if self.contiguous:
            k0 = lo - self.start
            out[lo - b0 : hi - b0] = [
                h[HASH_BYTES * k : HASH_BYTES * (k + 1)] for k in range(k0, k0 + hi - lo)
            ]
            return
        idx = self._idx
        k = bisect_left(idx, lo - self.start)
        rel_hi = hi - self.start
        base = self.start - b0
        while k < self.n and idx[k] < rel_hi:
            out[idx[k] + base] = h[HASH_BYTES * k : HASH_BYTES * (k + 1)]
            k += 1

    def entry(self, k: int) -> Entry:
        index = self.start + self._idx[k]
        bhash = self.bhash(k)
        row = self._rows[self._offs[k] : self._offs[k + 1]]
        if len(row) == _ROW_WHOLE.size and row[0] == _F_DATA | _F_BASE and row[1] == PIECES and row[-1] == 0:
            # The common row (a whole block, no overlays) in one unpack, as encode_part wrote it:
            # a restore decodes every row of the disk on its main thread.
            _, _, fps, cid, o, off, ln, _ = _ROW_WHOLE.unpack(row)
            try:
                return Entry(index, bhash, fps, ChunkRef(cid, self._packs[o], off, ln))
            except IndexError as exc:
                raise TableFormatError(f"row of block {index} is malformed: {exc}") from exc
        try:
            flags = row[0]
            if not flags & _F_DATA:
                return Entry(index, bhash, None)
            nfp = row[1]
            pos = 2 + nfp * FP_BYTES
            fps = bytes(row[2:pos])
            base = None
            if flags & _F_BASE:
                cid, o, off, ln = _REF.unpack_from(row, pos)
                base = ChunkRef(cid, self._packs[o], off, ln)
                pos += _REF.size
            nov = row[pos]
            pos += 1
            ovs: list[Overlay] = []
            for _ in range(nov):
                piece, has = row[pos], row[pos + 1]
                pos += 2
                if has:
                    cid, o, off, ln = _REF.unpack_from(row, pos)
                    ovs.append((piece, ChunkRef(cid, self._packs[o], off, ln)))
                    pos += _REF.size
                else:
                    ovs.append((piece, None))
            if pos != len(row):
                raise TableFormatError(f"row of block {index} has trailing bytes")
            return Entry(index, bhash, fps, base, tuple(ovs))
        except (struct.error, IndexError) as exc:
            raise TableFormatError(f"row of block {index} is malformed: {exc}") from exc

    @property
    def entries(self) -> list[Entry]:
        return [self.entry(k) for k in range(self.n)]


def decode_part(data: bytes) -> Part:
    return Part(data)


@dataclass(frozen=True, slots=True)
class PartRef:
    oid: bytes
    start: int
    end: int


_LAYER_HDR = struct.Struct("<4sBI")
_LAYER_ROW = struct.Struct("<32sQQ")


def encode_layer(full: bool, parts: list[PartRef]) -> bytes:
    out = [_LAYER_HDR.pack(LAYER_MAGIC, 1 if full else 0, len(parts))]
    out.extend(_LAYER_ROW.pack(p.oid, p.start, p.end) for p in parts)
    return b"".join(out)


def decode_layer(data: bytes) -> tuple[bool, list[PartRef]]:
    try:
        magic, full, n = _LAYER_HDR.unpack_from(data, 0)
        if magic != LAYER_MAGIC or len(data) != _LAYER_HDR.size + n * _LAYER_ROW.size:
            raise TableFormatError("not a table layer")
        parts = [
            PartRef(*_LAYER_ROW.unpack_from(data, _LAYER_HDR.size + i * _LAYER_ROW.size)) for i in range(n)
        ]
    except struct.error as exc:
        raise TableFormatError(f"table layer is malformed: {exc}") from exc
    for a, b in pairwise(parts):
        if b.start < a.end:
            raise TableFormatError("table layer parts overlap or are out of order")
    return bool(full), parts
