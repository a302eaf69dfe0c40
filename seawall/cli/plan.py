"""`seawall plan check | schema`: plan and inventory files as code."""

from __future__ import annotations

import json
import sys
from collections.abc import Sized
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from seawall.cli.common import Exit, console, print_json

app = typer.Typer(
    help="Validate recovery plans and inventories; emit their JSON Schema.",
    no_args_is_help=True,
)


@app.command("check")
def check_command(
    files: list[Path] = typer.Argument(
        ...,
        metavar="FILE",
        help="Inventory and plan files (recognised by their 'kind:' header).",
        show_default=False,
    ),
    inventory: Path | None = typer.Option(
        None, "--inventory", "-i", help="The inventory for plan files (overrides their 'inventory:')."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {ok, errors: [...]} as JSON."),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Ask no site: neither placement names at target sites nor KVM sites' pools and networks.",
    ),
) -> None:
    """Check plan and inventory files: schema, references, networks, addresses, DNS, ordering, and
    (unless --offline) the inventory's placement names against the target sites themselves, and the
    pools and networks of KVM sites that answer.

    Exit 0 when every file is valid, 2 when any is not (one `file:line: field: message` per error).
    """
    from seawall.plans import check

    try:
        report = check(files, inventory, None if offline else _at_site, live=not offline)
    except Exception as exc:  # a checker bug must still end as one line and a code, never a traceback
        message = f"internal error while checking: {type(exc).__name__}: {exc}"
        if as_json:
            print_json({"ok": False, "errors": [{"file": "", "line": 0, "field": "", "message": message}]})
        else:
            sys.stdout.write(message + "\n")
        raise typer.Exit(Exit.FAILED) from None

    if as_json:
        print_json({"ok": report.ok, "errors": [error.to_dict() for error in report.errors]})
        raise typer.Exit(Exit.OK if report.ok else Exit.BAD_INPUT)
    if not report.ok:
        # Plain lines, not Rich: editors and CI parse file:line, and Rich would wrap long ones.
        sys.stdout.write("".join(f"{error}\n" for error in report.errors))
        raise typer.Exit(Exit.BAD_INPUT)

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="green", no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for summary in report.files:
        if summary.kind == "Inventory" and summary.inventory is not None:
            inv = summary.inventory
            table.add_row(
                "ok",
                summary.path,
                f"inventory: {_count(inv.sites, 'site')}, {_count(inv.replica_stores, 'replica store')}, "
                f"{_count(inv.policies, 'policy', 'policies')}, {_count(inv.protected_vms, 'protected VM')}, "
                f"{_count(inv.dns_zones, 'DNS zone')}, {_count(inv.plans, 'inline plan')}",
            )
        for plan in summary.plans:
            vms = [vm for group in plan.groups for vm in group.vms]
            table.add_row(
                "ok" if summary.kind == "RecoveryPlan" else "",
                summary.path if summary.kind == "RecoveryPlan" else "",
                f"plan {plan.name}: {plan.source_site} -> {plan.target_site}, "
                f"{_count(plan.groups, 'group')} ({' -> '.join(g.name for g in plan.groups)}), "
                f"{_count(vms, 'VM')}, {_count(plan.gates, 'gate')}",
            )
    console.print(table, highlight=False)


def _at_site(placement: Any, site: Any) -> list[tuple[str, str]]:
    """Ask the placement's target site (with its own credentials) which names it lacks."""
    from seawall.sites.base import SiteError
    from seawall.sites.registry import adapter_for

    adapter = adapter_for(site)
    try:
        return adapter.placement_problems(placement)
    except (SiteError, OSError, Exception) as exc:  # any failure to ask is said, never a traceback
        reason = adapter.redact(str(exc))[:300]
        return [("target", f"cannot check the names at site '{site.name}': {reason} (--offline skips this)")]


def _count(items: Sized, word: str, plural: str | None = None) -> str:
    return f"{len(items)} {word if len(items) == 1 else plural or word + 's'}"


class SchemaKind(StrEnum):
    plan = "plan"
    inventory = "inventory"


@app.command("schema")
def schema_command(
    kind: SchemaKind = typer.Option(SchemaKind.plan, "--kind", help="Which file's schema."),
) -> None:
    """Print the JSON Schema of plan or inventory files (for editor completion and validation).

    With the YAML language server: `# yaml-language-server: $schema=plan.schema.json`.
    """
    from seawall.plans import InventoryFile, PlanFile

    model = PlanFile if kind is SchemaKind.plan else InventoryFile
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Seawall recovery plan" if kind is SchemaKind.plan else "Seawall inventory"
    sys.stdout.write(json.dumps(schema, indent=2, sort_keys=True) + "\n")
