"""`seawall worker --site NAME`: run a Temporal worker for one or more sites."""

from __future__ import annotations

import typer


def worker(site: list[str] = typer.Option(..., "--site", help="Site whose task queue to poll.")) -> None:
    """Run a worker for the given sites' task queues until SIGTERM/SIGINT."""
    from workers.main import run_worker

    run_worker(site)
