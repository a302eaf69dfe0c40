"""The C batch hashes: python-xxhash's digests exactly, the GIL given away, the same ships either way."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import xxhash

from benchmarks.gil import runs_beside
from seawall.blockstore import fasthash
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.repository import Repository
from seawall.blockstore.table import BLOCK, PIECE, Hasher
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial("fasthash-key", bytes(range(32)))
SEEDS = [0, 1, 0x9E3779B97F4A7C15, 2**64 - 1]
LENGTHS = [0, 1, PIECE - 1, PIECE, PIECE + 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17, 300 * 1024]


def test_the_extension_is_built() -> None:
    # scripts/setup.sh builds it and stops when it did not: a suite on the Python fallback would
    # prove nothing about the code every worker runs.
    assert fasthash.NATIVE, (
        "seawall.blockstore._hashes is not built (pip install -e . with gcc and libxxhash0)"
    )


@pytest.mark.parametrize("length", LENGTHS)
def test_block_hashes_are_python_xxhash_digests(length: int) -> None:
    data = random.Random(length).randbytes(length)
    for seed in SEEDS:
        want = [xxhash.xxh3_128_digest(data[o : o + BLOCK], seed=seed) for o in range(0, length, BLOCK)]
        assert fasthash.block_hashes(data, BLOCK, seed) == want
        assert fasthash.block_hashes(bytearray(data), BLOCK, seed) == want
        assert fasthash._py_block_hashes(data, BLOCK, seed) == want


def test_piece_fingerprints_of_mixed_buffers() -> None:
    rng = random.Random(7)
    base = rng.randbytes(2 * BLOCK + 5)
    items: list[bytes | bytearray | memoryview] = [
        base,
        memoryview(base)[3 : 3 + BLOCK],  # an unaligned view into a larger buffer
        bytearray(rng.randbytes(PIECE + 1)),
        b"",
        bytes(BLOCK),
    ]
    for seed in SEEDS:
        want = [
            b"".join(
                xxhash.xxh3_64_digest(bytes(it)[o : o + PIECE], seed=seed) for o in range(0, len(it), PIECE)
            )
            for it in items
        ]
        assert fasthash.piece_fingerprints(items, PIECE, seed) == want
        assert fasthash._py_piece_fingerprints(items, PIECE, seed) == want
    assert fasthash.piece_fingerprints([], PIECE, 1) == []
    assert Hasher(5).pieces_of([]) == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="block must be positive"):
        fasthash.block_hashes(b"abc", 0, 1)
    with pytest.raises(ValueError, match="piece must be positive"):
        fasthash.piece_fingerprints([b"abc"], -1, 1)
    with pytest.raises(TypeError):
        fasthash.piece_fingerprints([b"abc", 3], PIECE, 1)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        fasthash.block_hashes("text", BLOCK, 1)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        fasthash.block_hashes(b"abc", BLOCK, -1)


def test_large_batches_are_hashed_without_the_gil() -> None:
    data = random.Random(3).randbytes(64 * 1024 * 1024)
    blocks = [memoryview(data)[o : o + BLOCK] for o in range(0, len(data), BLOCK)]
    # The other thread must also get a core while the hashing runs (~2 ms a call): on a machine
    # busy with other tests a few calls in a row and a few tries give it that. Load can hide the
    # release, never fake it: the control below never lets the other thread in.
    for call in (
        lambda: fasthash.block_hashes(data, BLOCK, 9),
        lambda: fasthash.piece_fingerprints(blocks, PIECE, 9),
    ):
        assert any(runs_beside(lambda c=call: [c() for _ in range(4)]) for _ in range(5))  # type: ignore[misc]
    # The control: a C call over the same bytes that keeps the GIL gives the other thread nothing.
    assert not runs_beside(lambda: data.count(b"\x00\x01\x02\x03"))


def _disk_pair() -> tuple[bytes, bytes]:
    rng = random.Random(11)
    old = bytearray(rng.randbytes(40 * BLOCK) + bytes(24 * BLOCK) + rng.randbytes(BLOCK // 2))
    new = bytearray(old)
    for off in rng.sample(range(0, len(new) - PIECE, PIECE), 30):  # scattered 4 KiB rewrites
        new[off : off + PIECE] = rng.randbytes(PIECE)
    new[45 * BLOCK : 45 * BLOCK + 100] = b"\x01" * 100  # into the zero run
    return bytes(old), bytes(new)


def _ship_pair(old: bytes, new: bytes, out: Path) -> tuple[str, str, int, int]:
    repo = Repository(MemoryStore(), KEY, clock=FakeClock(), threads=2)  # type: ignore[arg-type]
    seed = repo.ship(BytesSource(old), "vm", "d0")  # type: ignore[arg-type]
    p0 = repo.commit_point("vm", "p0", [seed])
    inc = repo.ship(BytesSource(new), "vm", "d0", parent=p0)  # type: ignore[arg-type]
    repo.commit_point("vm", "p1", [inc], parent=p0)
    repo.restore_disk("vm", "p1", "d0", out)
    assert out.read_bytes() == new
    return seed.digest, inc.digest, inc.bytes_changed, inc.chunks_new


def test_a_seed_and_an_incremental_are_the_same_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = _disk_pair()
    native = _ship_pair(old, new, tmp_path / "native.raw")
    monkeypatch.setattr(fasthash, "_native", None)
    python = _ship_pair(old, new, tmp_path / "python.raw")
    assert native == python
    # Only the rewritten pieces were found changed: 30 scattered ones and one in the zero run.
    assert native[2] == 31 * PIECE
    assert native[0] != native[1]
