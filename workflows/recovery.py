"""Recovery: RecoveryPlan (groups in boot order, gates, hooks, fencing, drills with a TTL) and RecoverVM.

The plan workflow sequences; each VM recovers as a ``RecoverVM`` child on the *target* site's queue,
so every step that touches the target runs on a worker at that site. A run's resources are tagged with
the run id as they are made, so cleanup finds them all even when a child died half-way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows.policies import persistent, quick

with workflow.unsafe.imports_passed_through():
    from seawall.contract.messages import (
        AbortInput,
        Approval,
        ApproveInput,
        ChosenPoint,
        CleanupOutcome,
        CommitOutcome,
        CycleInput,
        CycleResult,
        DnsChange,
        FailoverInput,
        GroupStep,
        HealthOutcome,
        HookOutcome,
        Materialized,
        PlanInput,
        PlanRunInput,
        PlanSpec,
        ProtectInput,
        Protection,
        RecoverVMInput,
        RecoverVMResult,
        ReportWritten,
        ReprotectOutcome,
        Resource,
        RunReport,
        ScheduleRequest,
        StepTime,
        TargetVM,
    )
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_MODE, SA_PLAN, SA_RUN

T = TypeVar("T")

FATAL = ["PlanInvalid", "NotProtected", "NoRecoveryPoint", "CredentialsError", "KeyMissing", "WrongKey"]
QUICK = quick(FATAL)
PERSISTENT = persistent(FATAL)


async def load_spec(plan: str, direction: str | None = None) -> PlanSpec:
    """The plan's shape, read by a worker from its plan files (a direction only for failback)."""
    return await workflow.execute_activity(
        "load_plan_spec",
        args=[plan, direction] if direction else [plan],
        result_type=PlanSpec,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=QUICK,
    )


@workflow.defn(name="RecoverVM")
class RecoverVMWorkflow:
    """choose point -> materialize disks -> create, re-IP, power on -> health -> DNS, at the target."""

    def __init__(self) -> None:
        self._step = "starting"

    @workflow.query
    def step(self) -> str:
        return self._step

    @workflow.run
    async def run(self, inp: RecoverVMInput) -> RecoverVMResult:
        started = workflow.now()
        steps: list[StepTime] = []

        async def timed(step: str, work: Awaitable[T]) -> T:
            self._step = step
            workflow.set_current_details(f"{inp.vm}: {step}")
            t0 = workflow.now()
            result = await work
            steps.append(
                StepTime(step=step, started_at=t0.isoformat(), finished_at=workflow.now().isoformat())
            )
            return result

        point: ChosenPoint = await timed(
            "choose recovery point",
            workflow.execute_activity(
                "choose_point",
                inp,
                result_type=ChosenPoint,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=QUICK,
            ),
        )
        if inp.in_place:
            original = await timed(
                "restore onto the original VM and start it",
                workflow.execute_activity(
                    "restore_in_place",
                    args=[inp, point],
                    result_type=TargetVM,
                    start_to_close_timeout=timedelta(hours=12),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=PERSISTENT,
                ),
            )
            return await self._finish(inp, point, original, [], steps, timed, started)
        disks: Materialized = await timed(
            "materialize disks",
            workflow.execute_activity(
                "materialize_disks",
                args=[inp, point],
                result_type=Materialized,
                start_to_close_timeout=timedelta(hours=12),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=PERSISTENT,
            ),
        )
        vm: TargetVM = await timed(
            "create, re-IP and power on",
            workflow.execute_activity(
                "create_target_vm",
                args=[inp, disks],
                result_type=TargetVM,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=QUICK,
            ),
        )
        return await self._finish(inp, point, vm, disks.resources, steps, timed, started)

    async def _finish(
        self,
        inp: RecoverVMInput,
        point: ChosenPoint,
        vm: TargetVM,
        made: list[Resource],
        steps: list[StepTime],
        timed: Any,
        started: datetime,
    ) -> RecoverVMResult:
        health: HealthOutcome = await timed(
            "health checks",
            workflow.execute_activity(
                "check_health",
                args=[inp, vm],
                result_type=HealthOutcome,
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=FATAL),
            ),
        )
        healthy_at = workflow.now()
        dns: list[DnsChange] = []
        if inp.mode != "test":
            # A drill runs in an isolated network: production DNS keeps pointing at production.
            dns = await timed(
                "update DNS",
                workflow.execute_activity(
                    "update_dns",
                    args=[inp, vm],
                    result_type=list[DnsChange],
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=QUICK,
                ),
            )
        self._step = "healthy"
        return RecoverVMResult(
            vm=inp.vm,
            target_name=vm.name,
            point_id=point.point_id,
            point_created_at=point.created_at,
            ips=vm.ips,
            dns=dns,
            health=health,
            resources=[*made, *vm.resources],
            steps=steps,
            started_at=started.isoformat(),
            healthy_at=healthy_at.isoformat(),
        )


