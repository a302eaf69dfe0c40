"""What the recovery workflows share: the errors no retry can fix, and the plan's shape.

``RecoveryPlan``, ``RecoverVM``, ``CleanupTest``, ``CommitFailover`` and ``Reprotect`` all start from a
plan's shape, read by an activity from the worker's plan files; none of them reads a file itself.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.policies import persistent, quick

with workflow.unsafe.imports_passed_through():
    from activities.recovery import OrchestrationActivities
    from seawall.contract.messages import PlanSpec, PlanSpecRequest

FATAL = [
    "PlanInvalid",
    "NotProtected",
    "NoRecoveryPoint",
    "CredentialsError",
    "KeyMissing",
    "WrongKey",
    # Bad data in a point: retrying reads the same bytes (the activities raise CorruptReplica; a
    # worker that lets the data path's own error through names these).
    "CorruptReplica",
    "BadBlockError",
    "DigestMismatchError",
    "InvalidInput",
]
QUICK = quick(FATAL)
PERSISTENT = persistent(FATAL)


async def load_spec(plan: str, direction: str | None = None, from_mirror: bool = False) -> PlanSpec:
    """The plan's shape, read by a worker from its plan files (a direction only for failback;
    ``from_mirror``: refused unless every VM's replica store has a mirror)."""
    req = PlanSpecRequest(plan=plan, direction=direction) if direction else PlanSpecRequest(plan=plan)
    return await workflow.execute_activity_method(
        OrchestrationActivities.load_plan_spec,
        req.model_copy(update={"from_mirror": True}) if from_mirror else req,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=QUICK,
    )
