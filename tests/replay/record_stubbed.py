"""Record RecoveryPlan histories of shapes the lab cannot easily produce (a failed VM, a stop, a retry,
an approved rollback, a drill ended at a gate by its time to live), against the stub activities of
``tests/workflows`` — no lab needed:

    .venv/bin/python -m tests.replay.record_stubbed

A replay runs no activity, so a history recorded against stubs replays the workflow code exactly as one
recorded against the lab does.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

from seawall.contract.messages import ApproveInput, FailoverInput, RetryInput, RollbackInput
from seawall.contract.names import Activity as A
from seawall.contract.search import SEARCH_ATTRIBUTES
from seawall.lab.temporal import temporal_binary
from tests.workflows.conftest import progress_until, rigged
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.recovery import RecoveryPlanWorkflow

HERE = Path(__file__).resolve().parent / "histories"


async def _save(handle: WorkflowHandle[Any, Any], name: str) -> None:
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def record() -> None:
    env = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=str(temporal_binary()),
        dev_server_extra_args=["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"],
    )
    async with env:
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
            await handle.execute_update(
                RecoveryPlanWorkflow.approve, ApproveInput(gate="rollback", by="frank")
            )
            await handle.result()
            await _save(handle, "recovery_plan_stopped_retried_rolled_back")
        # A drill waiting at a gate nobody answers: ended by its time to live.
        stubs = Stubs()
        async with rigged(env, stubs) as rig:
            stubs.spec = plan_spec(
                "erp",
                rig.source,
                rig.target,
                group("data", vm_step("db", "data")),
                group("front", vm_step("web", "front"), gate="go"),
            )
            handle = await rig.start(
                RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode="test", ttl_s=3600), "plan"
            )
            await progress_until(handle, lambda p: p["pending_gate"] == "go")
            await env.fast_forward(handle, timedelta(hours=1, minutes=1))  # type: ignore[attr-defined]
            await handle.result()
            await _save(handle, "recovery_plan_drill_gate_ttl")


if __name__ == "__main__":
    asyncio.run(record())
