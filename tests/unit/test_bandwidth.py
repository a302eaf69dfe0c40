"""The token bucket on a fake clock: the long-run rate is the limit, whatever the write sizes."""

from __future__ import annotations

import pytest

from seawall.blockstore.bandwidth import ThrottledStore, TokenBucket, shared_bucket
from seawall.blockstore.stores.directory import DirectoryStore


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@pytest.mark.parametrize("size", [1000, 64 * 1024, 8 * 1024 * 1024])
def test_long_run_rate_is_the_limit(size: int) -> None:
    t = FakeTime()
    bucket = TokenBucket(1_000_000, clock=t.clock, sleep=t.sleep)
    total = 0
    while total < 50_000_000:
        bucket.take(size)
        total += size
    # The first second's burst is free; after it, exactly the rate.
    assert t.now == pytest.approx((total - 1_000_000) / 1_000_000, rel=0.01)
    assert bucket.taken == total and bucket.waited == pytest.approx(t.now, rel=0.01)


def test_idle_time_refills_only_up_to_the_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(1000, clock=t.clock, sleep=t.sleep)
    assert bucket.take(1000) == 0.0
    t.now += 3600  # an hour idle buys one second of burst, not an hour of it
    assert bucket.take(1000) == 0.0
    assert bucket.take(1000) == pytest.approx(1.0)


def test_bad_limit_and_shared_scope() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        TokenBucket(0)
    a = shared_bucket("site:unit-test", 1000)
    assert shared_bucket("site:unit-test", 2000) is a and a.rate == 2000
    assert shared_bucket("store:unit-test", 1000) is not a


def test_throttled_store_charges_only_what_it_writes(tmp_path: object) -> None:
    t = FakeTime()
    bucket = TokenBucket(10_000, clock=t.clock, sleep=t.sleep)
    store = ThrottledStore(DirectoryStore(tmp_path / "s"), bucket)  # type: ignore[operator]
    assert store.put("packs/aa/1", b"x" * 5000) is True
    assert store.put("packs/aa/1", b"x" * 5000) is False  # already there: nothing shipped
    store.put_overwrite("gc/condemned.json", b"y" * 100)
    assert store.get("packs/aa/1") == b"x" * 5000
    assert bucket.taken == 5100
    assert not hasattr(store, "lock")  # a directory cannot lock, and the wrapper does not pretend


def test_a_waiting_writer_goes_at_the_new_rate_when_the_share_grows() -> None:
    t = FakeTime()
    bucket = TokenBucket(1000, clock=t.clock, sleep=t.sleep)
    bucket.take(1000)  # the burst is spent: the next writer is in debt

    def sleep(s: float) -> None:
        t.sleep(s)
        if bucket.rate == 1000:
            bucket.set_rate(4000)  # another process stopped: this one's share grows mid-wait

    bucket._sleep = sleep
    waited = bucket.take(3000)
    # 0.25 s at 1000 B/s, then the remaining 2750 bytes at 4000 B/s; at the old rate it was 3 s.
    assert waited == pytest.approx(0.25 + 2750 / 4000)
    bucket.set_rate(None)
    assert bucket.take(10**9) == 0.0  # no limit any more: nobody waits
