"""RecoveryPlan: a whole application failed over (groups in boot order, gates, hooks, fencing, drills
with a time to live), each VM a ``RecoverVM`` child on the *target* site's queue.

A failover never makes a disaster worse. When a step fails (under ``stop``, or ``rollback-test`` in a
real failover) or an operator aborts, a real failover *stops where it is*: nothing it recovered is
destroyed, and the run waits for the operator's decision — ``retry`` (the failed steps again, then the
rest of the plan), ``rollback`` (an approval gate whose text names every VM it destroys and says the
sources start again; only an approval runs it), or ``abort`` again (end the run as it is; ``commit``
then makes it final). A drill ends — cleaned up — on ``cleanup``, an abort or its time to live (counted
from its start) in any phase, gates included; under ``stop`` a failed drill waits for ``retry`` or its
end, under ``rollback-test`` it is torn down at once.

What a run did is gathered in an ``Evidence`` and written as the run's report at the end, whatever the
outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import authority
from workflows.plan import QUICK, load_spec
from workflows.recovery_state import NOTIFY_PATCH, Evidence
from workflows.recovery_stopped import StoppedRun

with workflow.unsafe.imports_passed_through():
    from activities.target import RecoveryActivities
    from seawall.contract.messages import (
        AbortInput,
        Approval,
        ApproveInput,
        CleanupOutcome,
        FailoverInput,
        GroupPointsRequest,
        GroupStep,
        HookOutcome,
        PlanSpec,
        RetryInput,
        RollbackInput,
        RunReport,
        StepTime,
    )
    from seawall.contract.names import ROLLBACK_GATE, Query, Update, Workflow
    from seawall.contract.queues import site_queue
    from seawall.contract.search import SA_MODE, SA_PLAN, SA_RUN
    from seawall.contract.validation import validate
    from workflows.inputs import decode_input

PATCH_STOPS_SAFELY = "recovery-stops-safely"


@workflow.defn(name=Workflow.RECOVERY_PLAN)
class RecoveryPlanWorkflow(StoppedRun):
    """Fail a whole application over: ``test`` (drill, then clean up), ``planned`` or ``unplanned``."""

    # ---- messages --------------------------------------------------------------------------------

    @workflow.query(name=Query.PROGRESS)
    def progress(self) -> dict[str, object]:
        return {
            "phase": self._phase,
            "vms": dict(self._vm_state),
            "pending_gate": self._pending_gate,
            "pending_gate_role": self._auth.pending_role if self._pending_gate else None,
            "gate_message": self._gate_message,
            "approvals": [a.model_dump() for a in self._approvals],
            "aborted": self._aborted is not None,
            "stopped": self._stopped,
            "deadline": self._deadline.isoformat() if self._deadline else None,
        }

    @workflow.update(name=Update.APPROVE)
    def approve(self, raw: Any) -> Approval:
        inp = validate(ApproveInput, raw)
        decision = self._auth.approval(inp)
        self._gate_decision = decision
        return decision

    @approve.validator
    def _validate_approve(self, raw: Any) -> None:
        inp = validate(ApproveInput, raw)
        if self._pending_gate is None:
            raise ValueError("no gate is waiting for approval")
        if inp.gate != self._pending_gate:
            raise ValueError(f"gate {inp.gate!r} is not the one waiting ({self._pending_gate!r})")
        self._auth.check_approve(inp)

    @workflow.update(name=Update.ABORT)
    def abort(self, raw: Any) -> str:
        inp = self._auth.abort_input(validate(AbortInput, raw))
        if self._safe and self._stopped is not None:
            self._end_requested = inp
            if self._mode == "test":
                return f"abort requested by {inp.by}: the drill is cleaned up"
            return f"abort requested by {inp.by}: the run ends as it is (nothing is destroyed)"
        self._aborted = inp
        if self._safe and self._mode != "test":
            return (
                f"abort requested by {inp.by}: the failover stops where it is and waits for a decision "
                "(retry, rollback, or abort again to end it as it is); nothing recovered is destroyed"
            )
        return f"abort requested by {inp.by}"

    @abort.validator
    def _validate_abort(self, raw: Any) -> None:
        inp = validate(AbortInput, raw)
        if self._done or self._rolling_back or self._phase in ("cleaning up", "writing report"):
            raise ValueError(f"the run is {self._phase}; nothing to abort")
        if self._safe and self._stopped is None and self._aborted is not None:
            raise ValueError("an abort is already under way: the run is stopping")
        self._auth.check_abort(inp)

    @workflow.update(name=Update.CLEANUP)
    def cleanup(self) -> str:
        self._cleanup_requested = True
        return "cleanup requested"

    @cleanup.validator
    def _validate_cleanup(self) -> None:
        if self._mode != "test":
            raise ValueError("only a test failover is cleaned up; commit, retry or roll back a real one")
        if self._done:
            raise ValueError("this drill is already cleaned up")

    @workflow.update(name=Update.EXTEND_TTL)
    def extend_ttl(self, raw: Any) -> str:
        hours = _hours(raw)
        if self._deadline is not None:
            self._deadline += timedelta(hours=hours)
        else:
            self._ttl_extension_s += hours * 3600
        return f"drill extended by {hours:g} h"

    @extend_ttl.validator
    def _validate_extend(self, raw: Any) -> None:
        hours = _hours(raw)
        if self._mode != "test" or self._done or self._drill_over():
            raise ValueError("only a running drill has a time to live")
        if not 0 < hours <= 24 * 7:
            raise ValueError("extend by more than 0 and at most 168 hours")

    @workflow.update(name=Update.RETRY)
    def retry(self, raw: Any) -> str:
        inp = validate(RetryInput, raw)
        self._retry = inp
        return f"retry requested by {inp.by}: the failed steps run again, then the rest of the plan"

    @retry.validator
    def _validate_retry(self, raw: Any) -> None:
        validate(RetryInput, raw)
        if self._stopped is None or self._done:
            raise ValueError(f"the run is not stopped ({self._phase}); nothing to retry")
        if self._rollback_req is not None:
            raise ValueError(
                "a rollback is waiting for approval: approve it, or abort to end the run as it is"
            )
        if self._halted():
            raise ValueError("the run is ending; nothing to retry")

    @workflow.update(name=Update.ROLLBACK)
    def rollback(self, raw: Any) -> str:
        inp = validate(RollbackInput, raw)
        self._rollback_req = inp
        assert self._spec is not None and self._ev is not None
        text = self._rollback_text(self._spec, self._run, self._ev, inp)
        return f"nothing is destroyed until gate {ROLLBACK_GATE!r} is approved. {text}"

    @rollback.validator
    def _validate_rollback(self, raw: Any) -> None:
        validate(RollbackInput, raw)
        if self._mode == "test":
            raise ValueError("a drill is not rolled back: clean it up (or abort it)")
        if self._failback:
            raise ValueError("a failback is not rolled back: fail over again")
        if self._stopped is None or self._done or self._halted():
            raise ValueError(
                f"only a stopped real failover is rolled back (the run is {self._phase}): abort it first"
            )
        if self._rollback_req is not None:
            raise ValueError("a rollback is already waiting for approval")

    # ---- run -------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: Any = None) -> RunReport:
        inp = decode_input(FailoverInput, raw)
        self._safe = workflow.patched(PATCH_STOPS_SAFELY)
        started = workflow.now()
        self._mode = inp.mode
        run = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{workflow.info().run_id.replace('-', '')[-8:]}"
        workflow.upsert_search_attributes(
            [SA_PLAN.value_set(inp.plan), SA_MODE.value_set(inp.mode), SA_RUN.value_set(run)]
        )
        failback = self._failback = inp.direction == "failback"
        if failback and inp.mode != "planned":
            raise ApplicationError(
                "failback is a planned failover the other way: use mode planned", type="PlanInvalid"
            )
        if workflow.patched(authority.PATCH):
            self._set_phase("checking authorisation")
            await self._auth.start(inp, self._gate)
        self._set_phase("loading the plan")
        spec = await load_spec(
            inp.plan, inp.direction if failback else None, inp.from_mirror and not failback
        )
        self._plan, self._site, self._run = spec.plan, spec.target_site, run
        if workflow.patched(NOTIFY_PATCH):
            self._tell("run-started", "", f"{inp.mode} run of {inp.plan} started", {"run": run})
        vms = [v.vm for g in spec.groups for v in g.vms]
        ev = Evidence()
        self._spec, self._run, self._ev = spec, run, ev
        if self._safe and inp.mode == "test":
            # The time to live counts from the drill's start: a gate nobody answers cannot keep it.
            self._deadline = started + timedelta(
                seconds=inp.ttl_s if inp.ttl_s is not None else spec.test_ttl_s
            )
        if self._safe and inp.mode != "test" and spec.failure_policy == "rollback-test":
            ev.warnings.append(
                f"failure_policy rollback-test applies to drills only: this {inp.mode} failover stops "
                "instead (nothing it recovers is destroyed without an approved rollback)"
            )
        if inp.mode in ("planned", "unplanned"):
            ev.fencing = await self._stop_sources(spec, vms, inp, run)
        # The mirror serves every VM when the operator or the plan says so (a failback reads the
        # points replicated the other way: never a mirror by choice).
        self._from_mirror = not failback and (inp.from_mirror or spec.from_mirror)
        # A planned failover recovers each VM's final point, taken with every source stopped: already
        # consistent across the group. Otherwise members share one group point, chosen once here.
        if (
            spec.consistency_groups
            and not failback
            and (inp.mode != "planned" or inp.point_time)
            and workflow.patched("consistency-group-points")
        ):
            self._set_phase("choosing consistency group points")
            chosen = await workflow.execute_activity_method(
                RecoveryActivities.choose_group_points,
                GroupPointsRequest(
                    plan=spec.plan,
                    groups=spec.consistency_groups,
                    point_time=inp.point_time,
                    from_mirror=self._from_mirror,
                ),
                task_queue=site_queue(spec.target_site),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=QUICK,
            )
            self._group_points = dict(chosen.points)
            self._group_stores = dict(chosen.stores)
        if self._safe:
            await self._run_stages(spec, inp, run, ev)
            cleanup = await self._end(spec, inp, run, ev)
        else:
            await self._legacy_groups(spec, inp, run, ev)
            cleanup = await self._legacy_end(spec, inp, run, ev.status)
        self._done = True
        self._set_phase("writing report")
        report = RunReport(
            plan=spec.plan,
            run=run,
            mode=inp.mode,
            status=ev.status,
            started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
            vms=[ev.results[v] for v in vms if v in ev.results],
            failed_vms=ev.failed,
            hooks=ev.hooks,
            approvals=self._approvals,
            groups=ev.groups,
            cleanup=cleanup,
            fencing=ev.fencing,
            decisions=ev.decisions,
            warnings=ev.warnings,
            rollback=ev.rollback,
            authorised_by=self._auth.started_by(started.isoformat()),
        )
        return await self._report(report)

    # ---- the plan's stages: its pre hooks, each group, its post hooks ----------------------------

    async def _run_stages(self, spec: PlanSpec, inp: FailoverInput, run: str, ev: Evidence) -> None:
        """Each stage in order; a stage that does not complete stops the run for the operator's decision
        (or ends a drill), and a retry runs that stage again from where it stopped."""
        done_hooks: set[str] = set()
        passed_gates: set[str] = set()
        stage = 0
        while stage <= len(spec.groups) + 1:
            if self._halted():
                ok = False
            elif stage == 0:
                ok = await self._hooks(spec, None, spec.pre_hooks, ev, done_hooks)
            elif stage <= len(spec.groups):
                ok = await self._group(spec, spec.groups[stage - 1], inp, run, ev, done_hooks, passed_gates)
            else:
                ok = await self._hooks(spec, None, spec.post_hooks, ev, done_hooks)
            if ok:
                stage += 1
            elif not await self._decide(spec, inp, run, ev):
                return
        ev.status = "completed"

    async def _group(
        self,
        spec: PlanSpec,
        group: GroupStep,
        inp: FailoverInput,
        run: str,
        ev: Evidence,
        done_hooks: set[str],
        passed_gates: set[str],
    ) -> bool:
        if group.gate and group.name not in passed_gates:
            decision = await self._gate(group)
            if not decision.approved:
                if not self._halted():
                    self._aborted = AbortInput(by=decision.by, reason=f"gate {group.gate} not approved")
                return False
            passed_gates.add(group.name)
        t0 = workflow.now()
        self._set_phase(f"recovering group {group.name}")
        first = not any(s.step == group.name for s in ev.groups)
        if first and group.boot_delay_s:
            await self._until(lambda: False, timedelta(seconds=group.boot_delay_s))
            if self._halted():
                return False
        if not await self._hooks(spec, group.name, group.pre_hooks, ev, done_hooks):
            return False
        todo = [v for v in group.vms if v.vm not in ev.results]
        for v in todo:
            ev.failed.pop(v.vm, None)
        if todo:
            await self._recover_group(spec, group, inp, run, ev.results, ev.failed, only=todo)
        ev.groups.append(
            StepTime(step=group.name, started_at=t0.isoformat(), finished_at=workflow.now().isoformat())
        )
        if self._halted():
            return False
        if spec.failure_policy != "skip-vm" and any(v.vm in ev.failed for v in group.vms):
            return False
        return await self._hooks(spec, group.name, group.post_hooks, ev, done_hooks)

    async def _hooks(
        self, spec: PlanSpec, group: str | None, names: list[str], ev: Evidence, done: set[str]
    ) -> bool:
        """Run the hooks not yet run; a failed one (or a halt) stops the stage."""
        for name in names:
            key = f"{group or ''}/{name}"
            if key in done:
                continue
            call = self._hook_call(name, spec, group)
            if await self._until(call.done) != "ok":
                call.cancel()
                with contextlib.suppress(ActivityError, asyncio.CancelledError):
                    await call  # the cancelled hook's own outcome is not needed
                return False
            try:
                outcome: HookOutcome = call.result()
            except ActivityError as exc:
                ev.problem = f"hook {name} failed: {exc.cause or exc}"
                now = workflow.now().isoformat()
                ev.hooks.append(
                    HookOutcome(name=name, ok=False, detail=ev.problem, started_at=now, finished_at=now)
                )
                return False
            ev.hooks.append(outcome)
            done.add(key)
        return True

    async def _end(self, spec: PlanSpec, inp: FailoverInput, run: str, ev: Evidence) -> CleanupOutcome | None:
        """A drill runs until cleaned up, aborted or its time to live, then is cleaned up. A real
        failover ends here as it is: it was either completed, ended by the operator, or rolled back."""
        if inp.mode != "test":
            return None
        if ev.status == "completed" and not self._halted():
            self._set_phase("drill running: waiting for cleanup (or its time to live)")
            await self._until(lambda: False)
        if self._expired:
            ev.decisions.append(f"time to live reached at {workflow.now().isoformat()}")
        return await self._cleanup(spec, run, inp.mode)


def _hours(raw: Any) -> float:
    """``extend_ttl``'s argument: a number of hours (a JSON number, or a string holding one)."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"hours: {raw!r} is not a number") from None
