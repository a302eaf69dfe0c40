"""The seed-burst benchmark's set-up and arithmetic (the benchmark itself needs the lab:
``python -m benchmarks.seedburst --vms 4 --burst 6 --duration-s 60`` is its smoke run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.fleet import vm_name, write_fleet
from benchmarks.seedburst import _figures, add_burst, main
from seawall.plans import load_inventory


def test_the_burst_gets_full_disks_and_a_seed_limit_the_inventory_accepts(tmp_path: Path) -> None:
    inventory = write_fleet(tmp_path, 5, disk_bytes=64 * 1024, interval_s=30, site="b", prefix="b")
    burst = [vm_name(i, "b") for i in (3, 4)]
    add_burst(inventory, tmp_path, burst, 1024 * 1024, 128 * 1024)
    inv = load_inventory(inventory)
    for i in range(5):
        vm = inv.protected_vm(vm_name(i, "b"))
        disk = (tmp_path / "site" / vm.name / "disk0.img").read_bytes()
        if vm.name in burst:
            assert vm.bandwidth_limit is not None and vm.bandwidth_limit.seed_bytes_per_s == 128 * 1024
            assert len(disk) == 1024 * 1024 and disk.count(0) < len(disk) // 100  # random, no sparse tail
        else:
            assert vm.bandwidth_limit is None and len(disk) == 64 * 1024


def test_figures_count_misses_per_vm_and_interval() -> None:
    t = datetime(2026, 12, 2, tzinfo=UTC)
    completed = {"a": [t, t, t], "b": [t], "c": []}
    got = _figures([1.0, 2.0, 3.0, 50.0], completed, 95.0, 30)
    assert got["cycles_expected"] == 9 and got["cycles_completed"] == 4
    assert got["missed_rpo"] == 0 + 2 + 3
    assert got["latency_s"]["p99"] == 50.0


def test_refuses_an_interval_policies_refuse() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--interval-s", "10", "--temporal", "127.0.0.1:1"])
    assert exc.value.code == 2
