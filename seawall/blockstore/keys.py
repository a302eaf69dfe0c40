"""Encryption keys: the key material a repository seals with, and loading it from a key reference.

A key reference names where the 32 key bytes live, never the bytes themselves, so it can sit in a
policy, a workflow input or a log line:

- ``file:/path/to/key`` -- the file holds the key raw (exactly 32 bytes), as 64 hex digits, or as
  base64 (surrounding whitespace ignored);
- ``env:NAME`` -- the environment variable holds the key as hex or base64.

Optionally ``#<key id>`` at the end of a reference names the key id recorded in manifests; without
it the id is a fingerprint of the key, so two workers loading the same bytes agree on the id.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path

import blake3

KEY_BYTES = 32


class KeyRefError(Exception):
    """A key reference is malformed, or what it points at is not a 32-byte key."""


def _derive(key: bytes, purpose: str) -> bytes:
    return blake3.blake3(key, derive_key_context=f"seawall 2026-11 {purpose}").digest()


@dataclass(frozen=True)
class KeyMaterial:
    """A named 32-byte master key; every sub-key the data path uses is derived from it.

    Separate sub-keys keep the uses independent: the chunk-id key (keyed BLAKE3) never touches
    AES, and the manifest MAC key cannot be turned into a chunk-forging key.
    """

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise KeyRefError(f"key {self.key_id!r} must be {KEY_BYTES} bytes, got {len(self.key)}")
        if not self.key_id or any(c in self.key_id for c in "\n\r\t"):
            raise KeyRefError(f"key id {self.key_id!r} must be a non-empty single-line name")

    @property
    def fingerprint(self) -> bytes:
        """8 bytes stored in every sealed object so a wrong key is told apart from tampering."""
        return _derive(self.key, "key fingerprint")[:8]

    @property
    def id_key(self) -> bytes:
        return _derive(self.key, "chunk id")

    @property
    def enc_key(self) -> bytes:
        return _derive(self.key, "aes-256-gcm")

    @property
    def mac_key(self) -> bytes:
        return _derive(self.key, "manifest mac")

    @property
    def seed64(self) -> int:
        """Seed for the change-detection hashes, so a guest cannot precompute block-hash collisions."""
        return int.from_bytes(_derive(self.key, "xxh3 seed")[:8], "little")

    @classmethod
    def generate(cls, key_id: str | None = None) -> KeyMaterial:
        raw = os.urandom(KEY_BYTES)
        return cls(key_id or default_key_id(raw), raw)


def default_key_id(raw: bytes) -> str:
    return "k-" + _derive(raw, "key id").hex()[:16]


def parse_key_bytes(text: bytes, where: str) -> bytes:
    """Accept raw 32 bytes, 64 hex digits, or base64 of 32 bytes."""
    if len(text) == KEY_BYTES:
        return text
    stripped = text.strip()
    try:
        s = stripped.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyRefError(f"{where}: not a 32-byte key (raw, hex or base64)") from exc
    if len(s) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(s)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyRefError(f"{where}: not a 32-byte key (raw, hex or base64)") from exc
    if len(raw) != KEY_BYTES:
        raise KeyRefError(f"{where}: base64 decodes to {len(raw)} bytes, need {KEY_BYTES}")
    return raw


def load_key(ref: str) -> KeyMaterial:
    """Resolve a ``file:`` or ``env:`` key reference (optionally ``#key-id``) into key material."""
    body, _, key_id = ref.partition("#")
    scheme, sep, rest = body.partition(":")
    if not sep or not rest:
        raise KeyRefError(f"key reference {ref!r} must look like file:/path or env:NAME")
    if scheme == "file":
        path = Path(rest)
        try:
            raw = parse_key_bytes(path.read_bytes(), f"key file {path}")
        except OSError as exc:
            raise KeyRefError(f"key file {path} cannot be read: {exc.strerror}") from exc
    elif scheme == "env":
        value = os.environ.get(rest)
        if value is None:
            raise KeyRefError(f"environment variable {rest} (key reference {ref!r}) is not set")
        raw = parse_key_bytes(value.encode(), f"environment variable {rest}")
    else:
        raise KeyRefError(
            f"key reference {ref!r}: unknown scheme {scheme!r} (use file: or env:; kms: keys are "
            "opened with their replica store)"
        )
    return KeyMaterial(key_id or default_key_id(raw), raw)


class KeyRing:
    """Keys by id, so data sealed under an older key stays readable after a rotation."""

    def __init__(self, *keys: KeyMaterial) -> None:
        self._keys: dict[str, KeyMaterial] = {}
        for k in keys:
            self.add(k)

    def add(self, key: KeyMaterial) -> None:
        self._keys[key.key_id] = key

    def add_ref(self, ref: str) -> KeyMaterial:
        key = load_key(ref)
        self.add(key)
        return key

    def get(self, key_id: str) -> KeyMaterial | None:
        return self._keys.get(key_id)

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)
