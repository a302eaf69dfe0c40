"""`seawall failover | approve | abort | cleanup | retry | rollback | report`: recovery plans as an
operator runs them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import json
import webbrowser
from collections.abc import Awaitable, Callable
from datetime import datetime
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
from seawall.contract.intents import SignedIntent
from seawall.contract.messages import (
    AbortInput,
    Approval,
    ApproveInput,
    FailoverInput,
    RetryInput,
    RollbackInput,
    RunReport,
)
from seawall.contract.names import Query, Update, Workflow, recover_id
from seawall.control import recovery
from seawall.control.errors import (
    AlreadyRunning,
    Failed,
    NoReport,
    NoSuchRun,
    NotRunning,
    Refused,
    Stuck,
)
from seawall.control.waiting import wait_until_up
from seawall.runtime.config import Settings
from seawall.security.intents import IntentKeyError, keys_from_settings, maybe_issue

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


def cli_user() -> str:
    """Who the CLI acts as: the operating-system user (reports and audit lines name them)."""
    return f"{getpass.getuser()}@cli"


def sign(settings: Settings, **claims: Any) -> SignedIntent | None:
    """The CLI's signed intent. Holding SEAWALL_INTENT_KEYS is admin authority (like the worker's own
    configuration); people without it use the API, whose tokens carry their role."""
    try:
        keys = keys_from_settings(settings.intent_keys)
    except IntentKeyError as exc:
        err_console.print(f"configuration: {exc}")
        raise typer.Exit(Exit.BAD_INPUT) from None
    return maybe_issue(keys, user=cli_user(), role="admin", ttl_s=settings.intent_ttl_s, **claims)


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
        if progress.get("gate_message"):
            table.add_row("", str(progress["gate_message"]))
    return table


async def _follow(handle: WorkflowHandle[Any, RunReport], plan: str) -> RunReport:
    result = asyncio.ensure_future(handle.result())
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while not result.done():
            with contextlib.suppress(RPCError):  # no worker has taken the first task yet
                live.update(_view(await handle.query(Query.PROGRESS), plan))
            await asyncio.wait([result], timeout=1.0)
    return await result


def _point_time(text: str) -> str:
    """``--point``: an ISO time with a zone (``2026-11-26T01:00:00Z``), normalised; else exit 2."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        err_console.print(f"--point: {text[:60]!r} is not an ISO time, e.g. 2026-11-26T01:00:00Z")
        raise typer.Exit(Exit.BAD_INPUT) from None
    if when.tzinfo is None:
        err_console.print(f"--point: {text[:60]!r} needs a time zone, e.g. 2026-11-26T01:00:00Z")
        raise typer.Exit(Exit.BAD_INPUT)
    return when.isoformat()


