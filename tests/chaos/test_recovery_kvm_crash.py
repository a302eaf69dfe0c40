"""SIGKILL the worker while a drill of the KVM plan boots its guests at kvm-b; the plan completes once.

The first worker process (serving the orchestration queue and kvm-b) is frozen right after it started
the second guest's domain (kapp-01: defined, identity written, QEMU started, the guest still booting)
and SIGKILLed there. A new worker takes over: the retried create finds the running domain of this run
by name and tag and returns it, the health check reads the same guest's console. The test asserts one
domain per VM while the drill runs, every guest ready at its drill address, and after cleanup kvm-b
exactly as before (no leaked domain, volume or console file).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from seawall.lab import LabInfo
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from seawall.sites.replica import open_repository
from tests.chaos.test_recovery_crash import fail_dead_attempts
from tests.chaos.workers import WorkerProcess, wait_for_failpoint
from tests.integration.kvm_recovery_env import (
    DRILL_IPS,
    VMS,
    purge_new,
    seed_point,
    site_lists,
    write_kvm_files,
)
from tests.integration.replication_env import replication_env
from tests.integration.test_recovery import wait_progress
from tests.integration.test_recovery_kvm import guest_lines, start_drill

pytestmark = pytest.mark.lab

FAILPOINT = "create_target_vm.started=2"


async def test_worker_killed_mid_boot_the_drill_completes_once(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    inventory, _ = write_kvm_files(tmp_path, lab, tmp_path / "replica")
    inv = load_inventory(inventory)
    for vm in VMS:
        pvm = inv.protected_vm(vm)
        seed_point(lab, open_repository(inv, pvm.replica_store, inv.policy(pvm.policy)), vm, tmp_path)
    before = site_lists(lab, "kvm-b")
    overrides = {"plans_dir": tmp_path / "plans", "reports_dir": tmp_path / "reports"}
    worker_env = {
        "SEAWALL_PLANS_DIR": str(tmp_path / "plans"),
        "SEAWALL_REPORTS_DIR": str(tmp_path / "reports"),
    }
    failpoints = tmp_path / "failpoints"
    workers: list[WorkerProcess] = []

    def worker(settings: Settings, log: str, failpoint: str = "") -> WorkerProcess:
        w = WorkerProcess(
            settings, tmp_path / log, sites=("kvm-b",), failpoints=failpoint, failpoint_dir=failpoints,
            extra_env=worker_env,
        )  # fmt: skip
        workers.append(w)
        return w

    try:
        async with replication_env(
            lab, tmp_path, lab_state_dir, inventory=inventory, worker=False, settings_overrides=overrides
        ) as env:
            first = worker(env.settings, "worker-1.log", FAILPOINT)
            handle = await start_drill(env)
            frozen = await asyncio.to_thread(
                wait_for_failpoint, failpoints, FAILPOINT.split("=")[0], first, 600
            )
            assert frozen["vm"] == "kapp-01", frozen
            booting = site_lists(lab, "kvm-b")["domains"]
            assert any(d.startswith("kapp-01-drill-") for d in booting), booting
            pid = first.proc.pid
            first.kill()
            # At once, before the next worker (which takes seconds to start on a busy machine) is up:
            # otherwise the attempt's heartbeat timeout may have handed it on already.
            assert await fail_dead_attempts(env.client, handle, pid)
            worker(env.settings, "worker-2.log")
            await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=900)
            during = site_lists(lab, "kvm-b")
            drills = sorted(d for d in during["domains"] if d not in before["domains"])
            # Exactly one domain per VM: the retry adopted the domain the dead worker started.
            assert sorted(d.split("-drill-")[0] for d in drills) == sorted(VMS), drills
            await handle.execute_update("cleanup")
            report = await asyncio.wait_for(handle.result(), timeout=300)
    finally:
        for w in workers:
            w.stop()
        after = site_lists(lab, "kvm-b")  # what the run left, asserted below; then gone either way
        if after != before:
            purge_new(lab, "kvm-b", before)

    assert report.status == "completed", report.failed_vms
    assert [v.vm for v in report.vms] == VMS
    for vm, match in guest_lines(report).items():
        assert (match.group(3), match.group(5)) == (f"{DRILL_IPS[vm]}/24", "ready"), match.group(1)
    assert report.cleanup is not None
    assert sorted(r.id for r in report.cleanup.removed if r.kind == "vm") == drills
    assert after == before, "the drill leaked something at kvm-b"
