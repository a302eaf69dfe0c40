"""Which activities (and workflows) a worker registers: per site it serves, and for orchestration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.checks import CheckActivities
from activities.cleanup import CleanupActivities
from activities.context import SiteContext
from activities.cycle_stop import CycleStopActivities
from activities.drills import DrillActivities
from activities.fence import FenceActivities
from activities.groups import GroupActivities
from activities.hooks import HookActivities
from activities.mirror import MirrorActivities
from activities.notify import NotifyActivities
from activities.probe import ProbeActivities
from activities.protection import InventoryActivities
from activities.recovery import OrchestrationActivities
from activities.replica import RetentionActivities
from activities.replication import ReplicationActivities
from activities.rpo import RpoActivities
from activities.schedules import (
    delete_schedule,
    ensure_gc_schedule,
    ensure_group_schedule,
    ensure_schedule,
)
from activities.target import RecoveryActivities
from activities.verify import VerifyActivities
from seawall.model import Inventory
from seawall.plans import load_inventory
from seawall.plans.cached import CachedInventory
from seawall.runtime.config import Settings


def _loader(settings: Settings) -> Callable[[], Inventory]:
    # Every cycle resolves its VM's protection from the inventory: parsed again only when the file
    # changed (a parse costs ~0.25 s of GIL at 500 VMs; once per cycle it starved the workflow tasks).
    return CachedInventory(settings.inventory)


def activities_for_site(site: str, settings: Settings) -> list[Callable[..., Any]]:
    ctx = SiteContext(load_inventory(settings.inventory), site)
    probe = ProbeActivities(ctx)
    repl = ReplicationActivities(ctx, settings.checkpoint_mib, settings.scrub_interval_s)
    retention = RetentionActivities(ctx, settings.checkpoint_mib)
    mirror = MirrorActivities(ctx, settings.checkpoint_mib)
    inventory = InventoryActivities(_loader(settings), settings.heartbeat_timeout_s, settings.gc_interval_s)
    recovery = RecoveryActivities(ctx, settings)
    checks = CheckActivities(ctx, settings)
    cleanup = CleanupActivities(ctx, settings)
    hooks = HookActivities(ctx, settings)
    fence = FenceActivities(ctx)
    verify = VerifyActivities(ctx, settings.checkpoint_mib)
    groups = GroupActivities(ctx, settings.checkpoint_mib)
    return [
        recovery.choose_group_points,
        groups.run_snapshot_hook,
        groups.commit_group_point,
        inventory.resolve_group,
        probe.probe_site,
        recovery.choose_point,
        recovery.materialize_disks,
        recovery.create_target_vm,
        recovery.restore_in_place,
        checks.check_health,
        checks.update_dns,
        cleanup.cleanup_run,
        hooks.run_hook,
        fence.fence_vm,
        fence.start_source,
        inventory.resolve_protection,
        repl.start_cycle,
        repl.enable_cbt,
        repl.create_snapshot,
        repl.ship_disks,
        repl.commit_point,
        repl.verify_point,
        mirror.mirror_points,
        repl.release_snapshot,
        repl.release_orphan_snapshots,
        retention.apply_retention,
        retention.collect_garbage,
        retention.delete_replica,
        retention.prune_points,
        verify.scrub_replica,
    ]


def orchestration_activities(settings: Settings) -> list[Callable[..., Any]]:
    inventory = InventoryActivities(_loader(settings), settings.heartbeat_timeout_s, settings.gc_interval_s)
    orchestration = OrchestrationActivities(settings)
    stop = CycleStopActivities(_loader(settings))
    return [
        inventory.resolve_protection,
        inventory.resolve_group,
        ensure_schedule,
        ensure_group_schedule,
        ensure_gc_schedule,
        delete_schedule,
        stop.cancel_cycles,
        stop.cancel_failover_cycles,
        orchestration.load_plan_spec,
        orchestration.write_report,
        orchestration.pause_schedules,
        orchestration.resume_schedules,
        orchestration.check_intent,
        NotifyActivities(settings).notify,
        DrillActivities().drive_drill,
        RpoActivities(settings).check_rpo,
    ]
