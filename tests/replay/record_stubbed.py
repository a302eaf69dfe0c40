"""Record RecoveryPlan histories of shapes the lab cannot easily produce (a failed VM, a stop, a retry,
an approved rollback, a drill ended at a gate by its time to live), against the stub activities of
``tests/workflows`` — no lab needed:

    .venv/bin/python -m tests.replay.record_stubbed [plans|planned|cycles|group-release|seeds|unprotect]

Name one set to record only it: recording again replaces the files, and a history recorded with older
code is what proves that code's runs still replay.
A replay runs no activity, so a history recorded against stubs replays the workflow code exactly as one
recorded against the lab does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

from seawall.contract.messages import (
    ApproveInput,
    CycleInput,
    FailoverInput,
    GroupCycleInput,
    PlanSpec,
    RetryInput,
    RollbackInput,
    UnprotectInput,
)
from seawall.contract.names import Activity as A
from seawall.contract.queues import site_queue
from seawall.contract.search import SEARCH_ATTRIBUTES
from seawall.lab.temporal import ONE_PARTITION, temporal_binary
from tests.workflows.conftest import Rig, cancel_while_snapshotting, progress_until, rigged
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.groups import GroupReplicationCycleWorkflow
from workflows.recovery import RecoveryPlanWorkflow
from workflows.replication import ReplicationCycleWorkflow
from workflows.unprotect import UnprotectVMWorkflow

HERE = Path(__file__).resolve().parent / "histories"


async def _save(handle: WorkflowHandle[Any, Any], name: str) -> None:
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def record(only: str | None) -> None:
    env = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=str(temporal_binary()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            *ONE_PARTITION,
        ],
    )
    async with env:
        if only in (None, "plans"):
            await record_plans(env)
        if only in (None, "planned"):
            await record_planned(env)
        if only in (None, "cycles"):
            await record_cycles(env)
        if only in (None, "unprotect"):
            await record_unprotect(env)
        if only in (None, "group-release"):
            await record_group_release(env)
        if only in (None, "seeds"):
            await record_seeds(env)


async def record_seeds(env: WorkflowEnvironment) -> None:
    """A VM's and a group's seed cycle (patch ``seeds-on-their-own-queue``): the ship and the verify
    on the site's seed queue."""
    for run, inp, name in (
        (ReplicationCycleWorkflow.run, CycleInput(vm="web"), "replication_cycle_seed_queue"),
        (
            GroupReplicationCycleWorkflow.run,
            GroupCycleInput(group="erp"),
            "group_replication_cycle_seed_queue",
        ),
    ):
        async with rigged(env, Stubs()) as rig:
            handle = await env.client.start_workflow(
                run,  # type: ignore[arg-type]
                inp,
                id=rig.wid(name),
                task_queue=site_queue(rig.source),
            )
            await handle.result()
            await _save(handle, name)


async def record_group_release(env: WorkflowEnvironment) -> None:
    """A group cycle whose member's snapshot fails (patch ``group-cycle-releases-by-name``): every
    member's snapshot is released by name, the failed one's too."""
    name = "group_replication_cycle_release_by_name"
    async with rigged(env, Stubs(failing={A.CREATE_SNAPSHOT: {"app"}})) as rig:
        handle = await env.client.start_workflow(
            GroupReplicationCycleWorkflow.run,
            GroupCycleInput(group="erp"),
            id=rig.wid(name),
            task_queue=site_queue(rig.source),
        )
        # The member's failure fails the cycle, after the releases.
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        await _save(handle, name)


async def record_unprotect(env: WorkflowEnvironment) -> None:
    """Unprotect with its sweep (patch ``unprotect-sweeps-snapshots``), and with a source site that
    answers nothing (the sweep given up, the unprotect completed)."""
    for stubs, name in (
        (Stubs(), "unprotect_vm_sweep"),
        (Stubs(failing={A.RELEASE_ORPHAN_SNAPSHOTS: None}), "unprotect_vm_sweep_failed"),
    ):
        async with rigged(env, stubs) as rig:
            handle = await env.client.start_workflow(
                UnprotectVMWorkflow.run,
                UnprotectInput(vm="web", delete_replica=True),
                id=rig.wid(name),
                task_queue=rig.queue,
            )
            await handle.result()
            await _save(handle, name)


