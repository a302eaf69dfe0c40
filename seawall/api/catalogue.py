"""The recovery plans the API answers about, found the way the workers find them.

Room (d) replaces this with the one plan catalogue in ``seawall.plans``; the API reaches it only
through :func:`plan_catalogue`, so that swap is a one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seawall.api.problems import ApiProblem
from seawall.model import Inventory, RecoveryPlan
from seawall.plans import PlanValidationError, load_inventory, load_plan
from seawall.runtime.config import Settings


@dataclass
class PlanEntry:
    name: str
    defined_in: str
    plan: RecoveryPlan | None
    problems: list[str] = field(default_factory=list)


def plan_catalogue(settings: Settings) -> tuple[Inventory, dict[str, PlanEntry]]:
    """Every plan the workers can find, found the same way (``activities.recovery.find_plan``): inline
    in the inventory first, then ``kind: RecoveryPlan`` files in plans_dir, first name wins."""
    try:
        inventory = load_inventory(settings.inventory)
    except PlanValidationError as exc:
        raise ApiProblem(
            500,
            "inventory-invalid",
            "Inventory invalid",
            "the API's inventory is invalid: " + str(exc.errors[0]),
        ) from None
    entries = {p.name: PlanEntry(p.name, "inventory", p) for p in inventory.plans}
    for path in sorted(Path(settings.plans_dir).glob("*.y*ml")):
        try:
            head = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(head, dict) or head.get("kind") != "RecoveryPlan" or "name" not in head:
            continue
        name = str(head["name"])
        if name in entries:
            continue
        try:
            entries[name] = PlanEntry(name, path.name, load_plan(path, inventory))
        except PlanValidationError as exc:
            entries[name] = PlanEntry(name, path.name, None, [str(e) for e in exc.errors[:10]])
    return inventory, entries
