"""The recovery plans the API answers about, found the way the workers find them, kept off the event loop.

The plans come from the one catalogue in ``seawall.plans`` (the CLI's and the activities' too). That
catalogue is rebuilt only when a file changes, but finding out whether one did means a stat of the
inventory and of every plan file, and a rebuild parses them all: blocking work that must not run on
the event loop for every request (with 200 plan files it was ~7 ms of stats and ~13 ms of rebuilding
the answer, per request, while every other request waited).

So the API keeps a :class:`CatalogueView`: the catalogue's entries, and each plan's ``/v1/plans`` JSON
rendered once. Requests read the view; at most once per ``api_plans_check_s`` one of them checks the
files in a worker thread (``asyncio.to_thread``), and only when the catalogue changed is a new view
built, in that thread too. Concurrent requests that find the check due wait for that one check. A
changed plan file is therefore answered within ``api_plans_check_s`` (default 1 s; 0 checks on every
request, still off the loop).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from seawall.api.auth import Principal
from seawall.api.problems import ApiProblem
from seawall.api.schemas import GroupView, PlanSummary
from seawall.model import Inventory, RecoveryPlan
from seawall.plans import InventoryInvalid, PlanCatalogue, load_catalogue


@dataclass
class PlanEntry:
    name: str
    defined_in: str
    plan: RecoveryPlan | None
    problems: list[str] = field(default_factory=list)


def summary(entry: PlanEntry) -> PlanSummary:
    plan = entry.plan
    gates = {g.before: g for g in plan.gates} if plan else {}
    return PlanSummary(
        name=entry.name,
        defined_in=entry.defined_in,
        valid=plan is not None,
        problems=entry.problems,
        description=plan.description if plan else None,
        source_site=plan.source_site if plan else None,
        target_site=plan.target_site if plan else None,
        groups=[
            GroupView(
                name=g.name,
                vms=[v.name for v in g.vms],
                gate=gates[g.name].name if g.name in gates else None,
                gate_approvers=gates[g.name].role if g.name in gates else None,
            )
            for g in (plan.groups if plan else [])
        ],
    )


class CatalogueView:
    """One build of the catalogue as the API answers from it. Immutable but for memos per scope
    (filled on the event loop only, so no lock)."""

    def __init__(self, source: PlanCatalogue | None, invalid: str | None = None) -> None:
        self.source = source
        self.invalid = invalid
        self.entries: dict[str, PlanEntry] = {}
        self._json: dict[str, bytes] = {}
        self._vms: dict[str, frozenset[str]] = {}
        if source is not None:
            for e in source.entries():  # validates every plan file: this runs in a worker thread
                entry = PlanEntry(e.name, e.defined_in, e.plan, [str(error) for error in e.errors[:10]])
                self.entries[e.name] = entry
                self._json[e.name] = summary(entry).model_dump_json().encode()
                self._vms[e.name] = frozenset(vm.name for _, vm in e.plan.vms()) if e.plan else frozenset()
        self._lists: dict[frozenset[str] | None, bytes] = {}
        self._protected: dict[frozenset[str] | None, list[str]] = {}

    @property
    def inventory(self) -> Inventory:
        if self.source is None:
            detail = f"the API's inventory is invalid: {self.invalid}"
            raise ApiProblem(500, "inventory-invalid", "Inventory invalid", detail)
        return self.source.inventory

    def plans_json(self, who: Principal) -> bytes:
        """``GET /v1/plans`` for ``who``: the JSON array of the plans in its scope, joined once per scope."""
        found = self._lists.get(who.plans)
        if found is None:
            self.inventory  # noqa: B018 -- raises the inventory's problem, as every plan endpoint does
            found = b"[" + b",".join(j for name, j in self._json.items() if who.sees(name)) + b"]"
            self._lists[who.plans] = found
        return found

    def vms_in_scope(self, who: Principal) -> list[str]:
        """The protected VMs ``who`` sees: every one for an unscoped token, else its plans' VMs."""
        found = self._protected.get(who.plans)
        if found is None:
            names = [p.name for p in self.inventory.protected_vms]
            if who.plans is not None:
                # A scoped token sees the VMs of its plans: a department's own servers, not the estate.
                mine = frozenset().union(*(vms for plan, vms in self._vms.items() if who.sees(plan)))
                names = [n for n in names if n in mine]
            found = self._protected[who.plans] = names
        return found


def _build(inventory: Path, plans_dir: Path, previous: CatalogueView | None) -> CatalogueView:
    """Blocking (stats, and on a change reads and validation): run in a worker thread."""
    try:
        catalogue = load_catalogue(inventory, plans_dir)
    except InventoryInvalid as exc:
        message = str(exc.errors[0])
        if previous is not None and previous.source is None and previous.invalid == message:
            return previous
        return CatalogueView(None, message)
    if previous is not None and previous.source is catalogue:
        return previous  # nothing changed: keep the rendered answers
    return CatalogueView(catalogue)


class ApiCatalogue:
    """The API's current :class:`CatalogueView`, re-checked against the files at most every ``check_s``."""

    def __init__(self, inventory: Path, plans_dir: Path, check_s: float) -> None:
        self.inventory, self.plans_dir, self.check_s = inventory, plans_dir, check_s
        self._view: CatalogueView | None = None
        self._due = 0.0
        self._lock = asyncio.Lock()

    async def view(self) -> CatalogueView:
        view = self._view
        if view is not None and time.monotonic() < self._due:
            return view
        async with self._lock:  # one check at a time; whoever waited finds it done
            if self._view is not None and time.monotonic() < self._due:
                return self._view
            self._view = await asyncio.to_thread(_build, self.inventory, self.plans_dir, self._view)
            self._due = time.monotonic() + self.check_s
            return self._view
