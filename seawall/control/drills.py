"""Drill schedules: each plan's ``drill_schedule`` as a Temporal Schedule (``drill/<plan>``) whose
action is a ``ScheduledDrill``; brought in line with the plans (created, updated, paused, deleted),
triggered now, and described (next run, last result).

Written once for every door: ``seawall plan schedule`` and the console's readiness read these.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.drills import DrillInput, RpoWatchInput
from seawall.contract.names import DRILL_SCHEDULE_PREFIX, RPO_WATCH_ID, Workflow, drill_schedule_id
from seawall.contract.search import SA_MODE, SA_PLAN
from seawall.control.errors import NotRunning
from seawall.model import RecoveryPlan
from seawall.model.plan import DrillSchedule


@dataclass(frozen=True)
class DrillScheduleState:
    plan: str
    schedule_id: str
    paused: bool
    next_runs: list[datetime]
    recent: list[datetime]  # when the schedule last started a drill (newest last)


def drill_input(plan: RecoveryPlan, schedule: DrillSchedule) -> DrillInput:
    return DrillInput(
        plan=plan.name,
        approve_gates=schedule.approve_gates,
        health_timeout_s=schedule.health_timeout.total_seconds(),
    )


def drill_schedule(plan: RecoveryPlan, schedule: DrillSchedule, queue: str) -> Schedule:
    approve = "approves the gates itself" if schedule.approve_gates else "waits for people at gates"
    return Schedule(
        action=ScheduleActionStartWorkflow(
            Workflow.SCHEDULED_DRILL,
            drill_input(plan, schedule),
            # The schedule appends the start time, so each drill has its own id under this prefix.
            id=drill_schedule_id(plan.name),
            task_queue=queue,
            typed_search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SA_PLAN, plan.name), SearchAttributePair(SA_MODE, "test")]
            ),
            static_summary=f"scheduled drill of {plan.name}",
        ),
        spec=ScheduleSpec(cron_expressions=[schedule.cron]),
        # One drill of a plan at a time; a missed slot (server down) is skipped, not made up for.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=schedule.paused, note=f"Seawall drill of {plan.name} at '{schedule.cron}' ({approve})"
        ),
    )


async def sync_schedules(
    client: Client, plans: list[RecoveryPlan], queue: str, keep: set[str] | None = None
) -> dict[str, str]:
    """Every plan's drill schedule as its file says: created, updated, or deleted when the plan no
    longer has one (or is gone). ``keep``: plans whose file is invalid now, whose schedules are left
    alone (a typo must not silently stop a plan's drills). Returns plan -> what was done. Idempotent."""
    done: dict[str, str] = {}
    wanted = {p.name: p for p in plans if p.drill_schedule is not None}
    for name, plan in wanted.items():
        assert plan.drill_schedule is not None
        schedule = drill_schedule(plan, plan.drill_schedule, queue)
        sid = drill_schedule_id(name)
        try:
            await client.create_schedule(sid, schedule)
            done[name] = "created"
        except ScheduleAlreadyRunningError:

            def update(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await client.get_schedule_handle(sid).update(update)
            done[name] = "updated"
    async for listed in await client.list_schedules():
        if listed.id.startswith(DRILL_SCHEDULE_PREFIX):
            plan_name = listed.id.removeprefix(DRILL_SCHEDULE_PREFIX)
            if plan_name not in wanted and plan_name not in (keep or set()):
                with contextlib.suppress(RPCError):  # deleted meanwhile
                    await client.get_schedule_handle(listed.id).delete()
                done[plan_name] = "deleted"
    return done


async def ensure_rpo_watch(client: Client, queue: str, interval_s: float = 60) -> str:
    """Start the RPO watcher (``WatchRpo``, ``watch/rpo``) unless it runs; its run id. Idempotent."""
    handle = await client.start_workflow(
        Workflow.WATCH_RPO,
        RpoWatchInput(interval_s=interval_s),
        id=RPO_WATCH_ID,
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="tells people of RPO breaches and recoveries",
    )
    return str(handle.result_run_id)


async def trigger(client: Client, plan: str) -> None:
    """Run the plan's drill schedule now (its overlap policy still applies)."""
    try:
        await client.get_schedule_handle(drill_schedule_id(plan)).trigger()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotRunning(plan) from None
        raise


async def describe(client: Client, plan: str) -> DrillScheduleState | None:
    """The plan's drill schedule as Temporal has it; None when it has none."""
    try:
        desc = await client.get_schedule_handle(drill_schedule_id(plan)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    # (Temporal turns cron strings into calendar specs: what the plan file says is the readable form.)
    return DrillScheduleState(
        plan=plan,
        schedule_id=desc.id,
        paused=desc.schedule.state.paused,
        next_runs=list(desc.info.next_action_times[:3]),
        recent=[a.started_at for a in desc.info.recent_actions],
    )
