"""Every Temporal name Seawall uses, spelled once: workflow and activity types, workflow and schedule
ids, updates and queries.

The CLI, the API, the console, the demo, the benchmarks, the workflows and the activities all import
these; a renamed string here is a renamed string everywhere (and a recorded history that no longer
replays, so names are never changed lightly). Sandbox-safe: standard library only.
"""

from __future__ import annotations

from typing import Final


class Workflow:
    """Registered workflow type names (``@workflow.defn(name=...)``)."""

    PROBE_SITE: Final = "ProbeSite"
    PROTECT_VM: Final = "ProtectVM"
    REPLICATION_CYCLE: Final = "ReplicationCycle"
    UNPROTECT_VM: Final = "UnprotectVM"
    COLLECT_GARBAGE: Final = "CollectGarbage"
    RECOVERY_PLAN: Final = "RecoveryPlan"
    RECOVER_VM: Final = "RecoverVM"
    CLEANUP_TEST: Final = "CleanupTest"
    COMMIT_FAILOVER: Final = "CommitFailover"
    REPROTECT: Final = "Reprotect"
    VERIFY_REPLICA: Final = "VerifyReplica"
    PROTECT_GROUP: Final = "ProtectGroup"
    GROUP_REPLICATION_CYCLE: Final = "GroupReplicationCycle"
    SCHEDULED_DRILL: Final = "ScheduledDrill"
    WATCH_RPO: Final = "WatchRpo"
    BANDWIDTH_COORDINATOR: Final = "BandwidthCoordinator"


class Update:
    """Updates of ``RecoveryPlan`` (and ``claim_bandwidth`` of ``BandwidthCoordinator``)."""

    APPROVE: Final = "approve"
    ABORT: Final = "abort"
    CLEANUP: Final = "cleanup"
    EXTEND_TTL: Final = "extend_ttl"
    # A real failover stopped by a failure or an abort: try its failed steps again, or ask for the
    # (approval-gated) rollback that destroys what it recovered and starts the sources again.
    RETRY: Final = "retry"
    ROLLBACK: Final = "rollback"
    # ``BandwidthCoordinator``: a worker process that ships renews its claim and gets its share back.
    CLAIM_BANDWIDTH: Final = "claim_bandwidth"


class Query:
    """Queries: ``progress`` of ``RecoveryPlan``, ``step`` of ``RecoverVM``, ``phase`` of
    ``ReplicationCycle``."""

    PROGRESS: Final = "progress"
    STEP: Final = "step"
    PHASE: Final = "phase"


# The memo key under which a ReplicationCycle records its result as it completes (patch
# ``cycle-result-memo``): a visibility listing of the cycles then carries every result, so the fleet's
# status needs no history fetch per VM.
MEMO_RESULT: Final = "seawall.result"
PATCH_CYCLE_RESULT_MEMO: Final = "cycle-result-memo"
# A cycle takes its snapshot inside the try whose finally releases it (by name): a cancel that lands
# while the snapshot is being taken no longer leaves it behind.
PATCH_CYCLE_SNAPSHOT_GUARD: Final = "cycle-snapshot-guard"
# A group cycle releases every member's snapshot by name, as a VM's cycle does, not only those this
# attempt saw taken: a snapshot whose completion was lost with a timed-out workflow task is released too
# (a group member's snapshots are never swept by Unprotect, which leaves them to the group's cycles).
PATCH_GROUP_RELEASE_BY_NAME: Final = "group-cycle-releases-by-name"
# A seed's ship and verify run on the site's seed queue (seawall.contract.queues.seed_queue), in slots
# of their own, instead of the site's queue where the protected VMs' cycles run.
PATCH_SEEDS_OWN_QUEUE: Final = "seeds-on-their-own-queue"
# Unprotect, once the VM's cycles have closed, releases every Seawall snapshot the VM still holds (a
# cycle terminated instead of cancelled, or lost with a crashed Temporal, never released its own).
PATCH_UNPROTECT_SWEEP: Final = "unprotect-sweeps-snapshots"
# A planned failover cancels the running cycles of its VMs and of their consistency groups (and waits
# until they have closed) before it fences the sources: the final cycle's snapshot is then the only one.
PATCH_FINAL_CYCLE_ALONE: Final = "planned-final-cycle-alone"
# Every snapshot (vSphere, directory) or backup job (KVM) Seawall takes is named with this prefix.
SNAPSHOT_PREFIX: Final = "seawall-"


