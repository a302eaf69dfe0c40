"""RetryingStore and call_with_retries: what is retried, how long it waits, what the final error says."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, StoreError, TransientStoreError
from seawall.blockstore.stores.faults import FaultInjectingStore, fail_first, fail_randomly
from seawall.blockstore.stores.retrying import RetryingStore, RetryPolicy, call_with_retries


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> bool:
        if key in self.objects:
            return False
        self.objects[key] = data
        return True

    def put_overwrite(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(key, "memory") from None

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        yield from (k for k in list(self.objects) if k.startswith(prefix))

    def describe(self) -> str:
        return "memory://"


class FlakyStore(MemoryStore):
    """Fails the first ``failures`` calls of every operation with ``error``; counts attempts."""

    def __init__(self, failures: int, error: type[StoreError] = TransientStoreError) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.attempts: dict[str, int] = {}

    def _hit(self, op: str) -> None:
        self.attempts[op] = self.attempts.get(op, 0) + 1
        if self.attempts[op] <= self.failures:
            raise self.error(f"{op} flaked ({self.attempts[op]})")

    def put(self, key: str, data: bytes) -> bool:
        self._hit("put")
        return super().put(key, data)

    def get(self, key: str) -> bytes:
        self._hit("get")
        return super().get(key)

    def delete(self, key: str) -> None:
        self._hit("delete")
        super().delete(key)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_conforms_to_protocol() -> None:
    assert isinstance(RetryingStore(MemoryStore()), ObjectStore)
    assert isinstance(FaultInjectingStore(MemoryStore(), fail_first(0)), ObjectStore)


def test_transient_errors_are_retried_until_success() -> None:
    inner = FlakyStore(failures=3)
    sleeps = Sleeps()
    store = RetryingStore(inner, attempts=5, base_delay=0.1, max_delay=1.0, sleep=sleeps, seed=1)
    assert store.put("k", b"v") is True
    assert inner.attempts["put"] == 4
    assert len(sleeps.delays) == 3
    assert store.get("k") == b"v"


def test_gives_up_with_attempt_count_and_keeps_cause() -> None:
    inner = FlakyStore(failures=100)
    sleeps = Sleeps()
    store = RetryingStore(inner, attempts=4, base_delay=0.01, max_delay=0.1, sleep=sleeps, seed=1)
    with pytest.raises(TransientStoreError, match=r"gave up after 4 attempts") as info:
        store.get("k")
    assert "memory://" in str(info.value)
    assert isinstance(info.value.__cause__, TransientStoreError)
    assert "get flaked (4)" in str(info.value.__cause__)
    assert inner.attempts["get"] == 4
    assert len(sleeps.delays) == 3


@pytest.mark.parametrize("error", [StoreError, ObjectNotFound])
def test_permanent_errors_are_not_retried(error: type[StoreError]) -> None:
    sleeps = Sleeps()
    if error is ObjectNotFound:
        inner: MemoryStore = MemoryStore()
        store = RetryingStore(inner, attempts=5, sleep=sleeps)
        with pytest.raises(ObjectNotFound):
            store.get("absent")
    else:
        flaky = FlakyStore(failures=10, error=error)
        store = RetryingStore(flaky, attempts=5, sleep=sleeps)
        with pytest.raises(StoreError) as info:
            store.delete("k")
        assert not isinstance(info.value, TransientStoreError)
        assert flaky.attempts["delete"] == 1
    assert sleeps.delays == []


def test_delays_are_bounded_by_a_growing_cap() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=2.0)
    caps = [policy.cap(n) for n in range(1, 10)]
    assert caps[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert caps[5:] == [2.0, 2.0, 2.0, 2.0]

    # Many runs of a store that never recovers: each retry's delay stays within its cap, and the
    # average delay grows with the retry number (full jitter draws uniformly from [0, cap]).
    per_retry: list[list[float]] = [[] for _ in range(9)]
    for seed in range(300):
        sleeps = Sleeps()
        store = RetryingStore(
            FlakyStore(failures=100), attempts=10, base_delay=0.1, max_delay=2.0, sleep=sleeps, seed=seed
        )
        with pytest.raises(TransientStoreError):
            store.put("k", b"v")
        assert len(sleeps.delays) == 9
        for i, delay in enumerate(sleeps.delays):
            assert 0.0 <= delay <= caps[i]
            per_retry[i].append(delay)
    means = [sum(d) / len(d) for d in per_retry]
    for i in range(4):
        assert means[i + 1] > means[i] * 1.4
    assert all(m <= 2.0 for m in means)
    assert means[-1] == pytest.approx(1.0, abs=0.15)


def test_seeded_instances_are_reproducible() -> None:
    def run(seed: int) -> list[float]:
        sleeps = Sleeps()
        with pytest.raises(TransientStoreError):
            RetryingStore(FlakyStore(failures=100), attempts=6, sleep=sleeps, seed=seed).get("k")
        return sleeps.delays

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_lost_acknowledgement_makes_retried_put_report_present() -> None:
    # The write lands but its answer is lost: the retry must see "already present", not fail.
    inner = MemoryStore()
    faulty = FaultInjectingStore(inner, fail_first(1, ops=frozenset({"put"}), after=True))
    store = RetryingStore(faulty, attempts=3, sleep=Sleeps())
    assert store.put("chunk", b"data") is False
    assert inner.objects == {"chunk": b"data"}
    assert faulty.calls["put"] == 2
    assert faulty.faults["put"] == 1


def test_list_restarts_without_duplicates() -> None:
    class BreaksMidList(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def list(self, prefix: str = "") -> Iterator[str]:
            self.calls += 1
            for i, key in enumerate(sorted(self.objects)):
                if self.calls == 1 and i == 2:
                    raise TransientStoreError("connection reset mid-listing")
                yield key

    inner = BreaksMidList()
    for i in range(5):
        inner.put(f"k{i}", b"")
    store = RetryingStore(inner, attempts=3, sleep=Sleeps())
    keys = list(store.list())
    assert keys == ["k0", "k1", "k2", "k3", "k4"]
    assert inner.calls == 2


def test_random_faults_with_retries_leave_the_store_consistent() -> None:
    inner = MemoryStore()
    faulty = FaultInjectingStore(inner, fail_randomly(0.3, seed=3))
    store = RetryingStore(faulty, attempts=12, base_delay=0.0, max_delay=0.0, sleep=Sleeps(), seed=3)
    rng = random.Random(5)
    expected: dict[str, bytes] = {}
    for _ in range(200):
        key = f"chunks/{rng.randrange(50):03d}"
        data = key.encode()
        store.put(key, data)
        expected[key] = data
    assert inner.objects == expected
    assert sorted(store.list("chunks/")) == sorted(expected)
    for key in list(expected)[:10]:
        store.delete(key)
        store.delete(key)
        assert not store.exists(key)
    assert sum(faulty.faults.values()) > 30


def test_call_with_retries_uses_give_up_factory() -> None:
    calls = 0

    def fn() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("boom")

    class Exhausted(Exception):
        pass

    with pytest.raises(Exhausted, match="3 tries: boom"):
        call_with_retries(
            fn,
            policy=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0),
            is_transient=lambda e: isinstance(e, ConnectionError),
            give_up=lambda e, n: Exhausted(f"{n} tries: {e}"),
            what="test",
            sleep=Sleeps(),
        )
    assert calls == 3


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)
