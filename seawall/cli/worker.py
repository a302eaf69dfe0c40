"""`seawall worker --site NAME`: run a Temporal worker for one or more sites."""

from __future__ import annotations

from typing import cast

import typer


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
    from seawall.runtime.temporal import TemporalConfigError
    from seawall.security.codec import PayloadKeyError
    from seawall.security.intents import IntentKeyError, keys_from_settings

    try:
        from seawall.runtime.config import Settings

        keys_from_settings(Settings().intent_keys)  # a bad key reference stops the worker here, clearly
        run_worker(site, orchestration=orchestration, role=cast("Role", role), metrics_port=metrics_port)
    except (TemporalConfigError, PayloadKeyError, IntentKeyError) as exc:
        typer.echo(f"configuration: {exc}", err=True)
        raise typer.Exit(2) from None
