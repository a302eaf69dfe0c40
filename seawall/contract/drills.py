"""Messages of scheduled drills and notifications (imported from here;
``messages.py`` does not re-export them).

Sandbox-safe: pydantic and the standard library only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.names import NAME_PATTERN

# Who started a run, in its memo (the API writes the token's holder; a schedule writes this).
MEMO_STARTED_BY = "seawall_started_by"
SCHEDULE_PRINCIPAL = "schedule"
# The phase a drill reports once every VM is up and healthy (workflows/recovery.py, _drill_lifetime).
DRILL_UP_PHASE = "drill running"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrillInput(_Message):
    """``ScheduledDrill``: a test failover of ``plan`` driven to healthy, cleaned up, its result kept."""

    plan: str = Field(pattern=NAME_PATTERN)
    approve_gates: bool = False
    health_timeout_s: float = Field(default=7200, gt=0, le=86400)


class DriveDrillInput(_Message):
    """``drive_drill``: watch the drill run ``run_id`` of ``plan`` until healthy, then clean it up."""

    plan: str = Field(pattern=NAME_PATTERN)
    run_id: str
    approve_gates: bool
    health_timeout_s: float
    by: str = Field(description="who the approvals and the cleanup are recorded as")


class DriveOutcome(_Message):
    healthy: bool
    detail: str
    approved: list[str] = []


class DrillResult(_Message):
    plan: str
    run: str | None
    status: str = Field(pattern=r"^(passed|failed|skipped)$")
    detail: str


class NotifyRequest(_Message):
    """One event for the people configured to hear of it. ``key`` names the event, not the delivery:
    every retry of one event sends the same key (the receiver keeps the first)."""

    event: str
    key: str = Field(min_length=1, max_length=300)
    plan: str | None = None
    site: str | None = None
    run: str | None = None
    summary: str
    facts: dict[str, str] = {}


class NotifySent(_Message):
    delivered: list[str]
    skipped: list[str] = []


class ReportTargets(_Message):
    """What a plan promises, written into each run's report: RPO and RTO for the plan, RTO per group."""

    rpo_s: float | None = None
    rto_s: float | None = None
    group_rto_s: dict[str, float] = {}
    vm_rto_s: dict[str, float] = {}  # each VM's: its group's RTO, else the plan's


class RpoWatchInput(_Message):
    """``WatchRpo``: check every ``interval_s``; ``breached`` carries, across continue-as-new, each VM
    in breach and the event key its breach was told under."""

    interval_s: float = Field(default=60, ge=5, le=3600)
    breached: dict[str, str] = {}


class VmRpo(_Message):
    vm: str
    site: str
    breach: bool
    last_point: str | None
    age_s: float | None
    threshold_s: float


class RpoCheck(_Message):
    vms: list[VmRpo]
