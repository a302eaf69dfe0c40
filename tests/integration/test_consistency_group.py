"""A consistency group of the ERP tiers (db-01, app-01, web-01) replicated on the lab's vCenter.

Independently of Seawall, a thread reads the three VMs' snapshots from vcsim with pyvmomi while the
group replicates: every group point's three member snapshots exist with creation times inside one
barrier (after its freeze started, before its thaw ran). The freeze hook hangs: it is killed at its
timeout, the thaw still runs, and the points say they are not app-consistent. No snapshot is left
behind. Recovery then chooses one group point for all three members, also for an older time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from activities.context import SiteContext
from activities.target import RecoveryActivities
from seawall.contract.messages import (
    GroupCycleInput,
    GroupCycleResult,
    GroupPointsRequest,
    ProtectGroupResult,
    RecoverVMInput,
)
from seawall.contract.queues import site_queue
from seawall.lab import LabInfo
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from tests.integration.replication_env import EXAMPLES, replication_env, write_inventory

pytestmark = pytest.mark.lab

MEMBERS = ["db-01", "app-01", "web-01"]


class SnapshotWatch:
    """Polls vcsim for the members' snapshots: (vm, snapshot name) -> createTime, as first seen."""

    def __init__(self, lab: LabInfo) -> None:
        site = lab.vsphere["primary"]
        self._connect = lambda: SmartConnect(
            host=site.host, port=site.port, user=site.user, pwd=site.password, protocol="http"
        )
        self.si = self._connect()
        self.seen: dict[tuple[str, str], datetime] = {}
        self.errors: list[str] = []
        self.final: dict[tuple[str, str], datetime] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _vms(self) -> list[Any]:
        content = self.si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        try:
            return list(view.view)
        finally:
            view.Destroy()

    def current(self) -> dict[tuple[str, str], datetime]:
        found: dict[tuple[str, str], datetime] = {}

        def walk(vm: str, trees: Any) -> None:
            for tree in trees or []:
                found[(vm, tree.name)] = tree.createTime
                walk(vm, tree.childSnapshotList)

        # One PropertyCollector read (vcsim's single-property Fetch fails on an unset snapshot).
        content = self.si.RetrieveContent()
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm) for vm in self._vms()],
            propSet=[
                vmodl.query.PropertyCollector.PropertySpec(
                    type=vim.VirtualMachine, pathSet=["name", "snapshot"]
                )
            ],
        )
        for obj in content.propertyCollector.RetrieveContents([spec]):
            props = {p.name: p.val for p in obj.propSet}
            info = props.get("snapshot")
            if props["name"] in MEMBERS:
                walk(props["name"], info.rootSnapshotList if info else [])
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for key, at in self.current().items():
                    self.seen.setdefault(key, at)
            except Exception as exc:  # a snapshot removed mid-read, a dropped connection: read again
                self.errors.append(repr(exc))
                self.si = self._connect()
            time.sleep(0.1)

    def __enter__(self) -> SnapshotWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        Disconnect(self.si)
        self.si = self._connect()
        self.final = self.current()  # what is left once everything ran, on a fresh session
        Disconnect(self.si)


def _inventory(lab: LabInfo, tmp: Path) -> tuple[Path, Path]:
    path = write_inventory(tmp, lab.state_dir, s3_prefix="group-test/", lab=lab)
    data = yaml.safe_load(path.read_text())
    for vm in data["protected_vms"]:
        if vm["name"] in MEMBERS:
            vm["policy"], vm["replica_store"] = "rpo-5m", "local"
    logs = tmp / "hooks"
    logs.mkdir()
    data["consistency_groups"] = [
        {
            "name": "erp",
            "policy": "rpo-5m",
            "vms": MEMBERS,
            # A freeze that hangs: it notes when it started and its pid, then never returns.
            "freeze": {
                "command": [
                    "sh",
                    "-c",
                    f'echo "$SEAWALL_POINT $(date +%s.%N) $$" >> {logs}/freeze; exec sleep 600',
                ],
                "timeout": "2s",
            },
            "thaw": {
                "command": ["sh", "-c", f'echo "$SEAWALL_POINT $(date +%s.%N)" >> {logs}/thaw'],
                "timeout": "10s",
            },
        }
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, logs


def _log(path: Path) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in path.read_text().splitlines()}


