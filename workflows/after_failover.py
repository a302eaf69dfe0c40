"""After a run: CleanupTest (a drill whose own workflow is gone), CommitFailover and Reprotect."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows import authority
from workflows.plan import PERSISTENT, QUICK, load_spec
from workflows.policies import HEARTBEAT_TIMEOUT
from workflows.replication import ReplicationCycleWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import CleanupActivities
    from activities.protection import InventoryActivities
    from activities.replica import RetentionActivities
    from activities.schedules import delete_schedule, ensure_schedule
    from seawall.contract.messages import (
        CleanupOutcome,
        CleanupRequest,
        CommitOutcome,
        CycleInput,
        CycleResult,
        PlanInput,
        PlanRunInput,
        ProtectInput,
        ReprotectOutcome,
        ScheduleRequest,
        VMRef,
    )
    from seawall.contract.names import Workflow, reprotect_cycle_id
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_PLAN, SA_RUN
    from workflows.inputs import decode_input


@workflow.defn(name=Workflow.CLEANUP_TEST)
class CleanupTestWorkflow:
    """Remove what a drill made, by its run id: for a drill whose own workflow is gone (terminated,
    lost with an old server) — a running drill is ended with its ``cleanup`` update instead."""

    @workflow.run
    async def run(self, raw: Any = None) -> CleanupOutcome:
        inp = decode_input(PlanRunInput, raw)
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan), SA_RUN.value_set(inp.run)])
        spec = await load_spec(inp.plan)
        return await workflow.execute_activity_method(
            CleanupActivities.cleanup_run,
            CleanupRequest(plan=spec.plan, run=inp.run, mode="test"),
            task_queue=site_queue(spec.target_site),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PERSISTENT,
        )


@workflow.defn(name=Workflow.COMMIT_FAILOVER)
class CommitFailoverWorkflow:
    """Make a real failover final: the old direction's schedules go, and points older than the one
    recovered (the base of reverse replication) are pruned."""

    @workflow.run
    async def run(self, raw: Any = None) -> CommitOutcome:
        inp = decode_input(PlanRunInput, raw)
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan), SA_RUN.value_set(inp.run)])
        if workflow.patched(authority.PATCH):
            # Commit deletes the old direction's schedules and prunes points: an admin's signed intent.
            auth = await authority.check(inp.intent, "commit", inp.plan, needs="admin", run=inp.run)
            authority.require_verified(auth, "commit", inp.plan)
        spec = await load_spec(inp.plan)
        deleted: list[str] = []
        pruned: dict[str, list[str]] = {}
        for vm in [v.vm for g in spec.groups for v in g.vms]:
            if await workflow.execute_activity(
                delete_schedule,
                VMRef(vm=vm),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            ):
                deleted.append(vm)
            pruned[vm] = await workflow.execute_activity_method(
                RetentionActivities.prune_points,
                VMRef(vm=vm),
                task_queue=site_queue(spec.target_site),
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=QUICK,
            )
        return CommitOutcome(plan=spec.plan, run=inp.run, schedules_deleted=deleted, points_pruned=pruned)


@workflow.defn(name=Workflow.REPROTECT)
class ReprotectWorkflow:
    """Reverse replication after a failover: the copies now running at the plan's target site
    replicate into the same replica, each first cycle shipping only what changed there since the
    point it was recovered from (no re-seed), then on their own schedules."""

    @workflow.run
    async def run(self, raw: Any = None) -> ReprotectOutcome:
        inp = decode_input(PlanInput, raw)
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan)])
        if workflow.patched(authority.PATCH):
            auth = await authority.check(inp.intent, "reprotect", inp.plan, needs="admin")
            authority.require_verified(auth, "reprotect", inp.plan)
        spec = await load_spec(inp.plan)
        vms = [v.vm for g in spec.groups for v in g.vms]
        workflow.set_current_details(f"reverse replication of {len(vms)} VMs from {spec.target_site}")
        cycles: list[CycleResult] = list(
            await asyncio.gather(
                *(
                    workflow.execute_child_workflow(
                        ReplicationCycleWorkflow.run,
                        CycleInput(vm=vm, source_site=spec.target_site),
                        id=reprotect_cycle_id(vm, workflow.info().run_id),
                        task_queue=site_queue(spec.target_site),
                    )
                    for vm in vms
                )
            )
        )
        for vm in vms:
            prot = await workflow.execute_activity_method(
                InventoryActivities.resolve_protection,
                ProtectInput(vm=vm, source_site=spec.target_site),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
            await workflow.execute_activity(
                ensure_schedule,
                ScheduleRequest(
                    vm=vm, source_site=spec.target_site, interval_s=prot.interval_s, reverse=True
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        return ReprotectOutcome(plan=spec.plan, from_site=spec.target_site, cycles=cycles)
