"""Consistency groups: a group's protection and cycles (one group point for all members, with
freeze/thaw hooks), and the group point a recovery chooses once for all of them.

Sandbox-safe (pydantic + stdlib only).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.names import NAME_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupCycleInput(_Message):
    """Start from the UI as ``{"group": "erp"}``: one group point of a consistency group."""

    group: str = Field(pattern=NAME_PATTERN)


class GroupProtection(_Message):
    """A consistency group resolved from the inventory at the worker (the hooks stay there: names only)."""

    group: str
    source_site: str
    source_kind: str
    vms: list[str]
    policy: str
    interval_s: float
    store: str
    app_consistent: bool
    freeze: bool
    thaw: bool
    freeze_timeout_s: float
    thaw_timeout_s: float
    heartbeat_timeout_s: float = 120.0
    gc_interval_s: float = 3600.0
    mirror: str | None = None  # the store's mirror: each group cycle copies its points there


class SnapshotHookRequest(_Message):
    group: str
    hook: str = Field(pattern=r"^(freeze|thaw)$")
    point_id: str


class SnapshotHookOutcome(_Message):
    hook: str
    ok: bool
    timed_out: bool
    detail: str
    started_at: str
    finished_at: str


class GroupPointRequest(_Message):
    """Commit a group point: every member's point (same id) is committed and verified."""

    group: str
    point_id: str
    vms: list[str]
    app_consistent: bool
    snapshots_started_at: str
    snapshots_finished_at: str
    notes: list[str] = []


class GroupCycleResult(_Message):
    group: str
    point_id: str
    vms: list[str]
    started_at: str
    finished_at: str
    app_consistent: bool
    hooks: list[SnapshotHookOutcome]
    snapshots_started_at: str
    snapshots_finished_at: str
    bytes_shipped: int
    retention_deleted: dict[str, list[str]]
    # With a mirrored store (None: not mirrored): per member, the verified points the mirror still
    # lacks after this cycle, and why the member's mirror step failed if it did.
    mirror: str | None = None
    mirror_lags: dict[str, int] = {}
    mirror_errors: dict[str, str] = {}


class GroupScheduleRequest(_Message):
    group: str
    source_site: str
    interval_s: float


class ProtectGroupResult(_Message):
    group: str
    schedule_id: str
    interval_s: float
    first_point: str
    vms: list[str]


class GroupPointsRequest(_Message):
    plan: str
    groups: dict[str, list[str]]
    point_time: str | None = None
    # Choose from the members' store's mirror even when the store answers (plan or operator).
    from_mirror: bool = False


class GroupPointsChosen(_Message):
    """group -> its chosen group point; vm -> the point it recovers (the same id for every member);
    vm -> the replica store the group point was chosen from (the members' store, or its mirror
    when the store could not be reached or the run asked for the mirror)."""

    groups: dict[str, str]
    points: dict[str, str]
    stores: dict[str, str] = {}
