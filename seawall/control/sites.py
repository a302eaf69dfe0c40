"""Site health: each site's workers (pollers on its task queue, from Temporal) and reachability.

``seawall status --sites`` and ``GET /v1/sites`` call ``site_health``. Workers come from the
server's DescribeTaskQueue of ``seawall-site-<site>``: who polled and when, stale ones listed but
not counted. Reachability is asked of the site's *own* worker (the ``ProbeSite`` workflow runs its
activity on the site's queue, with the worker's credentials): a site nobody polls cannot be probed,
and says so instead of waiting. ``probed_at`` is when that probe answered.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from seawall.contract.messages import ProbeSiteInput, SiteProbe
from seawall.contract.names import Workflow, probe_id
from seawall.contract.queues import site_queue
from seawall.model import Inventory
from seawall.runtime.metrics.sources import (
    POLLER_FRESH_S,
    TASK_KINDS,
    idle_kinds,
    live_workers,
    queue_pollers,
    site_workers,
)

__all__ = ["POLLER_FRESH_S", "SiteHealth", "SiteWorker", "site_health"]

# The `seawall worker --role` that polls each kind of task.
ROLE_OF = {"workflow": "workflows", "activity": "activities"}


class SiteWorker(BaseModel):
    model_config = ConfigDict(frozen=True)
    identity: str
    last_poll: datetime
    live: bool
    tasks: list[str] = ["workflow", "activity"]  # the kinds it polls: a split pair's process one each


class SiteHealth(BaseModel):
    model_config = ConfigDict(frozen=True)
    site: str
    kind: str
    queue: str
    pollers: int  # live workers on the site's queue
    workers: list[SiteWorker]
    reachable: bool | None  # None: not probed (no worker to ask, or probing not asked for)
    detail: str
    probed_at: datetime | None
    probe_worker: str | None = None
    probe_ms: int | None = None

    @property
    def healthy(self) -> bool:
        return self.pollers > 0 and self.reachable is not False


async def _probe(client: Client, queue: str, site: str, timeout_s: float) -> SiteProbe | str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        return await client.execute_workflow(
            Workflow.PROBE_SITE,
            ProbeSiteInput(site=site),
            id=probe_id(site, stamp),
            task_queue=queue,
            result_type=SiteProbe,
            # Two status calls in the same second share one probe instead of failing.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=timedelta(seconds=timeout_s),
        )
    except WorkflowFailureError as exc:
        return f"probe failed: {exc.cause or exc}"
    except RPCError as exc:
        return f"probe could not start: {exc.message}"


async def _one(
    client: Client, inventory: Inventory, site: str, queue: str | None, probe: bool, timeout_s: float
) -> SiteHealth:
    now = datetime.now(UTC)
    pollers = await site_workers(client, site)
    identities = {i for seen in pollers.values() for i in seen}
    workers = sorted(
        (
            SiteWorker(
                identity=i,
                last_poll=(at := max(seen[i] for seen in pollers.values() if i in seen)),
                live=(now - at).total_seconds() <= POLLER_FRESH_S,
                tasks=[kind for kind in TASK_KINDS if i in pollers.get(kind, {})],
            )
            for i in identities
        ),
        key=lambda w: w.last_poll,
        reverse=True,
    )
    live = live_workers(pollers, now=now, fresh_s=POLLER_FRESH_S)
    kind = inventory.site(site).kind
    base = {"site": site, "kind": kind, "queue": site_queue(site), "pollers": live, "workers": workers}
    if live == 0:
        return SiteHealth(
            **base,
            reachable=None,
            detail=(
                f"no worker polls {site_queue(site)}: the site cannot be probed "
                f"(start `seawall worker --site {site}`)"
            ),
            probed_at=None,
        )
    # Half of a split pair, or a process whose every slot is busy: said, not judged (the probe is).
    note = "".join(
        f"no worker polled the {idle} tasks of {site_queue(site)} in the last {POLLER_FRESH_S:.0f} s "
        f"(every slot busy, or no `seawall worker --site {site} --role {ROLE_OF[idle]}` runs); "
        for idle in idle_kinds(pollers, now=now, fresh_s=POLLER_FRESH_S)
    )
    if not probe:
        return SiteHealth(**base, reachable=None, detail=note + "not probed", probed_at=None)
    if queue is None:
        return SiteHealth(
            **base,
            reachable=None,
            detail=note + "not probed: no orchestration worker runs the probe",
            probed_at=None,
        )
    answer = await _probe(client, queue, site, timeout_s)
    if isinstance(answer, str):
        return SiteHealth(**base, reachable=False, detail=note + answer, probed_at=datetime.now(UTC))
    return SiteHealth(
        **base,
        reachable=answer.reachable,
        detail=note + answer.detail,
        probed_at=datetime.now(UTC),
        probe_worker=answer.worker,
        probe_ms=answer.elapsed_ms,
    )


async def site_health(
    client: Client,
    inventory: Inventory,
    queue: str,
    *,
    sites: list[str] | None = None,
    probe: bool = True,
    timeout_s: float = 20.0,
) -> list[SiteHealth]:
    """The health of ``sites`` (default: every site of the inventory), asked concurrently.
    ``queue``: the orchestration queue the probe workflow runs on; when no worker polls it the
    sites are not probed (a probe would only wait for its timeout)."""
    names = sites if sites is not None else [s.name for s in inventory.sites]
    now = datetime.now(UTC)
    # The probe is a workflow on ``queue`` whose activity runs on the site's queue (checked per site).
    runner = (await queue_pollers(client, queue)).get("workflow", {}) if probe else {}
    usable = queue if any((now - at).total_seconds() <= POLLER_FRESH_S for at in runner.values()) else None
    return list(await asyncio.gather(*(_one(client, inventory, s, usable, probe, timeout_s) for s in names)))
