"""Replication messages: protecting a VM, each cycle's steps (snapshot, ship, commit, verify,
retention, mirror) and what a cycle leaves for ``status`` and the report.

Sandbox-safe (pydantic + stdlib only). They carry names and ids, never secrets, manifests or block
lists: payloads fail at 2 MB and histories at 50 MB.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.intents import SignedIntent
from seawall.contract.names import NAME_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProtectInput(_Message):
    """Start from the UI as ``{"vm": "web-01"}`` (the policy defaults to the inventory's)."""

    vm: str = Field(pattern=NAME_PATTERN)
    policy: str | None = Field(default=None, pattern=NAME_PATTERN)
    # One of the VM's target sites, for reverse replication after a failover (Reprotect).
    source_site: str | None = Field(default=None, pattern=NAME_PATTERN)


class UnprotectInput(_Message):
    vm: str = Field(pattern=NAME_PATTERN)
    delete_replica: bool = False
    # Stopping protection (and deleting points) is signed by a Seawall door (seawall.contract.intents).
    intent: SignedIntent | None = None


class CycleInput(_Message):
    """What the VM's schedule passes to each ReplicationCycle: only the VM's name."""

    vm: str = Field(pattern=NAME_PATTERN)
    # Reverse replication after a failover: replicate the copy running at this (target) site instead.
    source_site: str | None = Field(default=None, pattern=NAME_PATTERN)


class Protection(_Message):
    """The inventory's view of one protected VM, resolved by a worker (no credentials)."""

    vm: str
    source_site: str
    source_kind: str
    policy: str
    interval_s: float
    grace_s: float
    store: str
    app_consistent: bool
    retention_count: int | None
    retention_hours: int | None
    # From the worker's settings, recorded in history by the activity that returns this: how long a
    # silent transfer may go before the server hands it to another worker.
    heartbeat_timeout_s: float = 20.0
    # How often the VM's replica store is garbage-collected (one schedule per store).
    gc_interval_s: float = 3600.0
    # The store's mirror (another replica store), None without one.
    mirror: str | None = None


class CycleStart(_Message):
    """Where a cycle starts from: its deterministic point id and snapshot name, and its parent."""

    point_id: str
    snapshot: str
    parent: str | None
    parent_created_at: str | None


class DiskRef(_Message):
    key: str  # how the source names the disk: a vSphere device key, an image file name
    label: str
    size: int
    # The replica's name for the disk: its position on a vSphere VM (``disk0``, ``disk1``...), which a
    # VM re-created at another site keeps while its device keys change; the file name of an image.
    name: str = ""

    @property
    def replica_name(self) -> str:
        return self.name or (f"disk-{self.key}" if self.key.isdigit() else self.key)


class SnapshotTaken(_Message):
    snapshot: str
    disks: list[DiskRef]
    cbt: bool
    # What the hypervisor reports of the guest's addresses, kept with the point for re-IP rules.
    guest_ips: list[str] = []


class ShipRequest(_Message):
    vm: str
    point_id: str
    snapshot: str
    parent: str | None
    disks: list[DiskRef]


class ShippedDiskRef(_Message):
    """One shipped disk, by reference: the store holds the layers; this names them (a few hundred bytes)."""

    disk: str
    shipped: dict[str, object]
    bytes_read: int
    bytes_shipped: int
    change_path: str


class ShipOutcome(_Message):
    disks: list[ShippedDiskRef]

    @property
    def bytes_read(self) -> int:
        return sum(d.bytes_read for d in self.disks)

    @property
    def bytes_shipped(self) -> int:
        return sum(d.bytes_shipped for d in self.disks)


class CommitRequest(_Message):
    vm: str
    point_id: str
    parent: str | None
    outcome: ShipOutcome
    meta: dict[str, str] = {}


class VerifyOutcome(_Message):
    ok: bool
    blocks_checked: int
    bytes_checked: int
    problems: list[str]
    # The VM's points a verify in this cycle found damaged, and those verified again after a repair.
    corrupt_points: list[str] = []
    healed_points: list[str] = []


class RetentionOutcome(_Message):
    kept: int
    deleted: list[str]
    # Cycles recorded before garbage collection moved to CollectGarbage carry a count here; now 0.
    packs_deleted: int = 0
    # Points the policy no longer keeps but whose object lock has not expired (kept, said so).
    locked: list[str] = Field(default_factory=list)


class MirrorOutcome(_Message):
    """A mirror pass: every verified point of the VM the mirror lacked, copied and verified there."""

    vm: str
    mirror: str
    mirrored: list[str]
    bytes_copied: int
    lag: int  # verified points of the primary the mirror still lacks (0: caught up)
    # Points mirrored before configurations were copied with them, whose configuration was copied now.
    configs_backfilled: list[str] = []
    # Points the primary's retention removed, removed from the mirror now (and those its lock keeps).
    pruned: list[str] = []
    pruned_locked: list[str] = []
    group_points: int = 0  # consistency-group points copied to the mirror


class CycleResult(_Message):
    """What ``status`` and the report read back from each completed cycle's result."""

    vm: str
    point_id: str
    parent: str | None
    started_at: str
    finished_at: str
    change_path: str
    bytes_read: int
    bytes_shipped: int
    verified: bool
    retention_deleted: list[str]
    corrupt_points: list[str] = []  # older points found damaged (a scrub) and not yet repaired
    healed_points: list[str] = []  # points verified again after this cycle repaired their chunks
    # With a mirrored store: verified points the mirror still lacks after this cycle (None: not
    # mirrored), and why the mirror step failed if it did.
    mirror: str | None = None
    mirror_lag: int | None = None
    mirror_error: str | None = None


class ProtectResult(_Message):
    vm: str
    schedule_id: str
    interval_s: float
    first_point: str


class ScheduleRequest(_Message):
    vm: str
    source_site: str
    interval_s: float
    # True after Reprotect: cycles replicate the copy at ``source_site``, not the inventory's source.
    reverse: bool = False
