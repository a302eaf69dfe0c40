"""A planned failover of one KVM guest (kdb-01) from kvm-a to kvm-b with zero data loss, counted by its
own record numbers; then commit, reprotect (kvm-b -> kvm-a, the recovered domain is now the source) and
failback onto the original domain, which comes home with the records written at kvm-b and its own
address.

kdb-01 appends a numbered, checksummed record every two seconds. Fencing stops it at kvm-a; the test
then scans the source's data disk itself: every record up to the stop must be what the recovered guest
finds on its disk at kvm-b (its console line's ``last_record``).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import libvirt
import pytest
import yaml
from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import (
    CommitOutcome,
    FailoverInput,
    PlanInput,
    PlanRunInput,
    ProtectInput,
    ProtectResult,
    ReprotectOutcome,
    RunReport,
)
from seawall.lab import LabInfo
from seawall.lab.kvm_guest import read_console, scan_image
from seawall.sites.kvm.console import ConsoleReport
from tests.integration.kvm_env import clear_checkpoints, domain
from tests.integration.kvm_recovery_env import domain_facts, purge_new, site_lists, write_kvm_files
from tests.integration.replication_env import replication_env
from tests.integration.test_recovery_kvm import guest_lines

pytestmark = pytest.mark.lab

VM = "kdb-01"
PLAN = "kvm-db"


def write_one_vm_plan(tmp: Path) -> None:
    """The example plan cut to its db tier (kdb-01 alone), as plan ``kvm-db``."""
    path = tmp / "plans" / "kvm-dr.yaml"
    plan = yaml.safe_load(path.read_text())
    plan["name"] = PLAN
    plan["groups"] = plan["groups"][:1]
    path.unlink()
    (tmp / "plans" / f"{PLAN}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))


async def wait_console(
    path: Path, want: str, after: ConsoleReport | None, timeout: float = 300
) -> ConsoleReport:
    """The guest's next ready line at ``want`` (a line other than ``after``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        report = read_console(path)
        if report is not None and report != after and report.ready and report.ip == want:
            return report
        await asyncio.sleep(1)
    raise AssertionError(f"no ready line with {want} in {path}; last: {read_console(path)}")


async def test_planned_failover_loses_no_record_and_failback_brings_kvm_b_records_home(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    home = lab.kvm["kvm-a"].guest(VM)
    before_b = site_lists(lab, "kvm-b")
    inventory, _ = write_kvm_files(tmp_path, lab, tmp_path / "replica")
    write_one_vm_plan(tmp_path)
    clear_checkpoints(domain(lab, VM))
    overrides = {"plans_dir": tmp_path / "plans", "reports_dir": tmp_path / "reports"}
    home_console_before = read_console(home.console_log)
    try:
        async with replication_env(
            lab, tmp_path, lab_state_dir, inventory=inventory, sites=("kvm-a", "kvm-b"),
            settings_overrides=overrides,
        ) as env:  # fmt: skip
            queue = env.settings.orchestration_queue

            async def run(inp: FailoverInput) -> RunReport:
                handle = await env.client.start_workflow(
                    "RecoveryPlan", inp, id=f"recover/{PLAN}", task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL, result_type=RunReport,
                )  # fmt: skip
                return await asyncio.wait_for(handle.result(), timeout=900)

            await env.client.execute_workflow(
                "ProtectVM",
                ProtectInput(vm=VM),
                id=f"protect/{VM}",
                task_queue=queue,
                result_type=ProtectResult,
            )
            await asyncio.sleep(5)  # the guest writes on after the seed: only the final sync carries it
            failover = await run(FailoverInput(plan=PLAN, mode="planned"))
            # The source is stopped now: what its data disk holds is everything the guest wrote.
            assert not domain_facts(lab, "kvm-a", VM)["active"]
            at_stop = scan_image(home.data_disk)
            recovered = domain_facts(lab, "kvm-b", VM)
            await env.client.execute_workflow(
                "CommitFailover", PlanRunInput(plan=PLAN, run=failover.run), id=f"commit/{PLAN}",
                task_queue=queue, result_type=CommitOutcome,
            )  # fmt: skip
            await asyncio.sleep(8)  # life goes on at kvm-b: the recovered guest appends records
            reprotected = await env.client.execute_workflow(
                "Reprotect", PlanInput(plan=PLAN), id=f"reprotect/{PLAN}", task_queue=queue,
                result_type=ReprotectOutcome,
            )  # fmt: skip
            await asyncio.sleep(5)
            failback = await run(FailoverInput(plan=PLAN, mode="planned", direction="failback"))
            # kvm-b's copy is fenced (stopped) by the failback: its data disk is final.
            assert not domain_facts(lab, "kvm-b", VM)["active"]
            at_b = scan_image(Path(recovered["disks"][1]))
            back_home = await wait_console(
                home.console_log, f"{home.address}/{home.prefix}", home_console_before
            )
    finally:
        dom = domain(lab, VM)
        with contextlib.suppress(libvirt.libvirtError):
            if not dom.isActive():
                dom.create()  # the lab's guest runs again, whatever happened
        clear_checkpoints(dom)
        purge_new(lab, "kvm-b", before_b)

    # Failover: fenced at kvm-a, recovered at kvm-b as kdb-01 with its failover address, every record.
    assert failover.status == "completed", failover.failed_vms
    assert any("kvm-a" in n for n in failover.fencing), failover.fencing
    [vm] = failover.vms
    assert vm.target_name == VM and recovered["networks"] == [lab.kvm["kvm-b"].production_network]
    line = guest_lines(failover)[VM]
    assert (line.group(3), line.group(5)) == ("10.41.1.11/24", "ready"), line.group(1)
    assert at_stop.contiguous and at_stop.last > 0
    assert int(line.group(4)) == at_stop.last, (line.group(1), at_stop)  # zero data loss
    print(f"failover: source stopped at record {at_stop.last}; at kvm-b: {line.group(1)}")
    # Reprotect: kvm-b is the source now, building on the point kdb-01 was recovered from.
    assert reprotected.from_site == "kvm-b"
    [cycle] = [c for c in reprotected.cycles if c.vm == VM]
    assert cycle.parent == vm.point_id
    # Failback: home with what kvm-b wrote, at its own address (not kvm-b's).
    assert failback.status == "completed", failback.failed_vms
    assert any("kvm-b" in n for n in failback.fencing), failback.fencing
    assert at_b.contiguous and at_b.last > at_stop.last, (at_b, at_stop)
    assert back_home.host == VM and back_home.last_record == at_b.last, (back_home, at_b)
    print(f"failback: kvm-b stopped at record {at_b.last}; home says {back_home.line}")
