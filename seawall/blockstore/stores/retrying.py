"""Retries with capped exponential backoff and full jitter, for stores and for any flaky call.

Full jitter (a delay drawn uniformly from ``[0, cap]``, the cap doubling per attempt up to a maximum)
spreads the retries of many workers hit by the same outage instead of having them return in lockstep.
Only errors that say a retry may help are retried: a missing bucket or bad credentials fail at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from seawall.blockstore.stores.backend import LockingStore, ObjectStore, StoreError, TransientStoreError

__all__ = ["RetryPolicy", "RetryingStore", "call_with_retries"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: ``attempts`` counts the first try too."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")

    def cap(self, retry: int) -> float:
        """Upper bound of the delay before retry number ``retry`` (1 = the first retry)."""
        # Bound the exponent so a large attempt count cannot overflow the float.
        return min(self.max_delay, self.base_delay * (2.0 ** min(retry - 1, 60)))

    def delay(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.cap(retry))


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException, int], BaseException],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying only errors ``is_transient`` accepts.

    When the attempts run out, raises ``give_up(last_error, attempts)`` chained to the last error, so
    the message can say how hard we tried while the original stays in the traceback.
    """
    rng = rng or random.Random()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt >= policy.attempts:
                raise give_up(exc, attempt) from exc
            delay = policy.delay(attempt, rng)
            log.debug(
                "%s failed (attempt %d/%d), retrying in %.2fs: %s", what, attempt, policy.attempts, delay, exc
            )
            sleep(delay)
            attempt += 1


def _store_give_up(what: str) -> Callable[[BaseException, int], BaseException]:
    def build(exc: BaseException, attempts: int) -> BaseException:
        return TransientStoreError(f"{what}: {exc} (gave up after {attempts} attempts)")

    return build


def _is_transient_store_error(exc: BaseException) -> bool:
    return isinstance(exc, TransientStoreError)


class RetryingStore:
    """An ObjectStore that retries its inner store's transient failures.

    Safe because every store operation is idempotent: a put whose acknowledgement was lost comes back
    as "already present" on the retry, and deleting an absent key succeeds.
    """

    def __init__(
        self,
        inner: ObjectStore,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        *,
        seed: int | None = None,
    ) -> None:
        self.inner = inner
        self.policy = RetryPolicy(attempts=attempts, base_delay=base_delay, max_delay=max_delay)
        self._sleep = sleep
        # random.Random is not documented as thread-safe and stores are shared by worker threads.
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def _delay_rng(self) -> random.Random:
        with self._rng_lock:
            return random.Random(self._rng.getrandbits(64))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        label = f"{what} on {self.inner.describe()}"
        return call_with_retries(
            fn,
            policy=self.policy,
            is_transient=_is_transient_store_error,
            give_up=_store_give_up(label),
            what=label,
            sleep=self._sleep,
            rng=self._delay_rng(),
        )

    def put(self, key: str, data: bytes) -> bool:
        return self._call(f"put {key!r}", lambda: self.inner.put(key, data))

    def put_overwrite(self, key: str, data: bytes) -> None:
        self._call(f"put_overwrite {key!r}", lambda: self.inner.put_overwrite(key, data))

    def get(self, key: str) -> bytes:
        return self._call(f"get {key!r}", lambda: self.inner.get(key))

    def exists(self, key: str) -> bool:
        return self._call(f"exists {key!r}", lambda: self.inner.exists(key))

    def delete(self, key: str) -> None:
        self._call(f"delete {key!r}", lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys lazily; a listing that fails part-way restarts and skips keys already yielded."""
        seen: set[str] = set()
        label = f"list {prefix!r} on {self.inner.describe()}"
        rng = self._delay_rng()
        attempt = 1
        while True:
            try:
                for key in self.inner.list(prefix):
                    if key not in seen:
                        seen.add(key)
                        yield key
                return
            except TransientStoreError as exc:
                if attempt >= self.policy.attempts:
                    raise _store_give_up(label)(exc, attempt) from exc
                delay = self.policy.delay(attempt, rng)
                log.debug(
                    "%s failed (attempt %d/%d), retrying in %.2fs: %s",
                    label,
                    attempt,
                    self.policy.attempts,
                    delay,
                    exc,
                )
                self._sleep(delay)
                attempt += 1

    def describe(self) -> str:
        return self.inner.describe()

    # Object lock passes through (retried like any call) when the inner store can lock.

    def _locking(self) -> LockingStore:
        if not isinstance(self.inner, LockingStore):
            raise StoreError(f"{self.inner.describe()}: this kind of replica store cannot lock objects")
        return self.inner

    def check_lock_support(self) -> None:
        self._locking().check_lock_support()

    def lock(self, key: str, mode: str, until: datetime) -> None:
        inner = self._locking()
        self._call(f"lock {key!r}", lambda: inner.lock(key, mode, until))

    def locked_until(self, key: str) -> datetime | None:
        inner = self._locking()
        return self._call(f"locked_until {key!r}", lambda: inner.locked_until(key))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
