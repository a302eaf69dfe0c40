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

This module holds the geometry and the row types; the binary form of parts and layers is
``tableformat.py`` and reading a disk's table through its layers ``tablereader.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import xxhash

from seawall.blockstore.fasthash import piece_fingerprints

BLOCK = 64 * 1024
PIECE = 4 * 1024
PIECES = BLOCK // PIECE
REBASE_PIECES = 12
FP_BYTES = 8
HASH_BYTES = 16


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
        """The 8-byte fingerprints of ``data``'s 4 KiB pieces, joined."""
        return piece_fingerprints((data,), PIECE, self.seed)[0]

    def pieces_of(self, items: Sequence[bytes | memoryview]) -> list[bytes]:
        """``pieces`` of each, in one call (a batch of blocks: one GIL hand-off, not one per block)."""
        return piece_fingerprints(items, PIECE, self.seed) if items else []

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


class TableFormatError(ValueError):
    pass
