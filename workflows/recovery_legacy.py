"""``RecoveryPlan`` as it ran before the ``recovery-stops-safely`` patch, kept so that runs started
then replay (and finish) with the commands they recorded.

Not used by a run started since: there a failed or aborted real failover stops and waits for the
operator instead of ending (``rollback-test`` never tears it down), a drill's time to live counts from
its start, and ``cleanup``, an abort or the time to live end a drill in any phase.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.recovery_state import Evidence
from workflows.recovery_steps import PlanRunSteps

with workflow.unsafe.imports_passed_through():
    from seawall.contract.messages import AbortInput, CleanupOutcome, FailoverInput, PlanSpec, StepTime


class LegacyPlanRun(PlanRunSteps):
    async def _legacy_groups(self, spec: PlanSpec, inp: FailoverInput, run: str, ev: Evidence) -> None:
        for name in spec.pre_hooks:
            ev.hooks.append(await self._hook_call(name, spec, None))
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
                ev.hooks.append(await self._hook_call(name, spec, group.name))
            await self._recover_group(spec, group, inp, run, ev.results, ev.failed)
            ev.groups.append(
                StepTime(step=group.name, started_at=t0.isoformat(), finished_at=workflow.now().isoformat())
            )
            group_failed = [v.vm for v in group.vms if v.vm in ev.failed]
            if group_failed and spec.failure_policy != "skip-vm":
                ev.status = "failed"
                break
            for name in group.post_hooks:
                ev.hooks.append(await self._hook_call(name, spec, group.name))
        if self._aborted is not None:
            ev.status = "aborted"
        if ev.status == "completed":
            for name in spec.post_hooks:
                ev.hooks.append(await self._hook_call(name, spec, None))

    async def _legacy_end(
        self, spec: PlanSpec, inp: FailoverInput, run: str, status: str
    ) -> CleanupOutcome | None:
        if inp.mode == "test":
            if status == "completed" and self._aborted is None:
                await self._legacy_lifetime(inp.ttl_s if inp.ttl_s is not None else spec.test_ttl_s)
            return await self._cleanup(spec, run, inp.mode)
        if status != "completed" and spec.failure_policy == "rollback-test":
            return await self._cleanup(spec, run, inp.mode)
        return None

    async def _legacy_lifetime(self, ttl: float) -> None:
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
