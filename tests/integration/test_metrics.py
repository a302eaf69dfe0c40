"""A worker process with SEAWALL_METRICS_PORT serves Prometheus metrics: SDK metrics and the RPO gauges;
the gauges the alert rules of deploy/monitoring need come from the truth (schedules, pollers, reports)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.contract.messages import ProtectInput, ProtectResult, RunReport, UnprotectInput
from seawall.control.sites import site_health
from seawall.control.status import vm_state, vm_status
from seawall.lab import LabInfo
from seawall.runtime.config import Settings
from seawall.runtime.metrics import point_time
from tests.chaos.workers import WorkerProcess
from tests.integration.replication_env import leave_nothing_behind, replication_env

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
        with contextlib.suppress(OSError):  # a worker still binding its port
            samples = await asyncio.to_thread(scrape, port)
            if ready(samples):
                return samples
        await asyncio.sleep(0.5)
    names = sorted({n for n, _, _ in samples})
    raise AssertionError(f"metrics not ready after {timeout}s; series present: {names}")


def metrics_worker(
    settings: Settings,
    log: Path,
    port: int,
    *,
    site: str = "primary",
    args: tuple[str, ...] = (),
    **env: str,
) -> WorkerProcess:
    return WorkerProcess(
        settings,
        log,
        sites=(site,),
        extra_env={"SEAWALL_METRICS_PORT": str(port), "SEAWALL_METRICS_HOST": "127.0.0.1", **env},
        args=args,
    )


async def test_worker_serves_rpo_age_and_sdk_metrics(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with replication_env(lab, tmp_path, lab_state_dir, worker=False) as env:
        port = free_port()
        worker = metrics_worker(env.settings, tmp_path / "worker.log", port)
        restarted: WorkerProcess | None = None
        activities: WorkerProcess | None = None
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
            samples = await scrape_until(
                port,
                lambda s: (
                    bool(series(s, "seawall_rpo_age_seconds", vm=VM))
                    and series(s, "seawall_vm_protected", vm=VM) == [1]
                    and bool(series(s, "seawall_vm_protected", vm="db-01"))
                ),
            )

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
            # The other VMs of the worker's site have no schedule: not protected, so never breached and
            # without a threshold (their inventory policy is not one they are replicated with).
            assert series(samples, "seawall_vm_protected", vm=VM) == [1]
            assert series(samples, "seawall_vm_protected", vm="db-01") == [0]
            assert series(samples, "seawall_rpo_breach", vm="db-01") == [0]
            assert series(samples, "seawall_rpo_threshold_seconds", vm="db-01") == []
            # Temporal SDK metrics on the same endpoint.
            names = {n for n, _, _ in samples}
            assert "temporal_request" in names, sorted(names)
            assert series(samples, "temporal_activity_execution_latency_count", activity_type="verify_point")

            # A restarted worker (different port) knows the point from Temporal, not from its own memory.
            # It comes back as the deploy files run it: two processes with the same settings, workflow
            # tasks in one, activity tasks in the other, which `--metrics-port` moves off the shared port.
            worker.stop()
            port2, port3 = free_port(), free_port()
            restarted = metrics_worker(
                env.settings, tmp_path / "worker-2.log", port2, args=("--role", "workflows")
            )
            activities = metrics_worker(
                env.settings,
                tmp_path / "worker-3.log",
                port2,
                args=("--role", "activities", "--metrics-port", str(port3)),
            )
            for served in (port2, port3):
                samples = await scrape_until(
                    served, lambda s: bool(series(s, "seawall_rpo_age_seconds", vm=VM))
                )
                [stamp2] = series(samples, "seawall_last_verified_point_timestamp_seconds", vm=VM)
                assert stamp2 >= stamp
                [age2] = series(samples, "seawall_rpo_age_seconds", vm=VM)
                assert 0 <= age2 < 180, (age, age2)

            # The pair does the work: the unprotect's workflow tasks in one, its activities in the other.
            await env.client.execute_workflow(
                "UnprotectVM",
                UnprotectInput(vm=VM),
                id=f"unprotect/{VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=int,
            )
            assert "role=activities" in (tmp_path / "worker-3.log").read_text()
        finally:
            worker.stop()
            for later in (restarted, activities):
                if later is not None:
                    later.stop()


FAST_VM = "app-02"  # rpo-5m in the inventory (threshold 450 s), protected here with rpo-30s


def one(samples: Samples, name: str, **labels: str) -> float | None:
    values = series(samples, name, **labels)
    return values[0] if len(values) == 1 else None


@pytest.mark.timeout(600)
async def test_threshold_from_the_schedule_pollers_per_site_and_a_dead_site_seen_from_another(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    """Worker A serves dr and the orchestration queue, worker B serves primary; both export metrics.
    A VM protected at 30 s (its inventory policy says 5 min) is judged at 30 s + grace; A sees pollers
    on both site queues; with B stopped, A reports primary without pollers and the VM stalled; with B
    back, healthy again; unprotected, not protected and not breached."""
    reports = tmp_path / "reports"
    drill_started = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    report = RunReport(
        plan="erp-dr",
        run="20261130T090000Z-0123abcd",
        mode="test",
        status="completed",
        started_at=drill_started.isoformat(),
        finished_at=(drill_started + timedelta(minutes=12)).isoformat(),
        vms=[],
        failed_vms={},
        hooks=[],
        approvals=[],
        groups=[],
    )
    (reports / "erp-dr").mkdir(parents=True)
    (reports / "erp-dr" / f"{report.run}.json").write_text(json.dumps(report.model_dump(mode="json")))
    async with replication_env(lab, tmp_path, lab_state_dir, worker=False) as env:
        port_a, port_b = free_port(), free_port()
        fast = {"SEAWALL_METRICS_REFRESH_S": "5", "SEAWALL_REPORTS_DIR": str(reports)}
        worker_a = metrics_worker(env.settings, tmp_path / "a.log", port_a, site="dr", **fast)
        worker_b: WorkerProcess | None = metrics_worker(env.settings, tmp_path / "b.log", port_b, **fast)
        try:
            await env.client.execute_workflow(
                "ProtectVM",
                ProtectInput(vm=FAST_VM, policy="rpo-30s"),
                id=f"protect/{FAST_VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectResult,
            )

            def protected(s: Samples) -> bool:
                return one(s, "seawall_vm_protected", vm=FAST_VM) == 1 and bool(
                    series(s, "seawall_rpo_age_seconds", vm=FAST_VM)
                )

            a = await scrape_until(port_a, protected, timeout=60)
            # The schedule's 30 s and rpo-30s's 30 s grace; not the inventory's rpo-5m (450 s).
            assert one(a, "seawall_replication_interval_seconds", vm=FAST_VM, site="primary") == 30.0
            assert one(a, "seawall_rpo_threshold_seconds", vm=FAST_VM, site="primary") == 60.0
            assert one(a, "seawall_rpo_breach", vm=FAST_VM) == 0
            assert one(a, "seawall_replication_stalled", vm=FAST_VM) == 0
            assert one(a, "seawall_replication_paused", vm=FAST_VM) == 0
            # A (orchestration) reports every VM of the inventory; the unprotected ones as such.
            assert one(a, "seawall_vm_protected", vm="web-01") == 0
            a = await scrape_until(
                port_a,
                lambda s: all((one(s, "seawall_site_pollers", site=x) or 0) >= 1 for x in ("primary", "dr")),
            )
            assert (
                time.time() - (one(a, "seawall_site_last_poll_timestamp_seconds", site="primary") or 0) < 90
            )
            # Drills from the reports folder: erp-dr's passed drill; a plan never drilled is 0.
            assert (
                one(a, "seawall_plan_last_drill_timestamp_seconds", plan="erp-dr")
                == drill_started.timestamp()
            )
            assert one(a, "seawall_plan_last_drill_success", plan="erp-dr") == 1
            assert one(a, "seawall_plan_last_successful_drill_timestamp_seconds", plan="erp-dr") == (
                drill_started.timestamp()
            )
            never = [
                labels["plan"]
                for name, labels, value in a
                if name == "seawall_plan_last_drill_timestamp_seconds" and value == 0
            ]
            assert never, "every plan of the catalogue is reported, a never-drilled one as 0"
            # B, the site's own worker, judges the VM the same way.
            b = await scrape_until(port_b, protected, timeout=60)
            assert one(b, "seawall_rpo_threshold_seconds", vm=FAST_VM) == 60.0
            # The SDK series the dashboard plots exist in a real worker's scrape.
            from tests.unit.test_monitoring import dashboard_sdk_metrics

            present = {n for n, _, _ in a} | {n for n, _, _ in b}
            assert dashboard_sdk_metrics() <= present, dashboard_sdk_metrics() - present

            # The primary site's only worker goes away: A, at dr, reports it.
            worker_b.stop()
            worker_b = None
            stopped = time.monotonic()
            a = await scrape_until(port_a, lambda s: one(s, "seawall_site_pollers", site="primary") == 0, 150)
            assert (one(a, "seawall_site_pollers", site="dr") or 0) >= 1
            a = await scrape_until(
                port_a, lambda s: one(s, "seawall_replication_stalled", vm=FAST_VM) == 1, 150
            )
            assert one(a, "seawall_rpo_breach", vm=FAST_VM) == 1  # stalled, and therefore late too
            print(f"no pollers, {FAST_VM} stalled: {time.monotonic() - stopped:.0f}s after the stop")
            # `seawall status` says the same: the site has no worker, its VM is stalled (not just late).
            status = await vm_status(env.client, env.inventory, FAST_VM)
            assert status.stalled and vm_state(status) == "stalled", status
            (site,) = await site_health(
                env.client, env.inventory, env.settings.orchestration_queue, sites=["primary"], timeout_s=30
            )
            assert site.pollers == 0 and not site.healthy, site

            # Back: pollers, and the next cycle clears the stall and the breach.
            worker_b = metrics_worker(env.settings, tmp_path / "b2.log", free_port(), **fast)
            a = await scrape_until(
                port_a,
                lambda s: (
                    (one(s, "seawall_site_pollers", site="primary") or 0) >= 1
                    and one(s, "seawall_replication_stalled", vm=FAST_VM) == 0
                    and one(s, "seawall_rpo_breach", vm=FAST_VM) == 0
                ),
                150,
            )
            status = await vm_status(env.client, env.inventory, FAST_VM)
            assert not status.stalled and vm_state(status) != "stalled", status

            await env.client.execute_workflow(
                "UnprotectVM",
                UnprotectInput(vm=FAST_VM),
                id=f"unprotect/{FAST_VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=int,
            )
            a = await scrape_until(port_a, lambda s: one(s, "seawall_vm_protected", vm=FAST_VM) == 0, 60)
            assert one(a, "seawall_rpo_breach", vm=FAST_VM) == 0
            assert one(a, "seawall_replication_stalled", vm=FAST_VM) == 0
        finally:
            if worker_b is None:  # cancelled cycles need their site's worker to release snapshots
                worker_b = metrics_worker(env.settings, tmp_path / "b3.log", free_port(), **fast)
            await leave_nothing_behind(env)
            worker_a.stop()
            worker_b.stop()