async def record_cycles(env: WorkflowEnvironment) -> None:
    """Cycles cancelled while their snapshot calls ran (patch ``cycle-snapshot-guard``): the call
    outlasts the workflow task timeout, so the cancel is delivered during it."""
    for run, inp, name in (
        (ReplicationCycleWorkflow.run, CycleInput(vm="web"), "replication_cycle_cancelled_at_snapshot"),
        (
            GroupReplicationCycleWorkflow.run,
            GroupCycleInput(group="erp"),
            "group_replication_cycle_cancelled_at_snapshot",
        ),
    ):
        stubs = Stubs(uninterruptible={A.CREATE_SNAPSHOT: 7.0})
        async with rigged(env, stubs) as rig:
            handle, _ = await cancel_while_snapshotting(rig, run, inp, name)
            await _save(handle, name)
        # The same cycle undisturbed: the guard's marker on the ordinary path.
        async with rigged(env, Stubs()) as rig:
            handle = await env.client.start_workflow(
                run,  # type: ignore[arg-type]
                inp,
                id=rig.wid(name + "-whole"),
                task_queue=site_queue(rig.source),
            )
            await handle.result()
            await _save(handle, name.replace("cancelled_at_snapshot", "snapshot_guard"))


async def record_plans(env: WorkflowEnvironment) -> None:
    # A real failover: db fails, the run stops; retry fails again; an approved rollback.
    stubs = Stubs(failing={A.CREATE_TARGET_VM: {"db"}})
    async with rigged(env, stubs) as rig:
        stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("data", vm_step("db", "data"), vm_step("cache", "data")),
            group("front", vm_step("web", "front")),
            failure_policy="stop",
            pre_hooks=["announce"],
        )
        handle = await rig.start(
            RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="unplanned"), "plan"
        )
        await progress_until(handle, lambda p: p["stopped"] is not None)
        await handle.execute_update(RecoveryPlanWorkflow.retry, RetryInput(by="erin"))
        await progress_until(
            handle, lambda p: p["stopped"] is not None and len(stubs.of(A.CREATE_TARGET_VM)) > 2
        )
        await handle.execute_update(
            RecoveryPlanWorkflow.rollback, RollbackInput(by="erin", reason="db is lost")
        )
        await progress_until(handle, lambda p: p["pending_gate"] == "rollback")
        await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="rollback", by="frank"))
        await handle.result()
        await _save(handle, "recovery_plan_stopped_retried_rolled_back")
    # A drill waiting at a gate nobody answers: ended by its time to live.
    stubs = Stubs()
    async with rigged(env, stubs) as rig:
        stubs.spec = _db_then_web(rig, gate="go")
        handle = await rig.start(
            RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test", ttl_s=3600), "plan"
        )
        await progress_until(handle, lambda p: p["pending_gate"] == "go")
        await env.fast_forward(handle, timedelta(hours=1, minutes=1))  # type: ignore[attr-defined]
        await handle.result()
        await _save(handle, "recovery_plan_drill_gate_ttl")


def _db_then_web(rig: Rig, gate: str | None = None) -> PlanSpec:
    return plan_spec(
        "erp",
        rig.source,
        rig.target,
        group("data", vm_step("db", "data")),
        group("front", vm_step("web", "front"), gate=gate),
    )


async def record_planned(env: WorkflowEnvironment) -> None:
    # A planned failover whose running cycles are stopped before the sources are fenced.
    stubs = Stubs()
    async with rigged(env, stubs) as rig:
        stubs.spec = _db_then_web(rig)
        handle = await rig.start(RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="planned"), "plan")
        await handle.result()
        assert A.CANCEL_FAILOVER_CYCLES in stubs.names()
        await _save(handle, "recovery_plan_planned_final_cycle_alone")


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1] if len(sys.argv) > 1 else None))