class Activity:
    """Registered activity type names (``@activity.defn(name=...)``): recorded in every history, so
    they stay as they are even where a method is renamed."""

    PROBE_SITE: Final = "probe_site"
    RESOLVE_PROTECTION: Final = "resolve_protection"
    ENABLE_CBT: Final = "enable_cbt"
    START_CYCLE: Final = "start_cycle"
    CREATE_SNAPSHOT: Final = "create_snapshot"
    SHIP_DISKS: Final = "ship_disks"
    COMMIT_POINT: Final = "commit_point"
    VERIFY_POINT: Final = "verify_point"
    MIRROR_POINTS: Final = "mirror_points"
    RELEASE_SNAPSHOT: Final = "release_snapshot"
    RELEASE_ORPHAN_SNAPSHOTS: Final = "release_orphan_snapshots"
    APPLY_RETENTION: Final = "apply_retention"
    COLLECT_GARBAGE: Final = "collect_garbage"
    PRUNE_POINTS: Final = "prune_points"
    DELETE_REPLICA: Final = "delete_replica"
    ENSURE_SCHEDULE: Final = "ensure_schedule"
    ENSURE_GC_SCHEDULE: Final = "ensure_gc_schedule"
    DELETE_SCHEDULE: Final = "delete_schedule"
    CANCEL_CYCLES: Final = "cancel_cycles"
    CANCEL_FAILOVER_CYCLES: Final = "cancel_failover_cycles"
    LOAD_PLAN_SPEC: Final = "load_plan_spec"
    WRITE_REPORT: Final = "write_report"
    PAUSE_SCHEDULES: Final = "pause_schedules"
    FENCE_VM: Final = "fence_vm"
    CHOOSE_POINT: Final = "choose_point"
    MATERIALIZE_DISKS: Final = "materialize_disks"
    RESTORE_IN_PLACE: Final = "restore_in_place"
    CREATE_TARGET_VM: Final = "create_target_vm"
    CHECK_HEALTH: Final = "check_health"
    UPDATE_DNS: Final = "update_dns"
    CLEANUP_RUN: Final = "cleanup_run"
    RUN_HOOK: Final = "run_hook"
    START_SOURCE: Final = "start_source"
    RESUME_SCHEDULES: Final = "resume_schedules"
    SCRUB_REPLICA: Final = "scrub_replica"
    CHECK_INTENT: Final = "check_intent"
    RESOLVE_GROUP: Final = "resolve_group"
    RUN_SNAPSHOT_HOOK: Final = "run_snapshot_hook"
    COMMIT_GROUP_POINT: Final = "commit_group_point"
    ENSURE_GROUP_SCHEDULE: Final = "ensure_group_schedule"
    CHOOSE_GROUP_POINTS: Final = "choose_group_points"
    NOTIFY: Final = "notify"
    DRIVE_DRILL: Final = "drive_drill"
    CHECK_RPO: Final = "check_rpo"


FENCING_GATE: Final = "source-fenced"
"""The gate an unplanned failover adds when a source site does not answer: someone confirms the
sources are down before their replicas boot (an admin, in the API and in the workflow)."""
ROLLBACK_GATE: Final = "rollback"
"""The gate a rollback of a stopped real failover waits at: its approval destroys what the run
recovered and starts the sources again (an admin)."""


def _short_run(run_id: str) -> str:
    """The tail of a Temporal run id: enough to be unique per parent, short enough to read."""
    return run_id.replace("-", "")[-12:]


# ---- workflow ids ----------------------------------------------------------------------------------


def recover_id(plan: str) -> str:
    """``RecoveryPlan``: one run per plan at a time (id conflict policy FAIL)."""
    return f"recover/{plan}"


def recover_vm_id(plan: str, run: str, vm: str) -> str:
    """A ``RecoverVM`` child of one plan run."""
    return f"recover/{plan}/{run}/{vm}"


def verify_id(vm: str) -> str:
    """``VerifyReplica``: one full verify of a VM's points at a time."""
    return f"verify/{vm}"


def protect_id(vm: str) -> str:
    return f"protect/{vm}"


def unprotect_id(vm: str) -> str:
    return f"unprotect/{vm}"


def commit_id(plan: str) -> str:
    return f"commit/{plan}"


def reprotect_id(plan: str) -> str:
    return f"reprotect/{plan}"


