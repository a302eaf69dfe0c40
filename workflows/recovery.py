"""RecoveryPlan: a whole application failed over (groups in boot order, gates, hooks, fencing, drills
with a time to live), each VM a ``RecoverVM`` child on the *target* site's queue.

The plan workflow only sequences; what it did is gathered in a ``_Evidence`` and written as the run's
report at the end, whatever the outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows.notify import AT_THE_END, BACKGROUND, event_key, notify
from workflows.plan import FATAL, PERSISTENT, QUICK, load_spec
from workflows.recover_vm import RecoverVMWorkflow
from workflows.replication import ReplicationCycleWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import CleanupActivities
    from activities.fence import FenceActivities
    from activities.hooks import HookActivities
    from activities.recovery import OrchestrationActivities
    from seawall.contract.drills import NotifyRequest
    from seawall.contract.messages import (
        AbortInput,
        Approval,
        ApproveInput,
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
        RunReport,
        StepTime,
        VMRef,
        VMsRef,
    )
    from seawall.contract.names import FENCING_GATE, Query, Update, Workflow, final_cycle_id, recover_vm_id
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_MODE, SA_PLAN, SA_RUN


# Notifications (gate waiting, run started / completed / failed) added to the command sequence.
NOTIFY_PATCH = "notify-events"


@dataclass
class _Evidence:
    """What a run has done so far: the report's content, gathered as the groups recover."""

    hooks: list[HookOutcome] = field(default_factory=list)
    groups: list[StepTime] = field(default_factory=list)
    fencing: list[str] = field(default_factory=list)
    results: dict[str, RecoverVMResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    status: str = "completed"


@workflow.defn(name=Workflow.RECOVERY_PLAN)
class RecoveryPlanWorkflow:
    """Fail a whole application over: ``test`` (drill, then clean up), ``planned`` or ``unplanned``."""

    def __init__(self) -> None:
        self._phase = "starting"
        self._vm_state: dict[str, str] = {}
        self._pending_gate: str | None = None
        self._gate_decision: Approval | None = None
        self._approvals: list[Approval] = []
        self._aborted: AbortInput | None = None
        self._cleanup_requested = False
        self._ttl_extension_s = 0.0
        self._mode = ""
        self._done = False
        self._plan = ""
        self._site: str | None = None
        self._run: str | None = None

    # ---- messages --------------------------------------------------------------------------------

    @workflow.query(name=Query.PROGRESS)
    def progress(self) -> dict[str, object]:
        return {
            "phase": self._phase,
            "vms": dict(self._vm_state),
            "pending_gate": self._pending_gate,
            "approvals": [a.model_dump() for a in self._approvals],
            "aborted": self._aborted is not None,
        }

    @workflow.update(name=Update.APPROVE)
    def approve(self, inp: ApproveInput) -> Approval:
        decision = Approval(
            gate=inp.gate, approved=True, by=inp.by, at=workflow.now().isoformat(), comment=inp.comment
        )
        self._gate_decision = decision
        return decision

    @approve.validator
    def _validate_approve(self, inp: ApproveInput) -> None:
        if self._pending_gate is None:
            raise ValueError("no gate is waiting for approval")
        if inp.gate != self._pending_gate:
            raise ValueError(f"gate {inp.gate!r} is not the one waiting ({self._pending_gate!r})")

    @workflow.update(name=Update.ABORT)
    def abort(self, inp: AbortInput) -> str:
        self._aborted = inp
        return f"abort requested by {inp.by}"

    @abort.validator
    def _validate_abort(self, inp: AbortInput) -> None:
        if self._done or self._phase in ("cleaning up", "writing report"):
            raise ValueError(f"the run is {self._phase}; nothing to abort")

    @workflow.update(name=Update.CLEANUP)
    def cleanup(self) -> str:
        self._cleanup_requested = True
        return "cleanup requested"

    @cleanup.validator
    def _validate_cleanup(self) -> None:
        if self._mode != "test":
            raise ValueError("only a test failover is cleaned up; commit or fail back a real one")
        if self._done:
            raise ValueError("this drill is already cleaned up")

    @workflow.update(name=Update.EXTEND_TTL)
    def extend_ttl(self, hours: float) -> str:
        self._ttl_extension_s += hours * 3600
        return f"drill extended by {hours:g} h"

    @extend_ttl.validator
    def _validate_extend(self, hours: float) -> None:
        if self._mode != "test" or self._done:
            raise ValueError("only a running drill has a time to live")
        if not 0 < hours <= 24 * 7:
            raise ValueError("extend by more than 0 and at most 168 hours")

    # ---- run -------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: FailoverInput) -> RunReport:
        started = workflow.now()
        self._mode = inp.mode
        run = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{workflow.info().run_id.replace('-', '')[-8:]}"
        workflow.upsert_search_attributes(
            [SA_PLAN.value_set(inp.plan), SA_MODE.value_set(inp.mode), SA_RUN.value_set(run)]
        )
        self._set_phase("loading the plan")
        failback = inp.direction == "failback"
        if failback and inp.mode != "planned":
            raise ApplicationError(
                "failback is a planned failover the other way: use mode planned", type="PlanInvalid"
            )
        spec = await load_spec(inp.plan, inp.direction if failback else None)
        self._plan, self._site, self._run = spec.plan, spec.target_site, run
        if workflow.patched(NOTIFY_PATCH):
            self._tell("run-started", "", f"{inp.mode} run of {inp.plan} started", {"run": run})
        vms = [v.vm for g in spec.groups for v in g.vms]
        evidence = _Evidence()
        if inp.mode in ("planned", "unplanned"):
            evidence.fencing = await self._stop_sources(spec, vms, inp, run)
        await self._recover_groups(spec, inp, run, evidence)
        cleanup = await self._end(spec, inp, run, evidence.status)
        self._done = True
        self._set_phase("writing report")
        report = RunReport(
            plan=spec.plan,
            run=run,
            mode=inp.mode,
            status=evidence.status,
            started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
            vms=[evidence.results[v] for v in vms if v in evidence.results],
            failed_vms=evidence.failed,
            hooks=evidence.hooks,
            approvals=self._approvals,
            groups=evidence.groups,
            cleanup=cleanup,
            fencing=evidence.fencing,
        )
        return await self._report(report)

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        workflow.set_current_details(phase)

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

    async def _recover_groups(self, spec: PlanSpec, inp: FailoverInput, run: str, ev: _Evidence) -> None:
        """The plan's hooks and groups in order, each group behind its gate; sets ``ev.status``."""
        for name in spec.pre_hooks:
            ev.hooks.append(await self._hook(name, spec, None))
        for group in spec.groups:
            if self._aborted is not None:
                break
            if group.gate:
                decision = await self._gate(group)
                if not decision.approved:
                    if self._aborted is None:
                        self._aborted = AbortInput(by=decision.by, reason=f"gate {group.gate} not approved")
                    break
            t0 = workflow.now()
            self._set_phase(f"recovering group {group.name}")
            if group.boot_delay_s:
                await workflow.sleep(group.boot_delay_s, summary=f"boot delay before group {group.name}")
            for name in group.pre_hooks:
                ev.hooks.append(await self._hook(name, spec, group.name))
            await self._recover_group(spec, group, inp, run, ev.results, ev.failed)
            ev.groups.append(
                StepTime(step=group.name, started_at=t0.isoformat(), finished_at=workflow.now().isoformat())
            )
            group_failed = [v.vm for v in group.vms if v.vm in ev.failed]
            if group_failed and spec.failure_policy != "skip-vm":
                ev.status = "failed"
                break
            for name in group.post_hooks:
                ev.hooks.append(await self._hook(name, spec, group.name))
        if self._aborted is not None:
            ev.status = "aborted"
        if ev.status == "completed":
            for name in spec.post_hooks:
                ev.hooks.append(await self._hook(name, spec, None))

    async def _end(self, spec: PlanSpec, inp: FailoverInput, run: str, status: str) -> CleanupOutcome | None:
        """A drill runs until cleaned up (or its time to live), then is cleaned up; an aborted or
        failed one is cleaned up at once. A real failover is rolled back only by ``rollback-test``."""
        if inp.mode == "test":
            if status == "completed" and self._aborted is None:
                await self._drill_lifetime(inp.ttl_s if inp.ttl_s is not None else spec.test_ttl_s)
            # A drill never leaves anything behind.
            return await self._cleanup(spec, run, inp.mode)
        if status != "completed" and spec.failure_policy == "rollback-test":
            return await self._cleanup(spec, run, inp.mode)
        return None

    async def _drill_lifetime(self, ttl: float) -> None:
        """Wait for the ``cleanup`` update, an abort or the time to live, which ``extend_ttl`` moves."""
        self._set_phase("drill running: waiting for cleanup (or its time to live)")
        deadline = workflow.now() + timedelta(seconds=ttl)
        while not self._cleanup_requested and self._aborted is None:
            remaining = (deadline + timedelta(seconds=self._ttl_extension_s) - workflow.now()).total_seconds()
            if remaining <= 0:
                break
            try:
                await workflow.wait_condition(
                    lambda: self._cleanup_requested or self._aborted is not None or self._ttl_extension_s > 0,
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                break
            if self._ttl_extension_s > 0:
                deadline += timedelta(seconds=self._ttl_extension_s)
                self._ttl_extension_s = 0

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
            run=self._run,
            summary=summary,
            facts={"mode": self._mode, **facts},
        )
        return asyncio.ensure_future(notify(req, give_up))

    async def _hook(self, name: str, spec: PlanSpec, group: str | None) -> HookOutcome:
        return await workflow.execute_activity_method(
            HookActivities.run_hook,
            HookRequest(plan=spec.plan, group=group, name=name),
            task_queue=site_queue(spec.target_site),
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )

    async def _gate(self, group: GroupStep) -> Approval:
        assert group.gate is not None
        self._pending_gate = group.gate
        self._gate_decision = None
        self._set_phase(f"waiting for approval: {group.gate} ({group.gate_message})")
        if workflow.patched(NOTIFY_PATCH):
            # In the background: the gate waits for a person, not for the message to be delivered.
            self._tell(
                "gate-waiting",
                group.gate,
                f"gate {group.gate} waits for approval",
                {"message": group.gate_message or "", "approvers": group.gate_approvers},
            )
        timeout = timedelta(seconds=group.gate_timeout_s) if group.gate_timeout_s else None
        try:
            await workflow.wait_condition(
                lambda: self._gate_decision is not None or self._aborted is not None,
                timeout=timeout,
                timeout_summary=f"gate {group.gate} times out ({group.gate_on_timeout})",
            )
            decision = self._gate_decision or Approval(
                gate=group.gate, approved=False, by="abort", at=workflow.now().isoformat()
            )
        except TimeoutError:
            approved = group.gate_on_timeout == "approve"
            decision = Approval(
                gate=group.gate, approved=approved, by="timeout", at=workflow.now().isoformat()
            )
        self._pending_gate = None
        self._approvals.append(decision)
        return decision

    async def _recover_group(
        self,
        spec: PlanSpec,
        group: GroupStep,
        inp: FailoverInput,
        run: str,
        results: dict[str, RecoverVMResult],
        failed: dict[str, str],
    ) -> None:
        done: dict[str, asyncio.Event] = {vm.vm: asyncio.Event() for vm in group.vms}

        async def one(step_vm: str, depends_on: list[str], delay: float) -> None:
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
                    ),
                    id=recover_vm_id(spec.plan, run, step_vm),
                    task_queue=site_queue(spec.target_site),
                    static_summary=f"recover {step_vm} at {spec.target_site} ({inp.mode})",
                )
                self._vm_state[step_vm] = "healthy"
            except ChildWorkflowError as exc:
                failed[step_vm] = str(exc.cause or exc)
                self._vm_state[step_vm] = "failed"
            finally:
                done[step_vm].set()

        for vm in group.vms:
            self._vm_state.setdefault(vm.vm, "waiting")
        tasks = [asyncio.ensure_future(one(v.vm, v.depends_on, v.boot_delay_s)) for v in group.vms]
        all_done: asyncio.Future[list[None]] = asyncio.ensure_future(asyncio.gather(*tasks))
        await workflow.wait_condition(lambda: all_done.done() or self._aborted is not None)
        if not all_done.done():
            # Abort: cancelling the children cancels their activities; cleanup then removes what exists.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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

    async def _cleanup(self, spec: PlanSpec, run: str, mode: str) -> CleanupOutcome:
        self._set_phase("cleaning up")
        return await workflow.execute_activity_method(
            CleanupActivities.cleanup_run,
            CleanupRequest(plan=spec.plan, run=run, mode=mode),
            task_queue=site_queue(spec.target_site),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=PERSISTENT,
        )


def _fencing_gate(unreachable: list[str]) -> GroupStep:
    """A source that did not answer turns into an approval gate: an operator confirms it is down."""
    return GroupStep(
        name="fencing",
        boot_delay_s=0,
        vms=[],
        pre_hooks=[],
        post_hooks=[],
        gate=FENCING_GATE,
        gate_message="The source site did not answer for "
        + ", ".join(unreachable)
        + ": confirm they are down (or isolated) before their replicas boot",
        gate_timeout_s=None,
        gate_on_timeout="abort",
    )
