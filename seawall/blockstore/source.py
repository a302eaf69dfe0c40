"""The one interface every disk source implements: a size, ranged reads, and optional changed areas."""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable


class ChangedArea(NamedTuple):
    """A byte range the source reports as possibly changed since a change id (may over-report)."""

    offset: int
    length: int


class SourceError(Exception):
    """A disk source cannot be read (gone, unreachable, permission denied)."""


@runtime_checkable
class DiskSource(Protocol):
    """A stable, readable image of one disk (a snapshot's base disk, a raw file, a block device)."""

    @property
    def size(self) -> int:
        """Size of the disk in bytes."""
        ...

    @property
    def change_id(self) -> str | None:
        """The source's change id for this image (vSphere CBT changeId), None when it has none."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``; shorter only at the end of the disk."""
        ...

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        """Areas changed since ``since_change_id``, or None when the source cannot tell (hash-compare)."""
        ...

    def describe(self) -> str:
        """A human label for messages and reports (never a credential)."""
        ...

    def close(self) -> None: ...
