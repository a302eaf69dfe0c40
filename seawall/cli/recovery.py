"""`seawall failover | approve | abort | cleanup | report`: recovery plans as an operator runs them."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import webbrowser
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import typer
from pydantic import BaseModel
from rich.live import Live
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from seawall import reports
from seawall.cli.common import Exit, console, err_console, print_json, temporal_client
from seawall.contract.failures import failure_reason
from seawall.contract.messages import AbortInput, ApproveInput, FailoverInput, RunReport
from seawall.contract.names import Query, Update, Workflow, recover_id
from seawall.control import recovery
from seawall.control.errors import AlreadyRunning, Failed, NoReport, NotRunning, Refused, Stuck
from seawall.runtime.config import Settings

MODES = ("test", "planned", "unplanned")


def start_link(settings: Settings, plan: str, ui: str = "http://127.0.0.1:8233") -> str:
    """The Temporal UI's Start Workflow form, pre-filled for this plan (paste {"plan": ..., "mode": ...})."""
    query = urlencode(
        {
            "workflowId": recover_id(plan),
            "taskQueue": settings.orchestration_queue,
            "workflowType": Workflow.RECOVERY_PLAN,
        }
    )
    return f"{ui}/namespaces/{settings.temporal_namespace}/workflows/start-workflow?{query}"


def _view(progress: dict[str, Any], plan: str) -> Table:
    table = Table(title=f"{plan}: {progress.get('phase')}", box=None, header_style="bold")
    table.add_column("VM")
    table.add_column("STATE")
    for vm, state in progress.get("vms", {}).items():
        color = {"healthy": "green", "failed": "red", "skipped": "yellow"}.get(state, "white")
        table.add_row(vm, f"[{color}]{state}[/{color}]")
    if progress.get("pending_gate"):
        table.add_row(
            "[bold]gate[/bold]", f"waiting: seawall approve {plan} --gate {progress['pending_gate']}"
        )
    return table


async def _follow(handle: WorkflowHandle[Any, RunReport], plan: str) -> RunReport:
    result = asyncio.ensure_future(handle.result())
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while not result.done():
            with contextlib.suppress(RPCError):  # no worker has taken the first task yet
                live.update(_view(await handle.query(Query.PROGRESS), plan))
            await asyncio.wait([result], timeout=1.0)
    return await result


def failover(
    plan: str = typer.Argument(..., help="The recovery plan's name."),
    mode: str = typer.Option(..., "--mode", help="test | planned | unplanned"),
    point: str | None = typer.Option(
        None, "--point", help="Newest verified point at or before this ISO time."
    ),
    ttl: float | None = typer.Option(
        None, "--ttl-hours", help="A drill's time to live (default: the plan's)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the run live until it ends."),
    failback: bool = typer.Option(False, "--failback", help="Planned failover back onto the originals."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start a failover of a plan (one per plan at a time)."""
    if mode not in MODES:
        err_console.print(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
        raise typer.Exit(Exit.BAD_INPUT)
    settings = Settings()
    inp = FailoverInput(
        plan=plan,
        mode=mode,
        point_time=point,
        ttl_s=ttl * 3600 if ttl else None,
        direction="failback" if failback else "failover",
    )

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            handle = await recovery.start_failover(client, settings.orchestration_queue, inp)
        except AlreadyRunning:
            err_console.print(f"a failover of {plan} is already running: see `seawall report {plan}`")
            return Exit.FAILED
        if not wait:
            out = {"plan": plan, "mode": mode, "workflow_id": handle.id, "run_id": handle.result_run_id}
            print_json(out) if as_json else console.print(out)
            return Exit.OK
        try:
            report = await _follow(handle, plan)
        except WorkflowFailureError as exc:
            # The activity's own message (``point ... is corrupt: ...``), not "Activity task failed".
            err_console.print(
                f"failover of {plan} failed: {failure_reason(exc)}", markup=False, highlight=False
            )
            return Exit.FAILED
        print_json(report.model_dump(mode="json")) if as_json else console.print(f"{plan}: {report.status}")
        return Exit.OK if report.status == "completed" else Exit.FAILED

    raise typer.Exit(asyncio.run(run()))


def _update(plan: str, name: str, send: Callable[[Client], Awaitable[Any]]) -> None:
    """Send update ``name`` to the plan's newest run (by ``send``) and print the answer."""
    settings = Settings()

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            answer = await send(client)
        except Refused as exc:
            err_console.print(f"{name} refused: {exc}", markup=False, highlight=False, soft_wrap=True)
            return Exit.BAD_INPUT
        except NotRunning as exc:
            err_console.print(str(exc), soft_wrap=True)
            return Exit.BAD_INPUT
        except (Stuck, Failed) as exc:
            err_console.print(f"{name}: {exc}", markup=False, highlight=False, soft_wrap=True)
            return Exit.FAILED
        if isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        console.print(answer if isinstance(answer, str) else json.dumps(answer, default=str))
        return Exit.OK

    raise typer.Exit(asyncio.run(run()))


def approve(
    plan: str = typer.Argument(...),
    gate: str = typer.Option(..., "--gate", help="The gate waiting for approval."),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Approve the gate a run is waiting on (recorded in the report with your user name)."""
    inp = ApproveInput(gate=gate, by=getpass.getuser(), comment=comment)
    _update(plan, Update.APPROVE, lambda client: recovery.approve(client, plan, inp))


def abort(
    plan: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason"),
    force: bool = typer.Option(
        False, "--force", help="Terminate a run that cannot take an abort (its workflow task fails)."
    ),
) -> None:
    """Abort a running failover (a drill is cleaned up)."""
    by = getpass.getuser()
    if force:
        _update(plan, "abort --force", lambda client: recovery.force_end(client, plan, by, reason))
        return
    inp = AbortInput(by=by, reason=reason)
    _update(plan, Update.ABORT, lambda client: recovery.abort(client, plan, inp))


def cleanup(plan: str = typer.Argument(...)) -> None:
    """End a drill now: remove everything it made at the target."""
    _update(plan, Update.CLEANUP, lambda client: recovery.cleanup(client, plan))


def report(
    plan: str = typer.Argument(...),
    run: str | None = typer.Option(None, "--run", help="A run id (default: the newest)."),
    open_html: bool = typer.Option(False, "--open", help="Open the HTML report in a browser."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print (or open) a run's report."""
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
    for col in ("VM", "AS", "POINT", "IPS", "HEALTHY AT"):
        table.add_column(col)
    for v in data.vms:
        table.add_row(v.vm, v.target_name, v.point_id, ", ".join(v.ips), v.healthy_at)
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
        print_json(result.model_dump(mode="json"))
        return Exit.OK

    raise typer.Exit(asyncio.run(main()))


def commit(plan: str = typer.Argument(...), run: str = typer.Option(..., "--run")) -> None:
    """Make a real failover final: old schedules go, older points are pruned."""
    _run_to_end(Workflow.COMMIT_FAILOVER, lambda client, queue: recovery.commit(client, queue, plan, run))


def reprotect(plan: str = typer.Argument(...)) -> None:
    """Replicate the failed-over copies back (only what changed at the DR site travels)."""
    _run_to_end(Workflow.REPROTECT, lambda client, queue: recovery.reprotect(client, queue, plan))
