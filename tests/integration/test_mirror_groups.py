"""Mirrors of a consistency group's store on the lab's S3 (moto) and Azure (Azurite), under prefixes
of their own, through the real activities (ActivityEnvironment):

- the group point reaches the mirror once every member is verified there;
- points mirrored before configurations were copied get theirs back-filled (only what is missing),
  and until then a recovery from the mirror is refused naming the missing configuration;
- with the S3 endpoint gone (a port nothing listens on: the region is gone), the group's point is
  chosen from the mirror, every member reads the mirror, and the disks restore byte-identical;
- ``from_mirror`` chooses the mirror while S3 answers;
- retention removes from the mirror what it removes from the store, group points included.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.context import SiteContext
from activities.mirror import MirrorActivities
from activities.replica import RetentionActivities
from activities.target import RecoveryActivities
from seawall.blockstore.groups import new_group_point
from seawall.blockstore.layout import config_key
from seawall.contract.messages import GroupPointsRequest, RecoverVMInput, VMRef
from seawall.lab import LabInfo
from seawall.model import Inventory
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from seawall.sites.replica import open_mirror, open_repository
from tests.datapath_scenario import BytesSource
from tests.integration.replication_env import write_inventory

pytestmark = pytest.mark.lab

MEMBERS = ["db-01", "app-01"]
CONFIG = b'{"kind": "raw", "machine": null}'


class Mirrored:
    def __init__(self, lab: LabInfo, tmp: Path) -> None:
        self.path = write_inventory(
            tmp, Path(lab.state_dir), s3_prefix=f"mgroup-{uuid.uuid4().hex[:8]}/", lab=lab
        )
        self.data = yaml.safe_load(self.path.read_text())
        for store in self.data["replica_stores"]:
            if store["name"] == "s3":
                store["mirror"] = "azure"
        for vm in self.data["protected_vms"]:
            vm["replica_store"] = "s3"
            if vm["name"] in MEMBERS:
                vm["policy"] = "rpo-5m"
        for pol in self.data["policies"]:
            pol["retention_count"], pol["retention_hours"] = 2, None
        self.data["consistency_groups"] = [{"name": "erp", "policy": "rpo-5m", "vms": MEMBERS}]
        self.path.write_text(yaml.safe_dump(self.data, sort_keys=False))
        self.inv = load_inventory(self.path)
        self.primary = open_repository(self.inv, "s3", self.inv.policy("rpo-5m"))
        opened = open_mirror(self.inv, self.primary, "s3")
        assert opened is not None and opened[0] == "azure"
        self.far = opened[1]
        self.disks: dict[tuple[str, str], bytes] = {}

    def group_point(self, pid: str) -> None:
        """Every member's point (configuration recorded), verified, then the group point."""
        for vm in MEMBERS:
            disk = os.urandom(256 * 1024)
            self.disks[(vm, pid)] = disk
            shipped = self.primary.ship(BytesSource(disk), vm, "disk0")
            self.primary.commit_point(vm, pid, [shipped], source_config=("raw", CONFIG))
            assert self.primary.verify_point(vm, pid).ok
        self.primary.groups.commit(new_group_point("erp", pid, MEMBERS, False, ("a", "b"), []))

    def mirror(self, vm: str) -> Any:
        ctx = SiteContext(self.inv, "primary")
        return ActivityEnvironment().run(MirrorActivities(ctx).mirror_points, VMRef(vm=vm))

    def target(self, inv: Inventory | None = None) -> RecoveryActivities:
        return RecoveryActivities(SiteContext(inv or self.inv, "dr"), Settings(inventory=self.path))

    def s3_gone(self, tmp: Path) -> Inventory:
        """The same inventory with the S3 endpoint on a port nothing listens on."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        data = yaml.safe_load(self.path.read_text())
        for store in data["replica_stores"]:
            if store["name"] == "s3":
                store["endpoint_url"] = f"http://127.0.0.1:{dead}"
        down = tmp / "down.yaml"
        down.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_inventory(down)


@pytest.fixture
def mirrored(lab: LabInfo, tmp_path: Path) -> Iterator[Mirrored]:
    m = Mirrored(lab, tmp_path)
    try:
        yield m
    finally:
        for repo in (m.primary, m.far):
            for k in list(repo.store.list()):
                repo.store.delete(k)


def run(fn: Any, arg: Any) -> Any:
    return ActivityEnvironment().run(fn, arg)


def test_group_points_reach_the_mirror_and_configs_are_backfilled(mirrored: Mirrored) -> None:
    m = mirrored
    m.group_point("g1")
    first = m.mirror("db-01")
    # Only db-01 is in the mirror: its group point is not whole there yet.
    assert (first.mirrored, first.group_points) == (["g1"], 0) and m.far.groups.list("erp") == []
    second = m.mirror("app-01")
    assert (second.mirrored, second.group_points, second.lag) == (["g1"], 1, 0)
    assert [g.point_id for g in m.far.groups.list("erp")] == ["g1"]

    # As a mirror filled before configurations were copied with points left it.
    for vm in MEMBERS:
        m.far.store.delete(config_key(vm, "g1"))
    inp = RecoverVMInput(plan="p", run="r", mode="test", vm="db-01", target_site="dr", from_mirror=True)
    with pytest.raises(ApplicationError) as err:
        run(m.target().choose_point, inp)
    assert err.value.type == "ConfigMissing" and "'configs/db-01/g1'" in str(err.value)
    assert "'azure' (the mirror of 's3')" in str(err.value)
    # The next pass copies exactly the missing configurations; the one after copies nothing.
    for vm in MEMBERS:
        done = m.mirror(vm)
        assert (done.configs_backfilled, done.mirrored, done.bytes_copied) == (["g1"], [], 0)
        assert m.far.read_source_config(vm, "g1") == m.primary.read_source_config(vm, "g1") == CONFIG
    again = m.mirror("db-01")
    assert (again.configs_backfilled, again.mirrored, again.bytes_copied) == ([], [], 0)
    chosen = run(m.target().choose_point, inp)
    assert (chosen.point_id, chosen.store) == ("g1", "azure")


def test_a_group_recovers_from_the_mirror_when_s3_is_gone_and_retention_applies_to_both(
    mirrored: Mirrored, tmp_path: Path
) -> None:
    m = mirrored
    for pid in ("g1", "g2"):
        m.group_point(pid)
    for vm in MEMBERS:
        m.mirror(vm)
    m.group_point("g3")  # not mirrored yet: the mirror lags one group point
    req = GroupPointsRequest(plan="erp-dr", groups={"erp": MEMBERS})
    up = run(m.target().choose_group_points, req)
    assert up.groups == {"erp": "g3"} and up.stores == dict.fromkeys(MEMBERS, "s3")
    # The operator (or the plan) says: the mirror, although S3 answers.
    forced = run(m.target().choose_group_points, req.model_copy(update={"from_mirror": True}))
    assert forced.groups == {"erp": "g2"} and forced.stores == dict.fromkeys(MEMBERS, "azure")

    down = m.s3_gone(tmp_path)
    target = m.target(down)
    chosen = run(target.choose_group_points, req)
    assert chosen.groups == {"erp": "g2"} and chosen.stores == dict.fromkeys(MEMBERS, "azure")
    for vm in MEMBERS:
        inp = RecoverVMInput(
            plan="erp-dr", run="r", mode="test", vm=vm, target_site="dr", point_id="g2", store="azure"
        )
        point = run(target.choose_point, inp)
        assert (point.point_id, point.store) == ("g2", "azure")
        out = tmp_path / f"{vm}.raw"
        target._repository(vm, point.store).restore_disk(vm, "g2", "disk0", out)
        assert out.read_bytes() == m.disks[(vm, "g2")]

    # Back: the next passes catch up, then retention (keep 2) removes g1 from both stores, and the
    # group point g1 goes from the mirror with its members.
    for vm in MEMBERS:
        assert m.mirror(vm).lag == 0
    ctx = SiteContext(m.inv, "primary")
    for vm in MEMBERS:
        out = run(RetentionActivities(ctx).apply_retention, VMRef(vm=vm))
        assert out.deleted == ["g1"]
        assert [p.point_id for p in m.primary.list_points(vm)] == ["g2", "g3"]
        assert [p.point_id for p in m.far.list_points(vm)] == ["g2", "g3"]
    m.mirror("db-01")
    assert [g.point_id for g in m.far.groups.list("erp")] == ["g2", "g3"]
