"""The one plan catalogue: which plan a name means, what each failure says, and when files are re-read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from seawall.plans import (
    InventoryInvalid,
    PlanInvalid,
    PlanLookupError,
    PlanNotFound,
    load_catalogue,
)

GOOD = Path(__file__).resolve().parents[1] / "data" / "plans" / "good"


@pytest.fixture
def plans(tmp_path: Path) -> Path:
    """A plans folder with the good inventory, its plan, and a second copy of the plan under another name."""
    folder = tmp_path / "plans"
    folder.mkdir()
    shutil.copy(GOOD / "inventory.yaml", folder / "inventory.yaml")
    shutil.copy(GOOD / "plan.yaml", folder / "a-plan.yaml")
    text = (GOOD / "plan.yaml").read_text()
    (folder / "b-plan.yml").write_text(text.replace("name: app-dr", "name: app-dr-2"))
    (folder / "notes.yaml").write_text("just: notes\n")
    (folder / "broken-yaml.yaml").write_text("kind: [RecoveryPlan\n")
    return folder


def _bump(path: Path, text: str) -> None:
    """Rewrite a file so that a cache keyed on size and mtime must see it (coarse clocks included)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_finds_plans_in_files_in_name_order(plans: Path) -> None:
    catalogue = load_catalogue(plans / "inventory.yaml", plans)
    assert catalogue.names() == ["app-dr", "app-dr-2"]
    plan = catalogue.plan("app-dr-2")
    assert plan.name == "app-dr-2"
    assert [entry.defined_in for entry in catalogue.entries()] == ["a-plan.yaml", "b-plan.yml"]
    assert catalogue.inventory.plans == []


def test_inline_plans_come_first_and_the_first_name_wins(plans: Path) -> None:
    inline = yaml.safe_load((plans / "a-plan.yaml").read_text())
    del inline["kind"], inline["inventory"]
    inline["description"] = "inline"
    inventory = yaml.safe_load((plans / "inventory.yaml").read_text())
    (plans / "inventory.yaml").write_text(yaml.safe_dump({**inventory, "plans": [inline]}))
    first = (plans / "b-plan.yml").read_text()
    (plans / "c-plan.yaml").write_text(first.replace("boot_delay: 30s", "boot_delay: 45s"))

    catalogue = load_catalogue(plans / "inventory.yaml", plans)
    assert catalogue.names() == ["app-dr", "app-dr-2"]
    assert catalogue.entry("app-dr").defined_in == "inventory"
    assert catalogue.plan("app-dr").description == "inline"
    assert catalogue.entry("app-dr-2").defined_in == "b-plan.yml"
    assert catalogue.plan("app-dr-2").groups[1].boot_delay.total_seconds() == 30
    # Only plan files are listed when a name is unknown (duplicates as they are written).
    with pytest.raises(PlanNotFound, match=r"\(plans: app-dr, app-dr-2, app-dr-2 in "):
        catalogue.plan("payroll")


def test_unknown_name_lists_the_plan_files(plans: Path) -> None:
    catalogue = load_catalogue(plans / "inventory.yaml", plans)
    with pytest.raises(PlanNotFound) as caught:
        catalogue.plan("payroll")
    assert str(caught.value) == f"no recovery plan named 'payroll' (plans: app-dr, app-dr-2 in {plans})"
    assert isinstance(caught.value, PlanLookupError)


def test_an_invalid_plan_file_does_not_hide_the_others(plans: Path) -> None:
    broken = (plans / "b-plan.yml").read_text().replace("target_network: dr-db", "target_network: dr-dbx")
    (plans / "b-plan.yml").write_text(broken)
    catalogue = load_catalogue(plans / "inventory.yaml", plans)
    assert catalogue.plan("app-dr").name == "app-dr"
    with pytest.raises(PlanInvalid) as caught:
        catalogue.plan("app-dr-2")
    (error,) = caught.value.errors
    assert error.field == "groups[0].vms[0].nics[0].target_network"
    assert str(caught.value) == f"plan 'app-dr-2' is invalid: {error}"
    entry = catalogue.entry("app-dr-2")
    assert entry.plan is None and entry.errors == [error]


def test_an_invalid_inventory_fails_every_lookup(plans: Path) -> None:
    inventory = plans / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace("kind: Inventory", "kind: Inventory\nsurprise: 1"))
    with pytest.raises(InventoryInvalid) as caught:
        load_catalogue(inventory, plans)
    (error,) = caught.value.errors
    assert "unknown key 'surprise'" in error.message
    assert str(caught.value) == f"inventory is invalid: {error}"
    with pytest.raises(InventoryInvalid):  # a cached failure is raised again, not forgotten
        load_catalogue(inventory, plans)


def test_cached_until_a_file_changes(plans: Path) -> None:
    inventory = plans / "inventory.yaml"
    catalogue = load_catalogue(inventory, plans)
    plan = catalogue.plan("app-dr")
    again = load_catalogue(inventory, plans)
    assert again is catalogue
    assert again.plan("app-dr") is plan  # a plan file is validated once per catalogue

    _bump(plans / "a-plan.yaml", (plans / "a-plan.yaml").read_text().replace("name: app-dr", "name: app-x"))
    changed = load_catalogue(inventory, plans)
    assert changed is not catalogue
    assert changed.names() == ["app-x", "app-dr-2"]

    (plans / "d-plan.yaml").write_text((plans / "b-plan.yml").read_text().replace("app-dr-2", "app-dr-3"))
    added = load_catalogue(inventory, plans)
    assert added is not changed and "app-dr-3" in added.names()

    (plans / "d-plan.yaml").unlink()
    assert "app-dr-3" not in load_catalogue(inventory, plans).names()


def test_a_changed_inventory_rebuilds_the_catalogue(plans: Path) -> None:
    inventory = plans / "inventory.yaml"
    catalogue = load_catalogue(inventory, plans)
    _bump(inventory, inventory.read_text() + "\n# touched\n")
    assert load_catalogue(inventory, plans) is not catalogue
