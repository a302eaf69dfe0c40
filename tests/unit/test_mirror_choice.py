"""Which store a recovery reads, without the lab: directory stores for the VMs' store ("local") and
its mirror ("far"); the store "cannot be reached" by making every read of it fail as a real
unreachable store does (a StoreError from the backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities.context import SiteContext
from activities.pointsource import stores_to_read
from activities.target import RecoveryActivities
from seawall.blockstore.groups import new_group_point
from seawall.blockstore.layout import config_key
from seawall.blockstore.mirror import mirror_vm
from seawall.blockstore.stores.backend import TransientStoreError
from seawall.contract.messages import GroupPointsRequest, RecoverVMInput
from seawall.model import Inventory
from seawall.plans import load_inventory
from seawall.plans.checks import check_plan
from seawall.plans.stores import stores_without_mirror
from seawall.runtime.config import Settings
from seawall.sites.replica import open_mirror, open_repository
from tests.datapath_scenario import BytesSource
from tests.integration.replication_env import EXAMPLES, write_inventory

MEMBERS = ["db-01", "app-01"]


def inventory(tmp: Path, *, mirrored: bool = True) -> tuple[Path, Inventory]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = write_inventory(tmp, tmp / "lab", s3_prefix="unit/")
    data = yaml.safe_load(path.read_text())
    key = tmp / "replica.key"
    key.write_text(os.urandom(32).hex())
    for policy in data["policies"]:
        policy["key_ref"] = f"file:{key}"
    data["replica_stores"].append({"name": "far", "kind": "directory", "path": str(tmp / "far")})
    if mirrored:
        for store in data["replica_stores"]:
            if store["name"] == "local":
                store["mirror"] = "far"
    for vm in data["protected_vms"]:
        vm["replica_store"] = "local"
    data["consistency_groups"] = [{"name": "erp", "policy": "rpo-5m", "vms": MEMBERS}]
    for vm in data["protected_vms"]:
        if vm["name"] in MEMBERS:
            vm["policy"] = "rpo-5m"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, load_inventory(path)


def seed(inv: Inventory, points: list[str], *, mirror_upto: int) -> None:
    """Members' points and group points on the store; the first ``mirror_upto`` also mirrored."""
    primary = open_repository(inv, "local", inv.policy("rpo-5m"))
    opened = open_mirror(inv, primary, "local")
    assert opened is not None
    for i, pid in enumerate(points):
        for n, vm in enumerate(MEMBERS):
            shipped = primary.ship(BytesSource(bytes([i * 2 + n + 1]) * 65536), vm, "disk0")
            primary.commit_point(vm, pid, [shipped], source_config=("raw", b'{"kind": "raw"}'))
            assert primary.verify_point(vm, pid).ok
        primary.groups.commit(new_group_point("erp", pid, MEMBERS, False, ("a", "b"), []))
        if i < mirror_upto:
            for vm in MEMBERS:
                mirror_vm(primary, opened[1], vm, ["erp"])


class Unreachable:
    """Every call fails as a store whose region is gone."""

    def __getattr__(self, name: str) -> Any:
        def fail(*_: object, **__: object) -> Any:
            raise TransientStoreError("connect timeout: the region is gone")

        return fail


def target(path: Path, inv: Inventory, down: set[str]) -> RecoveryActivities:
    acts = RecoveryActivities(SiteContext(inv, "dr"), Settings(inventory=path, plans_dir=EXAMPLES))
    real = acts._repository

    def repository(vm: str, store: str | None = None) -> Any:
        repo = real(vm, store)
        if (store or inv.protected_vm(vm).replica_store) in down:
            repo.store = Unreachable()
            repo._points._store = Unreachable()
            repo.groups._store = Unreachable()
        return repo

    acts._repository = repository  # type: ignore[method-assign]
    return acts


def test_the_stores_a_vm_is_read_from(tmp_path: Path) -> None:
    _, inv = inventory(tmp_path)
    assert stores_to_read(inv, "db-01") == ["local", "far"]
    assert stores_to_read(inv, "db-01", store="far") == ["far", "local"]
    assert stores_to_read(inv, "db-01", from_mirror=True) == ["far"]
    _, bare = inventory(tmp_path / "bare", mirrored=False)
    assert stores_to_read(bare, "db-01") == ["local"]
    with pytest.raises(ApplicationError) as err:
        stores_to_read(bare, "db-01", from_mirror=True)
    assert (
        err.value.type == "NoMirror" and err.value.non_retryable and "'local' has no mirror" in str(err.value)
    )


