"""`seawall worker --site NAME`: run a Temporal worker for one or more sites."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import typer

from seawall.cli.common import Exit

if TYPE_CHECKING:
    from seawall.runtime.config import Settings


def worker(
    site: list[str] = typer.Option([], "--site", help="A site whose task queue to poll (repeatable)."),
    orchestration: bool = typer.Option(
        True, "--orchestration/--no-orchestration", help="Also run workflows (the orchestration queue)."
    ),
    role: str = typer.Option(
        "all",
        "--role",
        help="all; workflows (workflow tasks and their local activities only); activities (activity "
        "tasks only). Run one process of each to keep the data path off the workflow tasks' GIL.",
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve Prometheus metrics on this port instead of SEAWALL_METRICS_PORT's (two worker "
        "processes on one host need two ports).",
    ),
) -> None:
    """Run a worker for the given sites' task queues until SIGTERM/SIGINT, then drain and exit 0."""
    from workers.main import ROLES, Role, run_worker

    if role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not one of {', '.join(ROLES)}", param_hint="--role")
    if not site and not orchestration:
        raise typer.BadParameter(
            "nothing to do: give --site NAME and/or --orchestration", param_hint="--site"
        )
    from seawall.runtime.config import Settings
    from seawall.runtime.temporal import TemporalConfigError
    from seawall.security.codec import PayloadKeyError
    from seawall.security.intents import IntentKeyError, keys_from_settings

    settings = Settings()
    _check_sites(settings, site)
    try:
        keys_from_settings(settings.intent_keys)  # a bad key reference stops the worker here, clearly
        run_worker(site, orchestration=orchestration, role=cast("Role", role), metrics_port=metrics_port)
    except (TemporalConfigError, PayloadKeyError, IntentKeyError) as exc:
        typer.echo(f"configuration: {exc}", err=True)
        raise typer.Exit(Exit.BAD_INPUT) from None
    except RuntimeError as exc:
        if "client connect" not in str(exc):  # the SDK's connection failure; anything else is a bug
            raise
        # Exit 3 and no traceback: a service manager restarts the worker until Temporal answers.
        typer.echo(f"cannot reach Temporal at {settings.temporal_address}: {exc}", err=True)
        raise typer.Exit(Exit.UNAVAILABLE) from None


def _check_sites(settings: Settings, sites: list[str]) -> None:
    """The inventory must load and name every ``--site``: else its errors (file, line, field) or the
    sites it has, exit 2, before anything connects."""
    from seawall.plans import load_inventory
    from seawall.plans.errors import PlanValidationError

    try:
        inventory = load_inventory(settings.inventory)
    except PlanValidationError as exc:
        for error in exc.errors:
            typer.echo(str(error), err=True)
        raise typer.Exit(Exit.BAD_INPUT) from None
    known = [s.name for s in inventory.sites]
    for name in sites:
        if name not in known:
            listed = ", ".join(known) or "none"
            typer.echo(f"--site: {name!r} is not a site of {settings.inventory} (sites: {listed})", err=True)
            raise typer.Exit(Exit.BAD_INPUT)
