"""An ObjectStore wrapper that injects failures, for tests of retries, resumption and idempotency.

A fault either happens *before* the inner call (the request never reached the store) or *after* it
(the store did the work but the answer was lost) — the second kind is what makes idempotent writes
matter, so tests should exercise both.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from seawall.blockstore.stores.backend import ObjectStore, TransientStoreError

__all__ = ["Fault", "FaultInjectingStore", "fail_first", "fail_randomly"]

Op = Literal["put", "put_overwrite", "get", "exists", "delete", "list"]
T = TypeVar("T")


@dataclass(frozen=True)
class Fault:
    """What to do to one call: raise ``error`` before or after letting the inner store act."""

    error: BaseException
    after: bool = False


# A rule sees (operation, key, how many times this operation+key was called, 1-based).
Rule = Callable[[str, str, int], Fault | None]


def fail_first(
    n: int,
    *,
    ops: frozenset[str] | None = None,
    after: bool = False,
    message: str = "injected transient fault",
) -> Rule:
    """Fail the first ``n`` calls of each (operation, key) with a TransientStoreError."""

    def rule(op: str, key: str, call: int) -> Fault | None:
        if (ops is None or op in ops) and call <= n:
            return Fault(TransientStoreError(f"{message} ({op} {key!r}, call {call})"), after=after)
        return None

    return rule


def fail_randomly(
    rate: float,
    *,
    seed: int = 0,
    ops: frozenset[str] | None = None,
    after_rate: float = 0.5,
) -> Rule:
    """Fail a fraction ``rate`` of calls, reproducibly; ``after_rate`` of those after the work is done."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def rule(op: str, key: str, call: int) -> Fault | None:
        if ops is not None and op not in ops:
            return None
        with lock:
            hit = rng.random() < rate
            after = rng.random() < after_rate
        if not hit:
            return None
        return Fault(TransientStoreError(f"injected random fault ({op} {key!r})"), after=after)

    return rule


@dataclass
class FaultInjectingStore:
    """Wraps ``inner``; consults ``rule`` on every call and counts calls per operation."""

    inner: ObjectStore
    rule: Rule
    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    _per_key: Counter[tuple[str, str]] = field(default_factory=Counter, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _run(self, op: Op, key: str, fn: Callable[[], T]) -> T:
        with self._lock:
            self.calls[op] += 1
            self._per_key[(op, key)] += 1
            n = self._per_key[(op, key)]
        fault = self.rule(op, key, n)
        if fault is not None and not fault.after:
            with self._lock:
                self.faults[op] += 1
            raise fault.error
        result = fn()
        if fault is not None:
            with self._lock:
                self.faults[op] += 1
            raise fault.error
        return result

    def put(self, key: str, data: bytes) -> bool:
        return self._run("put", key, lambda: self.inner.put(key, data))

    def put_overwrite(self, key: str, data: bytes) -> None:
        self._run("put_overwrite", key, lambda: self.inner.put_overwrite(key, data))

    def get(self, key: str) -> bytes:
        return self._run("get", key, lambda: self.inner.get(key))

    def exists(self, key: str) -> bool:
        return self._run("exists", key, lambda: self.inner.exists(key))

    def delete(self, key: str) -> None:
        self._run("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        # The listing is materialised so an "after" fault models a response lost once fully read.
        keys = self._run("list", prefix, lambda: list(self.inner.list(prefix)))
        yield from keys

    def describe(self) -> str:
        return f"faulty({self.inner.describe()})"
