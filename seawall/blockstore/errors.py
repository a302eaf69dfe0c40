"""Errors of the data path. Store failures stay the backend's own (StoreError, TransientStoreError)."""

from __future__ import annotations


class DataPathError(Exception):
    """Base of every error the data path raises about repository content."""


class WrongKeyError(DataPathError):
    """An object was sealed with another key than the one this repository holds."""

    def __init__(self, what: str, expected_key_id: str, have_key_id: str) -> None:
        super().__init__(
            f"{what} is encrypted with key id {expected_key_id!r}, but this repository holds key id "
            f"{have_key_id!r}: load the right key (key reference) instead of retrying"
        )
        self.expected_key_id = expected_key_id
        self.have_key_id = have_key_id


class CorruptObjectError(DataPathError):
    """An object is truncated, tampered with, or stored under an id its content does not match."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


class MissingObjectError(DataPathError):
    """An object that a manifest or index references is absent from the store."""

    def __init__(self, key: str, referenced_by: str) -> None:
        super().__init__(f"object {key!r} referenced by {referenced_by} is missing from the store")
        self.key = key
        self.referenced_by = referenced_by


class PointNotFoundError(DataPathError):
    def __init__(self, vm: str, point_id: str) -> None:
        super().__init__(f"recovery point {point_id!r} of {vm!r} does not exist (no manifest)")
        self.vm = vm
        self.point_id = point_id


class PointConflictError(DataPathError):
    """A point id is being committed again with different content (ids must be deterministic)."""


class BadBlockError(DataPathError):
    """Restore met a block whose stored content does not match the manifest.

    ``chunks`` names the stored chunks that failed (``chunk <id> in pack <id> @ <offset>``), so a
    recovery report says which object is damaged, not just which block.
    """

    def __init__(
        self,
        disk: str,
        block: int,
        offset: int,
        reason: str,
        chunks: tuple[str, ...] = (),
        damaged: tuple[object, ...] = (),
    ) -> None:
        where = f" [{', '.join(chunks)}]" if chunks else ""
        super().__init__(f"disk {disk!r} block {block} (offset {offset}): {reason}{where}")
        self.disk = disk
        self.block = block
        self.offset = offset
        self.reason = reason
        self.chunks = chunks
        self.damaged = damaged  # the failed chunks as manifest.BadChunk, to mark the point corrupt


class BadRowError(DataPathError):
    """A block failed its check; ``refs`` are the table row's chunks that do not open (may be empty:
    then the row itself, not a chunk, is wrong). Carries the original error's message."""

    def __init__(self, cause: Exception, refs: list[tuple[bytes, bytes, int, int]]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.refs = refs  # (chunk id, pack id, offset, length)


class DigestMismatchError(DataPathError):
    """The whole-disk digest of the restored table differs from the one recorded at ship time."""


class SourceChangedError(DataPathError):
    """The source no longer matches a resume position (size changed), so resuming would be wrong."""
