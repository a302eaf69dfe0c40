"""A benchmark's workers: in its own process, or split with a `seawall worker --role activities` beside.

``--split`` in the schedules and plan benchmarks: the deployment shape of a site with ``split: true``
(deploy/helm), one process for workflow tasks and their local activities, another for the activity
tasks (transfers, verifies, recoveries), so the data path's threads never hold the GIL a workflow task
is waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from seawall.runtime.config import Settings
from workers.main import Role, activity_threads, build_workers


@dataclass
class Workers:
    """What a benchmark reports about its workers: the activity process's pid while it runs (for CPU
    meters) and its CPU seconds once reaped; both None when the run is not split."""

    activities_pid: int | None = None
    activities_cpu_s: float | None = None


@contextlib.asynccontextmanager
async def running(
    client: Client, sites: Sequence[str], settings: Settings, *, split: bool, niceness: int, identity: str
) -> AsyncIterator[Workers]:
    """The workers for ``sites`` and the orchestration queue, running until the block ends.

    Split: workflow tasks here, activity tasks in ``seawall worker --role activities`` at ``niceness``.
    However the block ends (a worker that would not start, a failed shutdown), that process is reaped.
    """
    proc = start_activities(settings, sites, niceness) if split else None
    info = Workers(activities_pid=proc.pid if proc is not None else None)
    try:
        with ThreadPoolExecutor(max_workers=activity_threads(settings)) as pool:
            role: Role = "workflows" if split else "all"
            workers = build_workers(client, sites, settings, pool, identity=identity, role=role)
            runs = asyncio.gather(*(w.run() for w in workers))
            try:
                yield info
            finally:
                for w in workers:
                    await w.shutdown()
                await runs
    finally:
        if proc is not None:
            info.activities_cpu_s = stop_activities(proc)


def start_activities(settings: Settings, sites: Sequence[str], niceness: int) -> subprocess.Popen[bytes]:
    """The activity worker for ``sites`` and the orchestration queue of ``settings``, at ``niceness``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "SEAWALL_TEMPORAL_ADDRESS": settings.temporal_address,
        "SEAWALL_INVENTORY": str(settings.inventory),
        "SEAWALL_ORCHESTRATION_QUEUE": settings.orchestration_queue,
        "SEAWALL_MAX_CONCURRENT_ACTIVITIES": str(settings.max_concurrent_activities),
        "SEAWALL_GRACEFUL_SHUTDOWN_S": str(settings.graceful_shutdown_s),
        "SEAWALL_PLANS_DIR": str(settings.plans_dir),
        "SEAWALL_REPORTS_DIR": str(settings.reports_dir),
        "SEAWALL_LOG_LEVEL": "WARNING",
    }
    env.pop("SEAWALL_METRICS_PORT", None)
    argv = ["nice", "-n", str(niceness), sys.executable, "-m", "seawall.cli", "worker"]
    for site in sites:
        argv += ["--site", site]
    # Its output (the SDK core's warnings too) goes to stderr: stdout carries only the run's JSON.
    return subprocess.Popen(
        [*argv, "--role", "activities"], env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno()
    )


def stop_activities(proc: subprocess.Popen[bytes]) -> float | None:
    """SIGTERM (the worker drains and exits); its CPU seconds as it is reaped."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return round(usage.ru_utime + usage.ru_stime, 1)
