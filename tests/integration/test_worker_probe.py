"""A site worker answers ProbeSite through its own task queue, visible by search attribute."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seawall.contract.messages import ProbeSiteInput, SiteProbe
from seawall.contract.queues import ORCHESTRATION_QUEUE
from seawall.lab import LabInfo
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect
from tests.integration.replication_env import write_inventory
from workers.main import build_workers
from workflows.probe import ProbeSiteWorkflow

ROOT = Path(__file__).resolve().parents[2]


def _settings(lab: LabInfo, queue: str, tmp: Path) -> Settings:
    return Settings(
        temporal_address=lab.temporal.address,
        inventory=write_inventory(tmp, Path(lab.state_dir), s3_prefix="probe/", lab=lab),
        orchestration_queue=queue,
        graceful_shutdown_s=2,
    )


async def test_probe_runs_on_the_sites_own_worker(lab: LabInfo, tmp_path: Path) -> None:
    queue = f"{ORCHESTRATION_QUEUE}-{uuid.uuid4().hex[:8]}"
    settings = _settings(lab, queue, tmp_path)
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=4) as pool:
        workers = build_workers(client, ["primary", "aws"], settings, pool, identity="probe-test")
        run = asyncio.gather(*(w.run() for w in workers))
        try:
            wf_id = f"probe-{uuid.uuid4().hex[:8]}"
            result = await client.execute_workflow(
                ProbeSiteWorkflow.run, ProbeSiteInput(site="primary"), id=wf_id, task_queue=queue
            )
            assert isinstance(result, SiteProbe)
            assert result.reachable, result.detail
            assert result.kind == "vsphere"
            assert "VMware" in result.detail or "vcsim" in result.detail.lower(), result.detail
            assert result.worker.endswith(os.uname().nodename) or "@" in result.worker

            aws = await client.execute_workflow(
                ProbeSiteWorkflow.run,
                ProbeSiteInput(site="aws"),
                id=f"probe-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )
            assert aws.reachable and aws.kind == "aws", aws.detail

            # Visible in the UI by our search attribute (visibility is eventually consistent).
            found: list[str] = []
            for _ in range(50):
                found = [
                    w.id
                    async for w in client.list_workflows(
                        f'SeawallSite = "primary" AND WorkflowId = "{wf_id}"'
                    )
                ]
                if found:
                    break
                await asyncio.sleep(0.2)
            assert found == [wf_id]
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers))
            await run


def test_worker_process_drains_and_exits_cleanly_on_sigterm(lab: LabInfo, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        SEAWALL_TEMPORAL_ADDRESS=lab.temporal.address,
        SEAWALL_INVENTORY=str(write_inventory(tmp_path, Path(lab.state_dir), s3_prefix="probe/", lab=lab)),
        SEAWALL_ORCHESTRATION_QUEUE=f"{ORCHESTRATION_QUEUE}-{uuid.uuid4().hex[:8]}",
        SEAWALL_GRACEFUL_SHUTDOWN_S="2",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall.cli", "worker", "--site", "primary"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # a hang, not a speed (as the chaos workers)
        seen = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen += line
            if "worker started" in line:
                break
        assert "worker started" in seen, seen
        assert "seawall-site-primary" in seen
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, seen + out
        assert "worker stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
