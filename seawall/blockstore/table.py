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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import xxhash

BLOCK = 64 * 1024
PIECE = 4 * 1024
PIECES = BLOCK // PIECE
REBASE_PIECES = 12
FP_BYTES = 8
HASH_BYTES = 16

PART_MAGIC = b"SWP1"
LAYER_MAGIC = b"SWL1"


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Where a chunk lives: its id (keyed BLAKE3 of the plaintext) and its place in a pack."""

    cid: bytes
    pack: bytes
    offset: int
    length: int


Overlay = tuple[int, ChunkRef | None]


@dataclass(frozen=True, slots=True)
class Entry:
    """One block of one disk at one point. ``fps`` is None exactly for an all-zero block."""

    index: int
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

_HDR = struct.Struct("<4sBQQII")  # magic, full?, start, end, n packs, n entries
_REF = struct.Struct("<32sIII")  # cid, pack ordinal, offset, length
_ROW = struct.Struct("<IB16s")  # index - start, flags, block hash
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

    rows: list[bytes] = []
    for e in entries:
        flags = (_F_DATA if e.fps is not None else 0) | (_F_BASE if e.base is not None else 0)
        rows.append(_ROW.pack(e.index - start, flags, e.bhash))
        if e.fps is not None:
            rows.append(bytes((len(e.fps) // FP_BYTES,)))
            rows.append(e.fps)
            if e.base is not None:
                rows.append(ref(e.base))
            rows.append(bytes((len(e.overlays),)))
            for piece, r in e.overlays:
                rows.append(bytes((piece, 0 if r is None else 1)))
                if r is not None:
                    rows.append(ref(r))
    head = _HDR.pack(PART_MAGIC, 1 if full else 0, start, end, len(packs), len(entries))
    return head + b"".join(packs) + b"".join(rows)


@dataclass(frozen=True, slots=True)
class Part:
    start: int
    end: int
    full: bool
    entries: list[Entry]


def decode_part(data: bytes) -> Part:
    try:
        magic, full, start, end, npacks, nentries = _HDR.unpack_from(data, 0)
        if magic != PART_MAGIC:
            raise TableFormatError("not a table part")
        pos = _HDR.size
        packs = [data[pos + 16 * i : pos + 16 * (i + 1)] for i in range(npacks)]
        pos += 16 * npacks
        entries: list[Entry] = []
        rsize = _REF.size
        ref_unpack = _REF.unpack_from
        row_unpack = _ROW.unpack_from
        for _ in range(nentries):
            rel, flags, bhash = row_unpack(data, pos)
            pos += _ROW.size
            if not flags & _F_DATA:
                entries.append(Entry(start + rel, bhash, None))
                continue
            nfp = data[pos]
            fps = data[pos + 1 : pos + 1 + nfp * FP_BYTES]
            pos += 1 + nfp * FP_BYTES
            base = None
            if flags & _F_BASE:
                cid, o, off, ln = ref_unpack(data, pos)
                base = ChunkRef(cid, packs[o], off, ln)
                pos += rsize
            nov = data[pos]
            pos += 1
            ovs: list[Overlay] = []
            for _ in range(nov):
                piece, has = data[pos], data[pos + 1]
                pos += 2
                if has:
                    cid, o, off, ln = ref_unpack(data, pos)
                    ovs.append((piece, ChunkRef(cid, packs[o], off, ln)))
                    pos += rsize
                else:
                    ovs.append((piece, None))
            entries.append(Entry(start + rel, bhash, fps, base, tuple(ovs)))
        if pos != len(data):
            raise TableFormatError(f"table part has {len(data) - pos} trailing bytes")
        return Part(start, end, bool(full), entries)
    except (struct.error, IndexError) as exc:
        raise TableFormatError(f"table part is malformed: {exc}") from exc


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
    return bool(full), parts


# ---- reading a disk's table through its layers ---------------------------------------------------


class _LayerCursor:
    def __init__(self, parts: list[PartRef], load: Callable[[bytes], Part], full: bool) -> None:
        self._parts = parts
        self._load = load
        self.full = full
        self._pi = 0
        self._entries: list[Entry] = []
        self._ei = 0
        self._end = -1

    def at(self, index: int) -> Entry | None:
        while index >= self._end:
            if self._pi >= len(self._parts):
                return None
            pref = self._parts[self._pi]
            self._pi += 1
            if pref.end <= index:
                continue  # skipped without loading: resumes and restores from an offset stay cheap
            part = self._load(pref.oid)
            if part.start != pref.start or part.end != pref.end:
                raise TableFormatError("table part range differs from its layer's record")
            self._entries, self._ei, self._end = part.entries, 0, pref.end
        entries = self._entries
        i = self._ei
        while i < len(entries) and entries[i].index < index:
            i += 1
        self._ei = i
        if i < len(entries) and entries[i].index == index:
            return entries[i]
        return None


class TableReader:
    """Streams a disk's rows in block order by merging its layers (newest row wins).

    Memory is one part per layer, so reading a 1 TiB disk's table does not hold 16 M rows.
    Blocks must be asked for in increasing order.
    """

    def __init__(self, layers: list[tuple[bool, list[PartRef]]], load: Callable[[bytes], Part]) -> None:
        self._cursors = [_LayerCursor(parts, load, full) for full, parts in layers][::-1]

    def at(self, index: int) -> Entry | None:
        for c in self._cursors:
            e = c.at(index)
            if e is not None:
                return e
        return None
