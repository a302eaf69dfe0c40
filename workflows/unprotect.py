"""Ending a VM's protection: its schedule goes, its running cycles are cancelled and waited out, what
Seawall snapshot its source still holds is released, and its recovery points go when asked to."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows import authority
from workflows.replication import FATAL, PERSISTENT, QUICK

with workflow.unsafe.imports_passed_through():
    from activities.cycle_stop import CycleStopActivities
    from activities.protection import InventoryActivities
    from activities.replica import RetentionActivities
    from activities.replication import ReplicationActivities
    from activities.schedules import delete_schedule
    from seawall.contract.messages import ProtectInput, Protection, UnprotectInput, VMRef
    from seawall.contract.names import PATCH_UNPROTECT_SWEEP, Workflow
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_VM
    from workflows.inputs import decode_input

UNPROTECT_SIGNED = "unprotect-signed"


@workflow.defn(name=Workflow.UNPROTECT_VM)
class UnprotectVMWorkflow:
    """Stop replicating a VM: delete its schedule, and its recovery points when asked to."""

    @workflow.run
    async def run(self, raw: Any = None) -> int:
        inp = decode_input(UnprotectInput, raw)
        workflow.upsert_search_attributes([SA_VM.value_set(inp.vm)])
        if workflow.patched(UNPROTECT_SIGNED):
            # Ending protection leaves a VM without recovery points to come; deleting its replica
            # destroys those it has: a door's signed intent (an admin's, to delete), as for a failover,
            # so the Temporal UI cannot do either on its own.
            needs = "admin" if inp.delete_replica else "operator"
            auth = await authority.check(inp.intent, "unprotect", inp.vm, needs=needs)
            authority.require_verified(auth, "unprotect", inp.vm)
        await workflow.execute_activity(
            delete_schedule,
            VMRef(vm=inp.vm),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK,
        )
        if workflow.patched("unprotect-cancels-cycles"):
            # A cycle the schedule started just before it went would otherwise still write a point.
            await workflow.execute_activity_method(
                CycleStopActivities.cancel_cycles,
                VMRef(vm=inp.vm),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        prot: Protection | None = None
        if workflow.patched(PATCH_UNPROTECT_SWEEP):
            prot = await self._sweep(inp.vm)
        if not inp.delete_replica:
            return 0
        if prot is None:
            prot = await workflow.execute_activity_method(
                InventoryActivities.resolve_protection,
                ProtectInput(vm=inp.vm),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        deleted = await workflow.execute_activity_method(
            RetentionActivities.delete_replica,
            VMRef(vm=inp.vm),
            task_queue=site_queue(prot.source_site),
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=PERSISTENT,
        )
        return deleted

    async def _sweep(self, vm: str) -> Protection | None:
        """No cycle of the VM runs any more: release whatever Seawall snapshot it still holds at its
        source (a cycle that was terminated, not cancelled, never released its own). Best effort: a
        source site that is gone (the disaster) or a VM no longer in the inventory does not hold up
        the end of its protection."""
        try:
            prot: Protection = await workflow.execute_activity_method(
                InventoryActivities.resolve_protection,
                ProtectInput(vm=vm),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        except ActivityError as exc:
            workflow.logger.warning("%s: not in the inventory, its source is not swept: %s", vm, exc.cause)
            return None
        try:
            await workflow.execute_activity_method(
                ReplicationActivities.release_orphan_snapshots,
                VMRef(vm=vm),
                task_queue=site_queue(prot.source_site),
                # A lost site polls nothing: its queue is given two minutes, not forever.
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=15), non_retryable_error_types=FATAL
                ),
            )
        except ActivityError as exc:
            workflow.logger.warning(
                "%s: orphaned snapshots not swept at %s: %s", vm, prot.source_site, exc.cause
            )
        return prot
