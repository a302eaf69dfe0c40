"""Bandwidth limits: a token bucket per site and per store, shared by every ship of the process.

What is limited is what goes over the link: the bytes written to the store (sealed, compressed
chunks, packs, tables, manifests), not the bytes read from the disk. ``ThrottledStore`` wraps a
store and takes ``len(data)`` tokens before each write; all repositories of a worker process that
name the same scope (``site:<name>``, ``store:<name>``) draw from one bucket (``shared_bucket``), so
four concurrent ships of a site share its limit instead of getting it each.

The bucket allows a burst of one second of rate (at least one maximal write, so a large pack does
not wait forever) and goes into debt for a write larger than what it holds: the writer waits until
the debt is paid, so the long-run rate is the limit whatever the write size. Reads (verify,
restore) are not limited: a recovery must not wait for a replication budget.

A bucket's rate may be None (no limit now: e.g. a limit by time of day outside its windows); its rate
follows the share the scope's coordinator grants this process (``seawall.runtime.bandwidth``). Each
``ThrottledStore`` counts the seconds *its* writes waited, so a ship can say it is being throttled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from seawall.blockstore.stores.backend import ObjectStore

__all__ = ["ThrottledStore", "TokenBucket", "shared_bucket"]


# A waiting writer re-reads the rate at least this often.
SLICE_S = 0.25


class TokenBucket:
    """``rate`` bytes per second, thread-safe; ``take`` blocks until the bytes may go."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"bandwidth limit must be positive, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds writers spent waiting: "throttled" when it grows
        self._credit = 0.0  # every byte earned since the start: a waiter waits for its place in it
        self.unlimited = False
        self.taken = 0  # bytes let through

    def _refill(self, now: float) -> None:
        accrued = (now - self._last) * self.rate
        self._credit += accrued
        self._tokens = min(self.burst, self._tokens + accrued)
        self._last = now

    def set_rate(self, rate: float | None) -> None:
        """A changed limit (the inventory was edited, another window, a new share) applies from now on,
        to the writers already waiting too. None: no limit until the next ``set_rate``."""
        with self._lock:
            if rate is None:
                self.unlimited = True
                return
            if rate <= 0:
                raise ValueError(f"bandwidth limit must be positive, got {rate}")
            now = self._clock()
            if not self.unlimited:
                self._refill(now)  # earned so far at the old rate; the new one applies from now
            else:
                # A limit that starts now (a new share, a window that opens) starts without a burst:
                # several processes given their shares at once would otherwise overshoot the total.
                self._tokens = 0.0
                self._last = now
            self.unlimited = False
            self.rate = float(rate)
            self.burst = float(rate)
            self._tokens = min(self._tokens, self.burst)

    def take(self, n: int) -> float:
        """Reserve ``n`` bytes; returns the seconds this caller waited.

        A writer in debt waits until the bucket has earned what it owes, in slices of at most
        ``SLICE_S``, re-reading the rate after each: when the rate changes (a larger share after
        another process stopped), writers already waiting go at the new rate, not the old one."""
        if n <= 0:
            return 0.0
        with self._lock:
            self.taken += n
            if self.unlimited:
                return 0.0
            self._refill(self._clock())
            # Reserve now (possibly into debt), so concurrent writers queue in order.
            self._tokens -= n
            if self._tokens >= 0:
                return 0.0
            target = self._credit - self._tokens
        waited = 0.0
        while True:
            with self._lock:
                if self.unlimited:
                    break
                self._refill(self._clock())
                remaining = target - self._credit
                if remaining <= 0:
                    break
                pause = min(remaining / self.rate, SLICE_S)
                self.waited += pause
            self._sleep(pause)
            waited += pause
        return waited


_BUCKETS: dict[str, TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def shared_bucket(scope: str, rate: float | None = None) -> TokenBucket:
    """The process's one bucket for ``scope``; ``rate`` (given) is its rate from now on, None leaves it
    as it is (a new bucket without a rate is unlimited until someone sets one)."""
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(scope)
        if bucket is None:
            bucket = _BUCKETS[scope] = TokenBucket(rate if rate is not None else 1.0)
            if rate is None:
                bucket.set_rate(None)
        elif rate is not None and (bucket.unlimited or bucket.rate != rate):
            bucket.set_rate(rate)
        return bucket


class ThrottledStore:
    """An ObjectStore whose writes draw from one or more token buckets (site, store, VM).

    ``before_write`` (optional) runs before each throttled write: it keeps the buckets' rates current
    (the time-of-day window, the coordinator's share) and tells the coordinator this process ships."""

    def __init__(
        self, inner: ObjectStore, *buckets: TokenBucket, before_write: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.buckets = buckets
        self.before_write = before_write
        self.waited = 0.0  # seconds this store's writes waited on the buckets
        self._waited_lock = threading.Lock()

    def _throttle(self, n: int) -> None:
        if self.before_write is not None:
            self.before_write()
        waited = sum(b.take(n) for b in self.buckets)
        if waited:
            with self._waited_lock:
                self.waited += waited

    def put(self, key: str, data: bytes) -> bool:
        # Content-addressed keys that already exist cost a HEAD, not the upload: check first.
        if self.inner.exists(key):
            return False
        self._throttle(len(data))
        return self.inner.put(key, data)

    def put_overwrite(self, key: str, data: bytes) -> None:
        self._throttle(len(data))
        self.inner.put_overwrite(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> object:
        # Object lock and other optional capabilities pass through to the wrapped store.
        if name in ("lock", "locked_until", "check_lock_support"):
            return getattr(self.inner, name)
        raise AttributeError(name)
