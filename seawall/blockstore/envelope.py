"""Envelope encryption: a store's data keys made and wrapped by an AWS KMS key (``kms:KEY``).

The 32-byte data key a repository seals with never leaves memory unwrapped. KMS's
GenerateDataKey returns it twice, plain and wrapped under the KMS key; only the wrapped blob is
stored, in the replica store itself::

    keys/<data key id>.json   {"key_id", "kms_key_id", "wrapped", "created_at"}  (write-once)
    keys/current.json         {"key_id"}: the data key new points are sealed with

Opening a store asks KMS to Decrypt the current blob (and, for the key ring, every older one), so
whoever administers the KMS key controls every replica: disabling or scheduling it for deletion
makes the data unreadable, and the error names the KMS key and the data key. ``rotate`` makes a
new data key (under the policy's KMS key, which may be a new one) and points ``current`` at it:
new points use it, older points name their data key id in their manifest and stay readable through
the ring. The data key id is derived from the wrapped blob, so every worker agrees on it.

Credentials, region and endpoint come from the standard AWS environment (``AWS_ENDPOINT_URL`` in
the lab); a key ARN also names its region.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any

import blake3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from seawall.blockstore.keys import KEY_BYTES, KeyMaterial, KeyRefError, KeyRing
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, TransientStoreError

__all__ = ["CURRENT_KEY", "KmsKeys", "kms_client"]

log = logging.getLogger(__name__)

CURRENT_KEY = "keys/current.json"
_TRANSIENT = frozenset({"KMSInternalException", "DependencyTimeoutException", "ThrottlingException"})
_WHY = {
    "DisabledException": "is disabled",
    "KMSInvalidStateException": "is not usable (pending deletion or pending import)",
    "NotFoundException": "does not exist",
    "AccessDeniedException": "refuses these credentials",
    "IncorrectKeyException": "did not wrap this data key",
    "InvalidCiphertextException": "cannot unwrap this data key (wrong key or damaged blob)",
}


class WrappedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key_id: str
    kms_key_id: str
    wrapped: str
    created_at: datetime


class CurrentKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key_id: str


def kms_client(kms_key: str) -> Any:
    """A boto3 KMS client from the standard AWS environment; an ARN's region wins."""
    import boto3

    region = kms_key.split(":")[3] if kms_key.startswith("arn:") else None
    return boto3.client("kms", region_name=region)


def _key_file(key_id: str) -> str:
    return f"keys/{key_id}.json"


