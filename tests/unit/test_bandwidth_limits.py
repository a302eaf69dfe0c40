"""Bandwidth limits: the model (bare int and rich form, errors naming file and field), the choice by time
of day on an injected clock, the seed limit, the share arithmetic of the coordinator and the buckets a
ship draws from."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.blockstore.bandwidth import ThrottledStore, shared_bucket
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.contract.bandwidth import EXPIRE_S, BandwidthClaim, apply_claim, grant_for
from seawall.contract.heartbeats import ShipHeartbeat
from seawall.contract.messages import CycleResult
from seawall.control.capacity import vm_capacity
from seawall.control.status import CycleRun, VMStatus, vm_state
from seawall.model.bandwidth import BandwidthPolicy
from seawall.model.inventory import Inventory
from seawall.plans import load_inventory
from seawall.plans.errors import PlanValidationError
from seawall.sites.replica import limit_scopes, throttled

REPO_ROOT = Path(__file__).resolve().parents[2]
# The day of the week matters: 2026-11-30 is a Monday.
MON_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

RICH = """\
    bandwidth_limit:
      bytes_per_s: 20000000
      seed_bytes_per_s: 5000000
      timezone: Europe/Berlin
      schedule:
        - {from: "08:00", to: "18:00", bytes_per_s: 4000000, days: [mon, tue, wed, thu, fri]}
        - {from: "22:00", to: "06:00", bytes_per_s: 90000000}
