"""ScheduledDrill: a drill nobody has to remember. Started by the plan's Temporal Schedule (or by hand):
a test failover of the plan as a child ``RecoveryPlan`` (the same id, so it never runs beside another
run of the plan), driven to healthy and cleaned up by ``drive_drill``, its result told to the people
the inventory names. The run's own report (written by ``RecoveryPlan``) records it like any drill.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

from workflows.notify import AT_THE_END, event_key, notify
from workflows.recovery import RecoveryPlanWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.drills import DrillActivities
    from seawall.contract.drills import (
        MEMO_STARTED_BY,
        SCHEDULE_PRINCIPAL,
        DrillInput,
        DrillResult,
        DriveDrillInput,
        DriveOutcome,
        NotifyRequest,
    )
    from seawall.contract.messages import FailoverInput
    from seawall.contract.names import Workflow, recover_id
    from seawall.contract.search import SA_MODE, SA_PLAN
    from seawall.model.notify import Event

# A drill's own time to live past the health timeout: if this workflow were lost, the drill still ends.
TTL_MARGIN_S = 3600


@workflow.defn(name=Workflow.SCHEDULED_DRILL)
class ScheduledDrillWorkflow:
    @workflow.run
    async def run(self, inp: DrillInput) -> DrillResult:
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan), SA_MODE.value_set("test")])
        try:
            child = await workflow.start_child_workflow(
                RecoveryPlanWorkflow.run,
                FailoverInput(plan=inp.plan, mode="test", ttl_s=inp.health_timeout_s + TTL_MARGIN_S),
                id=recover_id(inp.plan),
                memo={MEMO_STARTED_BY: SCHEDULE_PRINCIPAL},
                # The drill cleans itself up (its time to live) even if this workflow is terminated.
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"scheduled drill of {inp.plan}",
            )
        except WorkflowAlreadyStartedError:
            return await self._finish(
                inp, None, "skipped", "another run of the plan is going; no drill started"
            )
        drive = await self._drive(inp, child.first_execution_run_id or "")
        try:
            report = await child
        except ChildWorkflowError as exc:
            cause = exc.cause
            run = _run_of(cause.details if isinstance(cause, ApplicationError) else ())
            return await self._finish(inp, run, "failed", f"{drive.detail}; the run failed: {cause or exc}")
        passed = drive.healthy and report.status == "completed" and not report.failed_vms
        detail = drive.detail if passed else f"{drive.detail}; run {report.status}"
        return await self._finish(inp, report.run, "passed" if passed else "failed", detail)

    async def _drive(self, inp: DrillInput, run_id: str) -> DriveOutcome:
        try:
            return await workflow.execute_activity_method(
                DrillActivities.drive_drill,
                DriveDrillInput(
                    plan=inp.plan,
                    run_id=run_id,
                    approve_gates=inp.approve_gates,
                    health_timeout_s=inp.health_timeout_s,
                    by=SCHEDULE_PRINCIPAL,
                ),
                start_to_close_timeout=timedelta(seconds=inp.health_timeout_s + 600),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
                summary=f"drive the drill of {inp.plan} to healthy, then clean up",
            )
        except ActivityError as exc:
            return DriveOutcome(healthy=False, detail=f"the drill could not be driven: {exc.cause or exc}")

    async def _finish(self, inp: DrillInput, run: str | None, status: str, detail: str) -> DrillResult:
        event = Event.DRILL_PASSED if status == "passed" else Event.DRILL_FAILED
        await notify(
            NotifyRequest(
                event=event.value,
                key=event_key(event.value),
                plan=inp.plan,
                run=run,
                summary=f"scheduled drill of {inp.plan} {status}",
                facts={"detail": detail[:1000], "run": run or "-"},
            ),
            AT_THE_END,
        )
        return DrillResult(plan=inp.plan, run=run, status=status, detail=detail[:2000])


def _run_of(details: object) -> str | None:
    """The run name from a failed ``RecoveryPlan``'s details (its report)."""
    if isinstance(details, (list, tuple)) and details and isinstance(details[0], dict):
        run = details[0].get("run")
        return run if isinstance(run, str) else None
    return None
