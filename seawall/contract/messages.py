"""Workflow inputs and results: small, typeable in the Temporal UI's Start Workflow form.

Sandbox-safe (pydantic + stdlib only) like ``seawall.model``. They carry names and ids, never secrets,
manifests or block lists: payloads fail at 2 MB and histories at 50 MB.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.drills import ReportTargets
from seawall.contract.inputs import (
    CleanupRequest as CleanupRequest,
)
from seawall.contract.inputs import (
    HookRequest as HookRequest,
)
from seawall.contract.inputs import (
    PlanSpecRequest as PlanSpecRequest,
)
from seawall.contract.inputs import (
    SnapshotRelease as SnapshotRelease,
)
from seawall.contract.inputs import (
    SnapshotRequest as SnapshotRequest,
)
from seawall.contract.inputs import (
    VMPoint as VMPoint,
)
from seawall.contract.inputs import (
    VMRef as VMRef,
)
from seawall.contract.inputs import (
    VMsRef as VMsRef,
)
from seawall.contract.intents import SignedIntent
from seawall.contract.names import NAME_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSiteInput(_Message):
    """Start from the UI as ``{"site": "primary"}``."""

    site: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)


class SiteProbe(_Message):
    """What a site's worker could see of the site: reachable, what answered, and how long it took."""

    site: str
    kind: str
    reachable: bool
    detail: str
    elapsed_ms: int
    worker: str


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


class GcInput(_Message):
    """Start from the UI as ``{"store": "local", "site": "primary"}``: whose worker reaches the store."""

    store: str = Field(pattern=NAME_PATTERN)
    site: str = Field(pattern=NAME_PATTERN)


class GcOutcome(_Message):
    store: str
    packs_deleted: int
    tables_deleted: int
    condemned: int
    live_sessions: int
    locked: int = 0  # unreferenced objects an unexpired object lock kept


class GcScheduleRequest(_Message):
    store: str
    site: str
    interval_s: float


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


# --- recovery ---------------------------------------------------------------------------------------

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


class RecoverVMInput(_Message):
    plan: str
    run: str
    mode: str
    vm: str
    target_site: str
    point_time: str | None = None
    # Failback: write the point onto the original VM's disks and start it, instead of a new VM.
    in_place: bool = False
    # Points this run found corrupt: choose_point then takes the newest older one that verifies.
    refused: list[str] = []
    # The point chosen for the VM's whole consistency group (choose_point then takes exactly it).
    point_id: str | None = None
    drill_dns: bool = False
    # Read the point from the VM's store's mirror (plan or operator), even if the store answers.
    from_mirror: bool = False
    # The store the group's point was chosen from (the VM's store or its mirror): read it there.
    store: str | None = None


class ChosenPoint(_Message):
    point_id: str
    created_at: str
    disks: list[str]
    # The guest's addresses at the source when the point was taken (for subnet translation).
    source_ips: list[str] = []
    # Why this point, when it is not simply the newest verified one (a fallback: what was refused).
    note: str = ""
    # Taken with the guest quiesced; one member of a consistency group's point.
    app_consistent: bool = False
    consistency_group: str | None = None
    # The replica store that served the point: the VM's store, or its mirror when the store could
    # not be reached (None in runs recorded before mirrors: the VM's store).
    store: str | None = None


class Resource(_Message):
    """Something a run made at the target, recorded as soon as it exists so cleanup is exact."""

    kind: str  # vm | datastore-dir | ebs-snapshot | image | instance | dns | network
    id: str
    site: str
    detail: str = ""


class Materialized(_Message):
    point: ChosenPoint
    disks: list[str]
    resources: list[Resource]


class TargetVM(_Message):
    name: str
    ips: list[str]
    resources: list[Resource]
    notes: list[str] = []  # what was not as the source was (defaults, fallbacks), for the report


class DnsChange(_Message):
    """One DNS record a run changed (``outcome`` "set": ``previous`` is the value before, None when the
    record did not exist) or put back ("restored": ``value`` is what it holds again, "" when it was
    removed; ``previous`` what Seawall had set), or could not put back ("conflict": someone changed
    it since; left alone) or found nothing to put back ("unchanged")."""

    name: str
    type: str
    value: str
    previous: str | None
    zone: str
    outcome: str = "set"
    detail: str = ""


class HealthOutcome(_Message):
    ok: bool
    checks: list[str]
    elapsed_s: float


class StepTime(_Message):
    step: str
    started_at: str
    finished_at: str


class RecoverVMResult(_Message):
    vm: str
    target_name: str
    point_id: str
    point_created_at: str
    ips: list[str]
    dns: list[DnsChange]
    health: HealthOutcome
    resources: list[Resource]
    steps: list[StepTime]
    started_at: str
    healthy_at: str
    # Achieved RPO: how much older than this VM's recovery the recovered point is (seconds).
    achieved_rpo_s: float | None = None
    point_note: str = ""  # why this point (a corrupt newer point refused), else empty
    notes: list[str] = []
    app_consistent: bool = False
    consistency_group: str | None = None
    replica_store: str | None = None  # the store the point was read from (the VM's or its mirror)


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


# --- activity inputs: one model per call, so every call is typed end to end -------------------------
# A workflow passes exactly one of these (or one of the requests above) to each activity; the activity
# unpacks it on its first line. Those carrying only names are in contract/inputs.py (re-exported here).


class PointRestore(_Message):
    """materialize_disks and restore_in_place: which VM of which run, from which point."""

    target: RecoverVMInput
    point: ChosenPoint
    # A fallback after a corrupt point: what the refused point half-wrote may be overwritten.
    replaces: bool = False


class CreateTargetRequest(_Message):
    target: RecoverVMInput
    disks: Materialized


class RecoveredVM(_Message):
    """check_health and update_dns: a recovered VM as its creation reported it."""

    target: RecoverVMInput
    vm: TargetVM


# ---- consistency groups ---------------------------------------------------------------------------


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
