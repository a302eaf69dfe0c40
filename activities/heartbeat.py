"""Heartbeating around calls that have no checkpoints of their own, and between checkpoints that are
too far apart for a short heartbeat timeout.

Why: a worker killed mid-activity is only noticed when its heartbeat timeout passes. With timeouts of
tens of seconds (``workflows.policies.HEARTBEAT_TIMEOUT``) every long activity must heartbeat every few
seconds whatever its work does: a 64 MiB restore step or a 1 GiB ship checkpoint can take longer.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

# How often a long call heartbeats when the work itself has no checkpoint to report. The heartbeat
# timeouts the workflows set are 4x this or more, so one late beat never fails an attempt.
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


class Beat:
    """The newest heartbeat details of a running activity, re-sent every few seconds by ``keep_alive``.

    The work calls ``beat(details)`` at its own checkpoints (sent at once, and remembered); between
    them the ticker repeats the newest details, so a resumed attempt still finds the last checkpoint.
    """

    def __init__(self, initial: Any = None, refresh: Callable[[Any], Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._details = initial
        # ``refresh`` brings details up to date when they are sent (a counter that moves between
        # checkpoints, like the seconds a ship waited on its bandwidth limit).
        self._refresh = refresh

    def __call__(self, details: Any) -> None:
        with self._lock:
            self._details = details
        activity.heartbeat(self.details)

    @property
    def details(self) -> Any:
        with self._lock:
            details = self._details
        return self._refresh(details) if self._refresh is not None and details is not None else details


@contextlib.contextmanager
def keep_alive(beat: Beat, every: float = HEARTBEAT_EVERY_S) -> Iterator[Beat]:
    """Heartbeat ``beat.details`` every ``every`` seconds from a ticker thread while the block runs.

    The work stays on the activity thread (so a cancellation still interrupts it); the ticker runs in
    a copy of the activity's context, where ``activity.heartbeat`` is thread-safe for sync activities.
    """
    stop = threading.Event()
    ctx = contextvars.copy_context()

    def tick() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # a heartbeat that cannot be sent is the server's problem
                activity.heartbeat(beat.details)

    ticker = threading.Thread(target=ctx.run, args=(tick,), name="seawall-heartbeat", daemon=True)
    ticker.start()
    try:
        yield beat
    finally:
        stop.set()
        ticker.join(timeout=every + 1)
