"""Loading and checking files: each file parsed once, plan files followed to their inventory,
every problem located at its file and line; loaded models get absolute paths.

``check`` (``seawall plan check``) reports every error of a set of files; ``load_inventory`` and
``load_plan`` return models or raise ``PlanValidationError`` with the same located errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seawall.model import DirectorySite, DirectoryStore, HttpHook, Inventory, KvmSite, RecoveryPlan
from seawall.plans.checks import check_inventory, check_plan
from seawall.plans.errors import Loc, PlanError, PlanValidationError, Problem
from seawall.plans.files import InventoryFile, ParsedFile, PlanFile, as_inventory, as_plan, parse_file
from seawall.plans.placements import SiteCheck, check_placements_online
from seawall.plans.yamlsource import Document


def _absolute_ref(ref: str | None, base: Path) -> str | None:
    if ref is None or not ref.startswith("file:"):
        return ref
    target = Path(ref.removeprefix("file:"))
    return ref if target.is_absolute() else f"file:{os.path.normpath(base / target)}"


def _absolute_path(path: str, base: Path) -> str:
    return path if Path(path).is_absolute() else os.path.normpath(base / path)


def _absolute_hooks(hooks: Sequence[Any], base: Path) -> list[Any]:
    return [
        hook.model_copy(update={"credentials": _absolute_ref(hook.credentials, base)})
        if isinstance(hook, HttpHook)
        else hook
        for hook in hooks
    ]


def _absolute_vm(vm: Any, base: Path) -> Any:
    if vm.windows is None:
        return vm
    windows = vm.windows.model_copy(
        update={
            "join_credentials": _absolute_ref(vm.windows.join_credentials, base),
            "admin_password": _absolute_ref(vm.windows.admin_password, base),
        }
    )
    return vm.model_copy(update={"windows": windows})


def _absolute_plan(plan: RecoveryPlan, base: Path) -> RecoveryPlan:
    groups = [
        group.model_copy(
            update={
                "pre_hooks": _absolute_hooks(group.pre_hooks, base),
                "post_hooks": _absolute_hooks(group.post_hooks, base),
                "vms": [_absolute_vm(vm, base) for vm in group.vms],
            }
        )
        for group in plan.groups
    ]
    return plan.model_copy(
        update={
            "pre_hooks": _absolute_hooks(plan.pre_hooks, base),
            "post_hooks": _absolute_hooks(plan.post_hooks, base),
            "groups": groups,
        }
    )


def _absolute_inventory(inventory: Inventory, base: Path) -> Inventory:
    sites = []
    for site in inventory.sites:
        update: dict[str, Any] = {"credentials": _absolute_ref(site.credentials, base)}
        if isinstance(site, DirectorySite):
            update["path"] = _absolute_path(site.path, base)
        elif isinstance(site, KvmSite) and site.backup_dir is not None:
            update["backup_dir"] = _absolute_path(site.backup_dir, base)
        sites.append(site.model_copy(update=update))
    stores = []
    for store in inventory.replica_stores:
        update = {"credentials": _absolute_ref(store.credentials, base)}
        if isinstance(store, DirectoryStore):
            update["path"] = _absolute_path(store.path, base)
        elif store.kind == "azure":
            update["connection_string"] = _absolute_ref(getattr(store, "connection_string", None), base)
        stores.append(store.model_copy(update=update))
    return inventory.model_copy(
        update={
            "sites": sites,
            "replica_stores": stores,
            "policies": [
                policy.model_copy(
                    update={
                        "key_ref": _absolute_ref(policy.key_ref, base),
                        "previous_key_refs": [_absolute_ref(r, base) for r in policy.previous_key_refs],
                    }
                )
                for policy in inventory.policies
            ],
            "dns_zones": [
                zone.model_copy(update={"credentials": _absolute_ref(zone.credentials, base)})
                for zone in inventory.dns_zones
            ],
            "plans": [_absolute_plan(plan, base) for plan in inventory.plans],
        }
    )


@dataclass
class FileSummary:
    """What a valid file holds, for people: its kind, and the inventory or plans in it."""

    path: str
    kind: Literal["Inventory", "RecoveryPlan"]
    inventory: Inventory | None = None
    plans: list[RecoveryPlan] = field(default_factory=list)


@dataclass
class CheckReport:
    """The outcome of checking files: every error (sorted), and a summary of each valid file."""

    errors: list[PlanError] = field(default_factory=list)
    files: list[FileSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class _Checker:
    """Checks a set of files once each, following plan files to their inventories."""

    def __init__(
        self, explicit_inventory: str | Path | None, site_check: SiteCheck | None = None, live: bool = False
    ) -> None:
        self.explicit = explicit_inventory
        self.site_check = site_check
        self.live = live  # also ask reachable sites whether the pool and networks they name exist there
        self.cache: dict[Path, ParsedFile] = {}
        self.inventory_problems: dict[Path, list[PlanError]] = {}
        self.report = CheckReport()
        self.reported: set[Path] = set()

    def parsed(self, path: str | Path) -> ParsedFile:
        key = Path(path).resolve()
        if key not in self.cache:
            self.cache[key] = parse_file(path)
        return self.cache[key]

    def inventory_at(self, path: str | Path) -> tuple[Inventory | None, list[PlanError]]:
        """An inventory file's model and its errors (schema and references), computed once."""
        parsed = self.parsed(path)
        if parsed.errors or parsed.doc is None or parsed.model is None:
            return None, parsed.errors
        if not isinstance(parsed.model, InventoryFile):
            return None, [
                parsed.doc.error(
                    ("kind",), "this file is referred to as an inventory, but it is a RecoveryPlan"
                )
            ]
        key = parsed.doc.real.resolve()
        if key not in self.inventory_problems:
            doc = parsed.doc
            problems = check_inventory(parsed.model)
            if not problems and self.site_check is not None and parsed.model.placements:
                # Only a valid inventory is taken to its sites, with its references made absolute.
                absolute = _absolute_inventory(as_inventory(parsed.model), key.parent)
                problems = check_placements_online(absolute, self.site_check)
            if not problems and self.live:
                problems = [
                    Problem(("sites", index, *loc), message)
                    for index, site in enumerate(parsed.model.sites)
                    for loc, message in _site_problems(site)
                ]
            self.inventory_problems[key] = [doc.error(p.loc, p.message) for p in problems]
        errors = self.inventory_problems[key]
        return (None if errors else as_inventory(parsed.model)), errors

    def emit(self, path: str | Path, errors: list[PlanError]) -> None:
        """Report a file's errors once, however many plans refer to it."""
        key = Path(path).resolve()
        if key not in self.reported:
            self.reported.add(key)
            self.report.errors.extend(errors)

    def run(self, paths: Sequence[str | Path]) -> CheckReport:
        # A shell glob and an explicit name can list one file twice: check and summarise it once.
        unique: dict[Path, str | Path] = {}
        for path in paths:
            unique.setdefault(Path(path).resolve(), path)
        paths = list(unique.values())
        parsed = {path: self.parsed(path) for path in paths}
        given_inventories = [
            path
            for path, p in parsed.items()
            if isinstance(p.model, InventoryFile) or (p.doc and p.doc.data.get("kind") == "Inventory")
        ]
        plan_names: dict[str, str] = {}
        for path in paths:
            item = parsed[path]
            if item.errors or item.model is None or item.doc is None:
                self.emit(path, item.errors)
                continue
            if isinstance(item.model, InventoryFile):
                inventory, errors = self.inventory_at(path)
                self.emit(path, errors)
                if inventory is not None:
                    self.report.files.append(
                        FileSummary(str(path), "Inventory", inventory, list(inventory.plans))
                    )
                    for index, plan in enumerate(inventory.plans):
                        self.claim_plan_name(plan.name, item.doc, ("plans", index, "name"), plan_names)
                continue
            self.check_plan_file(path, item.doc, item.model, given_inventories, plan_names)
        self.report.errors.sort()
        return self.report

    def claim_plan_name(self, name: str, doc: Document, at: Loc, names: dict[str, str]) -> None:
        # Each plan's failover runs under a fixed workflow id made from its name: names must be unique.
        if name in names:
            self.report.errors.append(doc.error(at, f"plan '{name}' is already defined in {names[name]}"))
        else:
            names[name] = doc.path

    def check_plan_file(
        self,
        path: str | Path,
        doc: Document,
        model: PlanFile,
        given_inventories: list[str | Path],
        plan_names: dict[str, str],
    ) -> None:
        at: Loc = ()
        if self.explicit is not None:
            inventory_path: str | Path = self.explicit
        elif model.inventory is not None:
            inventory_path = os.path.normpath(os.path.join(os.path.dirname(str(path)), model.inventory))
            at = ("inventory",)
        elif len(given_inventories) == 1:
            inventory_path = given_inventories[0]
        else:
            self.emit(
                path,
                [doc.error((), "no inventory: add 'inventory: <path>' to the plan, or pass --inventory")],
            )
            return
        inventory_doc = self.parsed(inventory_path)
        if at and inventory_doc.doc is None and not Path(inventory_path).is_file():
            # Point at the plan's own 'inventory:' line: that is where the wrong path is written.
            self.emit(path, [doc.error(at, f"inventory file '{inventory_path}' not found")])
            return
        inventory, errors = self.inventory_at(inventory_path)
        self.emit(inventory_path, errors)
        self.claim_plan_name(model.name, doc, ("name",), plan_names)
        if inventory is None:
            return  # its errors are reported on the inventory file itself
        problems = [doc.error(p.loc, p.message) for p in check_plan(model, inventory)]
        self.emit(path, problems)
        if not problems:
            self.report.files.append(FileSummary(str(path), "RecoveryPlan", inventory, [as_plan(model)]))


