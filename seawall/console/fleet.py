"""What the protection page reads for the whole fleet at once, kept briefly per API process.

The page asks every few seconds, and so may every open console: the fleet's status (three listings
plus the few VMs they cannot answer for, ``seawall.control.fleet``) is kept ``api_status_cache_s``
seconds, and the 24-hour strips (every point of the day) a minute. Askers within that time share one
read; after it, an answer up to ten times as old is still given at once while a read in the
background renews it, so a page is not held up by a read of a large fleet. Every answer says how old
it is (``as_of``), and the page shows it.

The strips come from one listing of the day's completed cycles (and a lookback of a few RPO
thresholds, for the point in force when the window opens); only a VM whose point in force is older
than that lookback is asked on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from pydantic import BaseModel
from temporalio.client import Client

from seawall.console.views import StripCell, age_strip
from seawall.contract.names import Workflow
from seawall.contract.search import SA_VM
from seawall.control.fleet import FAN_OUT
from seawall.model import Inventory

T = TypeVar("T")
log = logging.getLogger(__name__)

STRIP_WINDOW = timedelta(hours=24)
STRIPS_KEEP_S = 60.0  # the page refreshes its strips once a minute
LOOKBACK_THRESHOLDS = 2
# An answer older than its fresh time is still given at once, while renewed, up to this many times it.
STALE_FACTOR = 10


class Strip(BaseModel):
    vm: str
    threshold_s: float
    cells: list[StripCell]


class Kept(Generic[T]):
    """The newest answer of one expensive read, for the same key: fresh for ``keep_s`` seconds; after
    that, up to ``stale_s`` old, it is still answered at once while one read in the background renews
    it (the answer says when it was read). Older, or none yet: the asker waits for a read, and
    concurrent askers share it. ``keep_s`` 0 reads on every request."""

    def __init__(self, keep_s: float, stale_s: float | None = None) -> None:
        self.keep_s = keep_s
        self.stale_s = keep_s * STALE_FACTOR if stale_s is None else stale_s
        self._lock = asyncio.Lock()
        self._key: object = None
        self._value: T | None = None
        self._at = 0.0
        self._as_of = datetime.min.replace(tzinfo=UTC)
        self._renewing: asyncio.Task[None] | None = None

    async def _read(self, key: object, read: Callable[[], Awaitable[T]]) -> None:
        as_of = datetime.now(UTC)
        value = await read()
        self._key, self._value, self._at, self._as_of = key, value, time.monotonic(), as_of

    async def _renew(self, key: object, read: Callable[[], Awaitable[T]]) -> None:
        try:
            async with self._lock:
                await self._read(key, read)
        except Exception as exc:  # the kept answer stands until it is too old; then an asker sees this
            log.warning("renewing the console's %s failed: %s", self.__class__.__name__, exc)

    async def get(self, key: object, read: Callable[[], Awaitable[T]]) -> tuple[T, datetime]:
        """(the value, when it was read) for ``key`` (compared by identity: an inventory reloaded is
        another inventory)."""
        age = time.monotonic() - self._at
        if self._value is not None and self._key is key and self.keep_s > 0:
            if age < self.keep_s:
                return self._value, self._as_of
            if age < self.stale_s:
                if self._renewing is None or self._renewing.done():
                    self._renewing = asyncio.create_task(self._renew(key, read))
                return self._value, self._as_of
        async with self._lock:
            fresh = time.monotonic() - self._at < self.keep_s
            if self._value is None or self._key is not key or not fresh:
                await self._read(key, read)
            assert self._value is not None
            return self._value, self._as_of


def threshold_s(inventory: Inventory, vm: str) -> float:
    policy = inventory.policy(inventory.protected_vm(vm).policy)
    return (policy.interval + (policy.rpo_grace or timedelta(0))).total_seconds()


def _cycles_query(vm: str | None, extra: str) -> str:
    # A completed cycle always made a verified point (an unverified one fails the cycle), so the
    # visibility list alone gives point times without fetching each result.
    who = f' AND {SA_VM.name} = "{vm}"' if vm else ""
    return f'WorkflowType = "{Workflow.REPLICATION_CYCLE}"{who} AND ExecutionStatus = "Completed" AND {extra}'


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def point_times(client: Client, vm: str, since: datetime) -> list[datetime]:
    """One VM's point times since ``since``, and the point in force then."""
    stamp = _stamp(since)
    times = [wf.start_time async for wf in client.list_workflows(_cycles_query(vm, f'StartTime > "{stamp}"'))]
    # The point in force when the window opens, so the strip's first cells are not shown as "no point".
    async for wf in client.list_workflows(_cycles_query(vm, f'StartTime <= "{stamp}"'), limit=1):
        times.append(wf.start_time)
    return times


async def fleet_point_times(
    client: Client, inventory: Inventory, vms: Sequence[str], since: datetime
) -> dict[str, list[datetime]]:
    """``point_times`` of every VM of ``vms``: one listing, and a query of its own only for a VM whose
    point in force at ``since`` is older than the lookback (or that has none: never asked again for a
    VM whose first point in the listing is its seed)."""
    lookback = LOOKBACK_THRESHOLDS * max((threshold_s(inventory, vm) for vm in vms), default=0.0)
    wanted = set(vms)
    times: dict[str, list[datetime]] = {vm: [] for vm in vms}
    seeded: set[str] = set()
    query = _cycles_query(None, f'StartTime > "{_stamp(since - timedelta(seconds=lookback))}"')
    async for wf in client.list_workflows(query):
        vm = wf.typed_search_attributes.get(SA_VM)
        if vm in wanted:
            times[vm].append(wf.start_time)
            if "/seed-" in wf.id:
                seeded.add(vm)
    stamp = _stamp(since)
    lacking = [vm for vm in vms if vm not in seeded and not any(t <= since for t in times[vm])]
    gate = asyncio.Semaphore(FAN_OUT)

    async def in_force(vm: str) -> None:
        async with gate:
            async for wf in client.list_workflows(_cycles_query(vm, f'StartTime <= "{stamp}"'), limit=1):
                times[vm].append(wf.start_time)

    await asyncio.gather(*(in_force(vm) for vm in lacking))
    return times


async def fleet_strips(client: Client, inventory: Inventory, vms: Sequence[str]) -> list[Strip]:
    now = datetime.now(UTC)
    times = await fleet_point_times(client, inventory, vms, now - STRIP_WINDOW)
    return [
        Strip(vm=vm, threshold_s=threshold_s(inventory, vm), cells=age_strip(times[vm], now)) for vm in vms
    ]
