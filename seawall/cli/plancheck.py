"""The plan a verb names, looked up where the CLI runs, before anything starts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import typer

from seawall.cli.common import Exit, err_console
from seawall.plans.catalogue import load_catalogue
from seawall.plans.errors import InventoryInvalid, PlanError, PlanInvalid, PlanNotFound
from seawall.runtime.config import Settings


def known_plan(settings: Settings, plan: str) -> None:
    """Exit 2 when the configured files define no plan ``plan``, or it does not validate.

    A typo is refused here, with the plans there are, instead of starting a run that fails at its
    first step. Where the inventory is not on this machine (an operator's CLI away from the workers'
    files), nothing is refused here: the worker's own lookup decides, as it does for every run.
    """
    if not settings.inventory.exists():
        return
    try:
        load_catalogue(settings.inventory, settings.plans_dir).plan(plan)
    except PlanNotFound as exc:
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(Exit.BAD_INPUT) from None
    except PlanInvalid as exc:
        _refuse(f"plan {plan!r} is invalid", exc.errors)
    except InventoryInvalid as exc:
        _refuse(f"{settings.inventory} is invalid", exc.errors)


def _refuse(what: str, errors: Sequence[PlanError]) -> NoReturn:
    err_console.print(f"{what}:", markup=False, highlight=False)
    for error in errors:  # each names its file, line and field
        err_console.print(f"  {error}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(Exit.BAD_INPUT) from None
