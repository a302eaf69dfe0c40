"""`seawall protect | unprotect | replicate-now | status`: replication as an operator sees it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client

from seawall.cli.common import Exit, console, err_console, print_json, temporal_client
from seawall.control import replication
from seawall.control.errors import Failed, NotProtected
from seawall.control.status import VMStatus, vm_status
from seawall.model import Inventory
from seawall.plans import PlanValidationError, load_inventory
from seawall.runtime.config import Settings

InventoryOpt = typer.Option(None, "--inventory", "-i", help="Inventory file (default: $SEAWALL_INVENTORY).")


def _settings(inventory: Path | None) -> Settings:
    settings = Settings()
    if inventory is not None:
        settings = settings.model_copy(update={"inventory": inventory})
    return settings


def _inventory(settings: Settings) -> Inventory:
    try:
        return load_inventory(settings.inventory)
    except PlanValidationError as exc:
        for error in exc.errors:
            err_console.print(str(error), markup=False, highlight=False)
        raise typer.Exit(Exit.BAD_INPUT) from None


def _known_vm(inv: Inventory, vm: str, settings: Settings) -> None:
    if vm not in {p.name for p in inv.protected_vms}:
        known = ", ".join(p.name for p in inv.protected_vms) or "none"
        err_console.print(f"{settings.inventory}: protected_vms: no VM named {vm!r} (known: {known})")
        raise typer.Exit(Exit.BAD_INPUT)


def protect(
    vm: str = typer.Argument(..., help="A VM listed under protected_vms in the inventory."),
    policy: str | None = typer.Option(None, "--policy", help="Override the inventory's policy."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the seed and the schedule."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Protect a VM: enable CBT, seed a first verified point, then replicate on its schedule."""
    settings = _settings(inventory)
    inv = _inventory(settings)
    _known_vm(inv, vm, settings)
    if policy is not None and policy not in {p.name for p in inv.policies}:
        err_console.print(f"--policy: no policy named {policy!r} in {settings.inventory}")
        raise typer.Exit(Exit.BAD_INPUT)

    async def run() -> int:
        client = await temporal_client(settings)
        handle = await replication.start_protect(client, settings.orchestration_queue, vm, policy)
        if not wait:
            _emit({"vm": vm, "workflow_id": handle.id, "run_id": handle.result_run_id}, as_json)
            return Exit.OK
        task = asyncio.ensure_future(replication.protect_result(handle))
        if not as_json:
            await _follow_seed(client, inv, vm, task)
        try:
            result = await task
        except Failed as exc:
            err_console.print(f"protect {vm} failed: {exc}")
            return Exit.FAILED
        _emit(result.model_dump(), as_json)
        return Exit.OK

    raise typer.Exit(asyncio.run(run()))


async def _follow_seed(client: Client, inv: Inventory, vm: str, task: asyncio.Future[Any]) -> None:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(f"seeding {vm}", total=1.0, detail="")
        while not task.done():
            status = await vm_status(client, inv, vm)
            if status.progress is not None:
                p = status.progress
                detail = (
                    f"{p.disk or ''} read {p.bytes_read / 2**20:.1f} MiB, "
                    f"shipped {p.bytes_shipped / 2**20:.1f} MiB"
                )
                progress.update(bar, completed=p.fraction, detail=detail)
            await asyncio.wait([task], timeout=1.0)
        progress.update(bar, completed=1.0)


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        for key, value in data.items():
            console.print(f"[bold]{key}[/bold]: {value}")


