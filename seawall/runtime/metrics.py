"""Prometheus metrics of a worker: the Temporal SDK's own and Seawall's, on one ``/metrics`` endpoint.

The SDK's Runtime serves Prometheus itself (``PrometheusConfig``); Seawall's instruments are created on
that same Runtime's meter, so one scrape returns both with no second HTTP server and no client library.

Seawall's series (labels in braces):

- ``seawall_rpo_age_seconds{vm,site}``: age of the VM's newest verified point, recomputed every few
  seconds; ``seawall_rpo_threshold_seconds{vm,site}`` is the age past which the RPO is breached
  (interval + grace) and ``seawall_rpo_breach{vm,site}`` is 1 while it is.
- ``seawall_last_verified_point_timestamp_seconds{vm,site}``: when that point was taken (Unix time);
  ``time() - it`` in PromQL is the age without waiting for the next recomputation.
- ``seawall_bytes_shipped_total`` / ``seawall_bytes_read_total{vm,site}``: the data path's work.
- ``seawall_cycles_verified_total{vm,site}``; ``seawall_cycle_duration_seconds{vm,site}``: from a
  cycle's start to its verified point, i.e. what the cycle adds to the RPO.
- ``seawall_plan_step_duration_seconds{step,site,outcome}``: each recovery-plan activity attempt.

Where the values come from: the worker that verifies a point records it at once (an activity
interceptor sees ``verify_point`` succeed), and every ``metrics_refresh_s`` each worker also reads the
newest verified point of its sites' VMs from Temporal (as ``seawall status`` does), so a restarted
worker, or one of several in a site, reports every VM of its sites rather than only those it happened
to verify. Take ``max by (vm)`` over a site's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from seawall.contract.messages import CycleResult
from seawall.contract.queues import site_queue
from seawall.contract.search import SA_VM
from seawall.model import Inventory
from seawall.runtime.config import Settings

log = logging.getLogger("seawall.runtime.metrics")

# Activities that are steps of a recovery plan (RecoveryPlan / RecoverVM), timed per attempt.
PLAN_STEPS = frozenset(
    {
        "choose_point",
        "materialize_disks",
        "create_target_vm",
        "check_health",
        "update_dns",
        "run_hook",
        "fence_vm",
        "cleanup_run",
        "pause_schedules",
        "write_report",
    }
)
# Cycles take seconds (lab, small deltas) to hours (a seed); plan steps seconds to tens of minutes.
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
# Recomputing ages from known timestamps is free; asking Temporal is not, hence two periods.
AGE_TICK_S = 5.0


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Runtime serving Prometheus on ``metrics_host:metrics_port``; None when no port is set."""
    if settings.metrics_port is None:
        return None
    buckets = {
        name: list(DURATION_BUCKETS)
        for name in ("seawall_cycle_duration_seconds", "seawall_plan_step_duration_seconds")
    }
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{settings.metrics_host}:{settings.metrics_port}",
                # Seconds, as Prometheus conventions (and our own series) use; not integer milliseconds.
                durations_as_seconds=True,
                histogram_bucket_overrides=buckets,
            )
        )
    )


def site_of_queue(task_queue: str) -> str:
    prefix = site_queue("")
    return task_queue[len(prefix) :] if task_queue.startswith(prefix) else "orchestration"


