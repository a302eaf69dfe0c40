"""Bandwidth limits at a worker: which buckets a ship draws from, and the share of a site's (or a store's)
total this process may use, claimed from the scope's ``BandwidthCoordinator`` workflow.

Each worker process keeps one token bucket per scope (``site:<name>``, ``store:<name>``, ``vm:<name>``,
plus ``<scope>:seed`` for a seed limit) shared by all its ships. A VM ships from one process at a time,
so its own limit is enforced locally. A site's or a store's limit is a TOTAL over every worker process
that ships under it, on whatever host: while a process writes under such a scope, its ``ShareKeeper``
renews a claim with the scope's coordinator every ``RENEW_S`` (update-with-start on the scope's task
queue) and sets its buckets to the share it is granted (the limit over the live claimers). When it
stops writing it says so, and its share goes to the others at their next renewal.

When the coordinator cannot be reached, a process keeps its last share; before any share it takes
the limit over the processes polling the scope's task queue, or, when even that cannot be read, the
whole limit; each of these fallbacks is logged as a warning when it starts and when it ends. Never
unlimited: a process always applies a limit it can justify.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from seawall.blockstore.bandwidth import ThrottledStore, TokenBucket, shared_bucket
from seawall.blockstore.stores.backend import ObjectStore
from seawall.contract.bandwidth import (
    RENEW_S,
    TASK_TIMEOUT_S,
    BandwidthClaim,
    BandwidthGrant,
    CoordinatorState,
)
from seawall.contract.names import Update, Workflow, bandwidth_coordinator_id
from seawall.model.bandwidth import BandwidthPolicy

if TYPE_CHECKING:
    from temporalio.client import Client

log = logging.getLogger("seawall.bandwidth")

# How long a writer waits for its first share before it falls back (then the renewals keep trying).
CLAIM_TIMEOUT_S = 5.0


@dataclass
class Scope:
    """A limit a ship draws from: its name, the policy, and whether it is a total over processes."""

    name: str
    policy: BandwidthPolicy
    coordinated: bool


@dataclass
class _Lease:
    scope: str
    queue: str
    policy: BandwidthPolicy
    last_write: float = float("-inf")  # monotonic time of the last write under this scope
    last_seed_write: float = float("-inf")
    grant: BandwidthGrant | None = None
    announced: bool = False  # the coordinator counts this process as shipping
    fallback: str | None = None  # the fallback in force, if any (logged when it changes)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ShareKeeper:
    """This process's claims on coordinated scopes. Thread-safe: writers call ``touch`` from activity
    threads; claims run on ``loop`` (the worker's event loop) with ``client``."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        member: str,
        queue_for: Callable[[str], str],
        *,
        renew_s: float = RENEW_S,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.loop = loop
        self.member = member
        self.queue_for = queue_for
        self.renew_s = renew_s
        self.now = now
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- writers -----------------------------------------------------------------------------------

    def touch(self, scope: str, policy: BandwidthPolicy, seed: bool) -> None:
        """A write under ``scope`` is about to go: the first one waits for a share (or a fallback)."""
        with self._lock:
            lease = self._leases.get(scope)
            if lease is None:
                lease = self._leases[scope] = _Lease(scope, self.queue_for(scope), policy)
            lease.policy = policy
            mono = time.monotonic()
            lease.last_write = mono
            if seed:
                lease.last_seed_write = mono
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew_loop, name="seawall-bandwidth", daemon=True
                )
                self._thread.start()
        if not lease.announced and lease.fallback is None:
            self._renew(lease)

    # --- renewals ----------------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        leases: list[_Lease] = []
        while not self._stop.wait(self._interval(leases)):
            with self._lock:
                leases = list(self._leases.values())
            for lease in leases:
                try:
                    self._renew(lease)
                except Exception:  # never let one scope's trouble stop the renewals of the others
                    log.exception("bandwidth: renewing %s failed", lease.scope)

    def _interval(self, leases: list[_Lease]) -> float:
        """Twice as often while another process shares a scope: when it stops, this one takes its
        share back within half a renewal (and when a third joins, gives part of its own up as fast)."""
        sharing = any(
            lease.announced and lease.grant is not None and lease.grant.members > 1 for lease in leases
        )
        return self.renew_s / 2 if sharing else self.renew_s

    def _renew(self, lease: _Lease) -> None:
        with lease.lock:
            mono = time.monotonic()
            shipping = mono - lease.last_write < 2 * self.renew_s
            seeding = mono - lease.last_seed_write < 2 * self.renew_s
            if not shipping and not lease.announced:
                return
            when = self.now()
            limit = lease.policy.rate_at(when)
            seed_limit = lease.policy.rate_at(when, seed=True) if lease.policy.seed_bytes_per_s else None
            if shipping and limit is None and seed_limit is None:
                # No limit at this time of day: nothing to share; leave the coordinator's count.
                _apply(lease.scope, None, None)
                shipping = False
                if not lease.announced:
                    return
            claim = BandwidthClaim(
                member=self.member, shipping=shipping, seeding=seeding, limit=limit, seed_limit=seed_limit
            )
            try:
                grant = self._claim(lease, claim)
            except Exception as exc:
                self._fall_back(lease, limit, seed_limit, exc)
                return
            lease.announced = shipping
            if lease.fallback is not None:
                log.warning("bandwidth %s: coordinator reachable again (%s)", lease.scope, _describe(grant))
                lease.fallback = None
            if shipping:
                lease.grant = grant
                _apply(lease.scope, grant.share, grant.seed_share)

    def _claim(self, lease: _Lease, claim: BandwidthClaim) -> BandwidthGrant:
        fut = asyncio.run_coroutine_threadsafe(self._update(lease, claim), self.loop)
        try:
            return fut.result(timeout=CLAIM_TIMEOUT_S)
        except BaseException:
            fut.cancel()
            raise

    async def _update(self, lease: _Lease, claim: BandwidthClaim) -> BandwidthGrant:
        return await claim_share(self.client, lease.scope, lease.queue, claim)

    def _fall_back(
        self, lease: _Lease, limit: float | None, seed_limit: float | None, exc: BaseException
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}".strip()[:200]
        if lease.grant is not None:
            share, seed_share = lease.grant.share, lease.grant.seed_share
            how = f"keeping the last share ({_describe(lease.grant)})"
        else:
            processes = self._pollers(lease.queue)
            n = max(1, processes or 1)
            share = limit / n if limit is not None else None
            seed_share = seed_limit / n if seed_limit is not None else None
            how = (
                f"using the limit over the {processes} processes polling {lease.queue}"
                if processes
                else "using the whole limit in this process (the total over processes is not enforced)"
            )
        _apply(lease.scope, share, seed_share)
        if lease.fallback != how:
            log.warning("bandwidth %s: coordinator unreachable (%s): %s", lease.scope, reason, how)
            lease.fallback = how

    def _pollers(self, queue: str) -> int | None:
        """How many worker processes poll ``queue`` (distinct identities), None when unknown."""

        async def count() -> int:
            from temporalio.api.enums.v1 import TaskQueueType
            from temporalio.api.taskqueue.v1 import TaskQueue
            from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

            resp = await self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            return len({p.identity.split("/")[0] for p in resp.pollers})

        try:
            return (
                asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=CLAIM_TIMEOUT_S) or None
            )
        except Exception:
            return None

    def release(self) -> None:
        """Say goodbye on every scope (a worker shutting down): the others get its share at once."""
        self._stop.set()
        with self._lock:
            leases = list(self._leases.values())
        for lease in leases:
            if lease.announced:
                try:
                    self._claim(lease, BandwidthClaim(member=self.member, shipping=False))
                    lease.announced = False
                except Exception as exc:
                    log.warning("bandwidth %s: could not release the share: %s", lease.scope, exc)