"""


def write_inventory(tmp_path: Path, site_limit: str = "", vm_limit: str = "") -> Path:
    text = (REPO_ROOT / "tests/data/plans/good/inventory.yaml").read_text()
    if site_limit:
        text = text.replace("    datastore: ds-primary\n", "    datastore: ds-primary\n" + site_limit, 1)
    if vm_limit:
        entry = (
            "  - {name: db-01, source_site: primary, policy: rpo-5m, replica_store: local,"
            " target_sites: [dr, aws]"
        )
        text = text.replace(entry + "}", f"{entry}, bandwidth_limit: {vm_limit}}}")
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "replica.key").write_bytes(os.urandom(32))
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, **kw: str) -> Inventory:
    return load_inventory(write_inventory(tmp_path, **kw))


def errors(tmp_path: Path, **kw: str) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        load(tmp_path, **kw)
    return [str(e) for e in caught.value.errors]


# --- the model --------------------------------------------------------------------------------------


def test_a_bare_int_is_still_a_limit(tmp_path: Path) -> None:
    inv = load(tmp_path, site_limit="    bandwidth_limit: 2000000\n", vm_limit="3000000")
    site = inv.site("primary").bandwidth_limit
    assert site is not None and site.bytes_per_s == 2000000 and site.rate_at(MON_NOON) == 2000000
    vm = inv.protected_vm("db-01").bandwidth_limit
    assert vm is not None and vm.rate_at(MON_NOON, seed=True) == 3000000
    assert inv.protected_vm("app-01").bandwidth_limit is None


def test_the_rich_form_loads(tmp_path: Path) -> None:
    limit = load(tmp_path, site_limit=RICH).site("primary").bandwidth_limit
    assert limit is not None and limit.timezone == "Europe/Berlin" and len(limit.schedule) == 2
    assert limit.lowest() == 4000000 and limit.lowest(seed=True) == 4000000


@pytest.mark.parametrize(
    ("limit", "field", "words"),
    [
        ("    bandwidth_limit: 1000\n", "bandwidth_limit.bytes_per_s", "greater than or equal to 65536"),
        ('    bandwidth_limit: "fast"\n', "bandwidth_limit", "valid dictionary"),
        ("    bandwidth_limit: {bytes_per_s: 2000000, timezone: Mars/X}\n", "timezone", "unknown time zone"),
        ("    bandwidth_limit: {seed_bytes_per_s: 9000000, bytes_per_s: 2000000}\n", "limit", "above"),
        ("    bandwidth_limit: {}\n", "bandwidth_limit", "set bytes_per_s"),
        ("    bandwidth_limit: {bytes_per_s: 2000000, burst: 3}\n", "burst", "unknown key"),
        (
            '    bandwidth_limit: {schedule: [{from: "25:00", to: "06:00", bytes_per_s: 100000}]}\n',
            "schedule[0].from",
            "not a time of day",
        ),
        (
            # YAML reads an unquoted 18:00 as the sexagesimal number 1080 (08:00 stays a string).
            "    bandwidth_limit: {schedule: [{from: 08:00, to: 18:00, bytes_per_s: 100000}]}\n",
            "schedule[0].to",
            "in quotes",
        ),
        (
            '    bandwidth_limit: {schedule: [{from: "08:00", to: "08:00", bytes_per_s: 100000}]}\n',
            "schedule[0]",
            "is empty",
        ),
        (
            '    bandwidth_limit: {schedule: [{from: "8:00", to: "09:00", bytes_per_s: 99999, days: [x]}]}\n',
            "days[0]",
            "'mon'",
        ),
    ],
)
def test_bad_limits_name_file_and_field(tmp_path: Path, limit: str, field: str, words: str) -> None:
    found = errors(tmp_path, site_limit=limit)
    assert found, "the bad limit was accepted"
    line = found[0]
    assert "inventory.yaml:" in line and "sites[0]" in line and field in line and words in line, found


def test_a_bad_vm_limit_names_the_vm_entry(tmp_path: Path) -> None:
    found = errors(tmp_path, vm_limit="{bytes_per_s: 10}")
    assert any("protected_vms[0].bandwidth_limit.bytes_per_s" in e for e in found), found


# --- time of day and seeds ----------------------------------------------------------------------------


def policy() -> BandwidthPolicy:
    return BandwidthPolicy.model_validate(
        {
            "bytes_per_s": 20_000_000,
            "seed_bytes_per_s": 5_000_000,
            "timezone": "Europe/Berlin",
            "schedule": [
                {"from": "08:00", "to": "18:00", "bytes_per_s": 4_000_000, "days": ["mon", "fri"]},
                {"from": "22:00", "to": "06:00", "bytes_per_s": 90_000_000, "days": ["sun"]},
            ],
        }
    )


@pytest.mark.parametrize(
    ("when", "rate"),
    [
        (datetime(2026, 11, 30, 7, 0, tzinfo=UTC), 4_000_000),  # Monday 08:00 in Berlin: window opens
        (datetime(2026, 11, 30, 6, 59, tzinfo=UTC), 20_000_000),  # 07:59 Berlin
        (datetime(2026, 11, 30, 17, 0, tzinfo=UTC), 20_000_000),  # 18:00 Berlin: window closed
        (datetime(2026, 12, 1, 12, 0, tzinfo=UTC), 20_000_000),  # Tuesday: not one of its days
        (datetime(2026, 12, 4, 12, 0, tzinfo=UTC), 4_000_000),  # Friday
        (datetime(2026, 11, 29, 22, 30, tzinfo=UTC), 90_000_000),  # Sunday 23:30 Berlin
        (datetime(2026, 11, 30, 3, 0, tzinfo=UTC), 90_000_000),  # Monday 04:00: Sunday's night window
        (datetime(2026, 12, 1, 3, 0, tzinfo=UTC), 20_000_000),  # Tuesday 04:00: Monday has no night window
    ],
)
def test_the_window_of_the_local_time_applies(when: datetime, rate: int) -> None:
    assert policy().rate_at(when) == rate


def test_a_seed_gets_the_lower_of_its_limit_and_the_window() -> None:
    p = policy()
    assert p.rate_at(MON_NOON, seed=True) == 4_000_000  # the window is lower than the seed limit
    assert p.rate_at(datetime(2026, 12, 1, 12, 0, tzinfo=UTC), seed=True) == 5_000_000
    only_seeds = BandwidthPolicy(seed_bytes_per_s=1_000_000)
    assert only_seeds.rate_at(MON_NOON) is None and only_seeds.rate_at(MON_NOON, seed=True) == 1_000_000


def test_outside_every_window_without_a_default_is_unlimited() -> None:
    p = BandwidthPolicy.model_validate(
        {"schedule": [{"from": "08:00", "to": "18:00", "bytes_per_s": 100_000}]}
    )
    assert p.rate_at(datetime(2026, 11, 30, 9, 0, tzinfo=UTC)) == 100_000
    assert p.rate_at(datetime(2026, 11, 30, 19, 0, tzinfo=UTC)) is None


# --- the coordinator's share arithmetic ---------------------------------------------------------------


def claim(member: str, **kw: object) -> BandwidthClaim:
    return BandwidthClaim.model_validate({"member": member, "limit": 20e6, **kw})


def test_shares_split_the_total_and_a_silent_process_drops_out() -> None:
    t0 = MON_NOON
    members = apply_claim({}, claim("p1"), t0)
    assert grant_for(members, claim("p1")).share == 20e6
    members = apply_claim(members, claim("p2"), t0 + timedelta(seconds=1))
    g = grant_for(members, claim("p2"))
    assert g.share == 10e6 and g.members == 2
    # p1 stops renewing: after EXPIRE_S p2 has the whole limit again.
    later = t0 + timedelta(seconds=EXPIRE_S + 0.5)
    members = apply_claim(members, claim("p2"), later)
    assert list(members) == ["p2"] and grant_for(members, claim("p2")).share == 20e6


def test_a_process_that_stops_leaves_at_once_and_the_lowest_limit_wins() -> None:
    members = apply_claim({}, claim("p1"), MON_NOON)
    members = apply_claim(members, claim("p2", limit=4e6), MON_NOON)
    assert grant_for(members, claim("p1")).share == 2e6  # p2 saw the business-hours window already
    members = apply_claim(members, claim("p2", shipping=False), MON_NOON)
    assert list(members) == ["p1"]


def test_seed_shares_split_over_the_seeding_processes_only() -> None:
    members = apply_claim({}, claim("p1", seeding=True, seed_limit=6e6), MON_NOON)
    members = apply_claim(members, claim("p2", seed_limit=6e6), MON_NOON)
    members = apply_claim(members, claim("p3", seeding=True, seed_limit=6e6), MON_NOON)
    g = grant_for(members, claim("p3", seeding=True, seed_limit=6e6))
    assert g.share == pytest.approx(20e6 / 3) and g.seed_share == 3e6 and g.seeding_members == 2


def test_a_claim_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        BandwidthClaim(member="", limit=1.0)
    with pytest.raises(ValueError):
        BandwidthClaim(member="p", limit=-5)


# --- the buckets a ship draws from ---------------------------------------------------------------------


def test_a_ship_draws_from_site_store_vm_and_seed_buckets(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        site_limit="    bandwidth_limit: {bytes_per_s: 8000000, seed_bytes_per_s: 2000000}\n",
        vm_limit="3000000",
    )
    scopes = limit_scopes(inv, "local", "primary", "db-01")
    assert [(s.name, s.coordinated) for s in scopes] == [("site:primary", True), ("vm:db-01", False)]
    store = throttled(inv, DirectoryStore(tmp_path / "s"), "local", "primary", vm="db-01", seed=True)
    assert isinstance(store, ThrottledStore) and len(store.buckets) == 3  # site, site seed, vm
    store.put("packs/aa/1", b"x" * 1000)
    # Without a coordinator in this process, each bucket runs at its limit at this time of day.
    assert shared_bucket("site:primary").rate == 8000000
    assert shared_bucket("site:primary:seed").rate == 2000000
    assert shared_bucket("vm:db-01").rate == 3000000
    incremental = throttled(inv, DirectoryStore(tmp_path / "s"), "local", "primary", vm="app-01")
    assert isinstance(incremental, ThrottledStore) and len(incremental.buckets) == 1


# --- capacity and status ------------------------------------------------------------------------------


def _cycles(per_cycle: int) -> list[CycleRun]:
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    out = []
    for i in range(1, 4):
        at = start + timedelta(minutes=5 * i)
        result = CycleResult(
            vm="db-01",
            point_id=f"p{i}",
            parent=f"p{i - 1}",
            started_at=at.isoformat(),
            finished_at=(at + timedelta(seconds=10)).isoformat(),
            change_path="cbt",
            bytes_read=per_cycle,
            bytes_shipped=per_cycle,
            verified=True,
            retention_deleted=[],
        )
        out.append(
            CycleRun(
                workflow_id=f"c{i}",
                run_id=f"r{i}",
                status="COMPLETED",
                started_at=at,
                closed_at=at + timedelta(seconds=10),
                result=result,
            )
        )
    return out


def test_capacity_judges_the_tightest_window_and_the_vms_own_limit(tmp_path: Path) -> None:
    # Need: 60 MiB per 300 s = 204.8 KiB/s. The site gives 1 MB/s, but only 100 KiB/s in office hours.
    window = (
        "    bandwidth_limit:\n      bytes_per_s: 1000000\n      schedule:\n"
        '        - {from: "08:00", to: "18:00", bytes_per_s: 102400, days: [mon, tue]}\n'
    )
    inv = load(tmp_path, site_limit=window)
    cap = vm_capacity(inv, "db-01", 300.0, _cycles(60 * 1024 * 1024))
    assert cap.under_provisioned and cap.limit_bps == 102400 and cap.limit_scope == "site:primary"
    assert cap.reason is not None and "08:00-18:00 mon,tue UTC" in cap.reason
    # A VM's own limit below its need flags it too; a seed-only limit does not bind incrementals.
    inv = load(tmp_path, vm_limit="{bytes_per_s: 100000, seed_bytes_per_s: 70000}")
    cap = vm_capacity(inv, "db-01", 300.0, _cycles(60 * 1024 * 1024))
    assert cap.under_provisioned and cap.limit_scope == "vm:db-01"
    inv = load(tmp_path, vm_limit="{seed_bytes_per_s: 70000}")
    assert not vm_capacity(inv, "db-01", 300.0, _cycles(60 * 1024 * 1024)).limits


def test_a_ship_waiting_on_its_limit_is_throttled() -> None:
    assert ShipHeartbeat(shipping_s=60, throttled_s=30).throttled
    assert not ShipHeartbeat(shipping_s=60, throttled_s=2).throttled  # a few waits: not held back
    assert not ShipHeartbeat(shipping_s=3, throttled_s=0.5).throttled
    base = {
        "vm": "db-01",
        "source_site": "primary",
        "policy": "rpo-5m",
        "rpo_s": 300.0,
        "threshold_s": 450.0,
        "scheduled": True,
        "paused": False,
        "last_point": "p1",
        "last_point_at": MON_NOON,
        "age_s": 60.0,
        "breach": False,
        "last_bytes_shipped": 1,
        "last_change_path": "cbt",
        "running": "cycle-2",
        "progress": None,
    }
    assert vm_state(VMStatus.model_validate({**base, "throttled": True})) == "throttled"
    assert vm_state(VMStatus.model_validate(base)) == "replicating"
    # A breach is told first: the throttle is why, the breach is what to act on.
    assert vm_state(VMStatus.model_validate({**base, "throttled": True, "breach": True})) == "breach"