def cleanup_test_id(plan: str) -> str:
    """``CleanupTest``: removing a lost drill of the plan by its run name."""
    return f"cleanup/{plan}"


def drill_id(plan: str) -> str:
    """``ScheduledDrill`` started by hand (``seawall plan schedule --trigger``); a Temporal Schedule
    appends its own timestamp to the schedule id instead."""
    return f"drill/{plan}"


RPO_WATCH_ID: Final = "watch/rpo"
"""``WatchRpo``: the one long-running watcher that tells people of RPO breaches and recoveries."""


def bandwidth_coordinator_id(scope: str) -> str:
    """The one ``BandwidthCoordinator`` of a limit's scope (``site:<name>``, ``store:<name>``): every
    worker process that ships under that limit claims its share from it."""
    kind, _, name = scope.partition(":")
    return f"bandwidth/{kind}/{name}"


def probe_id(site: str, stamp: str) -> str:
    """A ``ProbeSite`` run asked for by ``status --sites`` (``stamp``: when, to the second)."""
    return f"probe/{site}/{stamp}"


def seed_cycle_id(vm: str, parent_run_id: str) -> str:
    """The seeding ``ReplicationCycle`` a ``ProtectVM`` run starts as its child."""
    return f"replicate/{vm}/seed-{_short_run(parent_run_id)}"


def final_cycle_id(vm: str, run: str) -> str:
    """The last cycle of a stopped source VM in a planned failover (zero data loss)."""
    return f"replicate/{vm}/final-{run}"


def reprotect_cycle_id(vm: str, parent_run_id: str) -> str:
    """The first reverse cycle after a failover, started by ``Reprotect``."""
    return f"replicate/{vm}/reprotect-{_short_run(parent_run_id)}"


def hook_key(group: str | None, name: str) -> str:
    """How ``PlanSpec.hook_sites`` names a hook: a plan's by its name, a group's as ``group/name``."""
    return name if group is None else f"{group}/{name}"


def drill_network_name(run: str) -> str:
    """A drill's own isolated network at the target (a vSphere port group), made for the run and
    removed by its cleanup."""
    return f"seawall-drill-{run.lower()}"


# ---- schedule ids ----------------------------------------------------------------------------------


def schedule_id(vm: str) -> str:
    """A protected VM's replication schedule; its actions are ``ReplicationCycle`` runs."""
    return f"replicate/{vm}"


def group_schedule_id(group: str) -> str:
    """A consistency group's replication schedule; its actions are ``GroupReplicationCycle`` runs.
    (``replicate-group/``: a group may share a name with a VM.)"""
    return f"replicate-group/{group}"


def group_search_value(group: str) -> str:
    """The ``SeawallVM`` search attribute of a group's cycles: ``@<group>`` (no VM name starts with @)."""
    return f"@{group}"


def protect_group_id(group: str) -> str:
    return f"protect-group/{group}"


def seed_group_cycle_id(group: str, parent_run_id: str) -> str:
    """The seeding ``GroupReplicationCycle`` a ``ProtectGroup`` run starts as its child."""
    return f"replicate-group/{group}/seed-{_short_run(parent_run_id)}"


def is_group_cycle_id(workflow_id: str) -> bool:
    """Whether a workflow id is a ``GroupReplicationCycle``'s (its schedule's or a seed)."""
    return workflow_id.startswith("replicate-group/")


def is_seed_group_cycle_id(workflow_id: str) -> bool:
    """Whether a ``GroupReplicationCycle`` is a group's seed (its result names no parent point)."""
    return is_group_cycle_id(workflow_id) and "/seed-" in workflow_id


def drill_schedule_id(plan: str) -> str:
    """A plan's drill schedule; its actions are ``ScheduledDrill`` runs."""
    return f"drill/{plan}"


DRILL_SCHEDULE_PREFIX: Final = "drill/"


def gc_schedule_id(store: str) -> str:
    """A replica store's garbage-collection schedule."""
    return f"gc/{store}"


# ---- the names inside them ---------------------------------------------------------------------------

NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""Sites, VMs, plans, stores, policies, groups, gates, hooks: a DNS label (1-63 lowercase letters,
digits and '-', starting and ending with a letter or digit). Spelled here because these names go
into the workflow, schedule and task-queue ids above and into URLs; the inventory (``seawall.model``),
the workflow inputs and the API all check names against this one pattern."""
