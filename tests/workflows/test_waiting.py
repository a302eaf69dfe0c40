"""`seawall failover --wait`'s wait (control.waiting) against a real RecoveryPlan on the test server:
it returns when every VM is healthy, at a gate when asked to, or when the run fails; and the run
carries Temporal user metadata (summaries) for the UI."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError

from seawall.contract.messages import ApproveInput, FailoverInput
from seawall.contract.names import Activity as A
from seawall.contract.names import recover_id, recover_vm_id
from seawall.control import recovery
from seawall.control.waiting import wait_until_up
from tests.workflows.conftest import Rig
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.recovery import RecoveryPlanWorkflow

RIG = Callable[[Stubs], Any]


def gated(rig: Rig) -> str:
    plan = f"erp-{rig.tag}"
    rig.stubs.spec = plan_spec(
        plan,
        rig.source,
        rig.target,
        group("data", vm_step("db", "data", boot_delay_s=1)),
        group("apps", vm_step("app", "apps"), gate="go"),
    )
    return plan


async def test_wait_returns_at_the_gate_when_asked_then_when_every_vm_is_healthy(rig_for: RIG) -> None:
    async with rig_for(Stubs()) as rig:
        plan = gated(rig)
        handle = await recovery.start_failover(rig.client, rig.queue, FailoverInput(plan=plan, mode="test"))
        seen: list[dict[str, Any]] = []
        at_gate = await wait_until_up(rig.client, plan, stop_at_gate=True, poll_s=0.1, seen=seen.append)
        assert at_gate.state == "gate" and "gate go waits" in at_gate.detail
        assert at_gate.run_id == handle.result_run_id

        async def approve_soon() -> None:
            await asyncio.sleep(0.5)
            await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go", by="t"))

        approving = asyncio.ensure_future(approve_soon())
        up = await wait_until_up(rig.client, plan, poll_s=0.1, seen=seen.append)
        await approving
        assert up.state == "healthy" and up.detail == "all 2 VMs healthy"
        assert up.progress["vms"] == {"db": "healthy", "app": "healthy"}
        assert any(p.get("pending_gate") == "go" for p in seen)  # the CLI told the gate while waiting
        # The drill stands: --wait returned long before its cleanup.
        assert (await handle.describe()).status.name == "RUNNING"

        # The Temporal UI's view: the run's own summary, and each VM's steps and timers named.
        started = (await handle.fetch_history()).events[0]
        summary = await rig.client.data_converter.decode([started.user_metadata.summary])
        assert summary == [f"test failover of {plan}"]
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        report = await handle.result()
        child = rig.client.get_workflow_handle(recover_vm_id(plan, report.run, "db"))
        names = []
        for event in (await child.fetch_history()).events:
            # A regular activity's summary is on its scheduled event, a local activity's (the first
            # choice of a point) on its marker: the Temporal UI shows both.
            if event.event_type in (
                EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                EventType.EVENT_TYPE_MARKER_RECORDED,
            ) and event.HasField("user_metadata"):
                names += await rig.client.data_converter.decode([event.user_metadata.summary])
        assert "choose the recovery point of db" in names
        assert any(n.startswith("materialize db: ") for n in names), names
        timers = [
            e
            for e in (await handle.fetch_history()).events
            if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        ]
        timer_names = [
            (await rig.client.data_converter.decode([t.user_metadata.summary]))[0]
            for t in timers
            if t.HasField("user_metadata")
        ]
        assert "boot delay before db" in timer_names, timer_names


async def test_wait_says_stopped_when_a_step_fails(rig_for: RIG) -> None:
    async with rig_for(Stubs(failing={A.CHECK_HEALTH: {"db"}})) as rig:
        plan = gated(rig)
        await recovery.start_failover(rig.client, rig.queue, FailoverInput(plan=plan, mode="test"))
        waited = await wait_until_up(rig.client, plan, poll_s=0.1)
        # Under `stop` the failed drill waits for the operator: --wait says so instead of waiting on.
        assert waited.state == "stopped" and "db" in waited.detail and "retry" in waited.detail, waited
        handle = rig.client.get_workflow_handle(recover_id(plan))
        assert (await handle.describe()).status.name == "RUNNING"
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        with pytest.raises(WorkflowFailureError):  # cleaned up, and failed: db never became healthy
            await handle.result()
        assert (await wait_until_up(rig.client, plan, poll_s=0.1)).state == "failed"


def _cli(rig: Rig, *args: str) -> tuple[int, dict[str, Any]]:
    """`seawall ARGS --json` as a process against the test server, on the rig's orchestration queue."""
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "SEAWALL_TEMPORAL_ADDRESS": rig.client.service_client.config.target_host,
        "SEAWALL_TEMPORAL_NAMESPACE": rig.client.namespace,
        "SEAWALL_ORCHESTRATION_QUEUE": rig.queue,
        # The rig's plans exist only in its stubs: a CLI without the files leaves the lookup to the
        # worker (the failover verb refuses a plan the files it has do not define).
        "SEAWALL_INVENTORY": "/nonexistent/seawall-inventory.yaml",
    }
    done = subprocess.run(
        [sys.executable, "-m", "seawall.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


async def test_the_cli_exit_codes_of_failover_wait_and_wait(rig_for: RIG) -> None:
    async with rig_for(Stubs()) as rig:
        plan = gated(rig)
        code, out = await asyncio.to_thread(
            _cli, rig, "failover", plan, "--mode", "test", "--wait", "--stop-at-gate"
        )
        assert code == 4 and out["state"] == "gate" and "gate go waits" in out["detail"], out
        handle = rig.client.get_workflow_handle(recover_id(plan))
        await handle.execute_update(RecoveryPlanWorkflow.approve, ApproveInput(gate="go", by="t"))
        code, out = await asyncio.to_thread(_cli, rig, "wait", plan)
        assert (
            code == 0 and out["state"] == "healthy" and out["vms"] == {"db": "healthy", "app": "healthy"}
        ), out
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        await handle.result()
        code, out = await asyncio.to_thread(_cli, rig, "wait", plan)
        assert code == 0 and out["state"] == "completed", out
        code, _ = await asyncio.to_thread(_cli, rig, "wait", f"none-{rig.tag}")
        assert code == 2


async def test_the_cli_wait_exits_1_when_the_run_failed(rig_for: RIG) -> None:
    async with rig_for(Stubs(failing={A.CHECK_HEALTH: {"db"}})) as rig:
        plan = gated(rig)
        code, out = await asyncio.to_thread(_cli, rig, "failover", plan, "--mode", "test", "--wait")
        assert code == 1 and out["state"] == "stopped", out
        handle = rig.client.get_workflow_handle(recover_id(plan))
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
