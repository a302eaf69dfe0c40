"""The workers' inventory loader: parsed once while the file is unchanged, again after any edit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from activities.protection import InventoryActivities
from benchmarks.fleet import write_fleet
from seawall.contract.messages import ProtectInput
from seawall.plans import PlanValidationError
from seawall.plans import cached as cached_module
from seawall.plans.cached import CachedInventory


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every real parse the cache asks for, by path."""
    seen: list[Path] = []
    real = cached_module.load_inventory

    def counting(path: str | Path) -> object:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(cached_module, "load_inventory", counting)
    return seen


def _set_interval(path: Path, interval: str) -> None:
    data = yaml.safe_load(path.read_text())
    data["policies"][0]["interval"] = interval
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_unchanged_file_is_parsed_once(tmp_path: Path, parses: list[Path]) -> None:
    path = write_fleet(tmp_path, 20, disk_bytes=4096)
    load = CachedInventory(path)
    first = load()
    assert [load() for _ in range(50)] == [first] * 50
    assert all(again is first for again in (load(), load()))
    assert len(parses) == 1
    assert len(first.protected_vms) == 20


def test_edit_in_place_is_seen_at_the_next_call(tmp_path: Path, parses: list[Path]) -> None:
    path = write_fleet(tmp_path, 5, disk_bytes=4096, interval_s=60)
    load = CachedInventory(path)
    assert load().policy("fleet-rpo").interval.total_seconds() == 60
    # Same length, and the modification time put back: the change time still tells them apart.
    stat = path.stat()
    _set_interval(path, "90s")
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load().policy("fleet-rpo").interval.total_seconds() == 90
    assert len(parses) == 2


def test_atomic_replace_is_seen(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, 5, disk_bytes=4096, interval_s=60)
    load = CachedInventory(path)
    load()
    fresh = tmp_path / "inventory.new.yaml"
    fresh.write_text(path.read_text().replace("name: vm-0004\n", "name: vm-0099\n"))
    os.replace(fresh, path)
    names = [v.name for v in load().protected_vms]
    assert "vm-0099" in names and "vm-0004" not in names


def test_broken_file_raises_every_time_and_a_fix_loads(tmp_path: Path, parses: list[Path]) -> None:
    path = write_fleet(tmp_path, 3, disk_bytes=4096, interval_s=60)
    load = CachedInventory(path)
    load()
    good = path.read_text()
    _set_interval(path, "5s")  # below the 30 s policies allow
    for _ in range(2):
        with pytest.raises(PlanValidationError) as raised:
            load()
        assert "interval" in str(raised.value)
    path.write_text(good)
    assert load().policy("fleet-rpo").interval.total_seconds() == 60
    assert len(parses) == 4  # the good file, the broken one twice (nothing kept), the fix


def test_missing_file_is_the_loaders_error(tmp_path: Path) -> None:
    load = CachedInventory(tmp_path / "nowhere.yaml")
    with pytest.raises(PlanValidationError, match="file not found"):
        load()


def test_resolve_protection_follows_a_policy_edit(tmp_path: Path) -> None:
    """What the cache is for: cycles resolve their protection from it, and an edit still applies to
    the next cycle."""
    path = write_fleet(tmp_path, 4, disk_bytes=4096, interval_s=60)
    acts = InventoryActivities(CachedInventory(path), heartbeat_timeout_s=20, gc_interval_s=3600)
    assert acts.resolve_protection(ProtectInput(vm="vm-0002")).interval_s == 60
    _set_interval(path, "120s")
    assert acts.resolve_protection(ProtectInput(vm="vm-0002")).interval_s == 120
