"""The steps ``RecoveryPlan`` is made of: fencing, the groups' VMs as ``RecoverVM`` children, hooks,
cleanup and the report (the run's state, waiting and gates: ``workflows.recovery_state``).

``workflows.recovery`` sequences them; ``workflows.recovery_legacy`` keeps the sequence runs started
before the ``recovery-stops-safely`` patch replay with.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows.notify import AT_THE_END
from workflows.plan import FATAL, PERSISTENT, QUICK
from workflows.policies import HEARTBEAT_TIMEOUT
from workflows.recover_vm import RecoverVMWorkflow
from workflows.recovery_state import NOTIFY_PATCH, PlanRunState
from workflows.replication import ReplicationCycleWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import CleanupActivities
    from activities.cycle_stop import CycleStopActivities
    from activities.fence import FenceActivities
    from activities.hooks import HookActivities
    from activities.recovery import OrchestrationActivities
    from seawall.contract.failures import failure_reason
    from seawall.contract.messages import (
        CleanupOutcome,
        CleanupRequest,
        CycleInput,
        FailoverInput,
        GroupStep,
        HookRequest,
        PlanSpec,
        RecoverVMInput,
        RecoverVMResult,
        RunReport,
        VMRef,
        VMsRef,
        VMStep,
    )
    from seawall.contract.names import (
        FENCING_GATE,
        PATCH_FINAL_CYCLE_ALONE,
        final_cycle_id,
        hook_key,
        recover_vm_id,
    )
    from seawall.contract.queues import site_queue


class PlanRunSteps(PlanRunState):
    """State and steps of one ``RecoveryPlan`` run (the workflow class adds the messages and the order)."""

    # ---- fencing (a real failover) ---------------------------------------------------------------

    async def _stop_sources(self, spec: PlanSpec, vms: list[str], inp: FailoverInput, run: str) -> list[str]:
        """A real failover: pause the VMs' schedules, fence the sources and, planned, replicate them a
        last time. Two live copies of one server is the worst outcome: the sources stop first."""
        self._set_phase("fencing the source VMs")
        await workflow.execute_activity_method(
            OrchestrationActivities.pause_schedules,
            VMsRef(vms=vms),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=QUICK,
        )
        if inp.mode == "planned" and workflow.patched(PATCH_FINAL_CYCLE_ALONE):
            await self._stop_running_cycles(vms)
        fencing = await self._fence(spec, vms, inp.mode)
        if inp.mode == "planned":
            self._set_phase("final replication of the stopped source VMs")
            failback = inp.direction == "failback"
            await asyncio.gather(
                *(
                    workflow.execute_child_workflow(
                        ReplicationCycleWorkflow.run,
                        # Failing back, the copies at the plan's target are what runs: replicate those.
                        CycleInput(vm=vm, source_site=spec.source_site if failback else None),
                        id=final_cycle_id(vm, run),
                        task_queue=site_queue(spec.source_site),
                    )
                    for vm in vms
                )
            )
        return fencing

    async def _stop_running_cycles(self, vms: list[str]) -> None:
        """Cancel the cycles the paused schedules had started, while the sources still run, so the final
        cycle's snapshot is the only one (a second makes a vSphere disk a delta; a KVM domain holds one
        backup job). Bounded: a source site whose worker is gone must not hold the failover here (its
        fencing reports it); a cycle still running is a warning in the report."""
        self._set_phase("stopping the running replication cycles")
        try:
            left = await workflow.execute_activity_method(
                CycleStopActivities.cancel_failover_cycles,
                VMsRef(vms=vms),
                # Queueing counts too: a worker without this activity (an upgrade half done) must
                # not hold the failover either.
                schedule_to_close_timeout=timedelta(minutes=6),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=FATAL),
            )
        except ActivityError as exc:
            left = [f"not all stopped ({exc.cause or exc})"]
        if left and self._ev is not None:
            self._ev.warnings.append(
                "replication cycles still running when the sources were fenced (the final cycle may "
                f"meet their snapshots): {', '.join(left)}"
            )
        self._set_phase("fencing the source VMs")

    async def _fence(self, spec: PlanSpec, vms: list[str], mode: str) -> list[str]:
        notes: list[str] = []
        unreachable: list[str] = []
        for vm in vms:
            try:
                notes.append(
                    await workflow.execute_activity_method(
                        FenceActivities.fence_vm,
                        VMRef(vm=vm),
                        task_queue=site_queue(spec.source_site),
                        # An unreachable source site must not hold the failover for long.
                        schedule_to_close_timeout=timedelta(minutes=2),
                        retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=FATAL),
                    )
                )
            except ActivityError as exc:
                unreachable.append(vm)
                notes.append(f"{vm}: could not be fenced ({exc.cause or exc})")
        if unreachable:
            if mode == "planned":
                raise ApplicationError(
                    "planned failover needs a reachable source to stop cleanly: " + "; ".join(notes),
                    type="FenceFailed",
                    non_retryable=True,
                )
            decision = await self._gate(_fencing_gate(unreachable))
            if not decision.approved:
                raise ApplicationError("fencing was not confirmed; nothing was recovered", type="FenceFailed")
            notes.append(f"fencing confirmed by {decision.by} at {decision.at}")
        return notes

    # ---- hooks -----------------------------------------------------------------------------------

    def _hook_call(self, name: str, spec: PlanSpec, group: str | None) -> Any:
        """Start hook ``name`` on the worker of the site it names (``Hook.site``), else the target's."""
        site = spec.hook_sites.get(hook_key(group, name), spec.target_site)
        return workflow.start_activity_method(
            HookActivities.run_hook,
            HookRequest(plan=spec.plan, group=group, name=name),
            task_queue=site_queue(site),
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )

    # ---- the VMs of a group ----------------------------------------------------------------------

    async def _recover_group(
        self,
        spec: PlanSpec,
        group: GroupStep,
        inp: FailoverInput,
        run: str,
        results: dict[str, RecoverVMResult],
        failed: dict[str, str],
        only: list[VMStep] | None = None,
    ) -> None:
        """Recover the group's VMs (``only`` these: a retry), each after its dependencies."""
        todo = group.vms if only is None else only
        done: dict[str, asyncio.Event] = {vm.vm: asyncio.Event() for vm in group.vms}
        for vm in group.vms:
            if vm not in todo:
                done[vm.vm].set()

        points = self._group_points

        async def one(step: VMStep) -> None:
            step_vm, depends_on, delay = step.vm, step.depends_on, step.boot_delay_s
            for dep in depends_on:
                if dep in done:
                    await done[dep].wait()
                if dep in failed:
                    failed[step_vm] = f"dependency {dep} failed"
                    self._vm_state[step_vm] = "skipped"
                    done[step_vm].set()
                    return
            if delay:
                self._vm_state[step_vm] = f"boot delay {delay:g}s"
                await workflow.sleep(delay, summary=f"boot delay before {step_vm}")
            self._vm_state[step_vm] = "recovering"
            try:
                results[step_vm] = await workflow.execute_child_workflow(
                    RecoverVMWorkflow.run,
                    RecoverVMInput(
                        plan=spec.plan,
                        run=run,
                        mode=inp.mode,
                        vm=step_vm,
                        target_site=spec.target_site,
                        point_time=inp.point_time,
                        in_place=inp.direction == "failback",
                        drill_dns=step.drill_dns,
                        point_id=points.get(step_vm),
                        from_mirror=self._from_mirror,
                        store=self._group_stores.get(step_vm),
                    ),
                    id=recover_vm_id(spec.plan, run, step_vm),
                    task_queue=site_queue(spec.target_site),
                    static_summary=f"recover {step_vm} at {spec.target_site} ({inp.mode})",
                )
                self._vm_state[step_vm] = "healthy"
            except ChildWorkflowError as exc:
                failed[step_vm] = failure_reason(exc)
                self._vm_state[step_vm] = "failed"
            finally:
                done[step_vm].set()

        for vm in todo:
            self._vm_state.setdefault(vm.vm, "waiting")
        tasks = [asyncio.ensure_future(one(v)) for v in todo]
        all_done: asyncio.Future[list[None]] = asyncio.ensure_future(asyncio.gather(*tasks))
        await self._until(all_done.done)
        if not all_done.done():
            # Halted: cancelling the children cancels their activities. A drill is then cleaned up; a
            # real failover keeps what exists and waits for the operator.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the end ---------------------------------------------------------------------------------

    async def _cleanup(self, spec: PlanSpec, run: str, mode: str) -> CleanupOutcome:
        self._set_phase("cleaning up")
        return await workflow.execute_activity_method(
            CleanupActivities.cleanup_run,
            CleanupRequest(plan=spec.plan, run=run, mode=mode),
            task_queue=site_queue(spec.target_site),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PERSISTENT,
        )

    async def _report(self, report: RunReport) -> RunReport:
        """Write the report; a failed run then fails the workflow, with the report as its details."""
        written = await workflow.execute_activity_method(
            OrchestrationActivities.write_report,
            report,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=QUICK,
        )
        self._set_phase(f"{report.status}: report {written.html_path}")
        if workflow.patched(NOTIFY_PATCH):
            event = "run-completed" if report.status == "completed" else "run-failed"
            summary = f"{report.mode} run of {report.plan} {report.status}"
            await self._tell(event, "", summary, {"run": report.run}, give_up=AT_THE_END)
        if report.status == "failed":
            raise ApplicationError(
                f"plan {report.plan} run {report.run} failed: "
                + "; ".join(f"{k}: {v}" for k, v in report.failed_vms.items()),
                report.model_dump(mode="json"),
                type="PlanFailed",
                non_retryable=True,
            )
        return report


def _fencing_gate(unreachable: list[str]) -> GroupStep:
    """A source that did not answer turns into an approval gate: an operator confirms it is down."""
    return GroupStep(
        name="fencing",
        boot_delay_s=0,
        vms=[],
        pre_hooks=[],
        post_hooks=[],
        gate=FENCING_GATE,
        gate_role="admin",
        gate_message="The source site did not answer for "
        + ", ".join(unreachable)
        + ": confirm they are down (or isolated) before their replicas boot",
        gate_timeout_s=None,
        gate_on_timeout="abort",
    )
