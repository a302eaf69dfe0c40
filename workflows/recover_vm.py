"""RecoverVM: one VM of a plan run, recovered at the target site (the child ``RecoveryPlan`` starts).

It runs on the *target* site's queue, so every step that touches the target runs on a worker at that
site. Each resource is tagged with the run as it is made, so cleanup finds them all even when this
workflow died half-way.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import authority
from workflows.plan import FATAL, PERSISTENT, QUICK
from workflows.policies import HEARTBEAT_TIMEOUT

with workflow.unsafe.imports_passed_through():
    from activities.checks import CheckActivities
    from activities.target import RecoveryActivities
    from seawall.contract.messages import (
        ChosenPoint,
        CreateTargetRequest,
        DnsChange,
        PointRestore,
        RecoveredVM,
        RecoverVMInput,
        RecoverVMResult,
        Resource,
        StepTime,
        TargetVM,
    )
    from seawall.contract.names import Query, Workflow
    from seawall.contract.verify import CORRUPT_REPLICA
    from workflows.inputs import decode_input

T = TypeVar("T")

# A corrupt point makes the VM fall back to an older one at most this often (each fallback reads
# candidates in full); then the VM fails with the corruption named.
MAX_FALLBACKS = 3

# RecoverVM runs its first choice of a point as a local activity (before: a regular one).
LOCAL_CHOOSE_PATCH = "recover-vm-local-choose-point"


def _corrupt(exc: ActivityError) -> bool:
    return isinstance(exc.cause, ApplicationError) and exc.cause.type == CORRUPT_REPLICA


def _cause(exc: ActivityError) -> str:
    return str(exc.cause.message if isinstance(exc.cause, ApplicationError) else exc.cause or exc)


@workflow.defn(name=Workflow.RECOVER_VM)
class RecoverVMWorkflow:
    """choose point -> materialize disks -> create, re-IP, power on -> health -> DNS, at the target."""

    def __init__(self) -> None:
        self._step = "starting"
        self._steps: list[StepTime] = []
        self._vm = ""

    @workflow.query(name=Query.STEP)
    def step(self) -> str:
        return self._step

    async def _timed(self, step: str, work: Awaitable[T]) -> T:
        """Run one step, recording when it started and finished (the report's per-VM timeline)."""
        self._step = step
        workflow.set_current_details(f"{self._vm}: {step}")
        t0 = workflow.now()
        result = await work
        self._steps.append(
            StepTime(step=step, started_at=t0.isoformat(), finished_at=workflow.now().isoformat())
        )
        return result

    @workflow.run
    async def run(self, raw: Any = None) -> RecoverVMResult:
        inp = decode_input(RecoverVMInput, raw)
        started = workflow.now()
        self._vm = inp.vm
        if inp.mode != "test" and workflow.info().parent is None and workflow.patched(authority.PATCH):
            # Started on its own (from the Temporal UI): a real recovery without the plan's fencing
            # and authorisation. Only RecoveryPlan, which checks both, starts it in a real mode.
            raise authority.refused(
                f"RecoverVM of {inp.vm} in mode {inp.mode} runs only as a step of a RecoveryPlan, "
                "started through a Seawall door: nothing was done"
            )
        point: ChosenPoint = await self._timed("choose recovery point", self._choose_point(inp))
        if inp.in_place:
            original = await self._timed(
                "restore onto the original VM and start it",
                workflow.execute_activity_method(
                    RecoveryActivities.restore_in_place,
                    PointRestore(target=inp, point=point),
                    start_to_close_timeout=timedelta(hours=12),
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=PERSISTENT,
                    summary=f"restore {inp.vm} in place from point {point.point_id}",
                ),
            )
            return await self._finish(inp, point, original, [], started)
        refused: list[str] = []
        while True:
            try:
                disks = await self._timed(
                    "materialize disks",
                    workflow.execute_activity_method(
                        RecoveryActivities.materialize_disks,
                        PointRestore(target=inp, point=point, replaces=bool(refused)),
                        start_to_close_timeout=timedelta(hours=12),
                        heartbeat_timeout=HEARTBEAT_TIMEOUT,
                        retry_policy=PERSISTENT,
                        summary=f"materialize {inp.vm}: {len(point.disks)} disk(s) of point {point.point_id}",
                    ),
                )
                break
            except ActivityError as exc:
                # Bad data is no reason to wait: fall back to the newest older point that verifies.
                if not _corrupt(exc) or len(refused) >= MAX_FALLBACKS:
                    raise
                if not workflow.patched("recover-vm-falls-back-on-corrupt-point"):
                    raise
                refused.append(point.point_id)
                try:
                    point = await self._timed(
                        "choose an older recovery point (newer one corrupt)",
                        workflow.execute_activity_method(
                            RecoveryActivities.choose_point,
                            inp.model_copy(update={"refused": refused}),
                            # It verifies each candidate in full before choosing it: a long call.
                            start_to_close_timeout=timedelta(hours=12),
                            heartbeat_timeout=HEARTBEAT_TIMEOUT,
                            retry_policy=QUICK,
                        ),
                    )
                except ActivityError as none:
                    # The report names both: the corruption, and why nothing older could be used.
                    raise ApplicationError(
                        f"{_cause(exc)}; no fallback: {_cause(none)}",
                        type=CORRUPT_REPLICA,
                        non_retryable=True,
                    ) from None
                point = point.model_copy(update={"note": f"{_cause(exc)}; {point.note}"})
        vm = await self._timed(
            "create, re-IP and power on",
            workflow.execute_activity_method(
                RecoveryActivities.create_target_vm,
                CreateTargetRequest(target=inp, disks=disks),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=QUICK,
                summary=f"create, re-IP and power on {inp.vm} at {inp.target_site}",
            ),
        )
        return await self._finish(inp, point, vm, disks.resources, started)

    def _choose_point(self, inp: RecoverVMInput) -> Awaitable[ChosenPoint]:
        """The first choice of a point: a read of the store's point list, idempotent and quick, so a
        local activity run inside the workflow task that then schedules the materialize. It saves a
        server round trip and a workflow task per VM (a 100-VM plan's critical path had 5 of them)."""
        # The patch picks only how the activity runs: its options are the ones shipped before.
        run = (
            workflow.execute_local_activity_method
            if workflow.patched(LOCAL_CHOOSE_PATCH)
            else workflow.execute_activity_method
        )
        return run(
            RecoveryActivities.choose_point,
            inp,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=QUICK,
            summary=f"choose the recovery point of {inp.vm}",
        )

    async def _finish(
        self,
        inp: RecoverVMInput,
        point: ChosenPoint,
        vm: TargetVM,
        made: list[Resource],
        started: datetime,
    ) -> RecoverVMResult:
        health = await self._timed(
            "health checks",
            workflow.execute_activity_method(
                CheckActivities.check_health,
                RecoveredVM(target=inp, vm=vm),
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=FATAL),
                summary=f"health checks of {vm.name}",
            ),
        )
        healthy_at = workflow.now()
        dns: list[DnsChange] = []
        # A drill runs in an isolated network: production DNS keeps pointing at production; only
        # records the plan marks ``in_test`` (names the drill's own network uses) are set, and its
        # cleanup puts them back.
        if inp.mode != "test" or (inp.drill_dns and workflow.patched("dns-in-drills")):
            dns = await self._timed(
                "update DNS",
                workflow.execute_activity_method(
                    CheckActivities.update_dns,
                    RecoveredVM(target=inp, vm=vm),
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=QUICK,
                    summary=f"update DNS for {inp.vm}",
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
            steps=self._steps,
            started_at=started.isoformat(),
            healthy_at=healthy_at.isoformat(),
            achieved_rpo_s=(started - datetime.fromisoformat(point.created_at)).total_seconds(),
            point_note=point.note,
            notes=vm.notes,
            app_consistent=point.app_consistent,
            consistency_group=point.consistency_group,
            replica_store=point.store,
        )