def _site_problems(site: Any) -> list[tuple[Loc, str]]:
    from seawall.sites.registry import site_problems  # the adapters' imports only when checking live

    return site_problems(site)


def check(
    paths: Sequence[str | Path],
    inventory: str | Path | None = None,
    site_check: SiteCheck | None = None,
    *,
    live: bool = False,
) -> CheckReport:
    """Check inventory and plan files; ``inventory`` overrides what plan files name. ``site_check``
    also asks the sites whether the names of the inventory's placement mappings exist there; ``live``
    asks sites of kinds checked live (``sites.registry.CHECKED_LIVE``: kvm) that answer whether the
    pool and networks the inventory names exist there."""
    return _Checker(inventory, site_check, live).run(paths)


def check_files(paths: Sequence[str | Path], inventory: str | Path | None = None) -> list[PlanError]:
    """Every error in these files (and the inventories their plans name), sorted by file and line."""
    return check(paths, inventory).errors


def load_inventory(path: str | Path) -> Inventory:
    """Load and fully validate an inventory file; relative paths in it become absolute."""
    inventory, errors = _Checker(None).inventory_at(path)
    if inventory is None:
        raise PlanValidationError(errors)
    return _absolute_inventory(inventory, Path(path).resolve().parent)


def load_plan(path: str | Path, inventory: Inventory | None = None) -> RecoveryPlan:
    """Load a plan file and validate it against ``inventory`` (default: the one the plan names)."""
    checker = _Checker(None)
    parsed = checker.parsed(path)
    if parsed.errors or parsed.doc is None or parsed.model is None:
        raise PlanValidationError(parsed.errors)
    if not isinstance(parsed.model, PlanFile):
        raise PlanValidationError(
            [parsed.doc.error(("kind",), "expected a RecoveryPlan file, found an Inventory")]
        )
    if inventory is None:
        if parsed.model.inventory is None:
            raise PlanValidationError(
                [parsed.doc.error((), "no inventory: add 'inventory: <path>' to the plan")]
            )
        inventory = load_inventory(Path(path).parent / parsed.model.inventory)
    problems = check_plan(parsed.model, inventory)
    if problems:
        raise PlanValidationError([parsed.doc.error(p.loc, p.message) for p in problems])
    return _absolute_plan(as_plan(parsed.model), Path(path).resolve().parent)
