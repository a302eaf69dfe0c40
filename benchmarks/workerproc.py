"""A `seawall worker --role activities` beside a benchmark whose own process runs the workflow tasks.

``--split`` in the schedules and plan benchmarks: the deployment shape of a site with ``split: true``
(deploy/helm), one process for workflow tasks and their local activities, another for the activity
tasks (transfers, verifies, recoveries), so the data path's threads never hold the GIL a workflow task
is waiting for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from seawall.runtime.config import Settings


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
