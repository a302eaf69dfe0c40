"""The worker side of a shared limit: the bucket follows the granted share; with the coordinator out of
reach, a process keeps its last share, or takes the limit over the polling processes, or the whole
limit, and logs which; never unlimited. Claims go to a fake coordinator (the real one: workflow tests)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from seawall.blockstore.bandwidth import shared_bucket
from seawall.contract.bandwidth import BandwidthClaim, BandwidthGrant
from seawall.model.bandwidth import BandwidthPolicy
from seawall.runtime import bandwidth

POLICY = BandwidthPolicy(bytes_per_s=20_000_000)


class FakeCoordinator:
    def __init__(self) -> None:
        self.claims: list[BandwidthClaim] = []
        self.down = False
        self.members = 2

    async def __call__(
        self, client: Any, scope: str, queue: str, claim: BandwidthClaim, **kw: Any
    ) -> BandwidthGrant:
        if self.down:
            raise ConnectionError("connection refused")
        self.claims.append(claim)
        assert claim.limit is not None
        return BandwidthGrant(
            share=claim.limit / self.members, seed_share=None, members=self.members, seeding_members=0
        )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCoordinator:
    coordinator = FakeCoordinator()
    monkeypatch.setattr(bandwidth, "claim_share", coordinator)
    return coordinator


def keeper(loop: asyncio.AbstractEventLoop, pollers: int | None = None) -> bandwidth.ShareKeeper:
    k = bandwidth.ShareKeeper(object(), loop, "p1@test", lambda scope: "q", renew_s=3600)  # type: ignore[arg-type]
    k._pollers = lambda queue: pollers  # type: ignore[method-assign]
    return k


def test_the_bucket_follows_the_share_and_a_lost_coordinator_keeps_it(
    loop: asyncio.AbstractEventLoop, fake: FakeCoordinator, caplog: pytest.LogCaptureFixture
) -> None:
    scope = f"site:{uuid.uuid4().hex[:8]}"
    k = keeper(loop)
    k.touch(scope, POLICY, seed=False)
    assert fake.claims[-1].shipping and fake.claims[-1].limit == 20_000_000
    bucket = shared_bucket(scope)
    assert not bucket.unlimited and bucket.rate == 10_000_000
    fake.down = True
    with caplog.at_level(logging.WARNING, logger="seawall.bandwidth"):
        k._renew(k._leases[scope])
    assert bucket.rate == 10_000_000 and not bucket.unlimited
    assert "coordinator unreachable" in caplog.text and "keeping the last share" in caplog.text
    fake.down = False
    fake.members = 1
    with caplog.at_level(logging.WARNING, logger="seawall.bandwidth"):
        k._renew(k._leases[scope])
    assert bucket.rate == 20_000_000 and "reachable again" in caplog.text


@pytest.mark.parametrize(
    ("pollers", "rate", "words"), [(None, 20_000_000, "not enforced"), (4, 5_000_000, "4 processes")]
)
def test_without_any_share_yet_a_process_still_applies_a_limit(
    loop: asyncio.AbstractEventLoop,
    fake: FakeCoordinator,
    caplog: pytest.LogCaptureFixture,
    pollers: int | None,
    rate: int,
    words: str,
) -> None:
    scope = f"site:{uuid.uuid4().hex[:8]}"
    fake.down = True
    with caplog.at_level(logging.WARNING, logger="seawall.bandwidth"):
        keeper(loop, pollers).touch(scope, POLICY, seed=False)
    bucket = shared_bucket(scope)
    assert not bucket.unlimited and bucket.rate == rate
    assert words in caplog.text


def test_a_process_that_stops_shipping_says_so(
    loop: asyncio.AbstractEventLoop, fake: FakeCoordinator
) -> None:
    scope = f"store:{uuid.uuid4().hex[:8]}"
    k = keeper(loop)
    k.touch(scope, POLICY, seed=True)
    assert fake.claims[-1].seeding
    k._leases[scope].last_write = k._leases[scope].last_seed_write = float("-inf")  # quiet for a while
    k._renew(k._leases[scope])
    assert fake.claims[-1].shipping is False and not k._leases[scope].announced
    n = len(fake.claims)
    k._renew(k._leases[scope])  # nothing more to say until it ships again
    assert len(fake.claims) == n