async def test_group_points_are_taken_behind_one_barrier_and_recover_together(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    inventory, logs = _inventory(lab, tmp_path)
    with SnapshotWatch(lab) as watch:
        async with replication_env(lab, tmp_path, lab_state_dir, inventory=inventory) as env:
            protected: ProtectGroupResult = await env.client.execute_workflow(
                "ProtectGroup",
                GroupCycleInput(group="erp"),
                id=f"protect-group/erp-{tmp_path.name[-8:]}",
                task_queue=env.settings.orchestration_queue,
                result_type=ProtectGroupResult,
            )
            await env.client.get_schedule_handle(protected.schedule_id).delete()  # one more, by hand
            second: GroupCycleResult = await env.client.execute_workflow(
                "GroupReplicationCycle",
                GroupCycleInput(group="erp"),
                id=f"replicate-group/erp/test-{tmp_path.name[-8:]}",
                task_queue=site_queue("primary"),
                result_type=GroupCycleResult,
            )
            repo = env.repository("db-01")
            group_points = repo.groups.list("erp")
    left = watch.final
    points = [g.point_id for g in group_points]
    assert points == [protected.first_point, second.point_id]
    freeze, thaw = _log(logs / "freeze"), _log(logs / "thaw")
    for gp in group_points:
        assert sorted(gp.vms) == sorted(MEMBERS)
        created = [watch.seen[(vm, f"seawall-{gp.point_id}")] for vm in MEMBERS]
        froze_at, pid = float(freeze[gp.point_id][0]), int(freeze[gp.point_id][1])
        thawed_at = float(thaw[gp.point_id][0])
        # One barrier: every member's snapshot after the freeze began and before the thaw ran.
        assert all(froze_at <= c.timestamp() <= thawed_at for c in created), (froze_at, created, thawed_at)
        # The hung freeze was killed at its 2 s timeout (not waited out), and the point says so.
        assert thawed_at - froze_at < 30
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert not gp.app_consistent and any("timed out" in n for n in gp.notes)
    assert [h.hook for h in second.hooks] == ["freeze", "thaw"]
    assert second.hooks[0].timed_out and second.hooks[1].ok
    # Every snapshot was released: none of the group's is left on any member.
    assert not [k for k in left if k[1].startswith("seawall-")], left

    # Recovery: one group point for all three, the newest, or the one at or before a given time.
    plans = tmp_path / "plans"
    plans.mkdir()
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    plan["inventory"] = str(inventory)
    (plans / "erp-dr.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    settings = Settings(inventory=inventory, plans_dir=plans)
    target = RecoveryActivities(SiteContext(load_inventory(inventory), "dr"), settings)
    newest = target.choose_group_points(GroupPointsRequest(plan="erp-dr", groups={"erp": MEMBERS}))
    assert newest.points == {vm: second.point_id for vm in MEMBERS}
    between = group_points[1].created_at.replace(microsecond=0).isoformat()
    older = target.choose_group_points(
        GroupPointsRequest(plan="erp-dr", groups={"erp": MEMBERS}, point_time=between)
    )
    assert older.points == {vm: protected.first_point for vm in MEMBERS}
    for vm in MEMBERS:
        chosen = target.choose_point(
            RecoverVMInput(
                plan="erp-dr", run="r", mode="test", vm=vm, target_site="dr", point_id=older.points[vm]
            )
        )
        assert (chosen.point_id, chosen.consistency_group, chosen.app_consistent) == (
            protected.first_point,
            "erp",
            False,
        )


async def test_a_drill_recovers_every_member_from_the_same_group_point(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    """The example ERP plan drilled at DR with db-01, app-01 and web-01 in one group: the report names
    one group point for all three, even though db-01 has a newer point of its own (a stray single-VM
    cycle after the group point) that a per-VM choice would have taken."""
    from temporalio.common import WorkflowIDConflictPolicy

    from seawall.contract.messages import (
        ApproveInput,
        CycleInput,
        CycleResult,
        FailoverInput,
        ProtectInput,
        ProtectResult,
        RunReport,
        UnprotectInput,
    )
    from tests.integration.test_recovery import free_offset, stand_ins, wait_progress, write_plan

    inventory, _ = _inventory(lab, tmp_path)
    overrides = {
        "plans_dir": tmp_path / "plans",
        "reports_dir": tmp_path / "reports",
        "health_check_redirect": "127.0.0.1",
        "health_check_port_offset": free_offset(),
    }
    async with replication_env(
        lab,
        tmp_path,
        lab_state_dir,
        inventory=inventory,
        sites=("primary", "dr"),
        settings_overrides=overrides,
    ) as env:
        write_plan(tmp_path, inventory)
        queue = env.settings.orchestration_queue
        others = ["app-02", "web-02"]
        group_schedule = None
        try:
            protected, *_ = await asyncio.gather(
                env.client.execute_workflow(
                    "ProtectGroup",
                    GroupCycleInput(group="erp"),
                    id="protect-group/erp",
                    task_queue=queue,
                    result_type=ProtectGroupResult,
                ),
                *(
                    env.client.execute_workflow(
                        "ProtectVM",
                        ProtectInput(vm=vm),
                        id=f"protect/{vm}",
                        task_queue=queue,
                        result_type=ProtectResult,
                    )
                    for vm in others
                ),
            )
            group_schedule = protected.schedule_id
            stray: CycleResult = await env.client.execute_workflow(
                "ReplicationCycle",
                CycleInput(vm="db-01"),
                id="replicate/db-01/stray",
                task_queue=site_queue("primary"),
                result_type=CycleResult,
            )
            with stand_ins(env.settings.health_check_port_offset):
                handle = await env.client.start_workflow(
                    "RecoveryPlan",
                    FailoverInput(plan="erp-dr", mode="test", ttl_s=3600),
                    id="recover/erp-dr",
                    task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    result_type=RunReport,
                )
                await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=240)
                await handle.execute_update("approve", ApproveInput(gate="web-go-ahead", by="alice"))
                await wait_progress(
                    handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=240
                )
                await handle.execute_update("cleanup")
                report = await handle.result()
        finally:
            if group_schedule is not None:
                await env.client.get_schedule_handle(group_schedule).delete()
            for vm in others:
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )
    assert report.status == "completed", report.failed_vms
    by_vm = {v.vm: v for v in report.vms}
    assert {by_vm[vm].point_id for vm in MEMBERS} == {protected.first_point}
    assert {by_vm[vm].consistency_group for vm in MEMBERS} == {"erp"}
    assert stray.point_id > protected.first_point and by_vm["db-01"].point_id != stray.point_id
    assert all(by_vm[vm].consistency_group is None for vm in others)
    html = (tmp_path / "reports" / "erp-dr" / f"{report.run}.html").read_text()
    assert f"{protected.first_point} (group erp)" in html
