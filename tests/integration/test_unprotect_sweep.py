"""Unprotect releases the Seawall snapshots a VM still holds at its vSphere source once its cycles are
closed: one a terminated cycle left (it never ran its compensation) is removed from the real vcsim VM
by a real UnprotectVM on a real worker; a snapshot that is not Seawall's stays."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import EventType

from seawall.contract.messages import UnprotectInput
from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection
from tests.integration.replication_env import replication_env

VM = "app-02"


def _connection(lab: LabInfo) -> VSphereConnection:
    site = lab.vsphere["primary"]
    return VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http")


async def test_unprotect_releases_a_snapshot_a_terminated_cycle_left(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    orphan, theirs = "seawall-20261202T100137Z-010f42813e8e", "backup-tool-nightly"
    with _connection(lab) as conn:
        vm = conn.find_vm(VM)
        conn.create_snapshot(vm, orphan)
        conn.create_snapshot(vm, theirs)
    try:
        async with replication_env(lab, tmp_path, lab_state_dir) as env:
            handle = await env.client.start_workflow(
                "UnprotectVM",
                UnprotectInput(vm=VM),
                id=f"unprotect/{VM}",
                task_queue=env.settings.orchestration_queue,
                result_type=int,
            )
            assert await handle.result() == 0
            history = await handle.fetch_history()
        with _connection(lab) as conn:
            assert conn.snapshot_names(conn.find_vm(VM)) == [theirs]
        swept = [
            e.activity_task_completed_event_attributes.result
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        ]
        assert any(orphan.encode() in p.data for r in swept for p in r.payloads), "the sweep names it"
    finally:
        with _connection(lab) as conn:
            vm = conn.find_vm(VM)
            for name in (orphan, theirs):
                conn.remove_snapshot(vm, name)
