"""Sending a notification from a workflow: the ``notify`` activity, retried until delivered or the
event is stale. A notification never fails the run that sends it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from seawall.contract.drills import NotifyRequest

RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1))
# Retried for up to an hour when nothing waits for it (a gate, a breach): a receiver restarting gets the
# event; past that it is stale news. A run's last word is awaited before the run ends (or the pending
# activity would be dropped with it), so it gives up sooner: a dead receiver must not hold a run open.
BACKGROUND = timedelta(hours=1)
AT_THE_END = timedelta(minutes=10)


def event_key(event: str, *parts: str) -> str:
    """The event's key: the run that saw it, and what it saw. Replays and retries name the same key."""
    info = workflow.info()
    return "/".join((info.workflow_id, info.run_id, event, *parts))


async def notify(req: NotifyRequest, give_up: timedelta = BACKGROUND) -> None:
    try:
        await workflow.execute_activity_method(
            NotifyActivities.notify,
            req,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=give_up,
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"notify {req.event}",
        )
    except ActivityError as exc:
        workflow.logger.warning("notification %s not delivered: %s", req.key, exc.cause or exc)
