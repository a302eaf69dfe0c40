"""Block tables: what every 64 KiB block of a disk holds at one recovery point, in a compact binary form.

Geometry, and why (figures from research/datapath-performance.md, measured on this 2-core host):

- BLOCK = 64 KiB is the change-detection unit. xxh3_128 over 64 KiB blocks runs at 7-11 GB/s, so
  scanning 1 GiB costs ~0.1 s on top of the ~0.13 s read, and the table has 16,384 rows per GiB
  (a 4 KiB table would be 262,144 rows and 4 MiB+ per GiB).
- PIECE = 4 KiB is the shipping unit inside a changed block. Scattered 4 KiB guest writes are the
  common case; shipping whole 64 KiB blocks for them costs 15x the changed bytes (measured), 4 KiB
  pieces ~1.01x. Pieces are found by comparing 16 per-piece xxh3_64 fingerprints of the new block
  with the parent's, so only changed 64 KiB blocks pay for the second level (0.36-0.42 s per GiB
  for scan + ship at 1 % change vs 0.63-0.89 s hashing every 4 KiB).

A row (``Entry``) is either a zero block (stored nowhere) or data: the block hash, the 16 piece
fingerprints, an optional *base* chunk (the whole block as of its last full write) and up to 16
*overlay* pieces (4 KiB chunks, or None for a piece that became zero) applied on top. When a change
would leave 12 or more of 16 pieces overlaid, the whole block is stored again as the new base
(REBASE_PIECES): one 64 KiB chunk then costs no more than the pieces would and keeps restore at one
chunk read per block.

Tables are stored as *parts* (a contiguous block range, one per ship checkpoint) grouped into
*layers*. A full layer lists every row; a delta layer lists only the rows that changed against the
parent point. A disk at a point is the layers [full, delta_1, ..., delta_d]; the newest layer that
has a row for a block wins. The chain bound lives in the repository (d <= MAX_CHAIN - 1).
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import xxhash

BLOCK = 64 * 1024
PIECE = 4 * 1024
PIECES = BLOCK // PIECE
REBASE_PIECES = 12
FP_BYTES = 8
HASH_BYTES = 16

PART_MAGIC = b"SWP1"
LAYER_MAGIC = b"SWL1"


class ChunkRef(NamedTuple):
    """Where a chunk lives: its id (keyed BLAKE3 of the plaintext) and its place in a pack.

    NamedTuples, not dataclasses: a seed creates two of these per 64 KiB block and a tuple is
    built ~4x faster than a frozen dataclass (it matters on the ship's main thread).
    """

    cid: bytes
    pack: bytes
    offset: int
    length: int


Overlay = tuple[int, ChunkRef | None]


class Entry(NamedTuple):
    """One block of one disk at one point. ``fps`` is None exactly for an all-zero block."""

    block: int
    bhash: bytes
    fps: bytes | None
    base: ChunkRef | None = None
    overlays: tuple[Overlay, ...] = ()

    @property
    def is_zero(self) -> bool:
        return self.fps is None

    def chunk_refs(self) -> Iterator[ChunkRef]:
        if self.base is not None:
            yield self.base
        for _, ref in self.overlays:
            if ref is not None:
                yield ref


def block_count(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK


def block_len(size: int, index: int) -> int:
    return min(BLOCK, size - index * BLOCK)


class Hasher:
    """Change-detection hashes, seeded from the repository key (guests cannot aim collisions)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._zero_hash: dict[int, bytes] = {}
        self._zero_fps: dict[int, bytes] = {}

    def block(self, data: bytes | memoryview) -> bytes:
        return xxhash.xxh3_128_digest(data, seed=self.seed)

    def pieces(self, data: bytes | memoryview) -> bytes:
        seed = self.seed
        fp = xxhash.xxh3_64_digest
        return b"".join([fp(data[o : o + PIECE], seed=seed) for o in range(0, len(data), PIECE)])

    def zero_hash(self, length: int) -> bytes:
        h = self._zero_hash.get(length)
        if h is None:
            h = self._zero_hash[length] = self.block(bytes(length))
        return h

    def zero_fps(self, length: int) -> bytes:
        f = self._zero_fps.get(length)
        if f is None:
            f = self._zero_fps[length] = self.pieces(bytes(length))
        return f


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


class TableFormatError(ValueError):
    pass


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


# ---- reading a disk's table through its layers ---------------------------------------------------


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
