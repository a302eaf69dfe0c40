"""The one small interface every replica store backend implements.

Keys are '/'-separated relative names (``chunks/ab/abcdef...``, ``points/<vm>/<point>.json``).
Every write is whole-object and idempotent; a reader never sees a partly written object.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """A replica store failed in a way that retrying will not fix (bad credentials, missing bucket)."""


class TransientStoreError(StoreError):
    """A replica store failed in a way that a retry may fix (timeout, 5xx, throttling)."""


class ObjectNotFound(StoreError):
    """The key does not exist in the store."""

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(f"object {key!r} not found{' in ' + where if where else ''}")
        self.key = key


class ObjectLockedError(StoreError):
    """The store refused to delete or overwrite an object because its retention lock has not expired."""

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(
            f"object {key!r}{' in ' + where if where else ''} is under an object lock (retention not "
            "expired): it cannot be deleted yet"
        )
        self.key = key


@runtime_checkable
class ObjectStore(Protocol):
    """A flat, content-agnostic object namespace."""

    def put(self, key: str, data: bytes) -> bool:
        """Write ``data`` atomically under ``key``.

        Returns True when the object was written, False when an object already existed under the key
        and ``overwrite`` semantics were not needed (content-addressed keys never change content).
        """
        ...

    def put_overwrite(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically under ``key``, replacing what was there (indexes, heads)."""
        ...

    def get(self, key: str) -> bytes:
        """Read a whole object; raise ObjectNotFound when it is absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting an absent key succeeds (retries are safe)."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in no particular order."""
        ...

    def describe(self) -> str:
        """A human label for messages, e.g. ``s3://bucket/prefix`` (never a credential)."""
        ...


@runtime_checkable
class LockingStore(Protocol):
    """A store that can put a write-once retention lock on an object (S3 Object Lock).

    ``lock`` is idempotent and only ever extends: a lock already reaching ``until`` is left alone
    (compliance mode forbids shortening, and shortening governance would need a bypass right).
    """

    def lock(self, key: str, mode: str, until: datetime) -> None: ...

    def locked_until(self, key: str) -> datetime | None: ...

    def check_lock_support(self) -> None:
        """Raise StoreError unless every object written from now on can be locked."""
        ...
