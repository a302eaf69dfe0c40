"""`seawall lab up | down | status`: the local lab of real emulators."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.table import Table

from seawall.cli.common import Exit, console, err_console, print_json
from seawall.lab import config as c

if TYPE_CHECKING:
    from seawall.lab.manager import PartStatus

app = typer.Typer(
    help="Start, stop and inspect the local lab "
    "(Temporal, vcsim x2, moto, Azurite, BIND, KVM sites kvm-a/kvm-b)."
)


class Guests(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"


StateDir = typer.Option(
    None,
    "--state-dir",
    envvar=c.ENV_STATE_DIR,
    help="Where the lab keeps logs, pid files, datastores and lab.json (default .seawall/lab).",
)


def _table(rows: list[PartStatus], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("part", "pid", "port", "healthy", "detail"):
        table.add_column(col)
    for row in rows:
        detail = row.detail if row.action is None else f"{row.action}: {row.detail}"
        table.add_row(
            row.name,
            str(row.pid or "-"),
            str(row.port or "-"),
            "[green]yes[/green]" if row.healthy else "[red]no[/red]",
            detail,
        )
    return table


def _config(state: Path, **chosen: Any) -> c.LabConfig:
    """The lab's saved config with what was chosen now; a broken config.json ends the command with
    one line naming the file and the field."""
    try:
        return c.resolve_config(state, **chosen)
    except c.LabConfigInvalid as exc:
        err_console.print(f"[red]lab config invalid:[/red] {exc}", highlight=False)
        raise typer.Exit(Exit.BAD_INPUT) from None


@app.command("up")
def up_cmd(
    state_dir: Path | None = StateDir,
    vms: int | None = typer.Option(
        None, "--vms", min=1, help="Protected VMs at the primary site (default 5; kept from the last up)."
    ),
    disk_mib: int | None = typer.Option(
        None, "--disk-mib", min=1, help="Size of each VM disk in MiB (default 4; kept from the last up)."
    ),
    port_offset: int | None = typer.Option(
        None,
        "--port-offset",
        envvar=c.ENV_PORT_OFFSET,
        min=0,
        help="Add this to every port, to run a second lab beside the first (default 0; kept).",
    ),
    guests: Guests | None = typer.Option(
        None,
        "--guests",
        envvar=c.ENV_GUESTS,
        case_sensitive=False,
        help="kvm-a's guests running, or paused (started paused: no CPU, for a lab whose guests "
        "nobody uses) (default running; kept).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print LabInfo as JSON instead of a table."),
) -> None:
    """Start every part that is not running, wait until healthy, and set up the inventory."""
    state = c.state_dir(state_dir)
    cfg = _config(
        state,
        vms=vms,
        disk_size=disk_mib * c.MIB if disk_mib else None,
        port_offset=port_offset,
        guests=cast(c.GuestState, guests.value) if guests else None,
    )
    # The lab's machinery (pyVmomi, boto3, libvirt) is imported by the lab verbs only: every other
    # verb of the CLI starts without it.
    from seawall.lab.manager import up
    from seawall.lab.parts import LabError

    began = time.monotonic()
    try:
        info, rows = up(state, cfg)
    except LabError as exc:
        err_console.print(f"[red]lab up failed:[/red] {exc}", highlight=False)
        raise typer.Exit(Exit.FAILED) from None
    elapsed = time.monotonic() - began
    if json_out:
        print_json(info.model_dump(mode="json"))
    else:
        console.print(_table(rows, f"Seawall lab ({state})"))
        console.print(f"Temporal UI:  [bold]{info.temporal.ui_url}[/bold]")
        if "kvm-a" in info.kvm:
            site = info.kvm["kvm-a"]
            listed = ", ".join(f"{g.name} 127.0.0.1:{g.health_port}" for g in site.guests)
            state_words = "paused" if cfg.guests == "paused" else "`lab status` shows when they are ready"
            console.print(f"KVM guests:   {site.accel} ({listed}); {state_words}")
        console.print(f"lab.json:     {state / 'lab.json'}   env: . {state / 'lab.env'}")
        console.print(f"up in {elapsed:.1f}s")
    if not all(row.healthy for row in rows):
        raise typer.Exit(Exit.FAILED)


@app.command("down")
def down_cmd(
    state_dir: Path | None = StateDir,
    purge: bool = typer.Option(False, "--purge", help="Also delete the state dir (datastores, Temporal DB)."),
) -> None:
    """Stop the parts this lab started (by pid file); idempotent."""
    from seawall.lab.manager import down

    state = c.state_dir(state_dir)
    results = down(state, purge=purge)
    for name, what in results.items():
        console.print(f"{name:<14} {what}")
    if purge:
        console.print(f"removed {state}")


@app.command("status")
def status_cmd(
    state_dir: Path | None = StateDir,
    json_out: bool = typer.Option(False, "--json", help="Print the parts as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; the exit code tells."),
) -> None:
    """Health of each part and of the KVM guests. Exit 0 when every part is healthy, else 1."""
    from seawall.lab import kvm_lab
    from seawall.lab.manager import status

    state = c.state_dir(state_dir)
    cfg = _config(state)
    rows = status(state, cfg)
    healthy = all(row.healthy for row in rows)
    if quiet:
        raise typer.Exit(Exit.OK if healthy else Exit.FAILED)
    kvm = kvm_lab.summary(state, cfg)
    if json_out:
        print_json(
            {"healthy": healthy, "state_dir": str(state), "parts": [r.model_dump() for r in rows], "kvm": kvm}
        )
    else:
        console.print(_table(rows, f"Seawall lab ({state})"))
        console.print(f"KVM: guests run with [bold]{kvm['accel']}[/bold] ({kvm['accel_reason']})")
        for guest in kvm["guests"]:
            state_word = (
                "paused"
                if guest["paused"]
                else "ready"
                if guest["ready"]
                else ("booting" if guest["running"] else "not running")
            )
            console.print(
                f"  {guest['site']}/{guest['name']}: {state_word}, health 127.0.0.1:{guest['health_port']}, "
                f"last_record={guest['last_record']}  {guest['console'] or ''}",
                highlight=False,
            )
    raise typer.Exit(Exit.OK if healthy else Exit.FAILED)
