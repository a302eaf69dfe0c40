"""VerifyReplica: read every chunk a VM's points need (a scrub), at the source site's worker.

Started by ``seawall verify VM`` (id ``verify/<vm>``); the replication cycles also scrub each VM on
their own once per ``scrub_interval_s`` (see ``activities.replication.verify_point``). Damaged points
come out unverified and their chunks recorded; the next cycle of the VM repairs them from the source.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows.policies import HEARTBEAT_TIMEOUT, persistent, quick
from workflows.replication import FATAL

with workflow.unsafe.imports_passed_through():
    from activities.protection import InventoryActivities
    from activities.verify import VerifyActivities
    from seawall.contract.messages import ProtectInput
    from seawall.contract.names import Workflow
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_SITE, SA_VM
    from seawall.contract.verify import VerifyInput, VerifyReport
    from workflows.inputs import decode_input

FATAL_SCRUB = [*FATAL, "PointNotFound"]


@workflow.defn(name=Workflow.VERIFY_REPLICA)
class VerifyReplicaWorkflow:
    @workflow.run
    async def run(self, raw: Any = None) -> VerifyReport:
        inp = decode_input(VerifyInput, raw)
        workflow.upsert_search_attributes([SA_VM.value_set(inp.vm)])
        workflow.set_current_details(f"{inp.vm}: finding its replica")
        prot = await workflow.execute_activity_method(
            InventoryActivities.resolve_protection,
            ProtectInput(vm=inp.vm),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=quick(FATAL),
        )
        workflow.upsert_search_attributes([SA_SITE.value_set(prot.source_site)])
        which = ", ".join(inp.points) if inp.points else "every point"
        workflow.set_current_details(f"{inp.vm}: reading every chunk of {which}")
        report = await workflow.execute_activity_method(
            VerifyActivities.scrub_replica,
            inp,
            task_queue=site_queue(prot.source_site),
            start_to_close_timeout=timedelta(hours=24),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=persistent(FATAL_SCRUB),
        )
        bad = report.corrupt_points
        workflow.set_current_details(
            f"{inp.vm}: {len(report.points)} point(s) verified in full"
            + (f"; corrupt: {', '.join(bad)}" if bad else ", all clean")
        )
        return report
