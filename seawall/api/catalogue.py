"""The recovery plans the API answers about, found the way the workers find them.

The plans come from the one catalogue in ``seawall.plans`` (the CLI's and the activities' too); the
API reaches it only through :func:`plan_catalogue`, which keeps the API's view of an entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seawall.api.problems import ApiProblem
from seawall.model import Inventory, RecoveryPlan
from seawall.plans import InventoryInvalid, load_catalogue
from seawall.runtime.config import Settings


@dataclass
class PlanEntry:
    name: str
    defined_in: str
    plan: RecoveryPlan | None
    problems: list[str] = field(default_factory=list)


def plan_catalogue(settings: Settings) -> tuple[Inventory, dict[str, PlanEntry]]:
    """Every plan the workers can find, from the same catalogue (``seawall.plans.catalogue``): inline
    in the inventory first, then ``kind: RecoveryPlan`` files in plans_dir, first name wins."""
    try:
        catalogue = load_catalogue(settings.inventory, settings.plans_dir)
    except InventoryInvalid as exc:
        raise ApiProblem(
            500,
            "inventory-invalid",
            "Inventory invalid",
            "the API's inventory is invalid: " + str(exc.errors[0]),
        ) from None
    entries = {
        e.name: PlanEntry(e.name, e.defined_in, e.plan, [str(error) for error in e.errors[:10]])
        for e in catalogue.entries()
    }
    return catalogue.inventory, entries
