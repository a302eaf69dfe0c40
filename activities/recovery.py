"""Recovery at the orchestration queue: plan loading, the plan's shape, schedules paused, the report.

The per-VM steps run at the sites' workers: ``activities.target`` (choose, materialize, create,
failback in place), ``activities.checks`` (health, DNS), ``activities.hooks``, ``activities.cleanup``
at the target site, and ``activities.fence`` at the source.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from temporalio import activity
from temporalio.client import ScheduleHandle
from temporalio.exceptions import ApplicationError

from activities.schedules import groups_of_vms
from seawall import reports
from seawall.contract.intents import Authority, IntentCheck, IntentRefused, verify
from seawall.contract.messages import (
    GroupStep,
    PlanSpec,
    PlanSpecRequest,
    RecoverVMInput,
    ReportWritten,
    RunReport,
    VMsRef,
    VMStep,
)
from seawall.contract.names import Activity, group_schedule_id, hook_key, schedule_id
from seawall.contract.search import SA_INTENT
from seawall.model import (
    Inventory,
    RecoveryPlan,
)
from seawall.plans import PlanLookupError, load_catalogue
from seawall.plans.stores import stores_without_mirror
from seawall.runtime.config import Settings
from seawall.security.intents import IntentKeys, keys_from_settings


def _fatal(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def find_plan(settings: Settings, name: str) -> tuple[RecoveryPlan, Inventory]:
    """The plan called ``name`` and its inventory, from the one catalogue (re-read only on a change)."""
    try:
        catalogue = load_catalogue(settings.inventory, settings.plans_dir)
        return catalogue.plan(name), catalogue.inventory
    except PlanLookupError as exc:
        raise _fatal(str(exc), "PlanInvalid") from None


def plan_spec(plan: RecoveryPlan, inventory: Inventory, direction: str = "failover") -> PlanSpec:
    gates = {g.before: g for g in plan.gates}
    groups = []
    for group in plan.groups:
        gate = gates.get(group.name)
        groups.append(
            GroupStep(
                name=group.name,
                boot_delay_s=group.boot_delay.total_seconds(),
                vms=[
                    VMStep(
                        vm=v.name,
                        group=group.name,
                        depends_on=list(v.depends_on),
                        boot_delay_s=v.boot_delay.total_seconds(),
                        drill_dns=any(r.in_test for r in v.dns),
                    )
                    for v in group.vms
                ],
                pre_hooks=[h.name for h in group.pre_hooks],
                post_hooks=[h.name for h in group.post_hooks],
                gate=gate.name if gate else None,
                gate_message=gate.message if gate else None,
                gate_timeout_s=gate.timeout.total_seconds() if gate and gate.timeout else None,
                gate_on_timeout=gate.on_timeout if gate else "abort",
                gate_role=gate.role if gate else None,
            )
        )
    # Failing back runs the same groups the other way: from the plan's target to its source.
    source, target = (plan.source_site, plan.target_site)
    if direction == "failback":
        source, target = target, source
    return PlanSpec(
        plan=plan.name,
        source_site=source,
        target_site=target,
        target_kind=inventory.site(target).kind,
        failure_policy=str(
            plan.failure_policy.value if hasattr(plan.failure_policy, "value") else plan.failure_policy
        ),
        test_ttl_s=plan.test_ttl.total_seconds(),
        pre_hooks=[h.name for h in plan.pre_hooks],
        post_hooks=[h.name for h in plan.post_hooks],
        groups=groups,
        hook_sites=hook_sites(plan),
        consistency_groups=consistency_groups(plan, inventory),
        # Failing back reads the points replicated the other way: the plan's choice is for failovers.
        from_mirror=plan.from_mirror and direction != "failback",
    )


def hook_sites(plan: RecoveryPlan) -> dict[str, str]:
    """The hooks that name the site whose worker runs them (``Hook.site``); the rest run at the target."""
    sites = {hook_key(None, h.name): h.site for h in (*plan.pre_hooks, *plan.post_hooks) if h.site}
    for group in plan.groups:
        for h in (*group.pre_hooks, *group.post_hooks):
            if h.site:
                sites[hook_key(group.name, h.name)] = h.site
    return sites


def consistency_groups(plan: RecoveryPlan, inventory: Inventory) -> dict[str, list[str]]:
    """The inventory's consistency groups with members in the plan, and those members."""
    in_plan = [vm.name for _, vm in plan.vms()]
    out: dict[str, list[str]] = {}
    for group in inventory.consistency_groups:
        members = [vm for vm in in_plan if vm in group.vms]
        if members:
            out[group.name] = members
    return out


