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


class Update:
    """Updates of ``RecoveryPlan``."""

    APPROVE: Final = "approve"
    ABORT: Final = "abort"
    CLEANUP: Final = "cleanup"
    EXTEND_TTL: Final = "extend_ttl"


class Query:
    """Queries: ``progress`` of ``RecoveryPlan``, ``step`` of ``RecoverVM``, ``phase`` of
    ``ReplicationCycle``."""

    PROGRESS: Final = "progress"
    STEP: Final = "step"
    PHASE: Final = "phase"


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
    APPLY_RETENTION: Final = "apply_retention"
    COLLECT_GARBAGE: Final = "collect_garbage"
    PRUNE_POINTS: Final = "prune_points"
    DELETE_REPLICA: Final = "delete_replica"
    ENSURE_SCHEDULE: Final = "ensure_schedule"
    ENSURE_GC_SCHEDULE: Final = "ensure_gc_schedule"
    DELETE_SCHEDULE: Final = "delete_schedule"
    CANCEL_CYCLES: Final = "cancel_cycles"
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


# ---- schedule ids ----------------------------------------------------------------------------------


def schedule_id(vm: str) -> str:
    """A protected VM's replication schedule; its actions are ``ReplicationCycle`` runs."""
    return f"replicate/{vm}"


def gc_schedule_id(store: str) -> str:
    """A replica store's garbage-collection schedule."""
    return f"gc/{store}"


# ---- the names inside them ---------------------------------------------------------------------------

NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""Sites, VMs, plans, stores, policies, groups, gates, hooks: a DNS label (1-63 lowercase letters,
digits and '-', starting and ending with a letter or digit). Spelled here because these names go
into the workflow, schedule and task-queue ids above and into URLs; the inventory (``seawall.model``),
the workflow inputs and the API all check names against this one pattern."""
