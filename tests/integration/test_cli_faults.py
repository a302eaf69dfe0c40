"""Every CLI verb on a run in any state answers with one line and an exit code, never a traceback:
a run whose workflow task keeps failing, one that does not exist or has ended, an unreachable Temporal,
and a failed run's reason (the activity's own message). Real processes against the lab's Temporal."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from subprocess import PIPE

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from seawall.contract.names import recover_id
from seawall.lab import LabInfo
from tests.integration.replication_env import ReplicationEnv, replication_env

ROOT = Path(__file__).resolve().parents[2]


async def seawall(
    env: ReplicationEnv, *args: str, address: str | None = None, inventory: Path | None = None
) -> tuple[int, str, str]:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SEAWALL_TEMPORAL_ADDRESS": address or env.settings.temporal_address,
        "SEAWALL_INVENTORY": str(inventory or env.settings.inventory),
        "SEAWALL_PLANS_DIR": str(env.settings.plans_dir),
        "SEAWALL_ORCHESTRATION_QUEUE": env.settings.orchestration_queue,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "seawall.cli", *args, env=environ, cwd=ROOT, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


async def test_every_verb_on_a_stuck_run_says_so_in_one_line(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with replication_env(lab, tmp_path, lab_state_dir) as env:
        # A run whose workflow task fails on every attempt: a type this worker does not have (what a run
        # looked like when its input could not be decoded).
        stuck = await env.client.start_workflow(
            "RecoveryPlanFromTheFuture",
            {"plan": "jam"},
            id=recover_id("jam"),
            task_queue=env.settings.orchestration_queue,
        )
        for _ in range(100):
            history = await stuck.fetch_history()
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the stuck run's workflow task never failed")
        for verb in (
            ["abort", "jam", "--reason", "stuck"],
            ["cleanup", "jam"],
            ["approve", "jam", "--gate", "g"],
        ):
            code, _, err = await seawall(env, *verb)
            line = one_line(err)
            assert code == 1 and "stuck" in line and "seawall abort jam --force" in line, (verb, code, line)
        code, out, err = await seawall(env, "abort", "jam", "--reason", "stuck", "--force")
        assert code == 0 and "terminated" in out, (code, out, err)
        assert (await stuck.describe()).status == WorkflowExecutionStatus.TERMINATED

        # Ended, or never started: nothing to send an update to.
        for plan in ("jam", "never-started"):
            code, _, err = await seawall(env, "abort", plan, "--reason", "x")
            assert code == 2 and one_line(err) == f"no failover of {plan} is running", (code, err)

        # A plan the files do not define: refused where the CLI runs, before any run starts.
        nope = f"nope-{uuid.uuid4().hex[:6]}"
        code, _, err = await seawall(env, "failover", nope, "--mode", "test", "--wait")
        refused = f"no recovery plan named '{nope}' (plans: "
        assert code == 2 and one_line(err).startswith(refused), (code, err)
        assert (await env.client.count_workflows(f"WorkflowId = '{recover_id(nope)}'")).count == 0
        # Where the CLI has not the files, the worker looks the plan up; the run fails with the
        # activity's own message, not "Activity task failed".
        elsewhere = tmp_path / "not-here" / "inventory.yaml"
        code, _, err = await seawall(env, "failover", nope, "--mode", "test", "--wait", inventory=elsewhere)
        line = one_line(err)
        assert code == 1 and "Activity task failed" not in line, (code, err)
        assert line.startswith(f"failover of {nope} failed: load_plan_spec: {refused[:-9]}"), line


async def test_an_unreachable_temporal_is_one_line_and_exit_3(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with replication_env(lab, tmp_path, lab_state_dir, worker=False) as env:
        for verb in (
            ["abort", "erp-dr", "--reason", "x"],
            ["cleanup", "erp-dr"],
            ["status"],
            ["verify", "db-01"],
        ):
            code, _, err = await seawall(env, *verb, address="127.0.0.1:1")
            line = one_line(err)
            assert code == 3 and "127.0.0.1:1" in line, (verb, code, line)
