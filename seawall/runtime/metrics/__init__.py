"""Prometheus metrics of a worker: the Temporal SDK's own and Seawall's, on one ``/metrics`` endpoint.

The SDK's Runtime serves Prometheus itself (``PrometheusConfig``); Seawall's instruments are created on
that same Runtime's meter, so one scrape returns both with no second HTTP server and no client library.
The series, where each comes from and how to aggregate them over several workers: docs/OPERATIONS.md
("Monitoring"); dashboards and alert rules over them: deploy/monitoring/.

- ``core``: the instruments and the state behind the gauges (``SeawallMetrics``, ``worker_metrics``).
- ``sources``: the reads from Temporal (a VM's schedule and cycles, a site queue's pollers).
- ``drills``: the newest drill of each plan from the run reports on disk.
- ``interceptor``: what the worker's own activities report (bytes, verified points, plan steps).
"""

from seawall.runtime.metrics.core import (
    AGE_TICK_S,
    DURATION_BUCKETS,
    STALL_INTERVALS,
    SeawallMetrics,
    VmState,
    grace_for,
    metrics_runtime,
    worker_metrics,
)
from seawall.runtime.metrics.drills import Drill, DrillReports, PlanDrills, drill_of
from seawall.runtime.metrics.interceptor import PLAN_STEPS
from seawall.runtime.metrics.sources import point_time, site_of_queue

__all__ = [
    "AGE_TICK_S",
    "DURATION_BUCKETS",
    "PLAN_STEPS",
    "STALL_INTERVALS",
    "Drill",
    "DrillReports",
    "PlanDrills",
    "SeawallMetrics",
    "VmState",
    "drill_of",
    "grace_for",
    "metrics_runtime",
    "point_time",
    "site_of_queue",
    "worker_metrics",
]