def failover(
    plan: str = typer.Argument(..., help="The recovery plan's name."),
    mode: str = typer.Option(..., "--mode", help="test | planned | unplanned"),
    point: str | None = typer.Option(
        None, "--point", help="Newest verified point at or before this ISO time."
    ),
    ttl: float | None = typer.Option(
        None, "--ttl-hours", help="A drill's time to live (default: the plan's)."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Return once every VM is healthy (a drill standing) or the run ends."
    ),
    stop_at_gate: bool = typer.Option(
        False, "--stop-at-gate", help="With --wait: return (exit 4) when a gate waits for approval."
    ),
    wait_end: bool = typer.Option(
        False, "--wait-end", help="Follow the run live until it ends (a drill: until cleaned up)."
    ),
    failback: bool = typer.Option(False, "--failback", help="Planned failover back onto the originals."),
    from_mirror: bool = typer.Option(
        False,
        "--from-mirror",
        help="Read every VM from its replica store's mirror, even when the store answers.",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start a failover of a plan (one per plan at a time).

    Exit codes: 0 started (--wait: every VM healthy; --wait-end: completed), 1 the run failed or was
    aborted (or one is already running), 2 bad input, 3 Temporal unreachable, 4 (--stop-at-gate) a gate
    waits for approval.
    """
    if mode not in MODES:
        err_console.print(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
        raise typer.Exit(Exit.BAD_INPUT)
    if from_mirror and failback:
        err_console.print("--from-mirror: a failback reads the points replicated back, never a mirror")
        raise typer.Exit(Exit.BAD_INPUT)
    point_time = _point_time(point) if point is not None else None
    settings = Settings()
    inp = FailoverInput(
        plan=plan,
        mode=mode,
        point_time=point_time,
        ttl_s=ttl * 3600 if ttl else None,
        direction="failback" if failback else "failover",
        from_mirror=from_mirror,
        intent=sign(
            settings,
            action="failover",
            plan=plan,
            mode=mode,
            direction="failback" if failback else "failover",
        ),
    )

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            handle = await recovery.start_failover(client, settings.orchestration_queue, inp)
        except AlreadyRunning:
            err_console.print(f"a failover of {plan} is already running: see `seawall report {plan}`")
            return Exit.FAILED
        if wait and not wait_end:
            return await _wait_up(client, plan, handle.result_run_id, stop_at_gate, as_json)
        if not wait_end:
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


async def _wait_up(client: Client, plan: str, run_id: str | None, stop_at_gate: bool, as_json: bool) -> int:
    """``--wait``: until every VM is healthy (or the run ends, or a gate waits with --stop-at-gate)."""
    told: set[str] = set()

    def seen(progress: dict[str, Any]) -> None:
        gate = progress.get("pending_gate")
        if gate and gate not in told and not as_json:
            told.add(gate)
            err_console.print(f"{plan}: gate {gate} waits: seawall approve {plan} --gate {gate}")

    waited = await wait_until_up(client, plan, run_id, stop_at_gate=stop_at_gate, seen=seen)
    code = {
        "healthy": Exit.OK,
        "completed": Exit.OK,
        "gate": Exit.WAITING,
        "stopped": Exit.FAILED,
        "failed": Exit.FAILED,
    }[waited.state]
    if waited.state == "failed":
        # The activity's own message (``no recovery plan named ...``), not "Activity task failed".
        try:
            await client.get_workflow_handle(recover_id(plan), run_id=waited.run_id).result()
        except WorkflowFailureError as exc:
            reason = failure_reason(exc)
            err_console.print(f"failover of {plan} failed: {reason}", markup=False, highlight=False)
            waited = dataclasses.replace(waited, detail=reason)
    out = {"plan": plan, "run_id": waited.run_id, "state": waited.state, "detail": waited.detail}
    if waited.progress:
        out["vms"] = waited.progress.get("vms", {})
    print_json(out) if as_json else console.print(f"{plan}: {waited.state}: {waited.detail}", highlight=False)
    return code


def wait(
    plan: str = typer.Argument(..., help="The recovery plan's name."),
    stop_at_gate: bool = typer.Option(False, "--stop-at-gate", help="Return (exit 4) when a gate waits."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Wait for the plan's newest run to be up: every VM healthy, or the run's end.

    Exit codes: 0 healthy (or completed), 1 failed or aborted, 2 no run of the plan, 3 Temporal
    unreachable, 4 (--stop-at-gate) a gate waits for approval.
    """
    settings = Settings()

    async def run() -> int:
        client = await temporal_client(settings)
        try:
            return await _wait_up(client, plan, None, stop_at_gate, as_json)
        except NoSuchRun as exc:
            err_console.print(str(exc))
            return Exit.BAD_INPUT

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
    settings = Settings()

    async def send(client: Client) -> Approval:
        run_id = await _running_run_id(client, plan)
        intent = sign(settings, action="approve", plan=plan, gate=gate, run=run_id)
        inp = ApproveInput(gate=gate, by=cli_user(), comment=comment, intent=intent)
        return await recovery.approve(client, plan, inp, run_id=run_id)

    _update(plan, Update.APPROVE, send)


def abort(
    plan: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason"),
    force: bool = typer.Option(
        False, "--force", help="Terminate a run that cannot take an abort (its workflow task fails)."
    ),
) -> None:
    """Abort a running failover. A drill is cleaned up; a real failover stops where it is (nothing it
    recovered is destroyed) and waits for `retry`, `rollback`, or a second abort that ends it as it is."""
    settings = Settings()
    if force:
        by = cli_user()
        _update(plan, "abort --force", lambda client: recovery.force_end(client, plan, by, reason))
        return

    async def send(client: Client) -> str:
        run_id = await _running_run_id(client, plan)
        intent = sign(settings, action="abort", plan=plan, run=run_id)
        inp = AbortInput(by=cli_user(), reason=reason, intent=intent)
        return await recovery.abort(client, plan, inp, run_id=run_id)

    _update(plan, Update.ABORT, send)


async def _running_run_id(client: Client, plan: str) -> str | None:
    """The run id of the plan's running failover: a signed approval names the run it is for (with no
    intent keys configured nothing is signed, and the update goes to the newest run)."""
    from seawall.control.runs import running_run

    if not Settings().intent_keys:
        return None
    return (await running_run(client, plan)).run_id


def cleanup(plan: str = typer.Argument(...)) -> None:
    """End a drill now: remove everything it made at the target."""
    _update(plan, Update.CLEANUP, lambda client: recovery.cleanup(client, plan))


def retry(plan: str = typer.Argument(...), comment: str = typer.Option("", "--comment")) -> None:
    """Run a stopped run's failed steps again (failed VMs, a failed hook, the gate an abort refused),
    then the rest of the plan."""
    inp = RetryInput(by=getpass.getuser(), comment=comment)
    _update(plan, Update.RETRY, lambda client: recovery.retry(client, plan, inp))


def rollback(plan: str = typer.Argument(...), reason: str = typer.Option(..., "--reason")) -> None:
    """Ask to roll a stopped real failover back. Prints exactly what it destroys and which sources it
    starts again; nothing happens until `seawall approve PLAN --gate rollback`."""
    inp = RollbackInput(by=getpass.getuser(), reason=reason)
    _update(plan, Update.ROLLBACK, lambda client: recovery.rollback(client, plan, inp))


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
    intent = sign(Settings(), action="commit", plan=plan, run=run)
    by = cli_user()
    _run_to_end(
        Workflow.COMMIT_FAILOVER,
        lambda client, queue: recovery.commit(client, queue, plan, run, intent, by=by),
    )


def reprotect(plan: str = typer.Argument(...)) -> None:
    """Replicate the failed-over copies back (only what changed at the DR site travels)."""
    intent = sign(Settings(), action="reprotect", plan=plan)
    _run_to_end(Workflow.REPROTECT, lambda client, queue: recovery.reprotect(client, queue, plan, intent))
