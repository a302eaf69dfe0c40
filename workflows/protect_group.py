"""``ProtectGroup``: enable CBT on every member, seed the first group point (a child
``GroupReplicationCycle``), then hand the group to its schedule."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

from workflows.groups import GroupReplicationCycleWorkflow
from workflows.replication import QUICK

with workflow.unsafe.imports_passed_through():
    from activities.protection import InventoryActivities
    from activities.replication import ReplicationActivities
    from activities.schedules import delete_schedule, ensure_gc_schedule, ensure_group_schedule
    from seawall.contract.messages import (
        GcScheduleRequest,
        GroupCycleInput,
        GroupProtection,
        GroupScheduleRequest,
        ProtectGroupResult,
        VMRef,
    )
    from seawall.contract.names import Workflow, seed_group_cycle_id
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_SITE


@workflow.defn(name=Workflow.PROTECT_GROUP)
class ProtectGroupWorkflow:
    """Enable CBT on every member, seed the first group point, then hand the group to its schedule."""

    @workflow.run
    async def run(self, inp: GroupCycleInput) -> ProtectGroupResult:
        g: GroupProtection = await workflow.execute_activity_method(
            InventoryActivities.resolve_group,
            inp,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        workflow.upsert_search_attributes([SA_SITE.value_set(g.source_site)])
        # Members snapshot only behind the group's barrier: a schedule of their own would not.
        for vm in g.vms:
            await workflow.execute_activity(
                delete_schedule,
                VMRef(vm=vm),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        if g.source_kind == "vsphere":
            workflow.set_current_details(f"group {g.group}: enabling changed block tracking")
            await asyncio.gather(
                *(
                    workflow.execute_activity_method(
                        ReplicationActivities.enable_cbt,
                        VMRef(vm=vm),
                        task_queue=site_queue(g.source_site),
                        start_to_close_timeout=timedelta(minutes=5),
                        retry_policy=QUICK,
                    )
                    for vm in g.vms
                )
            )
        workflow.set_current_details(f"group {g.group}: seeding the first group point")
        seed = await workflow.execute_child_workflow(
            GroupReplicationCycleWorkflow.run,
            GroupCycleInput(group=g.group),
            id=seed_group_cycle_id(g.group, workflow.info().run_id),
            task_queue=site_queue(g.source_site),
        )
        sid = await workflow.execute_activity(
            ensure_group_schedule,
            GroupScheduleRequest(group=g.group, source_site=g.source_site, interval_s=g.interval_s),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        await workflow.execute_activity(
            ensure_gc_schedule,
            GcScheduleRequest(store=g.store, site=g.source_site, interval_s=g.gc_interval_s),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        workflow.set_current_details(f"group {g.group}: protected, first point {seed.point_id}")
        return ProtectGroupResult(
            group=g.group, schedule_id=sid, interval_s=g.interval_s, first_point=seed.point_id, vms=g.vms
        )
