"""The one plan catalogue: every recovery plan the configured files define, found by name.

A plan lives inline in the inventory or in a ``kind: RecoveryPlan`` file of the plans folder
(``*.yaml``/``*.yml``, in name order); inline plans come first and the first plan of a name wins.
The API (per request), the activities (per step of every VM) and the CLI all look plans up here, so
they cannot disagree about which plan a name means.

``load_catalogue`` is cheap to call often: the catalogue is rebuilt only when the inventory or a
file of the plans folder changes (path, size and mtime), and a plan file is validated once, the first
time its plan is asked for. Parsing a 100-VM plan costs ~0.2 s of CPU; read 40 times per group, that
was most of a large plan's orchestration overhead (benchmarks/plan.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seawall.model import Inventory, RecoveryPlan
from seawall.plans.errors import InventoryInvalid, PlanError, PlanInvalid, PlanNotFound, PlanValidationError
from seawall.plans.loading import load_inventory, load_plan

__all__ = ["CatalogueEntry", "PlanCatalogue", "load_catalogue"]

_Stamp = tuple[tuple[str, int | None, int | None], ...]


@dataclass(frozen=True)
class CatalogueEntry:
    """One plan of the catalogue: where it is defined, and the plan or why it is invalid."""

    name: str
    defined_in: str  # "inventory", or the plan file's name
    plan: RecoveryPlan | None
    errors: list[PlanError] = field(default_factory=list)


class PlanCatalogue:
    """The plans of one inventory and plans folder, as the files were when it was built.

    Immutable apart from the memo of validated plan files, which is filled under a lock: activities
    look plans up from several threads at once.
    """

    def __init__(self, inventory: Inventory, folder: Path, files: list[tuple[object, Path]]) -> None:
        self.inventory = inventory
        self.folder = folder
        # Every RecoveryPlan file's header name as written (None when missing), for "not found".
        self._in_files = [str(name) for name, _ in files]
        self._sources: dict[str, Path | None] = {plan.name: None for plan in inventory.plans}
        for name, path in files:
            if name is not None:
                self._sources.setdefault(str(name), path)
        self._entries: dict[str, CatalogueEntry] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every plan name, inline plans first, then plan files in name order."""
        return list(self._sources)

    def entry(self, name: str) -> CatalogueEntry:
        """The plan called ``name``, valid or not; ``PlanNotFound`` when no file defines it."""
        if name not in self._sources:
            raise PlanNotFound(name, self.folder, self._in_files)
        with self._lock:
            found = self._entries.get(name)
        if found is None:
            found = self._load(name, self._sources[name])
            with self._lock:
                found = self._entries.setdefault(name, found)
        return found

    def entries(self) -> list[CatalogueEntry]:
        """Every plan, valid or not, in the order of ``names``."""
        return [self.entry(name) for name in self._sources]

    def plan(self, name: str) -> RecoveryPlan:
        """The valid plan called ``name``; ``PlanNotFound`` or ``PlanInvalid`` otherwise."""
        found = self.entry(name)
        if found.plan is None:
            raise PlanInvalid(name, found.errors)
        return found.plan

    def _load(self, name: str, path: Path | None) -> CatalogueEntry:
        if path is None:
            return CatalogueEntry(name, "inventory", self.inventory.plan(name))
        try:
            return CatalogueEntry(name, path.name, load_plan(path, self.inventory))
        except PlanValidationError as exc:
            return CatalogueEntry(name, path.name, None, list(exc.errors))


def _plan_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.y*ml"))


def _stamp(inventory: Path, folder: Path) -> _Stamp:
    """What a catalogue depends on: the inventory and every plan file, by size and mtime."""
    stamp: list[tuple[str, int | None, int | None]] = []
    for path in [inventory, *_plan_files(folder)]:
        try:
            st = path.stat()
            stamp.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((str(path), None, None))
    return tuple(stamp)


def _build(inventory_path: Path, folder: Path) -> PlanCatalogue | InventoryInvalid:
    try:
        inventory = load_inventory(inventory_path)
    except PlanValidationError as exc:
        return InventoryInvalid(exc.errors)
    files: list[tuple[object, Path]] = []
    for path in _plan_files(folder):
        try:
            head = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue  # not a plan file we can read; `seawall plan check` says why
        if isinstance(head, dict) and head.get("kind") == "RecoveryPlan":
            files.append((head.get("name"), path))
    return PlanCatalogue(inventory, folder, files)


_cache: dict[tuple[str, str], tuple[_Stamp, PlanCatalogue | InventoryInvalid]] = {}
_cache_lock = threading.Lock()


def load_catalogue(inventory: str | Path, plans_dir: str | Path) -> PlanCatalogue:
    """The catalogue of this inventory and plans folder, rebuilt only when one of their files changed.

    Raises ``InventoryInvalid`` when the inventory does not validate (no plan can be trusted then).
    """
    inventory_path, folder = Path(inventory), Path(plans_dir)
    key = (str(inventory_path), str(folder))
    stamp = _stamp(inventory_path, folder)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        built = hit[1]
    else:
        # Built outside the lock: two threads may both build after a change; either result is right.
        built = _build(inventory_path, folder)
        with _cache_lock:
            _cache[key] = (stamp, built)
    if isinstance(built, InventoryInvalid):
        raise InventoryInvalid(built.errors)
    return built