def test_a_group_point_is_chosen_from_the_mirror_when_the_store_is_down(tmp_path: Path) -> None:
    path, inv = inventory(tmp_path)
    seed(inv, ["g1", "g2"], mirror_upto=1)  # the mirror lags by one group point
    req = GroupPointsRequest(plan="erp-dr", groups={"erp": MEMBERS})
    up = target(path, inv, down=set()).choose_group_points(req)
    assert up.groups == {"erp": "g2"} and up.stores == dict.fromkeys(MEMBERS, "local")
    chosen = target(path, inv, down={"local"}).choose_group_points(req)
    # The newest group point the mirror holds whole, and it says so per VM.
    assert chosen.groups == {"erp": "g1"} and chosen.points == dict.fromkeys(MEMBERS, "g1")
    assert chosen.stores == dict.fromkeys(MEMBERS, "far")
    # The operator's choice: the mirror although the store answers.
    forced = target(path, inv, down=set()).choose_group_points(req.model_copy(update={"from_mirror": True}))
    assert forced.stores == dict.fromkeys(MEMBERS, "far") and forced.groups == {"erp": "g1"}
    # Each member then reads that store first, and the chosen point names it.
    acts = target(path, inv, down={"local"})
    for vm in MEMBERS:
        inp = RecoverVMInput(
            plan="erp-dr", run="r", mode="test", vm=vm, target_site="dr", point_id="g1", store="far"
        )
        point = acts.choose_point(inp)
        assert (point.point_id, point.store, point.consistency_group) == ("g1", "far", None)
    # Both down: retried (StoreUnavailable), naming each store and why.
    with pytest.raises(ApplicationError) as err:
        target(path, inv, down={"local", "far"}).choose_group_points(req)
    assert err.value.type == "StoreUnavailable" and not err.value.non_retryable
    assert "store 'local'" in str(err.value) and "store 'far'" in str(err.value)


def test_a_point_without_its_configuration_is_refused_naming_it(tmp_path: Path) -> None:
    path, inv = inventory(tmp_path)
    seed(inv, ["g1"], mirror_upto=1)
    (tmp_path / "far" / config_key("db-01", "g1")).unlink()  # as mirrored before configs were
    inp = RecoverVMInput(plan="erp-dr", run="r", mode="test", vm="db-01", target_site="dr", from_mirror=True)
    with pytest.raises(ApplicationError) as err:
        target(path, inv, down=set()).choose_point(inp)
    text = str(err.value)
    assert err.value.type == "ConfigMissing" and err.value.non_retryable
    assert "'configs/db-01/g1'" in text and "'far' (the mirror of 'local')" in text
    # The next mirror pass back-fills it; then the point is chosen from the mirror.
    primary = open_repository(inv, "local", inv.policy("rpo-5m"))
    opened = open_mirror(inv, primary, "local")
    assert opened is not None
    assert mirror_vm(primary, opened[1], "db-01").configs_backfilled == ["g1"]
    chosen = target(path, inv, down=set()).choose_point(inp)
    assert (chosen.point_id, chosen.store) == ("g1", "far")


def test_plan_check_refuses_from_mirror_for_a_store_without_mirror(tmp_path: Path) -> None:
    _, bare = inventory(tmp_path, mirrored=False)
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    from seawall.model import RecoveryPlan

    body = {k: v for k, v in plan.items() if k not in ("kind", "version", "inventory")}
    model = RecoveryPlan.model_validate({**body, "from_mirror": True})
    problems = [p for p in check_plan(model, bare) if p.loc == ("from_mirror",)]
    assert len(problems) == 1 and "db-01 ('local')" in problems[0].message
    assert stores_without_mirror(model, inventory(tmp_path / "m")[1]) == []


def test_the_mirror_is_opened_with_its_own_object_lock(tmp_path: Path) -> None:
    from datetime import timedelta

    from seawall.blockstore.immutable import ObjectLock

    path, _ = inventory(tmp_path)
    creds = tmp_path / "lab" / "credentials" / "aws.json"
    creds.parent.mkdir(parents=True)
    creds.write_text('{"aws_access_key_id": "test", "aws_secret_access_key": "test"}')
    data = yaml.safe_load(path.read_text())
    for store in data["replica_stores"]:
        if store["name"] == "s3":
            store["object_lock"] = {"mode": "compliance", "period": "30d"}
        if store["name"] == "local":
            store["mirror"] = "s3"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    inv = load_inventory(path)
    primary = open_repository(inv, "local", inv.policy("rpo-5m"))
    assert primary.object_lock is None
    opened = open_mirror(inv, primary, "local")
    assert opened is not None and opened[0] == "s3"
    assert opened[1].object_lock == ObjectLock("compliance", timedelta(days=30))
    assert opened[1].key.key_id == primary.key.key_id