def point_time(point_id: str) -> datetime | None:
    """A point id starts with its cycle's start time (``20250101T120000Z-<run tail>``)."""
    try:
        return datetime.strptime(point_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class _Rpo:
    site: str
    threshold_s: float
    point_at: float | None = None


class SeawallMetrics:
    """Seawall's instruments on a Temporal metric meter, and the per-VM RPO state behind the gauges."""

    def __init__(self, meter: MetricMeter, inventory: Inventory, sites: Sequence[str]) -> None:
        self._rpo: dict[str, _Rpo] = {}
        for pvm in inventory.protected_vms:
            if pvm.source_site in sites:
                threshold = inventory.policy(pvm.policy).rpo_threshold.total_seconds()
                self._rpo[pvm.name] = _Rpo(pvm.source_site, threshold)
        self.age = meter.create_gauge_float(
            "seawall_rpo_age_seconds", "Age of the newest verified recovery point", "s"
        )
        self.threshold = meter.create_gauge_float(
            "seawall_rpo_threshold_seconds", "Point age past which the RPO is breached", "s"
        )
        self.breach = meter.create_gauge("seawall_rpo_breach", "1 while the newest verified point is too old")
        self.point_at = meter.create_gauge_float(
            "seawall_last_verified_point_timestamp_seconds", "When the newest verified point was taken", "s"
        )
        self.shipped = meter.create_counter(
            "seawall_bytes_shipped_total", "Bytes written to replica stores by cycles", "By"
        )
        self.read = meter.create_counter("seawall_bytes_read_total", "Bytes read at the source", "By")
        self.verified = meter.create_counter("seawall_cycles_verified_total", "Cycles whose point verified")
        self.cycle = meter.create_histogram_float(
            "seawall_cycle_duration_seconds", "From a cycle's start to its verified point", "s"
        )
        self.step = meter.create_histogram_float(
            "seawall_plan_step_duration_seconds", "Duration of each recovery-plan activity attempt", "s"
        )

    @property
    def vms(self) -> list[str]:
        return sorted(self._rpo)

    def point_verified(self, vm: str, site: str, point_at: datetime, *, now: float | None = None) -> None:
        """Record a verified point; an older one (a refresh racing a verify) never moves the gauge back."""
        state = self._rpo.get(vm)
        if state is None:
            # A VM added to the inventory after this worker started: no threshold known until restart.
            state = self._rpo[vm] = _Rpo(site, 0.0)
        stamp = point_at.timestamp()
        if state.point_at is None or stamp > state.point_at:
            state.point_at = stamp
        self.update_ages(now=now, only=[vm])

    def update_ages(self, *, now: float | None = None, only: Iterable[str] | None = None) -> None:
        now = time.time() if now is None else now
        for vm in only if only is not None else list(self._rpo):
            state = self._rpo[vm]
            attrs = {"vm": vm, "site": state.site}
            if state.threshold_s > 0:
                self.threshold.set(state.threshold_s, attrs)
            if state.point_at is None:
                continue  # never verified (as far as Temporal or this worker knows): no age to report
            age = max(0.0, now - state.point_at)
            self.age.set(age, attrs)
            self.point_at.set(state.point_at, attrs)
            self.breach.set(int(state.threshold_s > 0 and age > state.threshold_s), attrs)

    def shipped_disks(self, vm: str, site: str, bytes_read: int, bytes_shipped: int) -> None:
        attrs = {"vm": vm, "site": site}
        self.read.add(max(0, bytes_read), attrs)
        self.shipped.add(max(0, bytes_shipped), attrs)

    def cycle_verified(self, vm: str, site: str, point_id: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        attrs = {"vm": vm, "site": site}
        self.verified.add(1, attrs)
        taken = point_time(point_id)
        if taken is None:
            return
        self.cycle.record(max(0.0, now - taken.timestamp()), attrs)
        self.point_verified(vm, site, taken, now=now)

    def plan_step(self, step: str, site: str, seconds: float, outcome: str) -> None:
        self.step.record(max(0.0, seconds), {"step": step, "site": site, "outcome": outcome})

    async def refresh(self, client: Client) -> None:
        """The newest verified point of each of this worker's VMs, from Temporal's completed cycles."""
        for vm in self.vms:
            try:
                point_at = await newest_verified_point(client, vm)
            except Exception as exc:  # RPC or decoding: the gauges must outlive one bad answer
                log.warning("metrics: cannot read the cycles of %s from Temporal: %s", vm, exc)
                continue
            if point_at is not None:
                self.point_verified(vm, self._rpo[vm].site, point_at)

    async def run(self, client: Client, refresh_s: float) -> None:
        """Keep the gauges current until cancelled."""
        next_refresh = 0.0
        while True:
            if time.monotonic() >= next_refresh:
                await self.refresh(client)
                next_refresh = time.monotonic() + refresh_s
            self.update_ages()
            await asyncio.sleep(min(AGE_TICK_S, refresh_s))

    def interceptor(self) -> Interceptor:
        return _MetricsInterceptor(self)


async def newest_verified_point(client: Client, vm: str, scan: int = 5) -> datetime | None:
    """Start time of the newest completed, verified cycle of ``vm`` among its last ``scan`` completed.

    Lighter than ``seawall.control.status.vm_status`` (no schedule, no running cycle): it runs for every VM
    of a site on every refresh of every worker of that site.
    """
    query = f'WorkflowType = "ReplicationCycle" AND {SA_VM.name} = "{vm}" AND ExecutionStatus = "Completed"'
    runs = [wf async for wf in client.list_workflows(query, limit=scan)]
    for wf in sorted(runs, key=lambda w: w.start_time, reverse=True):
        if wf.status != WorkflowExecutionStatus.COMPLETED:
            continue
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=CycleResult)
        result = await handle.result()
        if result.verified:
            # From the point id, as the verifying worker records it (whole seconds), so the two sources
            # agree and a refresh never moves the gauge by a fraction of a second.
            return point_time(result.point_id) or datetime.fromisoformat(result.started_at)
    return None


class _MetricsInterceptor(Interceptor):
    def __init__(self, metrics: SeawallMetrics) -> None:
        self._metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityMetrics(next, self._metrics)


class _ActivityMetrics(ActivityInboundInterceptor):
    """Observes results on the worker's event loop; a metrics error never fails an activity."""

    def __init__(self, next: ActivityInboundInterceptor, metrics: SeawallMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        name = info.activity_type
        site = site_of_queue(info.task_queue)
        began = time.monotonic()
        outcome = "failed"
        try:
            result = await super().execute_activity(input)
            outcome = "completed"
        finally:
            if name in PLAN_STEPS:
                with contextlib.suppress(Exception):
                    self._metrics.plan_step(name, site, time.monotonic() - began, outcome)
        try:
            self._observe(name, site, input.args, result)
        except Exception:
            log.exception("metrics: could not record the result of %s", name)
        return result

    def _observe(self, name: str, site: str, args: Sequence[Any], result: Any) -> None:
        if name == "ship_disks" and args:
            self._metrics.shipped_disks(
                str(args[0].vm), site, int(result.bytes_read), int(result.bytes_shipped)
            )
        elif name == "verify_point" and len(args) >= 2 and getattr(result, "ok", False):
            self._metrics.cycle_verified(str(args[0]), site, str(args[1]))
