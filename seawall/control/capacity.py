"""Capacity: each protected VM's measured change rate against the bandwidth its RPO needs.

The truth is the VM's recent completed incremental cycles (their results carry the bytes shipped) and
its schedule's interval. An incremental cycle's bytes must ship within one interval, or the next cycle
starts late and the newest point ages past the RPO: the bandwidth a VM needs is the bytes of a
typical large cycle (p90 of the window) over the interval. The limit that applies is the tightest of
its source site's, its replica store's and its own ``bandwidth_limit``, each at its lowest time of
the week (a limit by time of day must hold through its tightest window; the seed limit does not bind
incrementals); a site's and a store's are totals shared by every VM that ships from that site or into
that store, so such a limit is also judged against the sum of its VMs' needs (each VM's share).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from seawall.contract.names import is_group_cycle_id, is_seed_group_cycle_id
from seawall.model import Inventory

if TYPE_CHECKING:
    from temporalio.client import Client

    from seawall.control.status import CycleRun

# Completed cycles read per VM: enough for a p90 that is not just the max, few enough to stay quick.
WINDOW = 20
PERCENTILE = 0.9


class Limit(BaseModel):
    scope: str  # "site:<name>", "store:<name>" or "vm:<name>": the token bucket's name
    bytes_per_s: int  # the lowest the limit goes for incrementals, whatever the time of day
    when: str | None = None  # the window that brings it that low ("08:00-18:00 mon,tue UTC")
    seed_bytes_per_s: int | None = None


class VMCapacity(BaseModel):
    vm: str
    source_site: str
    replica_store: str
    interval_s: float
    cycles: int  # incremental cycles measured (the seed and failed cycles excluded)
    bytes_p90: int | None
    bytes_max: int | None
    change_rate_bps: float | None  # mean bytes shipped per incremental cycle / interval
    needed_bps: float | None  # p90 bytes per cycle / interval
    observed_bps: float | None  # what cycles achieved: bytes shipped / time shipping, summed
    limits: list[Limit]
    limit_bps: int | None  # the tightest of ``limits``
    limit_scope: str | None
    under_provisioned: bool = False
    reason: str | None = None


def percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile: a value that occurred, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def limits_site(inventory: Inventory, vm: str, site: str | None) -> str:
    """The site a VM ships from: its schedule's (after a reprotect) when the inventory knows it."""
    return site if site in {s.name for s in inventory.sites} else inventory.protected_vm(vm).source_site


def vm_limits(inventory: Inventory, vm: str, site: str | None = None) -> list[Limit]:
    """The buckets a ship of ``vm`` draws from: its site's (``site``: the site it ships from now, after
    a reprotect; default its inventory source) and its replica store's."""
    pvm = inventory.protected_vm(vm)
    site_name = limits_site(inventory, vm, site)
    scoped = [
        (f"site:{site_name}", inventory.site(site_name).bandwidth_limit),
        (f"store:{pvm.replica_store}", inventory.replica_store(pvm.replica_store).bandwidth_limit),
        (f"vm:{vm}", pvm.bandwidth_limit),
    ]
    limits = []
    for scope, policy in scoped:
        if policy is None or (rate := policy.lowest()) is None:
            continue
        window = next((w for w in policy.schedule if w.bytes_per_s == rate), None)
        when = (
            f"{window.start:%H:%M}-{window.end:%H:%M} {','.join(window.days)} {policy.timezone}"
            if (window is not None and policy.bytes_per_s != rate)
            else None
        )
        limits.append(
            Limit(scope=scope, bytes_per_s=rate, when=when, seed_bytes_per_s=policy.seed_bytes_per_s)
        )
    return limits


def _label(lim: Limit) -> str:
    return f"{lim.scope} {_rate(lim.bytes_per_s)}" + (f" (from {lim.when})" if lim.when else "")


def _rate(bps: float) -> str:
    size = bps
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if size < 1024 or unit == "GiB/s":
            return f"{size:.0f} {unit}" if unit == "B/s" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB/s"


