"""What the console's browser tests run against: the lab, a real worker process for its sites, the ERP
VMs protected, and `seawall api serve` (which serves the console) on a free loopback port; plus headless
Debian Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from seawall.api.auth import hash_token
from seawall.contract.messages import ProtectInput, ProtectResult, UnprotectInput
from seawall.lab import LabInfo
from tests.chaos.workers import ROOT, WorkerProcess
from tests.integration.replication_env import ReplicationEnv, replication_env
from tests.integration.test_recovery import VMS, stand_ins_anywhere, write_plan

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium tries to reach its update and sync services, and on
# a machine with no route out those connections are refused.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / ".seawall" / "artifacts" / "console"
# name -> (role, plans); each token is "console-token-of-<name>" (never printed, never in a URL).
ROLES = {"oncall": ("operator", ["erp-dr"]), "board": ("viewer", "*"), "commander": ("admin", "*")}


def token_of(name: str) -> str:
    return f"console-token-of-{name}"


# Free text from the plan file, shown by the console: markup in it must stay text.
DESCRIPTION = 'ERP <img src=x onerror="window.__xss=1"> & co'
GATE_MESSAGE = "Check the batch jobs <script>window.__xss=2</script>, then approve."


def hostile_text(plan: Path) -> None:
    data = yaml.safe_load(plan.read_text())
    data["description"] = DESCRIPTION
    data["gates"][0]["message"] = GATE_MESSAGE
    plan.write_text(yaml.safe_dump(data, sort_keys=False))


@dataclass
class Stack:
    url: str
    env: ReplicationEnv
    tmp: Path
    api_log: Path
    temporal_ui: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def api_process(lab: LabInfo, env: ReplicationEnv, tmp: Path) -> Any:
    tokens = tmp / "tokens.yaml"
    entries = [
        {"name": name, "sha256": hash_token(token_of(name)), "role": role, "plans": plans}
        for name, (role, plans) in ROLES.items()
    ]
    tokens.write_text(yaml.safe_dump({"tokens": entries}))
    port = _free_port()
    settings = env.settings
    api_env = {
        **os.environ,
        **lab.env(),
        "SEAWALL_INVENTORY": str(settings.inventory),
        "SEAWALL_PLANS_DIR": str(settings.plans_dir),
        "SEAWALL_REPORTS_DIR": str(settings.reports_dir),
        "SEAWALL_ORCHESTRATION_QUEUE": settings.orchestration_queue,
        "SEAWALL_TEMPORAL_UI_URL": lab.temporal.ui_url,
        "SEAWALL_API_LOG_LEVEL": "warning",
        "COLUMNS": "200",
    }
    cmd = [sys.executable, "-m", "seawall.cli", "api", "serve", "--port", str(port), "--tokens", str(tokens)]
    cmd += ["--audit-log", str(tmp / "audit.log")]
    log = tmp / "api.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=api_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a hang, not a speed: a loaded CI machine is slow to start it
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the API did not come up in 120 s"
            time.sleep(0.2)
        yield url, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def console_stack(lab: LabInfo, lab_state_dir: Path, tmp: Path) -> AsyncIterator[Stack]:
    listeners = contextlib.ExitStack()
    offset = listeners.enter_context(stand_ins_anywhere())
    overrides = {
        "plans_dir": tmp / "plans",
        "reports_dir": tmp / "reports",
        "health_check_redirect": "127.0.0.1",
        "health_check_port_offset": offset,
    }
    # The worker process reads its settings from the environment, as an operator's would.
    worker_env = {
        **lab.env(),
        "SEAWALL_PLANS_DIR": str(tmp / "plans"),
        "SEAWALL_REPORTS_DIR": str(tmp / "reports"),
        "SEAWALL_HEALTH_CHECK_REDIRECT": "127.0.0.1",
        "SEAWALL_HEALTH_CHECK_PORT_OFFSET": str(offset),
    }
    worker: WorkerProcess | None = None
    try:
        async with replication_env(
            lab, tmp, lab_state_dir, sites=("primary", "dr"), settings_overrides=overrides, worker=False
        ) as env:
            hostile_text(write_plan(tmp, env.settings.inventory))
            worker = WorkerProcess(
                env.settings, tmp / "worker.log", sites=("primary", "dr"), extra_env=worker_env
            )
            queue = env.settings.orchestration_queue
            try:
                await asyncio.gather(
                    *(
                        env.client.execute_workflow(
                            "ProtectVM",
                            ProtectInput(vm=vm),
                            id=f"protect/{vm}",
                            task_queue=queue,
                            result_type=ProtectResult,
                        )
                        for vm in VMS
                    )
                )
                with api_process(lab, env, tmp) as (url, log):
                    yield Stack(url, env, tmp, log, lab.temporal.ui_url)
            finally:
                # Unprotecting cancels the VMs' cycles, which needs the worker; it stays up while
                # replication_env makes sure nothing is left running.
                for vm in VMS:
                    await env.client.execute_workflow(
                        "UnprotectVM",
                        UnprotectInput(vm=vm),
                        id=f"unprotect/{vm}",
                        task_queue=queue,
                        result_type=int,
                    )
    finally:
        if worker is not None:
            worker.stop()
        listeners.close()
