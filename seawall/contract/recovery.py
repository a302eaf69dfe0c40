"""Recovery plan runs (``RecoveryPlan``): the failover input, the plan's shape, the operator's
decisions on a run (approve, abort, retry, rollback), the run's report, and what follows a failover
(commit, reprotect).

Sandbox-safe (pydantic + stdlib only). One VM's recovery is in ``recover_vm.py``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.drills import ReportTargets
from seawall.contract.intents import SignedIntent
from seawall.contract.names import NAME_PATTERN
from seawall.contract.recover_vm import DnsChange, RecoverVMResult, Resource, StepTime
from seawall.contract.replication import CycleResult


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanRunInput(_Message):
    """Start from the UI as ``{"plan": "erp-dr", "run": "20261126T010215Z-dd62f783"}``."""

    plan: str = Field(pattern=NAME_PATTERN)
    run: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    intent: SignedIntent | None = None  # a door's signature (contract/intents.py)


class PlanInput(_Message):
    """Start from the UI as ``{"plan": "erp-dr"}``."""

    plan: str = Field(pattern=NAME_PATTERN)
    intent: SignedIntent | None = None


class CommitOutcome(_Message):
    plan: str
    run: str
    schedules_deleted: list[str]
    points_pruned: dict[str, list[str]]


class ReprotectOutcome(_Message):
    plan: str
    from_site: str
    cycles: list[CycleResult]


_MODE = r"^(test|planned|unplanned)$"


class FailoverInput(_Message):
    """Start from the UI as ``{"plan": "erp-dr", "mode": "test"}``."""

    plan: str = Field(pattern=NAME_PATTERN)
    mode: str = Field(pattern=_MODE)
    # Recover to the newest verified point at or before this time (unplanned); default: the newest.
    point_time: str | None = None
    # A drill's time to live, overriding the plan's test_ttl (an operator's short drill, a test).
    ttl_s: float | None = Field(default=None, gt=0, le=14 * 24 * 3600)
    # failback: the plan the other way, after Reprotect — the copies at the plan's target site are
    # stopped, replicated a last time and restored onto the original VMs at its source site.
    direction: str = Field(default="failover", pattern=r"^(failover|failback)$")
    intent: SignedIntent | None = None
    # Read every VM's point from its replica store's mirror even when the store answers (the
    # operator's choice; a plan may say so with ``from_mirror`` too). Default: the mirror serves
    # only when the store cannot be reached.
    from_mirror: bool = False


class VMStep(_Message):
    vm: str
    group: str
    depends_on: list[str]
    boot_delay_s: float
    # The VM has DNS records a drill sets too (``in_test``): its drill runs the DNS step.
    drill_dns: bool = False


class GroupStep(_Message):
    name: str
    boot_delay_s: float
    vms: list[VMStep]
    pre_hooks: list[str]
    post_hooks: list[str]
    gate: str | None
    gate_message: str | None
    gate_timeout_s: float | None
    gate_on_timeout: str
    gate_role: str | None = None  # the least role that may approve it (default: by mode)


class PlanSpec(_Message):
    """The shape of a plan (order, gates, hooks by name): what the workflow needs to sequence it.

    Per-VM detail (sizes, networks, addresses, DNS, checks) stays in the plan file; the target site's
    worker reads it there, so the history holds names and order, not the plan's addresses.
    """

    plan: str
    source_site: str
    target_site: str
    target_kind: str
    failure_policy: str
    test_ttl_s: float
    pre_hooks: list[str]
    post_hooks: list[str]
    groups: list[GroupStep]
    # Hook name -> the site whose worker runs it (``Hook.site``); a hook not named runs at the target.
    hook_sites: dict[str, str] = {}
    # Consistency groups with members in this plan: group -> those members. They recover from one
    # group point, chosen once for all of them.
    consistency_groups: dict[str, list[str]] = {}
    # The plan says: recover from the replica stores' mirrors (``RecoveryPlan.from_mirror``).
    from_mirror: bool = False


class HookOutcome(_Message):
    name: str
    ok: bool
    detail: str
    started_at: str
    finished_at: str


class Approval(_Message):
    gate: str
    approved: bool
    by: str
    at: str
    comment: str = ""
    role: str | None = None
    verified: bool = False  # ``by`` is an identity a Seawall door verified and signed, not a claim


class ApproveInput(_Message):
    gate: str
    by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)
    intent: SignedIntent | None = None


class AbortInput(_Message):
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)
    intent: SignedIntent | None = None


class CleanupOutcome(_Message):
    removed: list[Resource]
    dns_restored: list[str]
    # Every record of the run's plan looked at: restored, unchanged, or a conflict left alone.
    dns: list[DnsChange] = []
    dns_conflicts: list[str] = []


class RetryInput(_Message):
    """Try a stopped run's failed steps again and carry on with the rest of the plan."""

    by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)


class RollbackInput(_Message):
    """Ask to roll a stopped real failover back: it waits for an approval naming what it destroys."""

    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


class RollbackOutcome(_Message):
    """What an approved rollback did: the run's resources at the target removed, sources started."""

    requested_by: str
    approved_by: str
    destroyed: CleanupOutcome
    sources_started: list[str]
    schedules_resumed: int


class RunReport(_Message):
    """Evidence of one run: what was recovered from which point, when each step ran, who approved."""

    plan: str
    run: str
    mode: str
    status: str
    started_at: str
    finished_at: str
    vms: list[RecoverVMResult]
    failed_vms: dict[str, str]
    hooks: list[HookOutcome]
    approvals: list[Approval]
    groups: list[StepTime]
    cleanup: CleanupOutcome | None = None
    fencing: list[str] = []
    # What the operator decided while the run was stopped (retry, rollback, end), in order.
    decisions: list[str] = []
    # Plan settings this run did not apply, and why (rollback-test in a real failover).
    warnings: list[str] = []
    rollback: RollbackOutcome | None = None
    # Who started it, as a Seawall door verified and signed it (None: unsigned, or before signing).
    authorised_by: Approval | None = None
    targets: ReportTargets | None = None  # the plan's RPO/RTO, added when the report is written


class ReportWritten(_Message):
    json_path: str
    html_path: str