def vm_capacity(
    inventory: Inventory,
    vm: str,
    interval_s: float,
    history: Sequence[CycleRun],
    site: str | None = None,
) -> VMCapacity:
    """The VM's capacity from its cycles (any order). A cycle counts when it completed and is not a seed:
    the seed ships the whole disk once and says nothing about the rate of change. (A group cycle's
    result, read as a member's, names no parent: the group's seed is known by its workflow id.)"""
    pvm = inventory.protected_vm(vm)
    incremental = [r for r in history if r.result is not None and not _seed(r)]
    shipped = [r.result.bytes_shipped for r in incremental if r.result is not None]
    busy = sum(_shipping_s(r) for r in incremental)
    limits = vm_limits(inventory, vm, site)
    tightest = min(limits, key=lambda lim: lim.bytes_per_s) if limits else None
    cap = VMCapacity(
        vm=vm,
        source_site=limits_site(inventory, vm, site),
        replica_store=pvm.replica_store,
        interval_s=interval_s,
        cycles=len(shipped),
        bytes_p90=percentile(shipped, PERCENTILE) if shipped else None,
        bytes_max=max(shipped) if shipped else None,
        change_rate_bps=sum(shipped) / len(shipped) / interval_s if shipped else None,
        needed_bps=percentile(shipped, PERCENTILE) / interval_s if shipped else None,
        observed_bps=sum(shipped) / busy if shipped and busy > 0 else None,
        limits=limits,
        limit_bps=tightest.bytes_per_s if tightest else None,
        limit_scope=tightest.scope if tightest else None,
    )
    if tightest is not None and cap.needed_bps is not None and tightest.bytes_per_s < cap.needed_bps:
        cap.under_provisioned = True
        cap.reason = (
            f"bandwidth limit {_label(tightest)} is below the "
            f"{_rate(cap.needed_bps)} its RPO needs ({_bytes(cap.bytes_p90)} per cycle, p90, "
            f"every {interval_s:g}s): cycles will fall behind and breach the RPO"
        )
    return cap


def _seed(run: CycleRun) -> bool:
    if is_group_cycle_id(run.workflow_id):
        return is_seed_group_cycle_id(run.workflow_id)
    return run.result is not None and run.result.parent is None


def _shipping_s(run: CycleRun) -> float:
    result = run.result
    if result is None:
        return 0.0
    try:
        started = datetime.fromisoformat(result.started_at)
        finished = datetime.fromisoformat(result.finished_at)
    except ValueError:
        return 0.0
    return max(0.0, (finished - started).total_seconds())


def _bytes(n: int | None) -> str:
    size = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def shared_buckets(rows: list[VMCapacity]) -> None:
    """Flags VMs whose own need fits a bucket but whose bucket's VMs together need more than it gives:
    the buckets are shared, so each VM gets only its share when they ship at once."""
    needs: dict[str, float] = {}
    members: dict[str, list[VMCapacity]] = {}
    for row in rows:
        for lim in row.limits:
            if lim.scope.startswith("vm:"):
                continue  # a VM's own limit is not shared
            needs[lim.scope] = needs.get(lim.scope, 0.0) + (row.needed_bps or 0.0)
            members.setdefault(lim.scope, []).append(row)
    for row in rows:
        if row.under_provisioned or not row.needed_bps:
            continue
        for lim in row.limits:
            vms = members.get(lim.scope, [])
            if len(vms) > 1 and lim.bytes_per_s < needs[lim.scope]:
                row.under_provisioned = True
                row.reason = (
                    f"bandwidth limit {_label(lim)} is shared by {len(vms)} VMs "
                    f"that need {_rate(needs[lim.scope])} together: cycles will fall behind and "
                    f"breach the RPO"
                )
                break


async def capacity_report(
    client: Client, inventory: Inventory, vms: Sequence[str] | None = None
) -> list[VMCapacity]:
    """Every protected VM's capacity (or those of ``vms``), from Temporal alone."""
    import asyncio

    # status reads the same schedules and cycles and judges its RPO with this module: imported here,
    # not at the top, so that each module can import the other.
    from seawall.control import status

    names = list(vms) if vms is not None else [p.name for p in inventory.protected_vms]

    async def one(vm: str) -> VMCapacity:
        group = inventory.group_of(vm)
        sid = status.group_schedule_id(group.name) if group else None
        schedule = await status.read_schedule(client, vm, sid)
        _, interval_s, _ = status.policy_of(inventory, vm, schedule.interval_s if schedule else None)
        history = (
            await status.group_cycle_history(client, group.name, vm, limit=WINDOW)
            if group
            else await status.cycle_history(client, vm, limit=WINDOW)
        )
        return vm_capacity(inventory, vm, interval_s, history, schedule.site if schedule else None)

    rows = list(await asyncio.gather(*(one(vm) for vm in names)))
    shared_buckets(rows)
    return rows