def target_name(inp: RecoverVMInput) -> str:
    """The recovered VM's name: the source's for a failover, a run-suffixed one for a drill."""
    return inp.vm if inp.mode != "test" else f"{inp.vm}-drill-{inp.run[-8:]}"


class OrchestrationActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Loaded at worker start: a bad reference stops the worker, not a failover hours later.
        self.intent_keys: IntentKeys | None = keys_from_settings(settings.intent_keys)

    @activity.defn(name=Activity.LOAD_PLAN_SPEC)
    def load_plan_spec(self, req: PlanSpecRequest) -> PlanSpec:
        found, inventory = find_plan(self.settings, req.plan)
        spec = plan_spec(found, inventory, req.direction)
        if (req.from_mirror and req.direction != "failback") or spec.from_mirror:
            # Refused here, before a source is fenced: a VM without a mirror could not be recovered.
            lacking = stores_without_mirror(found, inventory)
            if lacking:
                raise _fatal(
                    f"plan {req.plan!r}: recovery from the mirror asked for, but the replica stores of "
                    f"{', '.join(lacking)} have no mirror",
                    "PlanInvalid",
                )
        return spec

    @activity.defn(name=Activity.WRITE_REPORT)
    def write_report(self, report: RunReport) -> ReportWritten:
        if report.targets is None:
            # The plan's promises as they stand when the run ends: the report judges the run by them.
            try:
                found, _ = find_plan(self.settings, report.plan)
            except ApplicationError:
                found = None  # the plan file broke since the run started: the report has no targets
            if found is not None:
                report = report.model_copy(update={"targets": reports.targets_of(found)})
        json_path, html_path = reports.write(self.settings.reports_dir, report)
        return ReportWritten(json_path=str(json_path.resolve()), html_path=str(html_path.resolve()))

    @activity.defn(name=Activity.PAUSE_SCHEDULES)
    async def pause_schedules(self, req: VMsRef) -> int:
        """Stop scheduled cycles of the VMs being failed over, and of their consistency groups (a group's
        cycles snapshot every member): their sources are about to be fenced."""
        return await self._each_schedule(req.vms, lambda h: h.pause(note="failover in progress"))

    @activity.defn(name=Activity.RESUME_SCHEDULES)
    async def resume_schedules(self, req: VMsRef) -> int:
        """After an approved rollback: the sources run again, so their schedules replicate them again."""
        return await self._each_schedule(req.vms, lambda h: h.unpause(note="failover rolled back"))

    def _inventory(self) -> Inventory:
        return load_catalogue(self.settings.inventory, self.settings.plans_dir).inventory

    async def _each_schedule(self, vms: list[str], act: Callable[[ScheduleHandle], Awaitable[None]]) -> int:
        """``act`` on each VM's schedule and each of their groups' that exists; how many there were."""
        from temporalio.service import RPCError, RPCStatusCode

        done = 0
        groups = groups_of_vms(self._inventory, vms, "consistency groups' schedules left as they are")
        for sid in [schedule_id(vm) for vm in vms] + [group_schedule_id(g) for g in groups]:
            try:
                await act(activity.client().get_schedule_handle(sid))
                done += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return done

    @activity.defn(name=Activity.CHECK_INTENT)
    async def check_intent(self, req: IntentCheck) -> Authority:
        """Verify the intent a workflow was started with, with this worker's keys and clock; refuse a
        nonce another run already used. The answer (recorded in history) carries the worker's policy."""
        policy = {
            "unsigned_drills": self.settings.intent_unsigned_drills,
            "confirm_wait_s": self.settings.intent_confirm_wait_s,
        }
        if self.intent_keys is None:
            return Authority(enforced=False, **policy)
        if req.intent is None:
            return Authority(enforced=True, **policy)
        try:
            claims = verify(
                req.intent,
                self.intent_keys.by_id,
                time.time(),
                action=req.action,
                plan=req.plan,
                mode=req.mode,
                direction=req.direction,
                run=req.run,
                options=req.options,
                needs=req.needs,
            )
        except IntentRefused as exc:
            raise _fatal(str(exc), "IntentRefused") from None
        async for other in activity.client().list_workflows(f"{SA_INTENT.name} = '{claims.nonce}'"):
            if other.run_id != req.run_id:
                used = f"intent was already used by {other.id} run {other.run_id} (replayed)"
                raise _fatal(used, "IntentRefused")
        return Authority(
            enforced=True, verified=True, user=claims.user, role=claims.role, nonce=claims.nonce, **policy
        )
