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
from seawall.control import verify as verify_control
from seawall.control.errors import Failed, NotFound, NotProtected
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
            err_console.print(str(error), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(Exit.BAD_INPUT) from None


def _known_vm(inv: Inventory, vm: str, settings: Settings) -> None:
    if vm not in {p.name for p in inv.protected_vms}:
        known = ", ".join(p.name for p in inv.protected_vms) or "none"
        err_console.print(f"{settings.inventory}: protected_vms: no VM named {vm!r} (known: {known})")
        raise typer.Exit(Exit.BAD_INPUT)


def protect(
    vm: str | None = typer.Argument(None, help="A VM listed under protected_vms in the inventory."),
    group: str | None = typer.Option(
        None, "--group", "-g", help="Protect a consistency group (inventory consistency_groups) instead."
    ),
    policy: str | None = typer.Option(None, "--policy", help="Override the inventory's policy."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the seed and the schedule."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Protect a VM (enable CBT, seed a first verified point, then replicate on its schedule), or with
    --group a consistency group: its members snapshotted together, one schedule, group points."""
    settings = _settings(inventory)
    inv = _inventory(settings)
    if group is not None:
        raise typer.Exit(_protect_group(settings, inv, group, vm, wait, as_json))
    if vm is None:
        err_console.print("protect: name a VM, or a consistency group with --group")
        raise typer.Exit(Exit.BAD_INPUT)
    _known_vm(inv, vm, settings)
    member_of = inv.group_of(vm)
    if member_of is not None:
        err_console.print(
            f"{settings.inventory}: consistency_groups: {vm} is in group {member_of.name!r}; it replicates "
            f"with its group: seawall protect --group {member_of.name}"
        )
        raise typer.Exit(Exit.BAD_INPUT)
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


def _protect_group(
    settings: Settings, inv: Inventory, group: str, vm: str | None, wait: bool, as_json: bool
) -> int:
    known = [g.name for g in inv.consistency_groups]
    if group not in known:
        err_console.print(
            f"{settings.inventory}: consistency_groups: no group named {group!r} "
            f"(known: {', '.join(known) or 'none'})"
        )
        return Exit.BAD_INPUT
    if vm is not None:
        err_console.print("protect: give a VM or --group, not both")
        return Exit.BAD_INPUT

    async def run() -> int:
        client = await temporal_client(settings)
        handle = await replication.start_protect_group(client, settings.orchestration_queue, group)
        if not wait:
            _emit({"group": group, "workflow_id": handle.id, "run_id": handle.result_run_id}, as_json)
            return Exit.OK
        try:
            result = await replication.protect_group(client, settings.orchestration_queue, group)
        except Failed as exc:
            err_console.print(f"protect group {group} failed: {exc}")
            return Exit.FAILED
        _emit(result.model_dump(), as_json)
        return Exit.OK

    return asyncio.run(run())


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


def verify(
    vm: str = typer.Argument(..., help="A protected VM."),
    point: list[str] = typer.Option([], "--point", help="Only this point (repeatable); default: all."),
    as_json: bool = typer.Option(False, "--json"),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Read every chunk the VM's points need and check it; damaged points turn unverified.

    The next cycle of the VM repairs damaged chunks from the source (their points verify again).
    Exit 0: every point checked is clean; 1: damage found; 2: no such VM or point; 3: unavailable.
    """
    settings = _settings(inventory)
    inv = _inventory(settings)
    _known_vm(inv, vm, settings)

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            report = await verify_control.verify(client, settings.orchestration_queue, vm, point)
        except NotFound as exc:
            err_console.print(f"verify {vm}: {exc}", markup=False, highlight=False, soft_wrap=True)
            return Exit.BAD_INPUT
        except Failed as exc:
            err_console.print(f"verify {vm} failed: {exc}", markup=False, highlight=False, soft_wrap=True)
            return Exit.FAILED
        if as_json:
            print_json(report.model_dump(mode="json"))
        else:
            table = Table(title=f"{vm}: {len(report.points)} point(s) read in full", box=None)
            for col in ("point", "verdict", "damaged chunks"):
                table.add_column(col)
            for p in report.points:
                verdict = "ok" if p.ok else "[red]CORRUPT[/red]"
                if p.ok and p.was_corrupt:
                    verdict = "[green]healed[/green]"
                table.add_row(p.point_id, verdict, "; ".join(p.damaged_chunks) or "-")
            console.print(table)
            console.print(
                f"{human_bytes(report.bytes_checked)} checked; store: {report.open_damage} damaged chunk(s) "
                f"waiting for repair, {report.healed} repaired"
            )
        return Exit.OK if report.ok else Exit.FAILED

    raise typer.Exit(asyncio.run(run()))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=int(seconds)))


def status(
    as_json: bool = typer.Option(False, "--json"),
    watch: float = typer.Option(0.0, "--watch", help="Refresh every N seconds (0: once)."),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Protected VMs: newest verified point, its age against the RPO, breaches, last cycle."""
    settings = _settings(inventory)
    inv = _inventory(settings)

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
    raise typer.Exit(Exit.FAILED if any(r.breach or r.corrupt_points for r in rows) else Exit.OK)


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
        if r.problem:
            now = f"{now}; {r.problem}" if now else r.problem
        table.add_row(
            r.vm,
            r.source_site,
            f"{r.policy} (group {r.group})" if r.group else r.policy,
            r.last_point or "-",
            _age(r.age_s),
            _age(r.rpo_s),
            ("[red]BREACH[/red]" if r.breach else "ok")
            + (f" [red]{len(r.corrupt_points)} corrupt[/red]" if r.corrupt_points else ""),
            human_bytes(r.last_bytes_shipped),
            r.last_change_path or "-",
            now,
        )
    return table
