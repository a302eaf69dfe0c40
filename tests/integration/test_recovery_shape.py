"""What comes up at dr is the machine that was protected (issue #11, item 2), read back with pyvmomi.

Two VMs are made at the lab's primary vcsim for the test: an EFI (secure boot) Linux guest with 4
CPUs in 2 sockets, two controllers (LSI Logic SAS bus 0, paravirtual bus 1) with a disk on each, an
e1000e NIC, a note and a custom attribute; and a Windows guest. An unplanned failover to dr must
re-create exactly that hardware (MACs too: a failover keeps them) in the placement the inventory maps
primary -> dr to (a resource pool, a folder and a datastore the test creates at dr), and give the
Windows guest a sysprep customization with its planned address and domain join, the join password
resolved at the worker and found in no workflow history, report or stored spec.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml
from pyVmomi import vim
from temporalio.common import WorkflowIDConflictPolicy

from seawall.contract.messages import FailoverInput, ProtectInput, ProtectResult, RunReport, UnprotectInput
from seawall.lab import LabInfo
from tests.integration import vcsim_shapes as vs
from tests.integration.replication_env import ROOT, replication_env, write_inventory

MiB = 1024 * 1024
JOIN_PASSWORD = f"Join-{uuid.uuid4().hex}"


def _inventory(tmp: Path, lab: LabInfo, lab_state: Path, vms: list[str], placement: dict[str, str]) -> Path:
    path = write_inventory(tmp, lab_state, s3_prefix=f"test-{uuid.uuid4().hex[:8]}/", lab=lab)
    data = yaml.safe_load(path.read_text())
    data["protected_vms"] = [
        {
            "name": vm,
            "source_site": "primary",
            "policy": "rpo-5m",
            "replica_store": "local",
            "target_sites": ["dr"],
        }
        for vm in vms
    ]
    data["placements"] = [{"source": "primary", "target": "dr", **placement}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _plan(tmp: Path, inventory: Path, name: str, linux: str, windows: str, join: Path) -> None:
    plan = {
        "kind": "RecoveryPlan",
        "inventory": str(inventory),
        "name": name,
        "source_site": "primary",
        "target_site": "dr",
        "groups": [
            {
                "name": "all",
                "vms": [
                    {
                        "name": linux,
                        "nics": [{"source_network": "prod-app", "target_network": "dr-app"}],
                    },
                    {
                        "name": windows,
                        "hostname": f"w{windows[-8:]}.corp.example.com",
                        "nics": [
                            {
                                "source_network": "prod-app",
                                "target_network": "dr-app",
                                "ip": {"kind": "static", "ip": "10.2.2.77"},
                            }
                        ],
                        "windows": {"domain": "corp.example.com", "join_credentials": f"file:{join}"},
                    },
                ],
            }
        ],
    }
    folder = tmp / "plans"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))


async def test_failover_recreates_the_protected_machine_in_its_placement(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    linux, windows, plan = f"shape-{suffix}", f"win-{suffix}", f"shape-{suffix}"
    join = tmp_path / "join.json"
    join.write_text(json.dumps({"user": "CORP\\seawall-join", "password": JOIN_PASSWORD}))
    with vs.connect(lab, "primary") as si:
        vs.make_source_vm(
            si,
            linux,
            guest_id="rhel8_64Guest",
            firmware="efi",
            secure_boot=True,
            cpus=4,
            cores=2,
            memory_mib=3072,
            controllers=[
                vim.vm.device.VirtualLsiLogicSASController(busNumber=0, sharedBus="noSharing"),
                vim.vm.device.ParaVirtualSCSIController(busNumber=1, sharedBus="noSharing"),
            ],
            disks=[(0, 0, 2 * MiB), (1, 3, MiB)],
            nic=vim.vm.device.VirtualE1000e(),
            network="prod-app",
            annotation=f"ERP database {suffix}\nowner: team-db",
            attributes={"seawall-test-owner": "team-db"},
        )
        vs.make_source_vm(
            si,
            windows,
            guest_id="windows2019srv_64Guest",
            firmware="bios",
            secure_boot=False,
            cpus=2,
            cores=1,
            memory_mib=4096,
            controllers=[vim.vm.device.VirtualLsiLogicSASController(busNumber=0, sharedBus="noSharing")],
            disks=[(0, 0, MiB)],
            nic=vim.vm.device.VirtualVmxnet3(),
            network="prod-app",
            annotation="",
            attributes={},
        )
        sources = {vm: vs.shape(vs.by_name(si, vim.VirtualMachine, vm)) for vm in (linux, windows)}
    with vs.connect(lab, "dr") as si:
        placement = vs.make_placement(si, suffix, lab_state_dir / f"ds-alt-{suffix}")
    inventory = _inventory(tmp_path, lab, lab_state_dir, [linux, windows], placement)
    overrides = {"plans_dir": tmp_path / "plans", "reports_dir": tmp_path / "reports"}
    report: RunReport | None = None
    try:
        async with replication_env(
            lab,
            tmp_path,
            lab_state_dir,
            sites=("primary", "dr"),
            inventory=inventory,
            settings_overrides=overrides,
        ) as env:
            _plan(tmp_path, inventory, plan, linux, windows, join)
            queue = env.settings.orchestration_queue
            for vm in (linux, windows):
                await env.client.execute_workflow(
                    "ProtectVM",
                    ProtectInput(vm=vm),
                    id=f"protect/{vm}",
                    task_queue=queue,
                    result_type=ProtectResult,
                )
            # The point carries the configuration: `seawall points VM --json` shows it (sealed in the store).
            shown = subprocess.run(
                [sys.executable, "-m", "seawall.cli", "points", linux, "--json", "-i", str(inventory)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                timeout=120,
            )
            assert shown.returncode == 0, shown.stderr
            [point] = json.loads(shown.stdout)
            machine = point["source_config"]["machine"]
            assert (machine["firmware"], machine["cpus"], machine["cores_per_socket"]) == ("efi", 4, 2)
            assert [n["model"] for n in machine["nics"]] == ["e1000e"]
            handle = await env.client.start_workflow(
                "RecoveryPlan",
                FailoverInput(plan=plan, mode="unplanned"),
                id=f"recover/{plan}",
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                result_type=RunReport,
            )
            report = await asyncio.wait_for(handle.result(), timeout=300)
            histories = [await handle.fetch_history()]
            for event in histories[0].events:
                if event.HasField("child_workflow_execution_started_event_attributes"):
                    child = event.child_workflow_execution_started_event_attributes.workflow_execution
                    histories.append(
                        await env.client.get_workflow_handle(
                            child.workflow_id, run_id=child.run_id
                        ).fetch_history()
                    )
            for vm in (linux, windows):
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )

        assert report.status == "completed", report.failed_vms
        with vs.connect(lab, "dr") as si:
            recovered = {vm: vs.by_name(si, vim.VirtualMachine, vm) for vm in (linux, windows)}
            shapes = {vm: vs.shape(obj) for vm, obj in recovered.items()}
            # Exactly the protected hardware, MACs included (a failover keeps them).
            assert shapes[linux] == sources[linux]
            assert shapes[linux]["firmware"] == "efi" and shapes[linux]["secure_boot"]
            assert (shapes[linux]["cpus"], shapes[linux]["cores_per_socket"]) == (4, 2)
            assert shapes[linux]["controllers"] == [("lsilogic-sas", 0), ("pvscsi", 1)]
            assert shapes[linux]["disks"] == [(("lsilogic-sas", 0), 0), (("pvscsi", 1), 3)]
            assert [m for m, _ in shapes[linux]["nics"]] == ["e1000e"]
            assert shapes[windows]["guest_id"] == "windows2019srv_64Guest"
            for obj in recovered.values():
                # Placement: the mapped pool, folder and datastore.
                assert obj.resourcePool.name == placement["resource_pool"]
                assert (obj.parent.name, obj.parent.parent.name) == ("erp", f"dr-{suffix}")
                assert [ds.name for ds in obj.datastore] == [placement["datastore"]]
                assert obj.config.files.vmPathName.startswith(f"[{placement['datastore']}] ")
            # Windows: a sysprep spec with the planned address and domain join, no password kept.
            manager = si.RetrieveContent().customizationSpecManager
            item = manager.GetCustomizationSpec(name=f"seawall.{report.run}.{windows}")
            identity = item.spec.identity
            assert isinstance(identity, vim.vm.customization.Sysprep)
            assert identity.userData.computerName.name == f"w{windows[-8:]}"
            assert identity.identification.joinDomain == "corp.example.com"
            assert identity.identification.domainAdmin == "CORP\\seawall-join"
            assert identity.identification.domainAdminPassword is None
            assert item.spec.nicSettingMap[0].adapter.ip.ipAddress == "10.2.2.77"
            # vcsim applied it at power-on, as the guest reports it.
            guest = recovered[windows].guest
            assert guest.ipAddress == "10.2.2.77" and guest.hostName == f"w{windows[-8:]}"
        win = next(v for v in report.vms if v.vm == windows)
        assert win.ips == ["10.2.2.77"]
        evidence = [str(h.to_json()) for h in histories]
        evidence += [p.read_text() for p in (tmp_path / "reports").rglob("*.*")]
        assert len(histories) == 3 and not any(JOIN_PASSWORD in text for text in evidence)
    finally:
        with vs.connect(lab, "dr") as si:
            for vm in (linux, windows):
                vs.destroy(si, vm)
        with vs.connect(lab, "primary") as si:
            for vm in (linux, windows):
                vs.destroy(si, vm)
