"""Recovery onto the lab's real libvirtd/QEMU: the example KVM plan's guests boot for real at kvm-b.

A module fixture makes one verified point of each lab guest (``kvm_env.seed_point``: a point-in-time
libvirt backup of the running guest at kvm-a, shipped into a replica of the module's own). The drill
runs the real RecoveryPlan workflow with a worker for kvm-b: each guest's disks are materialized into
kvm-b's pool, the domain is defined from the captured XML, the drill address is written into the
guest's own disk, the guest boots under QEMU and says on its serial console what address it configured
and which last record it found on its data disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import FailoverInput, RunReport
from seawall.lab import LabInfo
from seawall.plans import load_inventory
from seawall.sites.replica import open_repository
from tests.integration.kvm_recovery_env import (
    DRILL_IPS,
    PLAN,
    VMS,
    SeededPoint,
    domain_facts,
    purge_new,
    seed_point,
    site_lists,
    write_kvm_files,
)
from tests.integration.replication_env import ReplicationEnv, replication_env
from tests.integration.test_recovery import wait_progress

pytestmark = pytest.mark.lab

GUEST_LINE = re.compile(r"guest says: (SEAWALL-GUEST host=(\S+) ip=(\S+) last_record=(\d+) status=(\S+))")


@pytest.fixture(scope="module")
def kvm_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kvm-recovery")


@pytest.fixture(scope="module")
def points(lab: LabInfo, kvm_tmp: Path) -> Iterator[dict[str, SeededPoint]]:
    """One verified point per lab guest, shared by the module's tests (they only read it)."""
    inventory, _ = write_kvm_files(kvm_tmp, lab, kvm_tmp / "replica")
    inv = load_inventory(inventory)
    out = {}
    for vm in VMS:
        pvm = inv.protected_vm(vm)
        repo = open_repository(inv, pvm.replica_store, inv.policy(pvm.policy))
        out[vm] = seed_point(lab, repo, vm, kvm_tmp)
    yield out


async def start_drill(env: ReplicationEnv) -> WorkflowHandle[Any, RunReport]:
    return await env.client.start_workflow(
        "RecoveryPlan",
        FailoverInput(plan=PLAN, mode="test", ttl_s=3600),
        id=f"recover/{PLAN}",
        task_queue=env.settings.orchestration_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        result_type=RunReport,
    )


@contextlib.asynccontextmanager
async def kvm_env(
    lab: LabInfo, tmp: Path, lab_state: Path, replica: Path, **kw: Any
) -> AsyncIterator[ReplicationEnv]:
    inventory, _ = write_kvm_files(tmp, lab, replica)
    overrides = {"plans_dir": tmp / "plans", "reports_dir": tmp / "reports"}
    async with replication_env(
        lab, tmp, lab_state, inventory=inventory, sites=("kvm-b",), settings_overrides=overrides, **kw
    ) as env:
        yield env


def guest_lines(report: RunReport) -> dict[str, re.Match[str]]:
    out = {}
    for vm in report.vms:
        found = [m for line in vm.health.checks if (m := GUEST_LINE.search(line))]
        assert found, (vm.vm, vm.health.checks)
        out[vm.vm] = found[-1]
    return out


async def drill_and_clean_up(
    lab: LabInfo, tmp: Path, lab_state_dir: Path, kvm_tmp: Path, before: dict[str, list[str]]
) -> tuple[RunReport, list[str]]:
    """A drill of the KVM plan, checked while it runs (domains, networks, size), then cleaned up."""
    async with kvm_env(lab, tmp, lab_state_dir, kvm_tmp / "replica") as env:
        handle = await start_drill(env)
        await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=900)
        during = site_lists(lab, "kvm-b")
        drills = [d for d in during["domains"] if d not in before["domains"]]
        assert sorted(d.split("-drill-")[0] for d in drills) == sorted(VMS), drills
        for name in drills:
            facts = domain_facts(lab, "kvm-b", name)
            # Running, on the isolated drill network only, from volumes of its own in kvm-b's pool.
            assert facts["active"], (name, facts)
            assert facts["networks"] == [lab.kvm["kvm-b"].drill_network], (name, facts)
            pool_dir = str(lab.kvm["kvm-b"].pool_dir)
            assert len(facts["disks"]) == 2 and all(
                d.startswith(pool_dir + "/" + name) for d in facts["disks"]
            )
        # The plan names kapp-01's memory only: its cpus stay the source's (1), memory 256 MiB.
        kapp = domain_facts(lab, "kvm-b", next(d for d in drills if d.startswith("kapp-01")))
        assert kapp["vcpus"] == 1 and kapp["memory_kib"] == 256 * 1024
        # The sources keep running at kvm-a, untouched.
        assert all(domain_facts(lab, "kvm-a", vm)["active"] for vm in VMS)
        await handle.execute_update("cleanup")
        report = await asyncio.wait_for(handle.result(), timeout=300)
    return report, drills


async def test_drill_boots_the_guests_at_kvm_b_in_order_and_cleanup_leaves_kvm_b_as_it_was(
    lab: LabInfo, lab_state_dir: Path, kvm_tmp: Path, points: dict[str, SeededPoint]
) -> None:
    before = site_lists(lab, "kvm-b")
    tmp = kvm_tmp / "drill"
    try:
        report, drills = await drill_and_clean_up(lab, tmp, lab_state_dir, kvm_tmp, before)
    finally:
        after = site_lists(lab, "kvm-b")  # what the run left, asserted below; then gone either way
        if after != before:
            purge_new(lab, "kvm-b", before)

    assert report.status == "completed" and report.mode == "test", report.failed_vms
    assert [v.vm for v in report.vms] == VMS
    lines = guest_lines(report)
    for vm in VMS:
        match = lines[vm]
        host, ip, last, status = match.group(2), match.group(3), int(match.group(4)), match.group(5)
        # The guest's own word: the planned drill address, ready, the records contiguous (else
        # "corrupt"), and its last record exactly the last whole one on the point's data disk.
        assert (host, ip, status) == (vm, f"{DRILL_IPS[vm]}/24", "ready"), match.group(1)
        point = points[vm]
        assert point.data.contiguous and point.data.last > 0
        assert last == point.data.last, (vm, last, point.data)
        result = next(v for v in report.vms if v.vm == vm)
        assert result.point_id == point.point_id
        print(f"{vm}: {match.group(1)} (healthy {result.healthy_at}, point {point.point_id})")
    # db -> app -> web: each tier healthy before the next one started.
    healthy = {v.vm: v.healthy_at for v in report.vms}
    started = {v.vm: v.started_at for v in report.vms}
    assert healthy["kdb-01"] <= started["kapp-01"] and healthy["kapp-01"] <= started["kweb-01"]
    assert report.cleanup is not None
    removed = {r.kind for r in report.cleanup.removed}
    assert {"vm", "volume"} <= removed
    assert sorted(r.id for r in report.cleanup.removed if r.kind == "vm") == sorted(drills)
    assert after == before, "the drill left something at kvm-b"
    html = (tmp / "reports" / PLAN / f"{report.run}.html").read_text()
    assert "SEAWALL-GUEST host=kweb-01" in html
