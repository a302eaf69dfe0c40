"""The steps ``RecoveryPlan`` is made of: its state, waiting (for a condition, a gate, the end of a
drill), fencing, the groups' VMs as ``RecoverVM`` children, hooks, cleanup and the report.

``workflows.recovery`` sequences them; ``workflows.recovery_legacy`` keeps the sequence runs started
before the ``recovery-stops-safely`` patch replay with.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows import authority
from workflows.notify import AT_THE_END, BACKGROUND, event_key, notify
from workflows.plan import FATAL, PERSISTENT, QUICK
from workflows.policies import HEARTBEAT_TIMEOUT
from workflows.recover_vm import RecoverVMWorkflow
from workflows.replication import ReplicationCycleWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import CleanupActivities
    from activities.fence import FenceActivities
    from activities.hooks import HookActivities
    from activities.recovery import OrchestrationActivities
    from seawall.contract.drills import NotifyRequest
    from seawall.contract.failures import failure_reason
    from seawall.contract.messages import (
        AbortInput,
        Approval,
        CleanupOutcome,
        CleanupRequest,
        CycleInput,
        FailoverInput,
        GroupStep,
        HookOutcome,
        HookRequest,
        PlanSpec,
        RecoverVMInput,
        RecoverVMResult,
        RetryInput,
        RollbackInput,
        RollbackOutcome,
        RunReport,
        StepTime,
        VMRef,
        VMsRef,
        VMStep,
    )
    from seawall.contract.names import FENCING_GATE, final_cycle_id, hook_key, recover_vm_id
    from seawall.contract.queues import site_queue

Waited = Literal["ok", "timeout", "halted"]


@dataclass
class Evidence:
    """What a run has done so far: the report's content, gathered as the groups recover."""

    hooks: list[HookOutcome] = field(default_factory=list)
    groups: list[StepTime] = field(default_factory=list)
    fencing: list[str] = field(default_factory=list)
    results: dict[str, RecoverVMResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    status: str = "completed"
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rollback: RollbackOutcome | None = None
    # A hook that failed (not continue_on_failure): the run stops at it like at a failed VM.
    problem: str | None = None


# Notifications (gate waiting, run started / completed / failed) added to the command sequence.
NOTIFY_PATCH = "notify-events"


class PlanRunSteps:
    """State and steps of one ``RecoveryPlan`` run (the workflow class adds the messages and the order)."""

    def __init__(self) -> None:
        self._phase = "starting"
        self._vm_state: dict[str, str] = {}
        self._pending_gate: str | None = None
        self._gate_message: str | None = None
        self._gate_decision: Approval | None = None
        self._approvals: list[Approval] = []
        self._aborted: AbortInput | None = None
        self._cleanup_requested = False
        self._ttl_extension_s = 0.0
        self._mode = ""
        self._done = False
        # Since the recovery-stops-safely patch: a drill's deadline counts from its start and ends it in
        # any phase; a stopped run waits for the operator (retry, rollback, end) instead of ending.
        self._safe = False
        self._deadline: datetime | None = None
        self._expired = False
        self._stopped: str | None = None
        self._end_requested: AbortInput | None = None
        self._retry: RetryInput | None = None
        self._rollback_req: RollbackInput | None = None
        self._rolling_back = False
        self._failback = False
        # What the rollback update describes: set once the plan is loaded.
        self._spec: PlanSpec | None = None
        self._run = ""
        self._ev: Evidence | None = None
        # Who may start, approve and abort (workflows/authority.py).
        self._auth = authority.RunAuthority()
        # VM -> the point of its consistency group's chosen group point (one for all members).
        self._group_points: dict[str, str] = {}
        # VM -> the store its group point was chosen from (its store, or the mirror).
        self._group_stores: dict[str, str] = {}
        # Read every VM from its store's mirror (the operator's or the plan's choice).
        self._from_mirror = False
        # Who notifications are about (set once the plan is loaded).
        self._plan = ""
        self._site: str | None = None

    # ---- state -----------------------------------------------------------------------------------

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        workflow.set_current_details(phase)

    def _drill_over(self) -> bool:
        """A drill ends on ``cleanup`` or at its time to live, whatever it is doing (since the patch)."""
        return self._safe and self._mode == "test" and (self._cleanup_requested or self._expired)

    def _halted(self) -> bool:
        """Should the step under way stop? Running: an abort (or a drill's end). Stopped (waiting for
        the operator): only an explicit end, since the abort that stopped it is already answered."""
        if self._stopped is not None:
            return self._end_requested is not None or self._drill_over()
        return self._aborted is not None or self._drill_over()

    async def _until(self, cond: Callable[[], bool], timeout: timedelta | None = None) -> Waited:
        """Wait for ``cond``; ``halted`` as soon as the run is halted (a drill's time to live included,
        which ``extend_ttl`` may move while this waits); ``timeout`` when ``timeout`` passed first."""
        limit = workflow.now() + timeout if timeout is not None else None
        while True:
            if cond():
                return "ok"
            if self._halted():
                return "halted"
            now = workflow.now()
            deadline = self._deadline if self._mode == "test" else None
            if deadline is not None and now >= deadline:
                self._expired = True
                return "halted"
            if limit is not None and now >= limit:
                return "timeout"
            nearest = min((t for t in (limit, deadline) if t is not None), default=None)
            seen = deadline
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda seen=seen: cond() or self._halted() or self._deadline != seen,  # type: ignore[misc]
                    timeout=nearest - now if nearest is not None else None,
                )

    # ---- gates -----------------------------------------------------------------------------------

    async def _gate(self, group: GroupStep) -> Approval:
        """Wait for the gate's approval; an abort (a drill's end) refuses it, its timeout decides it."""
        assert group.gate is not None
        self._pending_gate = group.gate
        self._gate_message = group.gate_message
        self._auth.pending_role = self._auth.gate_role(group)
        self._gate_decision = None
        self._set_phase(f"waiting for approval: {group.gate} ({group.gate_message})")
        if workflow.patched(NOTIFY_PATCH):
            # In the background: the gate waits for a person, not for the message to be delivered.
            self._tell(
                "gate-waiting",
                group.gate,
                f"gate {group.gate} waits for approval",
                {"message": group.gate_message or "", "approvers": self._auth.pending_role or "operator"},
            )
        timeout = timedelta(seconds=group.gate_timeout_s) if group.gate_timeout_s else None
        waited = await self._until(lambda: self._gate_decision is not None, timeout)
        now = workflow.now().isoformat()
        if waited == "ok" and self._gate_decision is not None:
            decision = self._gate_decision
        elif waited == "timeout":
            decision = Approval(
                gate=group.gate, approved=group.gate_on_timeout == "approve", by="timeout", at=now
            )
        else:
            by = "time to live" if self._expired else "cleanup" if self._cleanup_requested else "abort"
            decision = Approval(gate=group.gate, approved=False, by=by, at=now)
        self._pending_gate = None
        self._gate_message = None
        self._approvals.append(decision)
        return decision

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

    def _tell(
        self, event: str, what: str, summary: str, facts: dict[str, str], give_up: timedelta = BACKGROUND
    ) -> asyncio.Task[None]:
        """Notify the people configured for ``event`` about this run (``notify`` activity, retried;
        keyed by this run and ``what``, so one event is one message however often it is retried)."""
        req = NotifyRequest(
            event=event,
            key=event_key(event, *([what] if what else [])),
            plan=self._plan,
            site=self._site,
            run=self._run or None,
            summary=summary,
            facts={"mode": self._mode, **facts},
        )
        return asyncio.ensure_future(notify(req, give_up))


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
