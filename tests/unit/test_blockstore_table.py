"""Table parts and layers: binary round trips, lazy rows, merging layers."""

from __future__ import annotations

import os

import pytest

from seawall.blockstore.table import ChunkRef, Entry, Hasher, TableFormatError, block_count, block_len
from seawall.blockstore.tableformat import Part, PartRef, decode_layer, encode_layer, encode_part
from seawall.blockstore.tablereader import TableReader


def ref(n: int) -> ChunkRef:
    return ChunkRef(bytes([n]) * 32, bytes([n % 3]) * 16, n * 100, 4096 + n)


def data_entry(i: int, tag: int, overlays: tuple = ()) -> Entry:
    return Entry(i, bytes([tag]) * 16, bytes([tag]) * 128, ref(tag), overlays)


def test_geometry() -> None:
    assert block_count(0) == 0 and block_count(1) == 1 and block_count(65536) == 1 and block_count(65537) == 2
    assert block_len(65537, 1) == 1 and block_len(65537, 0) == 65536


def test_part_round_trip_with_every_row_kind() -> None:
    entries = [
        Entry(10, b"z" * 16, None),
        data_entry(11, 1),
        data_entry(12, 2, ((0, ref(5)), (3, None), (15, ref(6)))),
        Entry(13, b"q" * 16, b"f" * 128, None, ((2, ref(7)),)),
    ]
    part = Part(encode_part(10, 14, True, entries))
    assert (part.start, part.end, part.full, part.n, part.contiguous) == (10, 14, True, 4, True)
    assert part.entries == entries
    assert part.entries[0].is_zero and not part.entries[1].is_zero
    assert set(part.packs) == {ref(n).pack for n in (1, 2, 5, 6, 7)}
    assert list(part.entries[2].chunk_refs()) == [ref(2), ref(5), ref(6)]


def test_sparse_part_find_and_hashes() -> None:
    entries = [data_entry(3, 1), data_entry(7, 2), Entry(9, b"z" * 16, None)]
    part = Part(encode_part(0, 100, False, entries))
    assert not part.contiguous
    assert part.find(7) == 1 and part.find(8) == -1 and part.find(1000) == -1
    out: list[bytes | None] = [None] * 10
    part.fill_hashes(0, 10, out)
    assert out[3] == bytes([1]) * 16 and out[7] == bytes([2]) * 16 and out[9] == b"z" * 16 and out[0] is None


def test_full_part_must_list_every_block() -> None:
    with pytest.raises(TableFormatError):
        Part(encode_part(0, 3, True, [data_entry(0, 1)]))


@pytest.mark.parametrize("cut", [1, 10, 40, -1])
def test_truncated_part_is_rejected(cut: int) -> None:
    blob = encode_part(0, 2, True, [data_entry(0, 1), data_entry(1, 2)])
    with pytest.raises(TableFormatError):
        Part(blob[:cut]).entries  # noqa: B018


def test_layer_round_trip_and_order_check() -> None:
    parts = [PartRef(b"a" * 32, 0, 5), PartRef(b"b" * 32, 5, 9)]
    assert decode_layer(encode_layer(True, parts)) == (True, parts)
    with pytest.raises(TableFormatError, match="overlap"):
        decode_layer(encode_layer(False, parts[::-1]))
    with pytest.raises(TableFormatError):
        decode_layer(b"junk")


def test_reader_merges_layers_newest_wins() -> None:
    store: dict[bytes, Part] = {}

    def put(start: int, end: int, full: bool, entries: list[Entry]) -> PartRef:
        oid = os.urandom(32)
        store[oid] = Part(encode_part(start, end, full, entries))
        return PartRef(oid, start, end)

    full = [
        put(0, 4, True, [data_entry(i, 10 + i) for i in range(4)]),
        put(4, 8, True, [data_entry(i, 10 + i) for i in range(4, 8)]),
    ]
    d1 = [put(0, 8, False, [data_entry(2, 50), data_entry(5, 51)])]
    d2 = [put(0, 4, False, [data_entry(2, 60)]), put(4, 8, False, [Entry(6, b"z" * 16, None)])]
    r = TableReader([(True, full), (False, d1), (False, d2)], store.__getitem__)
    assert r.hashes(0, 8) == [bytes([t]) * 16 for t in (10, 11, 60, 13, 14, 51)] + [
        b"z" * 16,
        bytes([17]) * 16,
    ]
    r = TableReader([(True, full), (False, d1), (False, d2)], store.__getitem__)
    tags = [r.at(i) for i in range(8)]
    assert [e.bhash[0] if e and e.fps else None for e in tags] == [10, 11, 60, 13, 14, 51, None, 17]
    # Asking past the end of every layer gives nothing.
    assert r.at(100) is None


def test_hasher_is_seeded_and_zero_shortcuts() -> None:
    a, b = Hasher(1), Hasher(2)
    blk = os.urandom(65536)
    assert a.block(blk) != b.block(blk)
    assert a.zero_hash(65536) == a.block(bytes(65536))
    assert len(a.pieces(blk)) == 128 and len(a.pieces(blk[:5000])) == 16
    assert a.zero_fps(4096) == a.pieces(bytes(4096))
