"""Seawall's instruments on the Temporal SDK's metric meter, and the state behind its gauges.

Every value comes from a real source: Temporal (schedules, cycles, task-queue pollers), the results
this worker's activities return, and the run reports on disk. Gauges are judged in the process (breach,
stalled) so that an alert rule needs no knowledge of policies; the raw inputs (age, threshold,
interval, timestamps) are exported beside the verdicts for dashboards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Interceptor

from seawall.model import Inventory
from seawall.runtime.config import Settings
from seawall.runtime.metrics.drills import DrillReports, PlanDrills, plan_targets
from seawall.runtime.metrics.interceptor import MetricsInterceptor
from seawall.runtime.metrics.sources import (
    POLLER_FRESH_S,
    CycleReader,
    PollersSeen,
    Replication,
    site_pollers,
)

log = logging.getLogger("seawall.runtime.metrics")

# Cycles take seconds (lab, small deltas) to hours (a seed); plan steps seconds to tens of minutes.
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
# Recomputing ages from known timestamps is free; asking Temporal is not, hence several periods.
AGE_TICK_S = 5.0
# A VM that looks breached or stalled is re-read from Temporal first if what we know is older than
# this: a worker that did not verify the VM's last point itself must not alarm on stale knowledge.
CONFIRM_S = 15.0
# Pollers and drill reports: re-read this often (or every metrics_refresh_s when that is shorter).
FLEET_TICK_S = 15.0
# Stalled: a protected, unpaused VM on which no worker has made progress for this many intervals.
STALL_INTERVALS = 2
MIN_GRACE_S = 30.0


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


def grace_for(inventory: Inventory, vm: str, interval_s: float) -> float:
    """The RPO grace that goes with a schedule's interval.

    The schedule holds the interval only. The grace is that of the policy the VM was protected with:
    the VM's inventory policy when its interval is the schedule's, else the first inventory policy
    with that interval (``protect --policy``), else the default rule (half the interval, >= 30 s).
    """
    candidates = [p for p in inventory.policies if p.name == _policy_name(inventory, vm)]
    for policy in [*candidates, *inventory.policies]:
        if policy.interval.total_seconds() == interval_s and policy.rpo_grace is not None:
            return policy.rpo_grace.total_seconds()
    return max(interval_s / 2, MIN_GRACE_S)


def _policy_name(inventory: Inventory, vm: str) -> str | None:
    try:
        return inventory.protected_vm(vm).policy
    except KeyError:
        return None


@dataclass
class VmState:
    site: str  # the inventory's source site until the schedule names the queue its cycles run on
    protected: bool | None = None  # None: Temporal not read yet
    paused: bool = False
    interval_s: float | None = None
    threshold_s: float | None = None
    point_at: float | None = None
    progress_at: float | None = None
    read_at: float = 0.0  # time.time() of the last successful read from Temporal

    def age(self, now: float) -> float | None:
        return None if self.point_at is None else max(0.0, now - self.point_at)

    def breached(self, now: float) -> bool:
        """Protected, and no verified point at all or the newest older than interval + grace."""
        if not self.protected or self.threshold_s is None:
            return False
        age = self.age(now)
        return age is None or age > self.threshold_s

    def stalled(self, now: float) -> bool:
        """Protected, not paused, and no worker has made progress for STALL_INTERVALS intervals."""
        if not self.protected or self.paused or not self.interval_s or self.progress_at is None:
            return False
        return now - self.progress_at > STALL_INTERVALS * self.interval_s


class SeawallMetrics:
    """Seawall's instruments, the per-VM state behind the RPO gauges, and the fleet gauges.

    ``sites``: the VMs replicated from these sites are reported. ``fleet``: every VM of the inventory
    is (a worker serving the orchestration queue), so RPO alerts still fire when every worker of a
    site is gone. Every worker reports the pollers of every site; drills need ``reports``.
    """

    def __init__(
        self,
        meter: MetricMeter,
        inventory: Inventory,
        sites: Sequence[str],
        *,
        fleet: bool = False,
        reports: DrillReports | None = None,
        plans: Callable[[], dict[str, float | None]] | None = None,
    ) -> None:
        self.inventory = inventory
        self._vms: dict[str, VmState] = {
            p.name: VmState(p.source_site) for p in inventory.protected_vms if fleet or p.source_site in sites
        }
        self._poll_sites = [s.name for s in inventory.sites]
        self._reports = reports
        self._plans = plans
        self._reader = CycleReader()
        gauge, fgauge = meter.create_gauge, meter.create_gauge_float
        self.age = fgauge("seawall_rpo_age_seconds", "Age of the newest verified recovery point", "s")
        self.threshold = fgauge(
            "seawall_rpo_threshold_seconds", "Point age past which the RPO is breached (schedule's)", "s"
        )
        self.interval = fgauge("seawall_replication_interval_seconds", "The VM's schedule interval", "s")
        self.breach = gauge("seawall_rpo_breach", "1 while a protected VM's newest verified point is too old")
        self.corrupt = gauge(
            "seawall_corrupt_points", "Points a full verify found damaged and no cycle has repaired yet"
        )
        self.mirror_lag = gauge(
            "seawall_mirror_lag_points", "Verified points the replica store's mirror lacks (mirrored stores)"
        )
        self.point_at = fgauge(
            "seawall_last_verified_point_timestamp_seconds", "When the newest verified point was taken", "s"
        )
        self.protected = gauge("seawall_vm_protected", "1 while the VM has a replication schedule")
        self.paused = gauge("seawall_replication_paused", "1 while the VM's schedule is paused")
        self.stalled_g = gauge(
            "seawall_replication_stalled", "1 while no worker has made progress for 2 schedule intervals"
        )
        self.progress_at = fgauge(
            "seawall_replication_last_progress_timestamp_seconds",
            "Last cycle verified, or activity started or heartbeating",
            "s",
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
        self.pollers = gauge("seawall_site_pollers", "Workers polling the site's task queue")
        self.last_poll = fgauge(
            "seawall_site_last_poll_timestamp_seconds", "When a worker last polled the site's queue", "s"
        )
        self.drill_at = fgauge(
            "seawall_plan_last_drill_timestamp_seconds", "Start of the plan's newest drill (0: never)", "s"
        )
        self.drill_ok = gauge("seawall_plan_last_drill_success", "1 if the plan's newest drill passed")
        self.drill_ok_at = fgauge(
            "seawall_plan_last_successful_drill_timestamp_seconds",
            "Start of the plan's newest passed drill (0: never)",
            "s",
        )
        self.drill_ok_age = fgauge(
            "seawall_plan_last_successful_drill_age_seconds",
            "Time since the start of the plan's newest passed drill (absent: never)",
            "s",
        )
        self.max_drill_age = fgauge(
            "seawall_plan_max_drill_age_seconds", "The plan's own max_drill_age, when it sets one", "s"
        )

    @property
    def vms(self) -> list[str]:
        return sorted(self._vms)

    def state(self, vm: str) -> VmState | None:
        return self._vms.get(vm)

    # ---- what the activities of this worker report -----------------------------------------------

    def point_verified(self, vm: str, site: str, point_at: datetime, *, now: float | None = None) -> None:
        """Record a verified point; an older one (a refresh racing a verify) never moves the gauge back."""
        now = time.time() if now is None else now
        state = self._vms.setdefault(vm, VmState(site))
        stamp = point_at.timestamp()
        if state.point_at is None or stamp > state.point_at:
            state.point_at = stamp
        state.progress_at = max(state.progress_at or 0.0, now)
        if not state.protected:
            state.read_at = 0.0  # a point of a VM not known as protected (just protected): re-read now
        self.update(now=now, only=[vm])

    def shipped_disks(self, vm: str, site: str, bytes_read: int, bytes_shipped: int) -> None:
        attrs = {"vm": vm, "site": site}
        self.read.add(max(0, bytes_read), attrs)
        self.shipped.add(max(0, bytes_shipped), attrs)

    def cycle_verified(
        self, vm: str, site: str, point_taken: datetime | None, *, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        attrs = {"vm": vm, "site": site}
        self.verified.add(1, attrs)
        if point_taken is None:
            return
        self.cycle.record(max(0.0, now - point_taken.timestamp()), attrs)
        self.point_verified(vm, site, point_taken, now=now)

    def plan_step(self, step: str, site: str, seconds: float, outcome: str) -> None:
        self.step.record(max(0.0, seconds), {"step": step, "site": site, "outcome": outcome})

    # ---- what Temporal and the reports say -------------------------------------------------------

    def replication_seen(self, vm: str, seen: Replication, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        state = self._vms.setdefault(vm, VmState("unknown"))
        schedule = seen.schedule
        if schedule is not None and schedule.site and schedule.site != state.site:
            # Reprotected from another site: the old label set must not keep its last verdicts.
            old = {"vm": vm, "site": state.site}
            for instrument in (self.protected, self.breach, self.stalled_g, self.paused):
                instrument.set(0, old)
            state.site = schedule.site
        state.protected = schedule is not None
        state.paused = bool(schedule and schedule.paused)
        state.interval_s = schedule.interval_s if schedule else None
        state.threshold_s = (
            state.interval_s + grace_for(self.inventory, vm, state.interval_s) if state.interval_s else None
        )
        if seen.point_at is not None:
            state.point_at = max(state.point_at or 0.0, seen.point_at.timestamp())
        for at in (seen.progress_at, schedule.created_at if schedule else None):
            if at is not None:
                state.progress_at = max(state.progress_at or 0.0, at.timestamp())
        state.read_at = now
        self.corrupt.set(seen.corrupt_points, {"vm": vm, "site": state.site})
        if seen.mirror_lag is not None:
            self.mirror_lag.set(seen.mirror_lag, {"vm": vm, "site": state.site})

    def pollers_seen(self, site: str, seen: PollersSeen) -> None:
        self.pollers.set(seen.count, {"site": site})
        if seen.newest_poll is not None:
            self.last_poll.set(seen.newest_poll.timestamp(), {"site": site})

    def drills_seen(self, drills: dict[str, PlanDrills], max_ages: dict[str, float | None]) -> None:
        for plan, found in drills.items():
            attrs = {"plan": plan}
            self.drill_at.set(found.last.started_at if found.last else 0.0, attrs)
            if found.last is not None:
                self.drill_ok.set(int(found.last.success), attrs)
            self.drill_ok_at.set(found.last_success.started_at if found.last_success else 0.0, attrs)
            if found.last_success is not None:
                self.drill_ok_age.set(max(0.0, time.time() - found.last_success.started_at), attrs)
        for plan, max_age in max_ages.items():
            if max_age is not None:
                self.max_drill_age.set(max_age, {"plan": plan})

    def update(self, *, now: float | None = None, only: Sequence[str] | None = None) -> None:
        """Set every VM gauge from the state known now."""
        now = time.time() if now is None else now
        for vm in only if only is not None else list(self._vms):
            state = self._vms[vm]
            attrs = {"vm": vm, "site": state.site}
            age = state.age(now)
            if age is not None and state.point_at is not None:
                self.age.set(age, attrs)
                self.point_at.set(state.point_at, attrs)
            if state.protected is None:
                continue  # Temporal not read yet: no verdicts
            self.protected.set(int(state.protected), attrs)
            self.paused.set(int(state.paused), attrs)
            if state.threshold_s is not None and state.interval_s is not None:
                self.threshold.set(state.threshold_s, attrs)
                self.interval.set(state.interval_s, attrs)
            if state.progress_at is not None:
                self.progress_at.set(state.progress_at, attrs)
            self.breach.set(int(state.breached(now)), attrs)
            self.stalled_g.set(int(state.stalled(now)), attrs)

    # kept for callers of the single-module version
    update_ages = update

    async def read_vms(self, client: Client, vms: Sequence[str]) -> None:
        for vm in vms:
            try:
                self.replication_seen(vm, await self._reader.replication(client, vm))
            except Exception as exc:  # RPC or decoding: the gauges must outlive one bad answer
                log.warning("metrics: cannot read the replication of %s from Temporal: %s", vm, exc)

    async def read_fleet(self, client: Client) -> None:
        for site in self._poll_sites:
            try:
                self.pollers_seen(site, await site_pollers(client, site, fresh_s=POLLER_FRESH_S))
            except Exception as exc:
                log.warning("metrics: cannot describe the task queue of site %s: %s", site, exc)
        if self._reports is not None:
            max_ages: dict[str, float | None] = {}
            try:
                max_ages = await asyncio.to_thread(self._plans) if self._plans else {}
            except Exception as exc:  # an invalid inventory: still report the drills found on disk
                log.warning("metrics: cannot list the plans: %s", exc)
            try:
                drills = await asyncio.to_thread(self._reports.scan, list(max_ages))
                self.drills_seen(drills, max_ages)
            except Exception as exc:
                log.warning("metrics: cannot read the drill reports in %s: %s", self._reports.folder, exc)

    async def refresh(self, client: Client) -> None:
        """Read everything from Temporal and the reports once."""
        await self.read_vms(client, self.vms)
        await self.read_fleet(client)
        self.update()

    def due(self, now: float, refresh_s: float) -> list[str]:
        """VMs to re-read: not read for ``refresh_s``, or looking breached/stalled on stale knowledge."""
        out = []
        for vm, state in self._vms.items():
            stale = now - state.read_at
            if stale >= refresh_s or (stale >= CONFIRM_S and (state.breached(now) or state.stalled(now))):
                out.append(vm)
        return out

    async def run(self, client: Client, refresh_s: float) -> None:
        """Keep the gauges current until cancelled."""
        next_fleet = 0.0
        while True:
            await self.read_vms(client, self.due(time.time(), refresh_s))
            if time.monotonic() >= next_fleet:
                await self.read_fleet(client)
                next_fleet = time.monotonic() + min(refresh_s, FLEET_TICK_S)
            self.update()
            await asyncio.sleep(min(AGE_TICK_S, refresh_s))

    def interceptor(self) -> Interceptor:
        return MetricsInterceptor(self)


def worker_metrics(
    meter: MetricMeter, settings: Settings, inventory: Inventory, sites: Sequence[str], *, orchestration: bool
) -> SeawallMetrics:
    """The metrics of one worker process: a worker serving the orchestration queue also reports every
    VM of the inventory and the drills (it writes the reports)."""
    return SeawallMetrics(
        meter,
        inventory,
        sites,
        fleet=orchestration,
        reports=DrillReports(Path(settings.reports_dir)) if orchestration else None,
        plans=(lambda: plan_targets(settings)) if orchestration else None,
    )
