"""RecoverVM: one VM of a plan run, recovered at the target site (the child ``RecoveryPlan`` starts).

It runs on the *target* site's queue, so every step that touches the target runs on a worker at that
site. Each resource is tagged with the run as it is made, so cleanup finds them all even when this
workflow died half-way.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.plan import FATAL, PERSISTENT, QUICK

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

T = TypeVar("T")


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
    async def run(self, inp: RecoverVMInput) -> RecoverVMResult:
        started = workflow.now()
        self._vm = inp.vm
        point: ChosenPoint = await self._timed(
            "choose recovery point",
            workflow.execute_activity_method(
                RecoveryActivities.choose_point,
                inp,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=QUICK,
            ),
        )
        if inp.in_place:
            original = await self._timed(
                "restore onto the original VM and start it",
                workflow.execute_activity_method(
                    RecoveryActivities.restore_in_place,
                    PointRestore(target=inp, point=point),
                    start_to_close_timeout=timedelta(hours=12),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=PERSISTENT,
                ),
            )
            return await self._finish(inp, point, original, [], started)
        disks = await self._timed(
            "materialize disks",
            workflow.execute_activity_method(
                RecoveryActivities.materialize_disks,
                PointRestore(target=inp, point=point),
                start_to_close_timeout=timedelta(hours=12),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=PERSISTENT,
            ),
        )
        vm = await self._timed(
            "create, re-IP and power on",
            workflow.execute_activity_method(
                RecoveryActivities.create_target_vm,
                CreateTargetRequest(target=inp, disks=disks),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=QUICK,
            ),
        )
        return await self._finish(inp, point, vm, disks.resources, started)

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
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=FATAL),
            ),
        )
        healthy_at = workflow.now()
        dns: list[DnsChange] = []
        if inp.mode != "test":
            # A drill runs in an isolated network: production DNS keeps pointing at production.
            dns = await self._timed(
                "update DNS",
                workflow.execute_activity_method(
                    CheckActivities.update_dns,
                    RecoveredVM(target=inp, vm=vm),
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
            steps=self._steps,
            started_at=started.isoformat(),
            healthy_at=healthy_at.isoformat(),
            replica_store=point.store,
        )
