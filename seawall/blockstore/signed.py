"""Signed JSON objects: manifests, ship journals, verified markers, the condemned list.

Each is a one-line head ``{"key_id", "mac"}`` then the model's JSON; the MAC is keyed BLAKE3 over
the object key and the body, so a body copied under another key, or from another repository key,
fails to load. Objects signed with an older key stay readable through the key ring.
"""

from __future__ import annotations

import json
from typing import TypeVar

import blake3
from pydantic import BaseModel, ValidationError

from seawall.blockstore.errors import CorruptObjectError, WrongKeyError
from seawall.blockstore.keys import KeyMaterial, KeyRing
from seawall.blockstore.stores.backend import ObjectStore

T = TypeVar("T", bound=BaseModel)


class SignedObjects:
    """Read and write signed JSON objects in one store with one key (older keys via ``ring``)."""

    def __init__(self, store: ObjectStore, key: KeyMaterial, ring: KeyRing | None) -> None:
        self.store = store
        self.key = key
        self._ring = ring

    def _mac_key_for(self, key_id: str) -> KeyMaterial | None:
        if key_id == self.key.key_id:
            return self.key
        return self._ring.get(key_id) if self._ring is not None else None

    @staticmethod
    def _mac(k: KeyMaterial, okey: str, body: bytes) -> str:
        return blake3.blake3(okey.encode() + b"\n" + body, key=k.mac_key).hexdigest()

    def encode(self, okey: str, model: BaseModel) -> bytes:
        body = model.model_dump_json().encode()
        head = json.dumps({"key_id": self.key.key_id, "mac": self._mac(self.key, okey, body)}).encode()
        return head + b"\n" + body

    def decode(self, okey: str, data: bytes, cls: type[T]) -> T:
        head_raw, sep, body = data.partition(b"\n")
        try:
            head = json.loads(head_raw) if sep else None
        except ValueError:
            head = None
        if not isinstance(head, dict) or not isinstance(head.get("key_id"), str):
            raise CorruptObjectError(okey, "not a signed object (truncated or overwritten)")
        k = self._mac_key_for(head["key_id"])
        if k is None:
            raise WrongKeyError(okey, head["key_id"], self.key.key_id)
        if head.get("mac") != self._mac(k, okey, body):
            raise CorruptObjectError(okey, "MAC mismatch (tampered, truncated or copied from another key)")
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise CorruptObjectError(okey, f"invalid content: {exc.error_count()} errors") from exc

    def get(self, okey: str, cls: type[T]) -> T:
        """Read and check one object; ObjectNotFound from the store propagates."""
        return self.decode(okey, self.store.get(okey), cls)

    def put(self, okey: str, model: BaseModel) -> bool:
        """Write once (False when an object is already there, whatever it holds)."""
        return self.store.put(okey, self.encode(okey, model))

    def put_overwrite(self, okey: str, model: BaseModel) -> None:
        self.store.put_overwrite(okey, self.encode(okey, model))
