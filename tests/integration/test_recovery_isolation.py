"""A drill gets its own isolated network at the DR vCenter: a port group made for the run, every
recovered VM attached to it, removed by the drill's cleanup (read back from vcsim, not from Seawall)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pyVmomi import vim

from seawall.contract.messages import ApproveInput, FailoverInput, HookRequest, RunReport
from seawall.contract.names import drill_network_name
from seawall.control import recovery
from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection
from tests.integration.test_recovery import PLAN, VMS, dr_vms, protected_erp, stand_ins, wait_progress


def port_groups(lab: LabInfo) -> set[str]:
    site = lab.vsphere["dr"]
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        return {str(p["name"]) for _, p in conn.list_objects(vim.dvs.DistributedVirtualPortgroup, ["name"])}


def without_fixed_test_networks(path: Path) -> None:
    """The example plan with no NIC naming a test network: each drill needs a network of its own."""
    plan: dict[str, Any] = yaml.safe_load(path.read_text())
    plan["drill_network"] = "per-run"
    for group in plan["groups"]:
        for vm in group["vms"]:
            for nic in vm.get("nics", []):
                nic.pop("test_network", None)
                nic.pop("test_ip", None)
    path.write_text(yaml.safe_dump(plan, sort_keys=False))


async def test_each_drill_runs_on_a_network_of_its_own_removed_by_cleanup(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    before_vms, before_groups = set(dr_vms(lab)), port_groups(lab)
    async with protected_erp(lab, tmp_path, lab_state_dir) as env:
        without_fixed_test_networks(tmp_path / "plans" / f"{PLAN}.yaml")
        with stand_ins(env.settings.health_check_port_offset):
            handle = await recovery.start_failover(
                env.client,
                env.settings.orchestration_queue,
                FailoverInput(plan=PLAN, mode="test", ttl_s=3600),
            )
            await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=300)
            await recovery.approve(env.client, PLAN, ApproveInput(gate="web-go-ahead", by="alice"))
            progress = await wait_progress(
                handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=300
            )
            new_groups = port_groups(lab) - before_groups
            running = {n: i for n, i in dr_vms(lab).items() if n not in before_vms}
            await recovery.cleanup(env.client, PLAN)
            report: RunReport = await handle.result()
    assert progress["vms"] == dict.fromkeys(VMS, "healthy")
    network = drill_network_name(report.run)
    assert new_groups == {network}, new_groups
    assert len(running) == 5 and {tuple(i["networks"]) for i in running.values()} == {(network,)}, running
    assert report.cleanup is not None
    assert [r.id for r in report.cleanup.removed if r.kind == "network"] == [network]
    assert port_groups(lab) == before_groups, "the drill's network outlived its cleanup"
    assert set(dr_vms(lab)) == before_vms


async def test_a_hook_runs_on_the_worker_of_the_site_it_names(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    async with protected_erp(lab, tmp_path, lab_state_dir) as env:
        path = tmp_path / "plans" / f"{PLAN}.yaml"
        plan: dict[str, Any] = yaml.safe_load(path.read_text())
        plan["pre_hooks"] = [
            {"name": "at-primary", "kind": "command", "command": ["true"], "site": "primary"},
            {"name": "at-target", "kind": "command", "command": ["true"]},
        ]
        path.write_text(yaml.safe_dump(plan, sort_keys=False))
        with stand_ins(env.settings.health_check_port_offset):
            handle = await recovery.start_failover(
                env.client,
                env.settings.orchestration_queue,
                FailoverInput(plan=PLAN, mode="test", ttl_s=3600),
            )
            await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=300)
            await recovery.cleanup(env.client, PLAN)
            report: RunReport = await handle.result()
        history = await handle.fetch_history()
        converter = env.client.data_converter
    # The plan's own pre hooks first; the example's group hook (warm-caches) after them.
    assert [(h.name, h.ok) for h in report.hooks][:2] == [("at-primary", True), ("at-target", True)]
    # Which worker took each hook, from the server's own record: the started event's identity.
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    ran: dict[str, tuple[str, str]] = {}
    for e in history.events:
        if e.HasField("activity_task_started_event_attributes"):
            attrs = scheduled[e.activity_task_started_event_attributes.scheduled_event_id]
            if attrs.activity_type.name == "run_hook":
                (req,) = await converter.decode(attrs.input.payloads, [HookRequest])
                ran[req.name] = (attrs.task_queue.name, e.activity_task_started_event_attributes.identity)
    assert {k: v for k, v in ran.items() if k.startswith("at-")} == {
        "at-primary": ("seawall-site-primary", "replication-test/primary"),
        "at-target": ("seawall-site-dr", "replication-test/dr"),
    }
