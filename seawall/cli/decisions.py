"""`seawall approve | abort | cleanup | retry | rollback`: the operator's decisions on a running (or
stopped) failover, each sent as an update to the plan's run."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Any

import typer
from pydantic import BaseModel
from temporalio.client import Client

from seawall.cli.common import Exit, console, err_console, temporal_client
from seawall.cli.signing import cli_user, sign
from seawall.contract.messages import AbortInput, Approval, ApproveInput, RetryInput, RollbackInput
from seawall.contract.names import Update
from seawall.control import recovery
from seawall.control.errors import Failed, NotRunning, Refused, Stuck
from seawall.runtime.config import Settings


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
