"""`seawall capacity`: each protected VM's change rate against the bandwidth its RPO needs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.table import Table

from seawall.cli.common import Exit, console, print_json, temporal_client
from seawall.cli.replication import InventoryOpt, _inventory, _settings, human_bytes, short_age
from seawall.control.capacity import VMCapacity, capacity_report


def capacity(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    inventory: Path | None = InventoryOpt,
) -> None:
    """Protected VMs: measured change rate (bytes per incremental cycle / interval), the bandwidth the
    RPO needs (p90 cycle / interval) and the limit that applies. Exit 1 when a limit is too low."""
    settings = _settings(inventory)
    inv = _inventory(settings)

    async def collect() -> list[VMCapacity]:
        client = await temporal_client(settings)
        return await capacity_report(client, inv)

    rows = asyncio.run(collect())
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
    else:
        console.print(_table(rows))
        for r in rows:
            if r.reason:
                console.print(f"[bold red]{r.vm}[/bold red]: {r.reason}", highlight=False)
    raise typer.Exit(Exit.FAILED if any(r.under_provisioned for r in rows) else Exit.OK)


def _rate(bps: float | None) -> str:
    return "-" if bps is None else f"{human_bytes(int(bps))}/s"


def _table(rows: list[VMCapacity]) -> Table:
    table = Table(title="Replication capacity", box=None, header_style="bold", pad_edge=False)
    table.add_column("VM", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("RPO", justify="right", no_wrap=True)
    table.add_column("CYCLES", justify="right", no_wrap=True)
    table.add_column("CHANGE", justify="right", no_wrap=True)
    table.add_column("NEEDED", justify="right", no_wrap=True)
    table.add_column("LIMIT", justify="right", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    for r in rows:
        if r.under_provisioned:
            state = "[bold red]UNDER[/bold red]"
        elif r.needed_bps is None:
            state = "[yellow]no data[/yellow]"
        else:
            state = "[green]ok[/green]"
        limit = f"{_rate(r.limit_bps)} {r.limit_scope}" if r.limit_bps is not None else "none"
        table.add_row(
            r.vm,
            short_age(r.interval_s),
            str(r.cycles),
            _rate(r.change_rate_bps),
            _rate(r.needed_bps),
            limit,
            state,
        )
    return table
