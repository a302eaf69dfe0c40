"""Capacity arithmetic from made-up cycles: the change rate, the bandwidth the RPO needs, the limit that
applies (site or store, the tighter), and a shared bucket whose VMs together need more than it gives."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.contract.messages import CycleResult
from seawall.control.capacity import percentile, shared_buckets, vm_capacity
from seawall.control.status import CycleRun
from seawall.model import Inventory
from seawall.plans import load_inventory

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MiB = 1024 * 1024


def inventory(tmp_path: Path, site_limit: int | None = None, store_limit: int | None = None) -> Inventory:
    text = (REPO_ROOT / "tests/data/plans/good/inventory.yaml").read_text()
    if site_limit is not None:
        limited = f"    datastore: ds-primary\n    bandwidth_limit: {site_limit}\n"
        text = text.replace("    datastore: ds-primary\n", limited, 1)
    if store_limit is not None:
        text = text.replace("    path: replica\n", f"    path: replica\n    bandwidth_limit: {store_limit}\n")
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "replica.key").write_bytes(os.urandom(32))
    (tmp_path / "inventory.yaml").write_text(text)
    return load_inventory(tmp_path / "inventory.yaml")


def run(i: int, shipped: int, *, parent: bool = True, ship_s: float = 10.0, ok: bool = True) -> CycleRun:
    started = T0 + timedelta(minutes=5 * i)
    result = CycleResult(
        vm="db-01",
        point_id=f"p{i}",
        parent=f"p{i - 1}" if parent else None,
        started_at=started.isoformat(),
        finished_at=(started + timedelta(seconds=ship_s)).isoformat(),
        change_path="cbt",
        bytes_read=shipped,
        bytes_shipped=shipped,
        verified=True,
        retention_deleted=[],
    )
    return CycleRun(
        workflow_id=f"cycle-{i}",
        run_id=f"r{i}",
        status="COMPLETED" if ok else "FAILED",
        started_at=started,
        closed_at=started + timedelta(seconds=ship_s),
        result=result if ok else None,
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5], 0.9) == 5
    assert percentile(list(range(1, 11)), 0.9) == 9
    assert percentile([1, 100], 0.9) == 100
    assert percentile([3, 1, 2], 0.5) == 2


def test_change_rate_and_need_exclude_the_seed_and_failed_cycles(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    # The seed ships 1 GiB; it says nothing about the rate of change. A failed cycle shipped nothing.
    history = [run(0, 1024 * MiB, parent=False)]
    history += [run(i, n * MiB) for i, n in enumerate([30, 60, 30, 30, 30, 30, 30, 30, 30, 90], start=1)]
    history.append(run(11, 0, ok=False))
    cap = vm_capacity(inv, "db-01", 300.0, history)
    assert cap.cycles == 10
    assert cap.bytes_max == 90 * MiB and cap.bytes_p90 == 60 * MiB
    assert cap.change_rate_bps == pytest.approx(390 * MiB / 10 / 300)
    assert cap.needed_bps == pytest.approx(60 * MiB / 300)
    # 390 MiB shipped in 10 cycles of 10 s each.
    assert cap.observed_bps == pytest.approx(390 * MiB / 100)
    assert cap.limits == [] and cap.limit_bps is None and not cap.under_provisioned and cap.reason is None


def test_no_incremental_cycle_yet_is_no_data_not_a_flag(tmp_path: Path) -> None:
    inv = inventory(tmp_path, site_limit=64 * 1024)
    cap = vm_capacity(inv, "db-01", 300.0, [run(0, 1024 * MiB, parent=False)])
    assert cap.cycles == 0 and cap.needed_bps is None and cap.change_rate_bps is None
    assert cap.limit_bps == 64 * 1024 and not cap.under_provisioned


def test_the_tighter_limit_applies_and_flags_when_below_the_need(tmp_path: Path) -> None:
    # Need: 60 MiB per 300 s = 204.8 KiB/s. Site 1 MB/s is enough; the store's 100 KiB/s is not.
    inv = inventory(tmp_path, site_limit=1_000_000, store_limit=100 * 1024)
    history = [run(i, 60 * MiB) for i in range(1, 4)]
    cap = vm_capacity(inv, "db-01", 300.0, history)
    assert [(lim.scope, lim.bytes_per_s) for lim in cap.limits] == [
        ("site:primary", 1_000_000),
        ("store:local", 100 * 1024),
    ]
    assert (cap.limit_scope, cap.limit_bps) == ("store:local", 100 * 1024)
    assert cap.under_provisioned
    assert cap.reason is not None and "store:local" in cap.reason and "100.0 KiB/s" in cap.reason
    assert "204.8 KiB/s" in cap.reason

    # A limit just above the need is fine; a shorter interval (same bytes) needs more and is not.
    roomy = inventory(tmp_path, store_limit=210 * 1024)
    assert not vm_capacity(roomy, "db-01", 300.0, history).under_provisioned
    assert vm_capacity(roomy, "db-01", 60.0, history).under_provisioned


def test_the_schedule_site_after_a_reprotect_is_the_one_whose_limit_applies(tmp_path: Path) -> None:
    inv = inventory(tmp_path, site_limit=64 * 1024)  # primary's limit only
    history = [run(1, 60 * MiB)]
    assert vm_capacity(inv, "db-01", 300.0, history).under_provisioned
    reversed_ = vm_capacity(inv, "db-01", 300.0, history, site="dr")
    assert reversed_.source_site == "dr" and reversed_.limits == [] and not reversed_.under_provisioned
    # A schedule naming a site the inventory does not know falls back to the inventory's source.
    assert vm_capacity(inv, "db-01", 300.0, history, site="gone").source_site == "primary"


def test_a_shared_bucket_is_judged_against_the_sum_of_its_vms(tmp_path: Path) -> None:
    # Each VM needs 30 MiB / 300 s = 102.4 KiB/s; the store gives 150 KiB/s to both together.
    inv = inventory(tmp_path, store_limit=150 * 1024)
    history = [run(i, 30 * MiB) for i in range(1, 4)]
    rows = [vm_capacity(inv, vm, 300.0, history) for vm in ("db-01", "app-01")]
    assert not any(r.under_provisioned for r in rows)
    shared_buckets(rows)
    assert all(r.under_provisioned for r in rows)
    reason = rows[0].reason
    assert reason is not None and "shared by 2 VMs" in reason and "204.8 KiB/s" in reason
    # One VM alone in the bucket is not flagged by the sum.
    alone = [vm_capacity(inv, "db-01", 300.0, history)]
    shared_buckets(alone)
    assert not alone[0].under_provisioned


def test_a_group_cycle_counts_unless_it_is_the_groups_seed(tmp_path: Path) -> None:
    # A group cycle read as a member's names no parent; its seed is known by its workflow id.
    inv = inventory(tmp_path)

    def as_group(c: CycleRun, workflow_id: str) -> CycleRun:
        assert c.result is not None
        result = c.result.model_copy(update={"parent": None})
        return c.model_copy(update={"workflow_id": workflow_id, "result": result})

    seed = as_group(run(0, 1024 * MiB), "replicate-group/erp/seed-1a2b3c4d")
    cycles = [as_group(run(i, 30 * MiB), f"replicate-group/erp-2026-12-01T12:0{i}:00Z") for i in (1, 2)]
    cap = vm_capacity(inv, "db-01", 300.0, [seed, *cycles])
    assert cap.cycles == 2 and cap.bytes_max == 30 * MiB