async def claim_share(
    client: Client, scope: str, queue: str, claim: BandwidthClaim, *, state: CoordinatorState | None = None
) -> BandwidthGrant:
    """``claim`` on ``scope``'s coordinator, started on ``queue`` if it is not running (update-with-start:
    one round trip, and a coordinator that ended idle comes back with the first claim)."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    # ``state``: a coordinator with other timings than the defaults, if this claim starts it (tests).
    state = state or CoordinatorState(scope=scope)
    start: WithStartWorkflowOperation[Any, CoordinatorState] = WithStartWorkflowOperation(
        Workflow.BANDWIDTH_COORDINATOR,
        state,
        id=bandwidth_coordinator_id(scope),
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        task_timeout=timedelta(seconds=TASK_TIMEOUT_S),
        result_type=CoordinatorState,
    )
    return await client.execute_update_with_start_workflow(
        Update.CLAIM_BANDWIDTH, claim, start_workflow_operation=start, result_type=BandwidthGrant
    )


def _describe(grant: BandwidthGrant) -> str:
    share = f"{grant.share:.0f} B/s" if grant.share is not None else "no total limit"
    return f"{share} of {grant.members} shipping processes"


def _apply(scope: str, share: float | None, seed_share: float | None) -> None:
    shared_bucket(scope).set_rate(share)
    shared_bucket(f"{scope}:seed").set_rate(seed_share)


_KEEPER: ShareKeeper | None = None


def install(keeper: ShareKeeper | None) -> None:
    """The worker installs its keeper at start (and None at stop); without one, limits are per process."""
    global _KEEPER
    _KEEPER = keeper


def keeper() -> ShareKeeper | None:
    return _KEEPER


def throttle(
    store: ObjectStore,
    scopes: Sequence[Scope],
    *,
    seed: bool = False,
    now: Callable[[], datetime] | None = None,
) -> ObjectStore:
    """``store`` drawing from each scope's bucket (and its seed bucket for a seed with a seed limit)."""
    if not scopes:
        return store
    clock = now or (lambda: datetime.now(UTC))
    buckets: list[TokenBucket] = []
    for scope in scopes:
        buckets.append(shared_bucket(scope.name))
        if seed and scope.policy.seed_bytes_per_s is not None:
            buckets.append(shared_bucket(f"{scope.name}:seed"))

    def local_rates(when: datetime) -> None:
        for scope in scopes:
            if not scope.coordinated or keeper() is None:
                # Per process (a VM's own limit, or no coordinator here): the rate at this time of day.
                _apply(scope.name, scope.policy.rate_at(when), _seed_rate(scope.policy, when))

    local_rates(clock())  # at once: a bucket's rate is right before the first write

    def before_write() -> None:
        current = keeper()
        for scope in scopes:
            if scope.coordinated and current is not None:
                current.touch(scope.name, scope.policy, seed)
        local_rates(clock())

    return ThrottledStore(store, *buckets, before_write=before_write)


def _seed_rate(policy: BandwidthPolicy, when: datetime) -> float | None:
    return policy.rate_at(when, seed=True) if policy.seed_bytes_per_s is not None else None
