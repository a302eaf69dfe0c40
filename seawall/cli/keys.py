"""`seawall keys rotate STORE`: a new data key for a kms:-keyed replica store."""

from __future__ import annotations

from pathlib import Path

import typer

from seawall.cli.common import Exit, err_console, print_json
from seawall.cli.replication import InventoryOpt, _emit, _inventory, _settings

app = typer.Typer(help="Replica encryption keys: rotation.", no_args_is_help=True)


@app.command("rotate")
def rotate(
    store: str = typer.Argument(..., help="A replica store whose VMs' policies use a kms: key."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    inventory: Path | None = InventoryOpt,
) -> None:
    """New points of STORE use a new data key; every older point stays restorable."""
    from seawall.blockstore.keys import KeyRefError
    from seawall.blockstore.stores.backend import StoreError, TransientStoreError
    from seawall.control.errors import ControlError
    from seawall.control.keys import rotate_store_key

    settings = _settings(inventory)
    inv = _inventory(settings)
    try:
        result = rotate_store_key(inv, store)
    except ControlError as exc:
        err_console.print(f"keys rotate {store}: {exc}", markup=False, highlight=False)
        raise typer.Exit(Exit.BAD_INPUT) from None
    except TransientStoreError as exc:
        err_console.print(f"keys rotate {store}: {exc}", markup=False, highlight=False)
        raise typer.Exit(Exit.UNAVAILABLE) from None
    except (KeyRefError, StoreError) as exc:
        err_console.print(f"keys rotate {store}: {exc}", markup=False, highlight=False)
        raise typer.Exit(Exit.FAILED) from None
    if as_json:
        print_json(result.model_dump())
    else:
        _emit(result.model_dump(), False)