@workflow.defn(name="RecoveryPlan")
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

    # ---- messages --------------------------------------------------------------------------------

    @workflow.query
    def progress(self) -> dict[str, object]:
        return {
            "phase": self._phase,
            "vms": dict(self._vm_state),
            "pending_gate": self._pending_gate,
            "approvals": [a.model_dump() for a in self._approvals],
            "aborted": self._aborted is not None,
        }

    @workflow.update
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

    @workflow.update
    def abort(self, inp: AbortInput) -> str:
        self._aborted = inp
        return f"abort requested by {inp.by}"

    @abort.validator
    def _validate_abort(self, inp: AbortInput) -> None:
        if self._done or self._phase in ("cleaning up", "writing report"):
            raise ValueError(f"the run is {self._phase}; nothing to abort")

    @workflow.update
    def cleanup(self) -> str:
        self._cleanup_requested = True
        return "cleanup requested"

    @cleanup.validator
    def _validate_cleanup(self) -> None:
        if self._mode != "test":
            raise ValueError("only a test failover is cleaned up; commit or fail back a real one")
        if self._done:
            raise ValueError("this drill is already cleaned up")

    @workflow.update
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

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        workflow.set_current_details(phase)

    async def _hook(self, name: str, spec: PlanSpec, group: str | None) -> HookOutcome:
        return await workflow.execute_activity(
            "run_hook",
            args=[spec.plan, group, name],
            task_queue=site_queue(spec.target_site),
            result_type=HookOutcome,
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )

    async def _gate(self, group: GroupStep) -> Approval:
        assert group.gate is not None
        self._pending_gate = group.gate
        self._gate_decision = None
        self._set_phase(f"waiting for approval: {group.gate} ({group.gate_message})")
        timeout = timedelta(seconds=group.gate_timeout_s) if group.gate_timeout_s else None
        try:
            await workflow.wait_condition(
                lambda: self._gate_decision is not None or self._aborted is not None, timeout=timeout
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
                await workflow.sleep(delay)
            self._vm_state[step_vm] = "recovering"
            try:
                results[step_vm] = await workflow.execute_child_workflow(
                    "RecoverVM",
                    RecoverVMInput(
                        plan=spec.plan,
                        run=run,
                        mode=inp.mode,
                        vm=step_vm,
                        target_site=spec.target_site,
                        point_time=inp.point_time,
                        in_place=inp.direction == "failback",
                    ),
                    id=f"recover/{spec.plan}/{run}/{step_vm}",
                    task_queue=site_queue(spec.target_site),
                    result_type=RecoverVMResult,
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
        vms = [v.vm for g in spec.groups for v in g.vms]
        hooks: list[HookOutcome] = []
        groups: list[StepTime] = []
        fencing: list[str] = []
        results: dict[str, RecoverVMResult] = {}
        failed: dict[str, str] = {}
        status = "completed"

        if inp.mode in ("planned", "unplanned"):
            # Two live copies of one server is the worst outcome: fence the sources first.
            self._set_phase("fencing the source VMs")
            await workflow.execute_activity(
                "pause_schedules",
                vms,
                result_type=int,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=QUICK,
            )
            fencing = await self._fence(spec, vms, inp.mode)
            if inp.mode == "planned":
                self._set_phase("final replication of the stopped source VMs")
                await asyncio.gather(
                    *(
                        workflow.execute_child_workflow(
                            "ReplicationCycle",
                            # Failing back, the copies at the plan's target are what runs: replicate those.
                            CycleInput(vm=vm, source_site=spec.source_site if failback else None),
                            id=f"replicate/{vm}/final-{run}",
                            task_queue=site_queue(spec.source_site),
                        )
                        for vm in vms
                    )
                )

        for name in spec.pre_hooks:
            hooks.append(await self._hook(name, spec, None))
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
                await workflow.sleep(group.boot_delay_s)
            for name in group.pre_hooks:
                hooks.append(await self._hook(name, spec, group.name))
            await self._recover_group(spec, group, inp, run, results, failed)
            groups.append(
                StepTime(step=group.name, started_at=t0.isoformat(), finished_at=workflow.now().isoformat())
            )
            group_failed = [v.vm for v in group.vms if v.vm in failed]
            if group_failed and spec.failure_policy != "skip-vm":
                status = "failed"
                break
            for name in group.post_hooks:
                hooks.append(await self._hook(name, spec, group.name))
        if self._aborted is not None:
            status = "aborted"
        if status == "completed":
            for name in spec.post_hooks:
                hooks.append(await self._hook(name, spec, None))

        cleanup: CleanupOutcome | None = None
        if inp.mode == "test":
            if status == "completed" and self._aborted is None:
                self._set_phase("drill running: waiting for cleanup (or its time to live)")
                ttl = inp.ttl_s if inp.ttl_s is not None else spec.test_ttl_s
                deadline = workflow.now() + timedelta(seconds=ttl)
                while not self._cleanup_requested and self._aborted is None:
                    remaining = (
                        deadline + timedelta(seconds=self._ttl_extension_s) - workflow.now()
                    ).total_seconds()
                    if remaining <= 0:
                        break
                    try:
                        await workflow.wait_condition(
                            lambda: (
                                self._cleanup_requested
                                or self._aborted is not None
                                or self._ttl_extension_s > 0
                            ),
                            timeout=timedelta(seconds=remaining),
                        )
                    except TimeoutError:
                        break
                    if self._ttl_extension_s > 0:
                        deadline += timedelta(seconds=self._ttl_extension_s)
                        self._ttl_extension_s = 0
            # An aborted or failed drill is cleaned up too: a drill never leaves anything behind.
            cleanup = await self._cleanup(spec, run, inp.mode)
        elif status != "completed" and spec.failure_policy == "rollback-test":
            cleanup = await self._cleanup(spec, run, inp.mode)

        self._done = True
        self._set_phase("writing report")
        report = RunReport(
            plan=spec.plan,
            run=run,
            mode=inp.mode,
            status=status,
            started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
            vms=[results[v] for v in vms if v in results],
            failed_vms=failed,
            hooks=hooks,
            approvals=self._approvals,
            groups=groups,
            cleanup=cleanup,
            fencing=fencing,
        )
        written: ReportWritten = await workflow.execute_activity(
            "write_report",
            report,
            result_type=ReportWritten,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=QUICK,
        )
        self._set_phase(f"{status}: report {written.html_path}")
        if status == "failed":
            raise ApplicationError(
                f"plan {spec.plan} run {run} failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()),
                report.model_dump(mode="json"),
                type="PlanFailed",
                non_retryable=True,
            )
        return report

    async def _fence(self, spec: PlanSpec, vms: list[str], mode: str) -> list[str]:
        notes: list[str] = []
        unreachable: list[str] = []
        for vm in vms:
            try:
                notes.append(
                    await workflow.execute_activity(
                        "fence_vm",
                        vm,
                        task_queue=site_queue(spec.source_site),
                        result_type=str,
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
            gate = GroupStep(
                name="fencing",
                boot_delay_s=0,
                vms=[],
                pre_hooks=[],
                post_hooks=[],
                gate="source-fenced",
                gate_message="The source site did not answer for "
                + ", ".join(unreachable)
                + ": confirm they are down (or isolated) before their replicas boot",
                gate_timeout_s=None,
                gate_on_timeout="abort",
            )
            decision = await self._gate(gate)
            if not decision.approved:
                raise ApplicationError("fencing was not confirmed; nothing was recovered", type="FenceFailed")
            notes.append(f"fencing confirmed by {decision.by} at {decision.at}")
        return notes

    async def _cleanup(self, spec: PlanSpec, run: str, mode: str) -> CleanupOutcome:
        self._set_phase("cleaning up")
        return await workflow.execute_activity(
            "cleanup_run",
            args=[spec.plan, run, mode],
            task_queue=site_queue(spec.target_site),
            result_type=CleanupOutcome,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=PERSISTENT,
        )


@workflow.defn(name="CleanupTest")
class CleanupTestWorkflow:
    """Remove what a drill made, by its run id: for a drill whose own workflow is gone (terminated,
    lost with an old server) — a running drill is ended with its ``cleanup`` update instead."""

    @workflow.run
    async def run(self, inp: PlanRunInput) -> CleanupOutcome:
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan), SA_RUN.value_set(inp.run)])
        spec = await load_spec(inp.plan)
        return await workflow.execute_activity(
            "cleanup_run",
            args=[spec.plan, inp.run, "test"],
            task_queue=site_queue(spec.target_site),
            result_type=CleanupOutcome,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=PERSISTENT,
        )


@workflow.defn(name="CommitFailover")
class CommitFailoverWorkflow:
    """Make a real failover final: the old direction's schedules go, and points older than the one
    recovered (the base of reverse replication) are pruned."""

    @workflow.run
    async def run(self, inp: PlanRunInput) -> CommitOutcome:
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan), SA_RUN.value_set(inp.run)])
        spec = await load_spec(inp.plan)
        deleted: list[str] = []
        pruned: dict[str, list[str]] = {}
        for vm in [v.vm for g in spec.groups for v in g.vms]:
            if await workflow.execute_activity(
                "delete_schedule",
                vm,
                result_type=bool,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            ):
                deleted.append(vm)
            pruned[vm] = await workflow.execute_activity(
                "prune_points",
                vm,
                task_queue=site_queue(spec.target_site),
                result_type=list[str],
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=QUICK,
            )
        return CommitOutcome(plan=spec.plan, run=inp.run, schedules_deleted=deleted, points_pruned=pruned)


