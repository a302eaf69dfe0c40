"""`seawall protect | unprotect | replicate-now | status`: replication as an operator sees it."""

from __future__ import annotations

import asyncio
import time
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
from seawall.control.status import VMStatus, vm_state, vm_status
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

    from seawall.cli.signing import sign  # the CLI's one signer (holding the intent keys is admin)

    intent = sign(settings, action="unprotect", plan=vm)

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            deleted = await replication.unprotect(
                client, settings.orchestration_queue, vm, delete_replica, intent
            )
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


def short_age(seconds: float | None) -> str:
    """A duration in at most 6 characters: 12s, 5m03s, 3h05m, 4d15h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


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
    # A breach of a VM that is protected fails the check, and so does a damaged point; one not
    # protected (yet, or any more) is shown.
    raise typer.Exit(
        Exit.FAILED
        if any(vm_state(r) in ("breach", "stalled") or r.corrupt_points for r in rows)
        else Exit.OK
    )


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


_STATE_STYLE = {
    "breach": "bold red",
    "stalled": "bold red",
    "not-protected": "yellow",
    "paused": "yellow",
    "throttled": "yellow",
    "protected": "green",
}


def _state(r: VMStatus) -> str:
    """One word a person scans for: a VM that is not protected says so (its RPO is not "ok")."""
    state = vm_state(r)
    if r.corrupt_points:
        # A damaged point is never recovered from: it needs a person (`seawall verify`) first.
        return f"[bold red]CORRUPT {len(r.corrupt_points)}[/bold red]"
    if state == "seeding" and r.progress is not None:
        state = f"seeding {r.progress.fraction:.0%}" + (" throttled" if r.throttled else "")
    style = _STATE_STYLE.get(state)
    word = state.upper() if state in ("breach", "stalled", "not-protected") else state
    return f"[{style}]{word}[/{style}]" if style else word


def _table(rows: list[VMStatus]) -> Table:
    """Fits 80 columns: the point id and the change path are in --json."""
    table = Table(title="Protected VMs", box=None, header_style="bold", pad_edge=False)
    table.add_column("VM", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("SITE", no_wrap=True, max_width=10, overflow="ellipsis")
    table.add_column("STATE", no_wrap=True, min_width=13)
    table.add_column("POINT AGE", justify="right", no_wrap=True)
    table.add_column("RPO", justify="right", no_wrap=True)
    table.add_column("SHIPPED", justify="right", no_wrap=True, min_width=9)
    for r in rows:
        table.add_row(
            r.vm,
            r.source_site,
            _state(r),
            short_age(r.age_s),
            short_age(r.rpo_s),
            human_bytes(r.last_bytes_shipped),
        )
    return table
