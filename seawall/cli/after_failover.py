"""`seawall report | commit | reprotect`: what follows a run: its report, making a real failover
final, replicating the failed-over copies back."""

from __future__ import annotations

import asyncio
import webbrowser
from collections.abc import Awaitable, Callable

import typer
from pydantic import BaseModel
from rich.table import Table
from temporalio.client import Client

from seawall.cli.common import Exit, console, err_console, print_json, temporal_client
from seawall.cli.plancheck import known_plan
from seawall.cli.signing import cli_user, sign
from seawall.contract.names import Workflow
from seawall.control import recovery
from seawall.control.errors import Failed, NoReport, Refused
from seawall.runtime.config import Settings


def report(
    plan: str = typer.Argument(...),
    run: str | None = typer.Option(None, "--run", help="A run id (default: the newest)."),
    open_html: bool = typer.Option(False, "--open", help="Open the HTML report in a browser."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print (or open) a run's report."""
    from seawall import reports  # the HTML renderer: only this verb needs it

    settings = Settings()
    try:
        path, data = reports.read(settings.reports_dir, plan, run)
    except NoReport as exc:
        err_console.print(f"no report for plan {plan!r}{' run ' + run if run else ''} in {exc.folder}")
        raise typer.Exit(Exit.BAD_INPUT) from None
    if open_html:
        webbrowser.open(path.with_suffix(".html").as_uri())
    if as_json:
        print_json(data.model_dump(mode="json"))
        return
    table = Table(title=f"{data.plan} {data.run} ({data.mode}): {data.status}", box=None, header_style="bold")
    for col in ("VM", "AS", "POINT", "POINT TIME", "RPO", "IPS", "HEALTHY AT"):
        table.add_column(col)
    for v in data.vms:
        rpo = f"{v.achieved_rpo_s:.0f}s" if v.achieved_rpo_s is not None else "-"
        table.add_row(
            v.vm, v.target_name, v.point_id, v.point_created_at, rpo, ", ".join(v.ips), v.healthy_at
        )
    console.print(table)
    console.print(f"HTML: {path.with_suffix('.html')}")


def _run_to_end(workflow: str, run: Callable[[Client, str], Awaitable[BaseModel]]) -> None:
    """Run a workflow to its end (``run`` starts it, or attaches to the running one) and print its result."""
    settings = Settings()

    async def main() -> int:
        client = await temporal_client(settings)
        try:
            result = await run(client, settings.orchestration_queue)
        except Failed as exc:
            err_console.print(f"{workflow} failed: {exc}", markup=False, highlight=False, soft_wrap=True)
            return Exit.FAILED
        except Refused as exc:
            err_console.print(f"{exc.update} refused: {exc}")
            return Exit.BAD_INPUT
        print_json(result.model_dump(mode="json"))
        return Exit.OK

    raise typer.Exit(asyncio.run(main()))


def commit(plan: str = typer.Argument(...), run: str = typer.Option(..., "--run")) -> None:
    """Make a real failover final: old schedules go, older points are pruned. A failover stopped for
    the operator (a failed VM, an abort) is ended as it is first; one still running is refused."""
    settings = Settings()
    known_plan(settings, plan)
    intent = sign(settings, action="commit", plan=plan, run=run)
    by = cli_user()
    _run_to_end(
        Workflow.COMMIT_FAILOVER,
        lambda client, queue: recovery.commit(client, queue, plan, run, intent, by=by),
    )


def reprotect(plan: str = typer.Argument(...)) -> None:
    """Replicate the failed-over copies back (only what changed at the DR site travels)."""
    settings = Settings()
    known_plan(settings, plan)
    intent = sign(settings, action="reprotect", plan=plan)
    _run_to_end(Workflow.REPROTECT, lambda client, queue: recovery.reprotect(client, queue, plan, intent))
