"""Worker processes for crash tests: real OS processes, frozen at failpoints, killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from seawall.runtime.config import Settings

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``seawall worker --site ...`` in its own process, configured like an operator would: by env."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        sites: tuple[str, ...] = ("primary",),
        failpoints: str = "",
        failpoint_dir: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """``extra_env``: more SEAWALL_* settings (plans and reports folders, health-check redirect);
        ``args``: more `seawall worker` options (``--role``, ``--metrics-port``)."""
        env = dict(os.environ)
        env.update(
            SEAWALL_TEMPORAL_ADDRESS=settings.temporal_address,
            SEAWALL_INVENTORY=str(settings.inventory),
            SEAWALL_ORCHESTRATION_QUEUE=settings.orchestration_queue,
            SEAWALL_HEARTBEAT_TIMEOUT_S=str(settings.heartbeat_timeout_s),
            SEAWALL_GRACEFUL_SHUTDOWN_S="1",
            SEAWALL_MAX_CONCURRENT_ACTIVITIES="8",
        )
        if settings.checkpoint_mib is not None:
            env["SEAWALL_CHECKPOINT_MIB"] = str(settings.checkpoint_mib)
        env.update(extra_env or {})
        env.pop("SEAWALL_FAILPOINTS", None)
        if failpoints:
            env["SEAWALL_FAILPOINTS"] = failpoints
            env["SEAWALL_FAILPOINT_DIR"] = str(failpoint_dir)
        argv = [sys.executable, "-m", "seawall.cli", "worker"]
        for site in sites:
            argv += ["--site", site]
        argv += args
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)
        self._wait_started()

    def _wait_started(self, timeout: float = 120.0) -> None:
        # Seconds on a quiet machine; over a minute was seen at load 20 (imports, connect, sandbox).
        # The limit catches a worker that cannot start, not a slow one.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "worker started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        # A worker that starts late must not live on to take the next test's tasks.
        self.kill()
        raise AssertionError(f"worker did not start; its log:\n{self.log.read_text(errors='replace')}")

    def kill(self) -> None:
        """SIGKILL: no drain, no last heartbeat — the crash the design must survive."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def wait_for_failpoint(
    directory: Path, name: str, worker: WorkerProcess, timeout: float = 60.0
) -> dict[str, Any]:
    path = directory / f"{name}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        if worker.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(
        f"failpoint {name} was not reached; worker log:\n{worker.log.read_text(errors='replace')[-4000:]}"
    )
