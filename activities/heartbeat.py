"""Heartbeating around calls that have no checkpoints of their own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

# How often a long call heartbeats when the work itself has no checkpoint to report.
HEARTBEAT_EVERY_S = 5.0


def with_heartbeats(fn: Callable[[], T], details: Callable[[], Any]) -> T:
    """Run ``fn`` in a helper thread and heartbeat from the activity thread while it works.

    A long verify or retention pass has no checkpoints of its own, yet the server must still see that
    the worker is alive (heartbeat timeout) and the activity must notice a cancellation.
    """
    fut: Future[T] = Future()

    def target() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=target, name="seawall-long-call", daemon=True).start()
    while True:
        try:
            return fut.result(timeout=HEARTBEAT_EVERY_S)
        except TimeoutError:
            activity.heartbeat(details())
