"""Batch change-detection hashes: the C extension when it is built, python-xxhash otherwise.

Both return the same digests (python-xxhash's canonical big-endian ``xxh3_128_digest`` and
``xxh3_64_digest``); ``tests/unit/test_fasthash.py`` holds them to it. The extension hashes a whole
batch per call and, from 256 KiB up, without the GIL: the read-ahead's block hashes and the
encoders' piece fingerprints then run beside the planning thread instead of taking turns with it.
``NATIVE`` says which one this process uses; ``benchmarks.datapath`` reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

try:
    from seawall.blockstore import _hashes as _native
except ImportError:  # no C compiler or no libxxhash0 at install time: the same digests, in Python
    _native = None  # type: ignore[assignment]

NATIVE = _native is not None
Buffer = bytes | bytearray | memoryview


def _py_block_hashes(data: Buffer, block: int, seed: int) -> list[bytes]:
    view = memoryview(data)
    h = xxhash.xxh3_128_digest
    return [h(view[o : o + block], seed=seed) for o in range(0, len(view), block)]


def _py_piece_fingerprints(items: Sequence[Buffer], piece: int, seed: int) -> list[bytes]:
    fp = xxhash.xxh3_64_digest
    out = []
    for data in items:
        view = memoryview(data)
        out.append(b"".join([fp(view[o : o + piece], seed=seed) for o in range(0, len(view), piece)]))
    return out


def block_hashes(data: Buffer, block: int, seed: int) -> list[bytes]:
    """XXH3-128 of each ``block`` bytes of ``data`` (the last may be shorter), in order."""
    if block <= 0:
        raise ValueError(f"block must be positive, not {block}")
    if _native is not None:
        return _native.block_hashes(data, block, seed)
    return _py_block_hashes(data, block, seed)


def piece_fingerprints(items: Sequence[Buffer], piece: int, seed: int) -> list[bytes]:
    """For each buffer, the XXH3-64 digests of its ``piece``-byte pieces joined (8 bytes each)."""
    if piece <= 0:
        raise ValueError(f"piece must be positive, not {piece}")
    if _native is not None:
        return _native.piece_fingerprints(items, piece, seed)
    return _py_piece_fingerprints(items, piece, seed)