class KmsKeys:
    """The data keys of one store, wrapped by KMS. ``kms_key``: id, alias/NAME or ARN."""

    def __init__(self, store: ObjectStore, kms_key: str, client: Any = None) -> None:
        self._store = store
        self.kms_key = kms_key
        self._client = client if client is not None else kms_client(kms_key)
        # Older data keys KMS would not unwrap: key id -> why (named when such a point is read).
        self.unavailable: dict[str, str] = {}

    def _kms_error(self, exc: Exception, op: str, kms_key: str, data_key: str | None) -> Exception:
        what = f"KMS key {kms_key!r}" + (f" (wrapping data key {data_key!r})" if data_key else "")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _TRANSIENT:
                return TransientStoreError(f"{op} with {what} failed, may succeed later: {code}")
            why = _WHY.get(code, f"failed: {code}")
            return KeyRefError(f"{what} {why} ({op} for replica store {self._store.describe()})")
        if isinstance(exc, BotoCoreError):
            return TransientStoreError(f"{op} with {what}: {type(exc).__name__}: {exc}")
        return exc

    def _read(self, key_id: str) -> WrappedKey:
        try:
            w = WrappedKey.model_validate_json(self._store.get(_key_file(key_id)))
        except ObjectNotFound:
            raise KeyRefError(
                f"data key {key_id!r} is missing from {self._store.describe()} ({_key_file(key_id)})"
            ) from None
        except ValidationError:
            raise KeyRefError(f"{_key_file(key_id)} in {self._store.describe()} is damaged") from None
        if w.key_id != key_id:
            raise KeyRefError(f"{_key_file(key_id)} in {self._store.describe()} names another key")
        return w

    def _check_enabled(self, kms_key: str, data_key: str) -> None:
        """Refuse a KMS key that is not Enabled before unwrapping with it. AWS's Decrypt refuses too;
        asking first gives the same clear error from every KMS (emulators included) and before any
        point is written. Without kms:DescribeKey permission the Decrypt answer decides."""
        try:
            state = self._client.describe_key(KeyId=kms_key)["KeyMetadata"].get("KeyState", "Enabled")
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) == "AccessDeniedException":
                return
            raise self._kms_error(exc, "DescribeKey", kms_key, data_key) from None
        except Exception as exc:
            raise self._kms_error(exc, "DescribeKey", kms_key, data_key) from None
        if state != "Enabled":
            raise KeyRefError(
                f"KMS key {kms_key!r} (wrapping data key {data_key!r}) is {state.lower()}: points sealed "
                f"with data key {data_key!r} in {self._store.describe()} cannot be read or written until "
                "an administrator enables it"
            )

    def _unwrap(self, w: WrappedKey) -> KeyMaterial:
        self._check_enabled(w.kms_key_id, w.key_id)
        try:
            resp = self._client.decrypt(CiphertextBlob=base64.b64decode(w.wrapped))
        except Exception as exc:
            raise self._kms_error(exc, "Decrypt", w.kms_key_id, w.key_id) from None
        plain = bytes(resp["Plaintext"])
        if len(plain) != KEY_BYTES:
            raise KeyRefError(f"KMS returned a {len(plain)}-byte data key for {w.key_id!r}")
        return KeyMaterial(w.key_id, plain)

    def _generate(self) -> KeyMaterial:
        self._check_enabled(self.kms_key, "(new)")
        try:
            resp = self._client.generate_data_key(KeyId=self.kms_key, KeySpec="AES_256")
        except Exception as exc:
            raise self._kms_error(exc, "GenerateDataKey", self.kms_key, None) from None
        wrapped = bytes(resp["CiphertextBlob"])
        key_id = "kms-" + blake3.blake3(wrapped).hexdigest()[:16]
        record = WrappedKey(
            key_id=key_id,
            kms_key_id=str(resp.get("KeyId") or self.kms_key),
            wrapped=base64.b64encode(wrapped).decode(),
            created_at=datetime.now(UTC),
        )
        self._store.put(_key_file(key_id), record.model_dump_json().encode())
        return KeyMaterial(key_id, bytes(resp["Plaintext"]))

    def current_id(self) -> str | None:
        try:
            return CurrentKey.model_validate_json(self._store.get(CURRENT_KEY)).key_id
        except ObjectNotFound:
            return None
        except ValidationError:
            raise KeyRefError(f"{CURRENT_KEY} in {self._store.describe()} is damaged") from None

    def current(self) -> KeyMaterial:
        """The data key new points are sealed with; made (once) on the store's first use."""
        key_id = self.current_id()
        if key_id is not None:
            return self._unwrap(self._read(key_id))
        made = self._generate()
        # Two first users may race: write-once, then adopt whatever won.
        self._store.put(CURRENT_KEY, CurrentKey(key_id=made.key_id).model_dump_json().encode())
        winner = self.current_id()
        return made if winner == made.key_id else self._unwrap(self._read(str(winner)))

    def rotate(self) -> tuple[str | None, KeyMaterial]:
        """A new data key for new points; returns (the previous key id, the new key)."""
        previous = self.current_id()
        made = self._generate()
        self._store.put_overwrite(CURRENT_KEY, CurrentKey(key_id=made.key_id).model_dump_json().encode())
        return previous, made

    def ring(self, skip: str) -> KeyRing:
        """Every other data key of the store, for reading older points. One KMS key disabled
        must not stop new points: its data keys are left out and named in ``unavailable``."""
        ring = KeyRing()
        for k in self._store.list("keys/"):
            key_id = k.removeprefix("keys/").removesuffix(".json")
            if k == CURRENT_KEY or key_id == skip or not k.endswith(".json"):
                continue
            try:
                ring.add(self._unwrap(self._read(key_id)))
            except KeyRefError as exc:
                self.unavailable[key_id] = str(exc)
                log.warning("older data key %s of %s is unusable: %s", key_id, self._store.describe(), exc)
        return ring
