"""The data path's models: recovery-point manifests, ship progress, results. Pydantic v2.

A manifest is small JSON: per disk it names at most MAX_CHAIN table layers (never the rows), so a
point of a 2 TiB disk is a few KB and listing points reads little. The repository stores it as
signed JSON (keyed BLAKE3 MAC over the body and the object key), so a swapped layer id or digest,
or a manifest copied under another point id, fails to load.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ChangePath = Literal["full", "hash-compare", "cbt"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}$")

DIGEST_ALGO = "blake3(size_le64 || xxh3_128(block) for each 64 KiB block)"


def check_name(kind: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"{kind} {value!r} must match {NAME_RE.pattern} (it becomes part of an object key)")
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiskManifest(_Model):
    """One disk of a recovery point."""

    disk: str
    size: int = Field(ge=0)
    block_size: int
    piece_size: int
    hash_seed: int = Field(description="seed of the xxh3 block hashes; inherited along a disk's points")
    layers: list[str] = Field(description="table layer ids, the full layer first; len <= MAX_CHAIN")
    digest: str = Field(description="hash-tree root over the source's block hashes, see DIGEST_ALGO")
    digest_algo: str = DIGEST_ALGO
    change_path: ChangePath
    change_id: str | None = None
    parent_point: str | None = None
    blocks: int
    zero_blocks: int
    bytes_read: int = Field(description="source bytes read by this point's ship")
    bytes_changed: int = Field(description="source bytes that differ from the parent (pieces shipped)")
    bytes_shipped: int = Field(description="bytes written to the store by this ship: packs, indexes, tables")
    chunks_new: int
    packs_written: int

    @field_validator("disk")
    @classmethod
    def _disk(cls, v: str) -> str:
        return check_name("disk", v)


class ShippedDisk(DiskManifest):
    """What ``ship`` returns: a disk ready to be committed into a point (session closes on commit)."""

    session: str
    key_id: str


class PointManifest(_Model):
    format: Literal[1] = 1
    vm: str
    point_id: str
    parent: str | None
    created_at: datetime
    key_id: str
    disks: list[DiskManifest]
    meta: dict[str, str] = Field(default_factory=dict)
    # Set when the store locks points (immutable.py): the point's objects cannot go before it.
    lock_until: datetime | None = None

    def same_content(self, other: PointManifest) -> bool:
        """Equal but for creation time (and the lock date it implies): a retried commit."""
        return (
            self.model_copy(update={"created_at": other.created_at, "lock_until": other.lock_until}) == other
        )


class PointRef(_Model):
    vm: str
    point_id: str
    created_at: datetime | None = None


class PointInfo(_Model):
    vm: str
    point_id: str
    parent: str | None
    created_at: datetime
    verified: bool
    disks: dict[str, int] = Field(description="disk -> size in bytes")
    corrupt: bool = Field(default=False, description="a verify found a damaged chunk it references")
    locked_until: datetime | None = Field(default=None, description="object lock: not deletable before")

    @property
    def ref(self) -> PointRef:
        return PointRef(vm=self.vm, point_id=self.point_id, created_at=self.created_at)


class ShipProgress(_Model):
    """A durable checkpoint of a ship, small enough for Temporal heartbeat details (~300 bytes).

    Only ``session`` is needed to resume; the rest is for humans and dashboards. On resume the
    repository trusts the session journal in the store (what is durably there), not these numbers.
    """

    session: str
    vm: str
    disk: str
    block: int = Field(description="next block index to scan; every block before it is committed")
    blocks_total: int
    bytes_read: int
    bytes_shipped: int
    packs_committed: int
    checkpoint: int

    @property
    def offset(self) -> int:
        from seawall.blockstore.table import BLOCK

        return self.block * BLOCK

    @classmethod
    def coerce(cls, value: ShipProgress | dict[str, Any] | None) -> ShipProgress | None:
        """Heartbeat details come back from Temporal as plain dicts."""
        if value is None or isinstance(value, ShipProgress):
            return value
        return cls.model_validate(value)


class SessionJournal(_Model):
    """The in-progress lease and resume record of one ship, stored at ``sessions/<session>.json``."""

    session: str
    vm: str
    disk: str
    parent_point: str | None
    key_id: str
    size: int
    full_layer: bool
    change_path: ChangePath
    started_at: datetime
    renewed_at: datetime
    hash_seed: int
    position: int = 0
    checkpoint: int = 0
    parts: list[tuple[str, int, int]] = Field(default_factory=list)
    packs_written: list[str] = Field(default_factory=list)
    packs_referenced: list[str] = Field(default_factory=list)
    bytes_read: int = 0
    bytes_changed: int = 0
    bytes_shipped: int = 0
    chunks_new: int = 0
    zero_blocks: int = 0
    shipped: ShippedDisk | None = None


class VerifiedMarker(_Model):
    vm: str
    point_id: str
    verified_at: datetime
    digests: dict[str, str]


class CondemnedList(_Model):
    """Unreferenced objects, each with the time GC first saw it unreferenced (see Repository.gc)."""

    since: dict[str, datetime] = Field(default_factory=dict)


class RetentionPolicy(_Model):
    """Keep the newest ``keep_last`` points and every point younger than ``keep_hours`` (union).

    None for both keeps everything. The newest verified point is always kept.
    """

    keep_last: int | None = Field(default=None, ge=1)
    keep_hours: float | None = Field(default=None, gt=0)


class RetentionResult(_Model):
    vm: str
    kept: list[str]
    deleted: list[str]
    locked: list[str] = Field(
        default_factory=list, description="points retention would delete but whose object lock holds"
    )


class BadChunk(_Model):
    """A stored chunk that failed its check: where it is, so a scrub can mark and a ship can repair it."""

    cid: str = Field(description="chunk id, hex")
    pack: str = Field(description="pack id, hex")
    offset: int
    length: int

    @property
    def name(self) -> str:
        return f"chunk {self.cid[:16]} in pack {self.pack[:16]} @ {self.offset}"


class BadBlock(_Model):
    disk: str
    block: int
    offset: int
    reason: str
    chunks: list[BadChunk] = Field(default_factory=list, description="the block's chunks that failed")


class VerifyResult(_Model):
    vm: str
    point_id: str
    ok: bool
    disks: int
    blocks_checked: int
    chunks_checked: int
    bytes_checked: int
    blocks_trusted: int = Field(default=0, description="not re-read: proven by the verified parent")
    bad_blocks: list[BadBlock] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list, description="problems not tied to one block")
    marked_verified: bool = False


class RestoreResult(_Model):
    vm: str
    point_id: str
    disk: str
    size: int
    start_offset: int
    bytes_written: int
    zero_bytes_skipped: int
    digest_checked: bool


class GcResult(_Model):
    packs_deleted: int
    tables_deleted: int
    condemned: int = Field(description="unreferenced objects waiting for the grace period or live sessions")
    sessions_expired: int
    live_sessions: int
    locked: int = Field(default=0, description="unreferenced objects kept because their lock holds")
