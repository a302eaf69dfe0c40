"""`seawall failover | wait`: start a recovery plan's run, follow it live or wait until every VM is
up (or a gate waits)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime
from typing import Any

import typer
from rich.live import Live
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from seawall.cli.common import Exit, console, err_console, print_json, temporal_client
from seawall.cli.plancheck import known_plan
from seawall.cli.signing import sign
from seawall.contract.failures import failure_reason
from seawall.contract.intents import failover_options
from seawall.contract.messages import FailoverInput, RunReport
from seawall.contract.names import Query, recover_id
from seawall.control import recovery
from seawall.control.errors import AlreadyRunning, NoSuchRun
from seawall.control.waiting import wait_until_up
from seawall.runtime.config import Settings

MODES = ("test", "planned", "unplanned")


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


MAX_TTL_HOURS = 14 * 24  # FailoverInput.ttl_s's bound, in the option's unit


def _ttl_s(hours: float) -> float:
    """``--ttl-hours`` in seconds: more than 0 and at most 14 days; else exit 2."""
    if not 0 < hours <= MAX_TTL_HOURS:  # NaN fails both comparisons
        err_console.print(f"--ttl-hours: {hours:g} is not more than 0 and at most {MAX_TTL_HOURS} (14 days)")
        raise typer.Exit(Exit.BAD_INPUT)
    return hours * 3600


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
    ttl_s = _ttl_s(ttl) if ttl is not None else None
    settings = Settings()
    known_plan(settings, plan)
    inp = FailoverInput(
        plan=plan,
        mode=mode,
        point_time=point_time,
        ttl_s=ttl_s,
        direction="failback" if failback else "failover",
        from_mirror=from_mirror,
        intent=sign(
            settings,
            action="failover",
            plan=plan,
            mode=mode,
            direction="failback" if failback else "failover",
            options=failover_options(point_time, from_mirror),
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
            if as_json:
                print_json(out)
            else:
                what = f"{mode} failover" if not failback else "failback"
                console.print(
                    f"{what} of {plan} started: run {handle.result_run_id} (workflow {handle.id})\n"
                    f"  follow it: seawall wait {plan}   its report: seawall report {plan}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
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
