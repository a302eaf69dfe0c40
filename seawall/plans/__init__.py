"""Plan and inventory files as code: load YAML, validate it, and report every problem at its file:line.

The file format (see ``examples/``):

- Every file starts with a header saying what it is: ``kind: Inventory`` or ``kind: RecoveryPlan``
  (and optionally ``version: 1``). Files are recognised by that header, never by their name.
- An inventory holds ``sites``, ``replica_stores``, ``policies``, ``protected_vms``, ``dns_zones``
  and, optionally, ``plans`` written inline.
- A plan file holds one recovery plan, and names its inventory with ``inventory: <path>``, relative
  to the plan file. ``check_files(..., inventory=PATH)`` (``seawall plan check --inventory``)
  overrides that; when neither is given and exactly one inventory is among the files checked, that
  one is used.
- Relative paths in a file (``file:`` secret references, directory sites and stores) are relative to
  that file's directory. The loaders return models with those paths made absolute, so a worker can
  resolve them without knowing where the file was.

Validation runs in two passes: the schema (pydantic, unknown keys rejected with a suggestion), then
references and semantics (names that must exist, addresses that must fit their networks, dependency
cycles, ...). Every problem becomes a ``PlanError`` located at a 1-based line of the file, e.g.
``plans/erp.yaml:14: groups[1].vms[0].nics[0].ip.ip: 10.9.0.5 is outside subnet 10.2.2.0/24 of
network 'dr-app'``.
"""

from seawall.plans.catalogue import CatalogueEntry, PlanCatalogue, load_catalogue
from seawall.plans.checks import check_inventory, check_plan
from seawall.plans.errors import (
    InventoryInvalid,
    PlanError,
    PlanInvalid,
    PlanLookupError,
    PlanNotFound,
    PlanValidationError,
    Problem,
)
from seawall.plans.files import InventoryFile, PlanFile
from seawall.plans.loading import CheckReport, FileSummary, check, check_files, load_inventory, load_plan

__all__ = [
    "CatalogueEntry",
    "CheckReport",
    "FileSummary",
    "InventoryFile",
    "InventoryInvalid",
    "PlanCatalogue",
    "PlanError",
    "PlanFile",
    "PlanInvalid",
    "PlanLookupError",
    "PlanNotFound",
    "PlanValidationError",
    "Problem",
    "check",
    "check_files",
    "check_inventory",
    "check_plan",
    "load_catalogue",
    "load_inventory",
    "load_plan",
]
