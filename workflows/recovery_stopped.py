"""A ``RecoveryPlan`` run that cannot go on: it stops where it is and waits for the operator (retry,
an approved rollback, or an end as it is); a drill ends instead. ``workflows.recovery`` calls
``_decide`` whenever a stage does not complete."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.plan import FATAL, QUICK
from workflows.recovery_legacy import LegacyPlanRun
from workflows.recovery_state import Evidence

with workflow.unsafe.imports_passed_through():
    from activities.fence import FenceActivities
    from activities.recovery import OrchestrationActivities
    from seawall.contract.messages import (
        Approval,
        FailoverInput,
        GroupStep,
        PlanSpec,
        RollbackInput,
        RollbackOutcome,
        VMRef,
        VMsRef,
    )
    from seawall.contract.names import ROLLBACK_GATE
    from seawall.contract.queues import site_queue


class StoppedRun(LegacyPlanRun):
    async def _decide(self, spec: PlanSpec, inp: FailoverInput, run: str, ev: Evidence) -> bool:
        """The run cannot go on: True to retry the stage, False to end the run.

        A drill halted (cleanup, abort, time to live) or failed under rollback-test ends (and is
        cleaned up). Otherwise the run stops where it is and waits: retry, end (abort), or — a real
        failover — an approved rollback. A real failover is never torn down without that approval.
        """
        aborted = self._halted() or self._aborted is not None
        ev.status = "aborted" if aborted and not (ev.problem or self._failed_vms(spec, ev)) else "failed"
        drill = inp.mode == "test"
        if drill and (self._halted() or self._aborted is not None or spec.failure_policy == "rollback-test"):
            return False
        why = self._why(spec, ev)
        self._stopped = why
        choices = (
            "retry, cleanup or abort"
            if drill
            else "retry, rollback (needs an approval) or abort to end it as it is"
        )
        while True:
            self._set_phase(f"stopped: {why}; waiting for the operator: {choices}")
            await self._until(lambda: self._retry is not None or self._rollback_req is not None)
            now = workflow.now().isoformat()
            if self._halted():
                end = self._end_requested
                ended = f"ended as it is by {end.by} at {now}: {end.reason}" if end else "drill ended"
                ev.decisions.append(ended)
                return False
            if self._retry is not None:
                ev.decisions.append(
                    f"retry by {self._retry.by} at {now}"
                    + (f": {self._retry.comment}" if self._retry.comment else "")
                )
                self._retry = None
                self._aborted = None
                self._stopped = None
                ev.problem = None
                ev.status = "completed"
                return True
            req = self._rollback_req
            assert req is not None
            ev.decisions.append(f"rollback requested by {req.by} at {now}: {req.reason}")
            approval = await self._gate(self._rollback_gate(spec, run, ev, req))
            if approval.approved:
                ev.rollback = await self._rollback(spec, inp, run, req, approval)
                ev.status = "rolled-back"
                return False
            self._rollback_req = None

    def _failed_vms(self, spec: PlanSpec, ev: Evidence) -> list[str]:
        return [
            v.vm for g in spec.groups for v in g.vms if v.vm in ev.failed and ev.failed[v.vm] != "Cancelled"
        ]

    def _why(self, spec: PlanSpec, ev: Evidence) -> str:
        if ev.problem:
            return ev.problem
        failed = self._failed_vms(spec, ev)
        if failed:
            return "failed: " + ", ".join(failed)
        if self._aborted is not None:
            return f"aborted by {self._aborted.by} ({self._aborted.reason})"
        return "stopped"

    def _rollback_text(self, spec: PlanSpec, run: str, ev: Evidence, req: RollbackInput) -> str:
        """What a rollback does, for its approval: exactly what it destroys, and that the sources start."""
        vms = [v.vm for g in spec.groups for v in g.vms]
        up = [f"{r.target_name} (recovered {r.vm})" for v in vms if (r := ev.results.get(v))]
        partial = [v for v in vms if v in ev.failed]
        return (
            f"Roll back run {run} of plan {spec.plan} (requested by {req.by}: {req.reason}). "
            f"This DESTROYS at site {spec.target_site} the recovered VMs: {', '.join(up) or 'none'}"
            + (f", and whatever the failed attempts of {', '.join(partial)} left there" if partial else "")
            + f" (everything tagged with run {run}); then STARTS the source VMs {', '.join(vms)} "
            f"at site {spec.source_site} again and resumes their replication."
        )

    def _rollback_gate(self, spec: PlanSpec, run: str, ev: Evidence, req: RollbackInput) -> GroupStep:
        """The approval a rollback waits for, with ``_rollback_text`` as its message."""
        return GroupStep(
            name="rollback",
            boot_delay_s=0,
            vms=[],
            pre_hooks=[],
            post_hooks=[],
            gate=ROLLBACK_GATE,
            gate_message=self._rollback_text(spec, run, ev, req),
            gate_timeout_s=None,
            gate_on_timeout="abort",
        )

    async def _rollback(
        self, spec: PlanSpec, inp: FailoverInput, run: str, req: RollbackInput, approval: Approval
    ) -> RollbackOutcome:
        """Approved: remove what the run made at the target, then start the sources and their schedules.
        In that order: the replicas are gone before the originals run again."""
        self._rolling_back = True
        destroyed = await self._cleanup(spec, run, inp.mode)
        self._set_phase("rolling back: starting the source VMs again")
        vms = [v.vm for g in spec.groups for v in g.vms]
        started: list[str] = []
        for vm in vms:
            try:
                started.append(
                    await workflow.execute_activity_method(
                        FenceActivities.start_source,
                        VMRef(vm=vm),
                        task_queue=site_queue(spec.source_site),
                        schedule_to_close_timeout=timedelta(minutes=5),
                        retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=FATAL),
                    )
                )
            except ActivityError as exc:
                started.append(f"{vm}: could not be started ({exc.cause or exc}); start it by hand")
        resumed = await workflow.execute_activity_method(
            OrchestrationActivities.resume_schedules,
            VMsRef(vms=vms),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=QUICK,
        )
        return RollbackOutcome(
            requested_by=req.by,
            approved_by=approval.by,
            destroyed=destroyed,
            sources_started=started,
            schedules_resumed=resumed,
        )
