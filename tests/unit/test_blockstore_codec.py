"""zstd + AES-256-GCM sealing: ids bind content, tampering and wrong keys are told apart."""

from __future__ import annotations

import os

import pytest
import zstandard

from seawall.blockstore.codec import FLAG_ZSTD, KIND_CHUNK, KIND_TABLE, OVERHEAD, Codec
from seawall.blockstore.errors import CorruptObjectError, WrongKeyError
from seawall.blockstore.keys import KeyMaterial, KeyRing

K1 = KeyMaterial("k1", bytes(range(32)))
K2 = KeyMaterial("k2", bytes(range(1, 33)))


def test_roundtrip_compressible_and_random() -> None:
    c = Codec(K1)
    text = b"hello seawall " * 5000
    cid, sealed = c.seal_chunk(text)
    assert sealed[3] & FLAG_ZSTD and len(sealed) < len(text) // 10
    assert c.open_chunk(cid, sealed) == text
    noise = os.urandom(65536)
    cid2, sealed2 = c.seal_chunk(noise)
    # Incompressible data is stored as is: exactly the fixed overhead, no zstd growth.
    assert not sealed2[3] & FLAG_ZSTD and len(sealed2) == len(noise) + OVERHEAD
    assert c.open_chunk(cid2, sealed2) == noise


def test_ids_are_keyed_and_deterministic() -> None:
    data = b"x" * 4096
    assert Codec(K1).object_id(data) == Codec(K1).object_id(data)
    assert Codec(K1).object_id(data) != Codec(K2).object_id(data)
    # Same plaintext sealed twice: same id, different ciphertext (random nonce).
    a, b = Codec(K1).seal_chunk(data), Codec(K1).seal_chunk(data)
    assert a[0] == b[0] and a[1] != b[1]


def test_chunk_moved_under_another_id_fails() -> None:
    c = Codec(K1)
    cid_a, sealed_a = c.seal_chunk(b"a" * 100)
    cid_b, _ = c.seal_chunk(b"b" * 100)
    with pytest.raises(CorruptObjectError, match="authentication failed"):
        c.open_chunk(cid_b, sealed_a)
    # Nor can a table pass for a chunk.
    with pytest.raises(CorruptObjectError):
        c.open(KIND_CHUNK, cid_a, c.seal(KIND_TABLE, cid_a, b"a" * 100), "chunk")


@pytest.mark.parametrize("where", [0, 5, 20, 30, -1])
def test_any_flipped_byte_is_detected(where: int) -> None:
    c = Codec(K1)
    cid, sealed = c.seal_chunk(os.urandom(1000))
    bad = bytearray(sealed)
    bad[where] ^= 0x40
    with pytest.raises((CorruptObjectError, WrongKeyError)):
        c.open_chunk(cid, bytes(bad))


def test_truncated_object() -> None:
    c = Codec(K1)
    cid, sealed = c.seal_chunk(os.urandom(1000))
    with pytest.raises(CorruptObjectError):
        c.open_chunk(cid, sealed[:-1])
    with pytest.raises(CorruptObjectError, match="not a sealed object"):
        c.open_chunk(cid, sealed[:10])


def test_id_check_catches_a_forged_id_with_valid_encryption() -> None:
    # Someone with the key seals content under a wrong id: the re-hash on read catches it.
    c = Codec(K1)
    wrong_id = c.object_id(b"other")
    sealed = c.seal(KIND_CHUNK, wrong_id, b"content")
    with pytest.raises(CorruptObjectError, match="does not hash to its id"):
        c.open_chunk(wrong_id, sealed)


def test_wrong_key_names_the_key_ids() -> None:
    cid, sealed = Codec(K1).seal_chunk(b"secret" * 100)
    with pytest.raises(WrongKeyError) as ei:
        Codec(K2).open_chunk(cid, sealed, expected_key_id="k1")
    assert "'k1'" in str(ei.value) and "'k2'" in str(ei.value)
    assert ei.value.expected_key_id == "k1" and ei.value.have_key_id == "k2"


def test_ring_opens_objects_of_an_older_key() -> None:
    cid, sealed = Codec(K1).seal_chunk(b"old data" * 100)
    rotated = Codec(K2, ring=KeyRing(K1))
    assert rotated.open_chunk(cid, sealed) == b"old data" * 100


def test_level_is_validated() -> None:
    with pytest.raises(ValueError):
        Codec(K1, level=0)
    assert Codec(K1, level=19).open_chunk(*Codec(K1, level=19).seal_chunk(b"z" * 10000)) == b"z" * 10000


@pytest.mark.parametrize("batched", [True, False])
def test_seal_chunks_matches_seal_chunk(batched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch sealed in one call: the same ids, frames that open to the same bytes, random data
    stored uncompressed; without the C backend's batch call (``batched=False``) the same result."""
    if not batched:
        monkeypatch.delattr(zstandard.ZstdCompressor, "multi_compress_to_buffer", raising=False)
    c = Codec(K1)
    text = b"the same line again and again\n" * 2000
    plains = [memoryview(text), memoryview(os.urandom(65536)), memoryview(text[:4096]), memoryview(b"x")]
    sealed = c.seal_chunks(plains)
    assert [cid for cid, _ in sealed] == [c.seal_chunk(p)[0] for p in plains]
    for p, (cid, blob) in zip(plains, sealed, strict=True):
        assert c.open_chunk(cid, blob) == bytes(p)
    assert sealed[0][1][3] & FLAG_ZSTD and len(sealed[0][1]) < len(text) // 10
    assert not sealed[1][1][3] & FLAG_ZSTD and len(sealed[1][1]) == 65536 + OVERHEAD
    # Same plaintext, fresh nonces: two seals of one chunk never share ciphertext.
    assert c.seal_chunks(plains[:2])[0][1] != sealed[0][1]
