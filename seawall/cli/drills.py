"""`seawall plan schedule`: the plans' drill schedules brought in line with the plan files, shown with
their next runs and each plan's last passed drill; `--trigger PLAN` runs one now."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC
from typing import Any

import typer
from rich.table import Table

from seawall.cli.common import Exit, console, err_console, print_json, temporal_client
from seawall.runtime.config import Settings


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m ago" if minutes >= 60 else f"{minutes}m ago"


def schedule(
    trigger: str | None = typer.Option(None, "--trigger", metavar="PLAN", help="Run PLAN's drill now."),
    as_json: bool = typer.Option(False, "--json", help="Print the schedules as JSON."),
) -> None:
    """Create, update or delete each plan's drill schedule as its file says; show next runs. Also
    starts the RPO watcher (notifications of breaches) if it is not running.

    Exit 0 in line, 1 the trigger found no schedule for the plan, 2 a plan file is invalid (its
    schedule is left as it was), 3 Temporal unreachable.
    """
    from seawall.control import drills
    from seawall.control.errors import NotRunning
    from seawall.plans import load_catalogue
    from seawall.plans.errors import InventoryInvalid
    from seawall.runtime.metrics.drills import DrillReports

    settings = Settings()
    try:
        catalogue = load_catalogue(settings.inventory, settings.plans_dir)
    except InventoryInvalid as exc:
        # No plan can be read: every schedule is left as it was, and the errors are located.
        sys.stdout.write("".join(f"{error}\n" for error in exc.errors))
        raise typer.Exit(Exit.BAD_INPUT) from None
    except OSError as exc:
        err_console.print(f"cannot read the inventory {settings.inventory}: {exc.strerror or exc}")
        raise typer.Exit(Exit.BAD_INPUT) from None
    entries = list(catalogue.entries())
    invalid = [e for e in entries if e.plan is None]
    plans = [e.plan for e in entries if e.plan is not None]

    async def run() -> int:
        client = await temporal_client(settings)
        # The watcher that tells people of RPO breaches runs beside the schedules (started once).
        await drills.ensure_rpo_watch(client, settings.orchestration_queue)
        done = await drills.sync_schedules(
            client, plans, settings.orchestration_queue, keep={e.name for e in invalid}
        )
        if trigger is not None:
            try:
                await drills.trigger(client, trigger)
            except NotRunning:
                err_console.print(f"plan {trigger!r} has no drill schedule (add drill_schedule: to its file)")
                return Exit.FAILED
            done[trigger] = "triggered"
        reports = DrillReports(settings.reports_dir).scan([p.name for p in plans])
        rows: list[dict[str, Any]] = []
        now = time.time()
        for plan in plans:
            state = await drills.describe(client, plan.name) if plan.drill_schedule else None
            found = reports.get(plan.name)
            passed = found.last_success if found else None
            rows.append(
                {
                    "plan": plan.name,
                    "cron": plan.drill_schedule.cron if plan.drill_schedule else None,
                    "approve_gates": bool(plan.drill_schedule and plan.drill_schedule.approve_gates),
                    "paused": state.paused if state else None,
                    "next_runs": [t.astimezone(UTC).isoformat() for t in state.next_runs] if state else [],
                    "last_passed_drill_age_s": now - passed.started_at if passed else None,
                    "action": done.get(plan.name, "none"),
                }
            )
        if as_json:
            print_json({"schedules": rows, "invalid_plans": [e.name for e in invalid]})
        else:
            table = Table(box=None, header_style="bold", pad_edge=False)
            for col in ("PLAN", "CRON", "GATES", "NEXT RUN", "LAST PASSED"):
                table.add_column(col, no_wrap=True)
            for r in rows:
                nxt = r["next_runs"][0][:16].replace("T", " ") if r["next_runs"] else "-"
                gates = "-" if r["cron"] is None else ("schedule" if r["approve_gates"] else "people")
                table.add_row(
                    str(r["plan"]), str(r["cron"] or "none"), gates, nxt, _age(r["last_passed_drill_age_s"])
                )
            console.print(table)
            for e in invalid:
                why = "; ".join(str(p) for p in e.errors)
                err_console.print(f"plan {e.name}: invalid, its schedule is left as it was: {why}")
        return Exit.BAD_INPUT if invalid else Exit.OK

    raise typer.Exit(asyncio.run(run()))
