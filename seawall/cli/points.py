"""`seawall points VM`: a VM's recovery points, each with the configuration captured with it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from seawall.cli.common import Exit, console, err_console, print_json
from seawall.cli.replication import InventoryOpt, _inventory, _settings
from seawall.control.errors import NotFound
from seawall.control.points import ReplicaUnavailable, vm_points


def points(
    vm: str = typer.Argument(..., help="A VM listed under protected_vms in the inventory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (configurations included)."),
    inventory: Path | None = InventoryOpt,
) -> None:
    """A VM's recovery points in its replica (oldest first) and what the VM was at each."""
    settings = _settings(inventory)
    inv = _inventory(settings)
    try:
        rows = vm_points(inv, vm)
    except NotFound as exc:
        err_console.print(f"{settings.inventory}: {exc}", markup=False, highlight=False)
        raise typer.Exit(Exit.BAD_INPUT) from None
    except ReplicaUnavailable as exc:
        err_console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(Exit.UNAVAILABLE) from None
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        raise typer.Exit(Exit.OK)
    table = Table(title=f"Recovery points of {vm}", box=None, header_style="bold")
    for col in ("point", "created", "verified", "disks", "configuration"):
        table.add_column(col)
    for r in rows:
        m = r.source_config.machine if r.source_config else None
        what = "-"
        if r.source_config is not None:
            what = r.source_config.kind
            if m is not None:
                what += f": {m.guest_id or '?'}, {m.firmware or '?'}, {m.cpus or '?'} CPU"
                what += f", {m.memory_mib or '?'} MiB"
        table.add_row(
            r.point_id, r.created_at.isoformat(), "yes" if r.verified else "no", str(len(r.disks)), what
        )
    console.print(table)
    raise typer.Exit(Exit.OK)