def unprotect(
    vm: str = typer.Argument(...),
    delete_replica: bool = typer.Option(False, "--delete-replica", help="Also delete its recovery points."),
    as_json: bool = typer.Option(False, "--json"),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Stop replicating a VM (its schedule goes; its points stay unless --delete-replica)."""
    settings = _settings(inventory)
    inv = _inventory(settings)
    _known_vm(inv, vm, settings)

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            deleted = await replication.unprotect(client, settings.orchestration_queue, vm, delete_replica)
        except Failed as exc:
            err_console.print(f"unprotect {vm} failed: {exc}")
            return Exit.FAILED
        _emit({"vm": vm, "schedule_deleted": True, "points_deleted": deleted}, as_json)
        return Exit.OK

    raise typer.Exit(asyncio.run(run()))


def replicate_now(
    vm: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Start a cycle now through the VM's schedule (skipped if one is already running)."""
    settings = _settings(inventory)
    inv = _inventory(settings)
    _known_vm(inv, vm, settings)

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            triggered = await replication.replicate_now(client, vm)
        except NotProtected:
            err_console.print(f"{vm} is not protected yet: run `seawall protect {vm}` first")
            return Exit.BAD_INPUT
        _emit({"vm": vm, "triggered": triggered}, as_json)
        return Exit.OK

    raise typer.Exit(asyncio.run(run()))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=int(seconds)))


def status(
    as_json: bool = typer.Option(False, "--json"),
    watch: float = typer.Option(0.0, "--watch", help="Refresh every N seconds (0: once)."),
    sites: bool = typer.Option(
        False, "--sites", help="Sites instead: their workers (pollers) and reachability (probed now)."
    ),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Protected VMs: newest verified point, its age against the RPO, breaches, last cycle."""
    settings = _settings(inventory)
    inv = _inventory(settings)
    if sites:
        _site_status(settings, inv, as_json)

    async def collect() -> list[VMStatus]:
        client = await temporal_client(settings)
        return await replication.statuses(client, inv, [p.name for p in inv.protected_vms])

    while True:
        rows = asyncio.run(collect())
        if as_json:
            print_json([r.model_dump(mode="json") for r in rows])
        else:
            console.print(_table(rows))
        if watch <= 0:
            break
        time.sleep(watch)
    raise typer.Exit(Exit.FAILED if any(r.breach for r in rows) else Exit.OK)


def _site_status(settings: Settings, inv: Inventory, as_json: bool) -> None:
    from seawall.control.sites import site_health

    async def collect() -> list[Any]:
        client = await temporal_client(settings)
        return await site_health(client, inv, settings.orchestration_queue)

    rows = asyncio.run(collect())
    if as_json:
        print_json([{**r.model_dump(mode="json"), "healthy": r.healthy} for r in rows])
    else:
        table = Table("site", "kind", "workers", "last poll", "reachable", "probed at", "detail")
        for r in rows:
            reach = "-" if r.reachable is None else "yes" if r.reachable else "NO"
            table.add_row(
                r.site,
                r.kind,
                str(r.pollers) if r.pollers else "[red]0[/red]",
                r.workers[0].last_poll.strftime("%H:%M:%S") if r.workers else "-",
                reach,
                r.probed_at.strftime("%H:%M:%S") if r.probed_at else "-",
                r.detail,
            )
        console.print(table)
    raise typer.Exit(Exit.OK if all(r.healthy for r in rows) else Exit.FAILED)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _table(rows: list[VMStatus]) -> Table:
    table = Table(title="Protected VMs", box=None, header_style="bold")
    for col in (
        "vm",
        "site",
        "policy",
        "last verified point",
        "age",
        "RPO",
        "breach",
        "shipped",
        "path",
        "now",
    ):
        table.add_column(col)
    for r in rows:
        now = ""
        if r.progress is not None:
            now = f"seeding {r.progress.fraction:.0%}"
        elif r.running:
            now = "cycle running"
        elif not r.scheduled:
            now = "not protected"
        elif r.paused:
            now = "paused"
        if r.mirror is not None and (r.mirror_error or r.mirror_lag):
            lag = f"{r.mirror_lag} point(s) behind" if r.mirror_lag else "failed"
            now = f"{now}; mirror {r.mirror} {lag}".lstrip("; ")
        table.add_row(
            r.vm,
            r.source_site,
            r.policy,
            r.last_point or "-",
            _age(r.age_s),
            _age(r.rpo_s),
            "[red]BREACH[/red]" if r.breach else "ok",
            human_bytes(r.last_bytes_shipped),
            r.last_change_path or "-",
            now,
        )
    return table
