"""Workflow inputs and results: small, typeable in the Temporal UI's Start Workflow form.

Sandbox-safe (pydantic + stdlib only) like ``seawall.models``. They carry names and ids, never secrets,
manifests or block lists: payloads fail at 2 MB and histories at 50 MB.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSiteInput(_Message):
    """Start from the UI as ``{"site": "primary"}``."""

    site: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class SiteProbe(_Message):
    """What a site's worker could see of the site: reachable, what answered, and how long it took."""

    site: str
    kind: str
    reachable: bool
    detail: str
    elapsed_ms: int
    worker: str


_VM_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class ProtectInput(_Message):
    """Start from the UI as ``{"vm": "web-01"}`` (the policy defaults to the inventory's)."""

    vm: str = Field(pattern=_VM_NAME)
    policy: str | None = Field(default=None, pattern=_VM_NAME)


class UnprotectInput(_Message):
    vm: str = Field(pattern=_VM_NAME)
    delete_replica: bool = False


class CycleInput(_Message):
    """What the VM's schedule passes to each ReplicationCycle: only the VM's name."""

    vm: str = Field(pattern=_VM_NAME)


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
    heartbeat_timeout_s: float = 120.0
    # How often the VM's replica store is garbage-collected (one schedule per store).
    gc_interval_s: float = 3600.0


class CycleStart(_Message):
    """Where a cycle starts from: its deterministic point id and snapshot name, and its parent."""

    point_id: str
    snapshot: str
    parent: str | None
    parent_created_at: str | None


class DiskRef(_Message):
    key: str
    label: str
    size: int


class SnapshotTaken(_Message):
    snapshot: str
    disks: list[DiskRef]
    cbt: bool


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


class RetentionOutcome(_Message):
    kept: int
    deleted: list[str]
    # Cycles recorded before garbage collection moved to CollectGarbage carry a count here; now 0.
    packs_deleted: int = 0


class GcInput(_Message):
    """Start from the UI as ``{"store": "local", "site": "primary"}``: whose worker reaches the store."""

    store: str = Field(pattern=_VM_NAME)
    site: str = Field(pattern=_VM_NAME)


class GcOutcome(_Message):
    store: str
    packs_deleted: int
    tables_deleted: int
    condemned: int
    live_sessions: int


class GcScheduleRequest(_Message):
    store: str
    site: str
    interval_s: float


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


class ProtectResult(_Message):
    vm: str
    schedule_id: str
    interval_s: float
    first_point: str


class ScheduleRequest(_Message):
    vm: str
    source_site: str
    interval_s: float
