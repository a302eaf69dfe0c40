"""Encrypt every Temporal payload (inputs, results, heartbeats, failures) with AES-256-GCM.

Workflow inputs name VMs, sites, snapshots and datastore paths; the Temporal server (and whoever can
read its database or its Web UI) should see none of that. With ``SEAWALL_PAYLOAD_KEYS`` set, workers,
the CLI and the API install :class:`EncryptionCodec` on their data converter, so the server stores only
ciphertext, and the codec server (``seawall codec serve``) decrypts for the Web UI, for those allowed.

Wire format of an encrypted payload (readable by any codec that knows the key):

- ``metadata["encoding"] = b"binary/encrypted"``
- ``metadata["encryption-key-id"] = <key id, UTF-8>``
- ``data = nonce (12 random bytes) || AES-256-GCM(key, nonce, serialized inner Payload, aad)``
- ``aad = b"seawall-payload-v1:" + key id``: moving a ciphertext under another key id fails to decrypt.

The AES key is derived from the referenced 32-byte master key (keyed BLAKE3, own context string), so
a key file shared with the replica store still yields independent keys for the two uses.

Rotation: ``SEAWALL_PAYLOAD_KEYS`` is a list of key references, newest first. The first key encrypts;
every listed key decrypts. Add the new key in front, roll out workers, CLI and codec server; drop the
old key only when no open workflow (or schedule) still carries payloads sealed with it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import EncodingPayloadConverter, PayloadCodec
from temporalio.exceptions import ApplicationError

from seawall.blockstore.keys import KeyMaterial, KeyRefError, load_key

__all__ = [
    "AAD_PREFIX",
    "ENCODING",
    "KEY_ID_METADATA",
    "NONCE_BYTES",
    "EncryptionCodec",
    "PayloadDecryptError",
    "PayloadKeyError",
    "PayloadKeyRing",
    "StrictEncryptionCodec",
    "StrictPayloadConverter",
    "UnknownPayloadKeyError",
    "is_encrypted",
    "parse_key_refs",
    "payload_aead_key",
]

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
AAD_PREFIX = b"seawall-payload-v1:"
_DERIVE_CONTEXT = "seawall 2026-11 temporal payload aes-256-gcm"


class PayloadKeyError(ValueError):
    """The payload key configuration is unusable (no keys, a bad reference, a duplicate id)."""


class PayloadDecryptError(ValueError):
    """An encrypted payload cannot be decrypted: tampered with, truncated, or sealed under other bytes."""

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class UnknownPayloadKeyError(PayloadDecryptError):
    """The payload names a key id this process has not been given."""


def parse_key_refs(text: str) -> list[str]:
    """Split a key reference list (commas or line breaks between references; a path may hold spaces)."""
    return [ref.strip() for ref in re.split(r"[,\r\n]+", text) if ref.strip()]


def payload_aead_key(key: KeyMaterial) -> bytes:
    return blake3.blake3(key.key, derive_key_context=_DERIVE_CONTEXT).digest()


def aad_for(key_id: str) -> bytes:
    return AAD_PREFIX + key_id.encode("utf-8")


class PayloadKeyRing:
    """Ordered keys: the first encrypts, any of them decrypts the payloads sealed under its id."""

    def __init__(self, keys: Iterable[KeyMaterial]) -> None:
        self._order: list[str] = []
        self._aead: dict[str, AESGCM] = {}
        fingerprints: dict[str, bytes] = {}
        for key in keys:
            known = fingerprints.get(key.key_id)
            if known is not None:
                if known != key.fingerprint:
                    # Two different keys under one id: payloads sealed by one would fail under the other.
                    raise PayloadKeyError(f"payload key id {key.key_id!r} is given twice with different keys")
                continue
            fingerprints[key.key_id] = key.fingerprint
            self._order.append(key.key_id)
            self._aead[key.key_id] = AESGCM(payload_aead_key(key))
        if not self._order:
            raise PayloadKeyError("a payload key ring needs at least one key")

    @classmethod
    def from_refs(cls, refs: Sequence[str] | str) -> PayloadKeyRing:
        """Load ``file:``/``env:`` key references (``#key-id`` optional), newest first."""
        ref_list = parse_key_refs(refs) if isinstance(refs, str) else list(refs)
        if not ref_list:
            raise PayloadKeyError("no payload key references given (SEAWALL_PAYLOAD_KEYS is empty)")
        keys: list[KeyMaterial] = []
        for ref in ref_list:
            try:
                keys.append(load_key(ref))
            except KeyRefError as exc:
                raise PayloadKeyError(f"payload key: {exc}") from None
        return cls(keys)

    @property
    def active_key_id(self) -> str:
        return self._order[0]

    @property
    def key_ids(self) -> list[str]:
        return list(self._order)

    def aead(self, key_id: str) -> AESGCM:
        try:
            return self._aead[key_id]
        except KeyError:
            raise UnknownPayloadKeyError(
                f"payload is encrypted with key id {key_id!r}, which is not in this process's payload "
                f"keys ({', '.join(self._order)}): add its reference to SEAWALL_PAYLOAD_KEYS",
                key_id,
            ) from None


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec with a key ring; the sync methods serve the codec server's threads."""

    def __init__(self, ring: PayloadKeyRing) -> None:
        self.ring = ring

    @classmethod
    def from_refs(cls, refs: Sequence[str] | str) -> EncryptionCodec:
        return cls(PayloadKeyRing.from_refs(refs))

    def encrypt(self, payload: Payload) -> Payload:
        if is_encrypted(payload):
            # Encoding twice would bury the key id of the inner layer where the UI cannot see it.
            return payload
        key_id = self.ring.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.ring.aead(key_id).encrypt(nonce, payload.SerializeToString(), aad_for(key_id))
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode("utf-8")},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            # Plain payloads stay readable: those written before the codec was turned on, and the ones
            # a codec-less client (e.g. the UI without a codec endpoint) sent.
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if not raw_id:
            raise PayloadDecryptError(f"encrypted payload has no {KEY_ID_METADATA!r} metadata")
        key_id = raw_id.decode("utf-8", "replace")
        aead = self.ring.aead(key_id)
        if len(payload.data) < NONCE_BYTES + 16:
            raise PayloadDecryptError(
                f"encrypted payload (key id {key_id!r}) is truncated: {len(payload.data)} bytes", key_id
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            inner = aead.decrypt(nonce, sealed, aad_for(key_id))
        except InvalidTag:
            raise PayloadDecryptError(
                f"encrypted payload (key id {key_id!r}) failed authentication: it was altered, or the key "
                f"loaded under that id is not the one that sealed it",
                key_id,
            ) from None
        return Payload.FromString(inner)

    def encode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    def decode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encode_sync(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)


# --- refusing plaintext -------------------------------------------------------------------------------
# With SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION a worker must not run what a codec-less client (the Temporal
# UI, a script at the frontend) sent in clear. A codec cannot fail cleanly: an error while decoding an
# activation fails the workflow *task*, retried forever. So the strict codec swaps a plain payload for
# a marker (dropping its content), and the payload converter turns the marker into a non-retryable
# ApplicationError when the SDK converts it: a workflow input then fails the workflow before its first
# step, an update argument rejects the update, and nothing of the plain payload is ever used.

PLAINTEXT_REFUSED = b"binary/seawall-plaintext-refused"


class StrictEncryptionCodec(EncryptionCodec):
    """:class:`EncryptionCodec` that lets no plain payload through: it decodes to a refusal marker."""

    def decrypt(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            return Payload(metadata={"encoding": PLAINTEXT_REFUSED})
        return super().decrypt(payload)


class RefusedPlaintextConverter(EncodingPayloadConverter):
    """Converts the strict codec's marker into the refusal; never encodes anything."""

    @property
    def encoding(self) -> str:
        return PLAINTEXT_REFUSED.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise ApplicationError(
            "refused: a payload arrived unencrypted, and this worker requires encrypted payloads "
            "(SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION); send it through a Seawall door or a client with the "
            "payload codec",
            type="PlaintextRefused",
            non_retryable=True,
        )


class StrictPayloadConverter(PydanticPayloadConverter):
    """The pydantic converter that also understands (and refuses) the plaintext marker."""

    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), RefusedPlaintextConverter())
