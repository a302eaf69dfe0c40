"""Payload encryption: round trip, metadata shape, rotation, tampering, unknown and wrong keys, wiring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from seawall.blockstore.keys import KeyMaterial
from seawall.contract.messages import ProtectInput
from seawall.runtime.config import Settings
from seawall.runtime.temporal import PlainEncodedFailureConverter, data_converter
from seawall.security.codec import (
    ENCODING,
    KEY_ID_METADATA,
    NONCE_BYTES,
    EncryptionCodec,
    PayloadDecryptError,
    PayloadKeyError,
    PayloadKeyRing,
    UnknownPayloadKeyError,
    parse_key_refs,
    payload_aead_key,
)

SECRET_TEXT = "db-01 on [ds-primary] db-01/db-01.vmdk at 10.1.3.10"


def write_key(tmp: Path, name: str) -> tuple[Path, bytes]:
    raw = os.urandom(32)
    path = tmp / name
    path.write_text(raw.hex() + "\n")
    return path, raw


def plain_payload(text: str = SECRET_TEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"detail": text}).encode())


def codec_for(*keys: KeyMaterial) -> EncryptionCodec:
    return EncryptionCodec(PayloadKeyRing(keys))


async def test_round_trip_restores_the_exact_payload() -> None:
    codec = codec_for(KeyMaterial.generate("k1"))
    original = [plain_payload(), plain_payload("second"), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(original)
    assert len(encoded) == len(original)
    assert await codec.decode(encoded) == original


async def test_metadata_shape_and_ciphertext_layout() -> None:
    codec = codec_for(KeyMaterial.generate("payload-2026"))
    original = plain_payload()
    (encoded,) = await codec.encode([original])
    assert dict(encoded.metadata) == {"encoding": ENCODING, KEY_ID_METADATA: b"payload-2026"}
    assert ENCODING == b"binary/encrypted"
    # nonce + serialized inner payload + 16-byte GCM tag: nothing of the clear text survives.
    assert len(encoded.data) == NONCE_BYTES + len(original.SerializeToString()) + 16
    assert b"db-01" not in encoded.data and b"10.1.3.10" not in encoded.data


async def test_each_payload_gets_a_fresh_nonce() -> None:
    codec = codec_for(KeyMaterial.generate("k1"))
    first, second = await codec.encode([plain_payload(), plain_payload()])
    assert first.data[:NONCE_BYTES] != second.data[:NONCE_BYTES]
    assert first.data != second.data


async def test_encode_leaves_encrypted_payloads_alone() -> None:
    codec = codec_for(KeyMaterial.generate("k1"))
    (once,) = await codec.encode([plain_payload()])
    (twice,) = await codec.encode([once])
    assert twice == once
    assert await codec.decode([twice]) == [plain_payload()]


async def test_decode_passes_plain_payloads_through() -> None:
    codec = codec_for(KeyMaterial.generate("k1"))
    assert await codec.decode([plain_payload()]) == [plain_payload()]


async def test_rotation_old_payloads_decode_and_new_ones_use_the_new_key(tmp_path: Path) -> None:
    old_path, _ = write_key(tmp_path, "payload-2025.key")
    new_path, _ = write_key(tmp_path, "payload-2026.key")
    before = EncryptionCodec.from_refs(f"file:{old_path}#payload-2025")
    (sealed_old,) = await before.encode([plain_payload("sealed before the rotation")])

    after = EncryptionCodec.from_refs(f"file:{new_path}#payload-2026, file:{old_path}#payload-2025")
    assert after.ring.key_ids == ["payload-2026", "payload-2025"]
    assert await after.decode([sealed_old]) == [plain_payload("sealed before the rotation")]
    (sealed_new,) = await after.encode([plain_payload("sealed after")])
    assert sealed_new.metadata[KEY_ID_METADATA] == b"payload-2026"

    # A process not yet given the new key names it instead of failing obscurely.
    with pytest.raises(UnknownPayloadKeyError, match="payload-2026") as err:
        await before.decode([sealed_new])
    assert err.value.key_id == "payload-2026"


async def test_unknown_key_id_error_names_the_id_and_the_known_ones() -> None:
    writer = codec_for(KeyMaterial.generate("dept-a-2026"))
    reader = codec_for(KeyMaterial.generate("dept-b-2026"))
    (sealed,) = await writer.encode([plain_payload()])
    with pytest.raises(UnknownPayloadKeyError) as err:
        await reader.decode([sealed])
    message = str(err.value)
    assert "'dept-a-2026'" in message and "dept-b-2026" in message and "SEAWALL_PAYLOAD_KEYS" in message


async def test_wrong_key_under_the_right_id_fails_authentication() -> None:
    writer = codec_for(KeyMaterial.generate("prod"))
    reader = codec_for(KeyMaterial.generate("prod"))  # same id, other bytes
    (sealed,) = await writer.encode([plain_payload()])
    with pytest.raises(PayloadDecryptError, match=r"'prod'.*failed authentication"):
        await reader.decode([sealed])


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
async def test_any_flipped_bit_is_detected(where: str) -> None:
    codec = codec_for(KeyMaterial.generate("k1"))
    (sealed,) = await codec.encode([plain_payload()])
    data = bytearray(sealed.data)
    index = {"nonce": 0, "ciphertext": NONCE_BYTES + 3, "tag": len(data) - 1}[where]
    data[index] ^= 0x01
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(data))
    with pytest.raises(PayloadDecryptError, match="failed authentication"):
        await codec.decode([tampered])


async def test_key_id_is_bound_to_the_ciphertext() -> None:
    # Relabelling a payload with another known key id must not decrypt (the id is associated data),
    # even if both ids held the same key bytes.
    raw = os.urandom(32)
    codec = codec_for(KeyMaterial("a", raw), KeyMaterial("b", raw))
    (sealed,) = await codec.encode([plain_payload()])
    relabelled = Payload(metadata={**dict(sealed.metadata), KEY_ID_METADATA: b"b"}, data=sealed.data)
    with pytest.raises(PayloadDecryptError, match=r"'b'.*failed authentication"):
        await codec.decode([relabelled])


async def test_truncated_and_unlabelled_payloads_are_refused() -> None:
    codec = codec_for(KeyMaterial.generate("k1"))
    (sealed,) = await codec.encode([plain_payload()])
    short = Payload(metadata=dict(sealed.metadata), data=sealed.data[:20])
    with pytest.raises(PayloadDecryptError, match="truncated"):
        await codec.decode([short])
    unlabelled = Payload(metadata={"encoding": ENCODING}, data=sealed.data)
    with pytest.raises(PayloadDecryptError, match=KEY_ID_METADATA):
        await codec.decode([unlabelled])


def test_key_ring_configuration_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PayloadKeyError, match="empty"):
        PayloadKeyRing.from_refs(" , ")
    with pytest.raises(PayloadKeyError, match="at least one key"):
        PayloadKeyRing([])
    with pytest.raises(PayloadKeyError, match="cannot be read"):
        PayloadKeyRing.from_refs(f"file:{tmp_path / 'missing.key'}")
    with pytest.raises(PayloadKeyError, match="given twice"):
        PayloadKeyRing([KeyMaterial.generate("same"), KeyMaterial.generate("same")])
    # The same key listed twice (e.g. in two overlapping deploy snippets) is harmless.
    monkeypatch.setenv("SEAWALL_TEST_PAYLOAD_KEY", os.urandom(32).hex())
    ring = PayloadKeyRing.from_refs("env:SEAWALL_TEST_PAYLOAD_KEY#x,env:SEAWALL_TEST_PAYLOAD_KEY#x")
    assert ring.key_ids == ["x"]


def test_default_key_id_is_a_fingerprint_shared_by_every_process(tmp_path: Path) -> None:
    path, _ = write_key(tmp_path, "k")
    first = PayloadKeyRing.from_refs(f"file:{path}")
    second = PayloadKeyRing.from_refs([f"file:{path}"])
    assert first.active_key_id == second.active_key_id
    assert first.active_key_id.startswith("k-")


def test_key_reference_lists_split_on_commas_and_line_breaks() -> None:
    assert parse_key_refs("file:/a#new,file:/b#old") == ["file:/a#new", "file:/b#old"]
    assert parse_key_refs(" file:/a ,\n env:B ") == ["file:/a", "env:B"]
    spaced = "file:/srv/dr keys/a.key#a"
    assert parse_key_refs(f"{spaced}\nfile:/b#b\n") == [spaced, "file:/b#b"]
    assert parse_key_refs("") == []


def test_payload_key_differs_from_the_master_key() -> None:
    # The same key file may also seal the replica store; the AES key used here must not be its bytes.
    key = KeyMaterial.generate("k1")
    derived = payload_aead_key(key)
    assert len(derived) == 32
    assert derived not in (key.key, key.enc_key)


async def test_data_converter_encrypts_only_when_configured(tmp_path: Path) -> None:
    plain = data_converter(Settings(payload_keys=None))
    assert plain.payload_codec is None
    assert plain.payload_converter_class is pydantic_data_converter.payload_converter_class
    path, _ = write_key(tmp_path, "k")
    converter = data_converter(Settings(payload_keys=f"file:{path}#ops-2026"))
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert isinstance(converter.failure_converter, PlainEncodedFailureConverter)
    assert converter.failure_converter._encode_common_attributes
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class

    (payload,) = await converter.encode([ProtectInput(vm="db-01")])
    assert payload.metadata["encoding"] == ENCODING
    assert b"db-01" not in payload.SerializeToString()
    (back,) = await converter.decode([payload], [ProtectInput])
    assert back == ProtectInput(vm="db-01")
    # A converter without the codec sees only an encrypted blob it refuses to interpret.
    with pytest.raises(KeyError, match="binary/encrypted"):
        await pydantic_data_converter.decode([payload], [ProtectInput])


def test_data_converter_reads_the_environment_when_given_no_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = write_key(tmp_path, "k")
    monkeypatch.setenv("SEAWALL_PAYLOAD_KEYS", f"file:{path}#from-env")
    converter = data_converter()
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.ring.key_ids == ["from-env"]
    monkeypatch.delenv("SEAWALL_PAYLOAD_KEYS")
    assert data_converter().payload_codec is None


def test_failures_raised_on_purpose_carry_no_stack_trace() -> None:
    """A validator's rejection or an ApplicationError reaches the UI's toast as its sentence alone; a bug
    (any other exception) keeps its trace for whoever debugs it."""
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    converter = data_converter(Settings(payload_keys=None))

    def failure_of(exc: Exception) -> Failure:
        try:
            raise exc
        except Exception as raised:
            failure = Failure()
            converter.failure_converter.to_failure(raised, converter.payload_converter, failure)
            return failure

    rejected = failure_of(ValueError("gate 'x' is not the one waiting ('go')"))
    assert rejected.message == "gate 'x' is not the one waiting ('go')" and rejected.stack_trace == ""
    failed = failure_of(
        ApplicationError("invalid input: mode: 'tset' is not one of test", type="InvalidInput")
    )
    assert failed.stack_trace == "" and failed.application_failure_info.type == "InvalidInput"
    bug = failure_of(KeyError("boom"))
    assert "test_codec.py" in bug.stack_trace


# --- refusing plaintext (SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION) ------------------------------------------


async def test_the_strict_converter_refuses_plain_payloads_and_reads_encrypted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from temporalio.exceptions import ApplicationError

    from seawall.contract.messages import FailoverInput
    from seawall.runtime.temporal import TemporalConfigError
    from seawall.security.codec import StrictEncryptionCodec

    monkeypatch.setenv("STRICT_TEST_KEY", "cd" * 32)
    strict = data_converter(Settings(payload_keys="env:STRICT_TEST_KEY", payload_require_encryption=True))
    assert isinstance(strict.payload_codec, StrictEncryptionCodec)
    value = FailoverInput(plan="erp-dr", mode="planned")
    sealed = await strict.encode([value])
    assert await strict.decode(sealed, [FailoverInput]) == [value]
    plain = pydantic_data_converter.payload_converter.to_payloads([value])
    decoded = await strict.payload_codec.decode(plain)
    assert b"erp-dr" not in decoded[0].SerializeToString()  # the plain content is dropped, not passed on
    with pytest.raises(ApplicationError) as refused:
        strict.payload_converter.from_payloads(decoded, [FailoverInput])
    assert refused.value.type == "PlaintextRefused" and refused.value.non_retryable
    # Without the setting, plain payloads (from before encryption was turned on) stay readable.
    lenient = data_converter(Settings(payload_keys="env:STRICT_TEST_KEY"))
    assert await lenient.decode(plain, [FailoverInput]) == [value]
    with pytest.raises(TemporalConfigError, match="needs SEAWALL_PAYLOAD_KEYS"):
        data_converter(Settings(payload_require_encryption=True))
