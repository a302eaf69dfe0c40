"""Retry policies the workflows share; each workflow module names the errors no retry can fix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio.common import RetryPolicy

# Long activities heartbeat every 5 s whatever their work does (activities.heartbeat.keep_alive): a
# worker killed mid-transfer, or a completion lost while the server restarted, is noticed after this
# long and the attempt retried elsewhere, instead of after minutes.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)


def quick(fatal: Sequence[str]) -> RetryPolicy:
    """Quick calls (look-ups, API calls): a few retries over a few minutes, then give up."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=10,
        non_retryable_error_types=list(fatal),
    )


def persistent(fatal: Sequence[str]) -> RetryPolicy:
    """Transfers: retry for as long as the step may run; a store outage of minutes must not lose it."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(minutes=1),
        non_retryable_error_types=list(fatal),
    )
