"""An activity interceptor: the worker records what its own activities did, the moment they did it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from seawall.contract.names import Activity
from seawall.runtime.metrics.sources import point_time, site_of_queue

if TYPE_CHECKING:
    from seawall.runtime.metrics.core import SeawallMetrics

log = logging.getLogger("seawall.runtime.metrics")

# Activities that are steps of a recovery plan (RecoveryPlan / RecoverVM), timed per attempt.
PLAN_STEPS = frozenset(
    {
        Activity.CHOOSE_POINT,
        Activity.MATERIALIZE_DISKS,
        Activity.CREATE_TARGET_VM,
        Activity.CHECK_HEALTH,
        Activity.UPDATE_DNS,
        Activity.RUN_HOOK,
        Activity.FENCE_VM,
        Activity.CLEANUP_RUN,
        Activity.PAUSE_SCHEDULES,
        Activity.WRITE_REPORT,
    }
)


class MetricsInterceptor(Interceptor):
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
        # Every activity takes one input model (seawall.contract.messages): ShipRequest, VMPoint.
        if name == Activity.SHIP_DISKS and args:
            self._metrics.shipped_disks(
                str(args[0].vm), site, int(result.bytes_read), int(result.bytes_shipped)
            )
        elif name == Activity.VERIFY_POINT and args and getattr(result, "ok", False):
            req = args[0]
            self._metrics.cycle_verified(str(req.vm), site, point_time(str(req.point_id)))