@workflow.defn(name="Reprotect")
class ReprotectWorkflow:
    """Reverse replication after a failover: the copies now running at the plan's target site
    replicate into the same replica, each first cycle shipping only what changed there since the
    point it was recovered from (no re-seed), then on their own schedules."""

    @workflow.run
    async def run(self, inp: PlanInput) -> ReprotectOutcome:
        workflow.upsert_search_attributes([SA_PLAN.value_set(inp.plan)])
        spec = await load_spec(inp.plan)
        vms = [v.vm for g in spec.groups for v in g.vms]
        workflow.set_current_details(f"reverse replication of {len(vms)} VMs from {spec.target_site}")
        cycles: list[CycleResult] = list(
            await asyncio.gather(
                *(
                    workflow.execute_child_workflow(
                        "ReplicationCycle",
                        CycleInput(vm=vm, source_site=spec.target_site),
                        id=f"replicate/{vm}/reprotect-{workflow.info().run_id.replace('-', '')[-12:]}",
                        task_queue=site_queue(spec.target_site),
                        result_type=CycleResult,
                    )
                    for vm in vms
                )
            )
        )
        for vm in vms:
            prot: Protection = await workflow.execute_activity(
                "resolve_protection",
                ProtectInput(vm=vm, source_site=spec.target_site),
                result_type=Protection,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
            await workflow.execute_activity(
                "ensure_schedule",
                ScheduleRequest(
                    vm=vm, source_site=spec.target_site, interval_s=prot.interval_s, reverse=True
                ),
                result_type=str,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK,
            )
        return ReprotectOutcome(plan=spec.plan, from_site=spec.target_site, cycles=cycles)
