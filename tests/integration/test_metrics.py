"""A worker process with SEAWALL_METRICS_PORT serves Prometheus metrics: SDK metrics and the RPO gauges."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from seawall.contract.messages import ProtectInput, ProtectResult, UnprotectInput
from seawall.lab import LabInfo
from seawall.runtime.config import Settings
from seawall.runtime.metrics import point_time
from tests.chaos.workers import WorkerProcess
from tests.integration.replication_env import replication_env

VM = "app-01"  # one disk, local directory store, rpo-5m: threshold 5 min + 2.5 min grace
THRESHOLD_S = 450.0
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        labels = dict(LABEL.findall(match.group(2) or ""))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def series(samples: Samples, name: str, **labels: str) -> list[float]:
    return [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]


async def scrape_until(port: int, ready: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    deadline = time.monotonic() + timeout
    samples: Samples = []
    while time.monotonic() < deadline:
        samples = await asyncio.to_thread(scrape, port)
        if ready(samples):
            return samples
        await asyncio.sleep(0.5)
    names = sorted({n for n, _, _ in samples})
    raise AssertionError(f"metrics not ready after {timeout}s; series present: {names}")


def metrics_worker(settings: Settings, log: Path, port: int) -> WorkerProcess:
    return WorkerProcess(
        settings,
        log,
        sites=("primary",),
        extra_env={"SEAWALL_METRICS_PORT": str(port), "SEAWALL_METRICS_HOST": "127.0.0.1"},
    )


async def test_worker_serves_rpo_age_and_sdk_metrics(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with replication_env(lab, tmp_path, lab_state_dir, worker=False) as env:
        port = free_port()
        worker = metrics_worker(env.settings, tmp_path / "worker.log", port)
        restarted: WorkerProcess | None = None
        try:
            # ProtectVM seeds the VM with one ReplicationCycle: snapshot, ship, commit, verify.
            protected = await env.client.execute_workflow(
                "ProtectVM",
                ProtectInput(vm=VM),
                id=f"protect/{VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectResult,
            )
            taken = point_time(protected.first_point)
            assert taken is not None, protected.first_point
            samples = await scrape_until(port, lambda s: bool(series(s, "seawall_rpo_age_seconds", vm=VM)))

            # The RPO age of the point just verified: present, labelled, and about as old as the cycle.
            [age] = series(samples, "seawall_rpo_age_seconds", vm=VM, site="primary")
            assert 0 <= age < 120, age
            assert series(samples, "seawall_rpo_threshold_seconds", vm=VM) == [THRESHOLD_S]
            assert series(samples, "seawall_rpo_breach", vm=VM) == [0]
            [stamp] = series(samples, "seawall_last_verified_point_timestamp_seconds", vm=VM)
            # The seed's point, or a newer one should the VM's schedule have fired meanwhile (its
            # offset inside the 5 min interval is arbitrary).
            assert stamp >= taken.timestamp()
            assert series(samples, "seawall_bytes_shipped_total", vm=VM)[0] > 0
            assert series(samples, "seawall_cycles_verified_total", vm=VM)[0] >= 1
            assert series(samples, "seawall_cycle_duration_seconds_count", vm=VM)[0] >= 1
            # Every VM of the worker's site has its threshold (30 s interval + 30 s minimum grace), its
            # age once Temporal holds a verified point of it (other tests' cycles may have made one).
            assert series(samples, "seawall_rpo_threshold_seconds", vm="db-01") == [60.0]
            # Temporal SDK metrics on the same endpoint.
            names = {n for n, _, _ in samples}
            assert "temporal_request" in names, sorted(names)
            assert series(samples, "temporal_activity_execution_latency_count", activity_type="verify_point")

            # A restarted worker (different port) knows the point from Temporal, not from its own memory.
            worker.stop()
            port2 = free_port()
            restarted = metrics_worker(env.settings, tmp_path / "worker-2.log", port2)
            samples = await scrape_until(port2, lambda s: bool(series(s, "seawall_rpo_age_seconds", vm=VM)))
            [stamp2] = series(samples, "seawall_last_verified_point_timestamp_seconds", vm=VM)
            assert stamp2 >= stamp
            [age2] = series(samples, "seawall_rpo_age_seconds", vm=VM)
            assert 0 <= age2 < 180, (age, age2)

            await env.client.execute_workflow(
                "UnprotectVM",
                UnprotectInput(vm=VM),
                id=f"unprotect/{VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=int,
            )
        finally:
            worker.stop()
            if restarted is not None:
                restarted.stop()
