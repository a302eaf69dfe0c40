"""``notify``: one event to every configured target that wants it, at the orchestration worker.

Retried by its workflow until delivered; the targets already served are kept in the activity's
heartbeat details, so a retry after a worker died mid-way skips them, and every delivery of the event
carries the event's key, so a receiver that saw it already (a crash between its answer and our
heartbeat) drops the repeat.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from seawall import notify
from seawall.contract.drills import NotifyRequest, NotifySent
from seawall.contract.names import Activity
from seawall.plans import load_inventory
from seawall.runtime import failpoints
from seawall.runtime.config import Settings
from seawall.security.secrets import SecretError


class NotifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name=Activity.NOTIFY)
    async def notify(self, req: NotifyRequest) -> NotifySent:
        inventory = load_inventory(self._settings.inventory)
        base_dir = self._settings.inventory.parent
        details = activity.info().heartbeat_details
        done: list[str] = list(details[0]) if details else []
        failures: list[str] = []
        for target in notify.targets_for(inventory, req):
            if target.name in done:
                continue
            try:
                await notify.deliver(target, req, base_dir)
            except SecretError as exc:
                # A reference this worker cannot resolve will not resolve on a retry either.
                raise ApplicationError(str(exc), type="SecretError", non_retryable=True) from None
            except notify.DeliveryError as exc:
                failures.append(str(exc))
                continue
            # A crash test freezes the worker here: delivered, but not yet remembered anywhere.
            failpoints.hit("notify.delivered", {"target": target.name, "event": req.event, "key": req.key})
            done.append(target.name)
            activity.heartbeat(done)
        if failures:
            # Retried (the ones delivered are remembered above): a receiver that is down gets it later.
            raise ApplicationError("; ".join(failures), type="DeliveryFailed")
        return NotifySent(delivered=done)
