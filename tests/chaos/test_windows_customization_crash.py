"""SIGKILL the worker during a Windows (sysprep) customization at dr: the VM is made exactly once.

A Windows-typed VM made at the lab's primary for the test is protected (a seeding worker process),
then failed over (unplanned) to dr by a worker process armed to freeze right after the sysprep
customization was queued on the new VM, before it is powered on. That process is SIGKILLed and a new
one takes the retried create step over: it must find the VM it made (by name and run tag), not queue a
second customization over the pending one, and power it on. Asserts: the run completes; exactly one VM
of that name exists at dr; the guest came up with the planned computer name and address.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import yaml
from pyVmomi import vim
from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import FailoverInput, ProtectInput, ProtectResult, RunReport, UnprotectInput
from seawall.lab import LabInfo
from tests.chaos.test_recovery_crash import end_run, fail_dead_attempts
from tests.chaos.workers import WorkerProcess, wait_for_failpoint
from tests.integration import vcsim_shapes as vs
from tests.integration.replication_env import replication_env, write_inventory

SITES = ("primary", "dr")
FAILPOINT = "create_target_vm.customized=1"


async def test_sigkill_during_windows_customization_makes_the_vm_once(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    vm, plan = f"wcrash-{suffix}", f"wcrash-{suffix}"
    controller = vim.vm.device.VirtualLsiLogicSASController(busNumber=0, sharedBus="noSharing")
    with vs.connect(lab, "primary") as si:
        vs.make_source_vm(
            si, vm, guest_id="windows2019srv_64Guest", firmware="efi", secure_boot=True, cpus=2, cores=2,
            memory_mib=4096, controllers=[controller], disks=[(0, 0, 1024 * 1024)],
            nic=vim.vm.device.VirtualVmxnet3(), network="prod-app", annotation="", attributes={},
        )  # fmt: skip
    join = tmp_path / "join.json"
    join.write_text(json.dumps({"user": "CORP\\join", "password": uuid.uuid4().hex}))
    inventory = write_inventory(tmp_path, lab_state_dir, s3_prefix=f"test-{suffix}/", lab=lab)
    data = yaml.safe_load(inventory.read_text())
    data["protected_vms"] = [
        {
            "name": vm,
            "source_site": "primary",
            "policy": "rpo-5m",
            "replica_store": "local",
            "target_sites": ["dr"],
        }
    ]
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    hostname = f"w{suffix}"
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / f"{plan}.yaml").write_text(
        yaml.safe_dump(
            {
                "kind": "RecoveryPlan",
                "inventory": str(inventory),
                "name": plan,
                "source_site": "primary",
                "target_site": "dr",
                "groups": [
                    {
                        "name": "all",
                        "vms": [
                            {
                                "name": vm,
                                "hostname": hostname,
                                "nics": [
                                    {
                                        "source_network": "prod-app",
                                        "target_network": "dr-app",
                                        "ip": {"kind": "static", "ip": "10.2.2.88"},
                                    }
                                ],
                                "windows": {"domain": "corp.example.com", "join_credentials": f"file:{join}"},
                            }
                        ],
                    }
                ],
            }
        )
    )
    worker_env = {
        "SEAWALL_PLANS_DIR": str(tmp_path / "plans"),
        "SEAWALL_REPORTS_DIR": str(tmp_path / "reports"),
    }
    overrides = {"plans_dir": tmp_path / "plans", "reports_dir": tmp_path / "reports"}
    workers: list[WorkerProcess] = []
    report: RunReport | None = None
    try:
        async with replication_env(
            lab,
            tmp_path,
            lab_state_dir,
            sites=SITES,
            inventory=inventory,
            settings_overrides=overrides,
            worker=False,
        ) as env:
            queue = env.settings.orchestration_queue

            def worker(name: str, failpoint: str = "") -> WorkerProcess:
                proc = WorkerProcess(
                    env.settings,
                    tmp_path / f"{name}.log",
                    sites=SITES,
                    failpoints=failpoint,
                    failpoint_dir=tmp_path / "failpoints",
                    extra_env=worker_env,
                )
                workers.append(proc)
                return proc

            seeder = worker("seed")
            await env.client.execute_workflow(
                "ProtectVM",
                ProtectInput(vm=vm),
                id=f"protect/{vm}",
                task_queue=queue,
                result_type=ProtectResult,
            )
            seeder.stop()
            first = worker("worker-1", FAILPOINT)
            handle = await env.client.start_workflow(
                "RecoveryPlan",
                FailoverInput(plan=plan, mode="unplanned"),
                id=f"recover/{plan}",
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                result_type=RunReport,
            )
            try:
                frozen = await asyncio.to_thread(
                    wait_for_failpoint, tmp_path / "failpoints", FAILPOINT.split("=")[0], first, 180
                )
                assert frozen["name"] == vm, frozen
                with vs.connect(lab, "dr") as si:
                    made = [o for o in vs.objects(si, vim.VirtualMachine) if o.name == vm]
                    # Frozen between the queued customization and the power-on.
                    assert len(made) == 1 and made[0].config.tools.pendingCustomization
                    assert made[0].runtime.powerState == "poweredOff"
                first.kill()
                failed = await fail_dead_attempts(env.client, handle, first.proc.pid)
                assert any(a.endswith("create_target_vm") for a in failed), failed
                worker("worker-2")
                report = await asyncio.wait_for(handle.result(), timeout=240)
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )
            finally:
                await end_run(handle)
        assert report is not None and report.status == "completed", report and report.failed_vms
        with vs.connect(lab, "dr") as si:
            made = [o for o in vs.objects(si, vim.VirtualMachine) if o.name == vm]
            assert len(made) == 1, "the VM was created more than once"
            [obj] = made
            assert obj.runtime.powerState == "poweredOn"
            assert obj.guest.hostName == hostname and obj.guest.ipAddress == "10.2.2.88"
            assert not obj.config.tools.pendingCustomization
            spec = si.RetrieveContent().customizationSpecManager.GetCustomizationSpec(
                name=f"seawall.{report.run}.{vm}"
            )
            assert isinstance(spec.spec.identity, vim.vm.customization.Sysprep)
    finally:
        for proc in workers:
            proc.kill()
        with vs.connect(lab, "dr") as si:
            vs.destroy(si, vm)
        with vs.connect(lab, "primary") as si:
            vs.destroy(si, vm)
