"""SIGKILL the worker during each phase of a drill of the example ERP plan; restart Temporal once mid-plan.

The five ERP VMs are protected once for the module (a worker process seeds them, then stops). Each
test then runs a drill (mode ``test``) of the plan with worker *processes* serving the orchestration
queue and the ``primary`` and ``dr`` sites, and breaks it once:

- materialize: frozen after the first disk of db-01 reached the DR datastore, then SIGKILLed;
- boot: frozen after an app VM of group 2 was created at the DR site (not yet re-IPed or powered on);
- gate: SIGKILLed while the run waits on the approval gate before the web tier;
- cleanup: frozen after the cleanup destroyed the first drill VM;
- temporal: the lab's Temporal dev server is stopped and started again once group 2 has begun.

A new worker process takes over each time. Each test asserts: the plan completes; while the drill runs
every VM exists exactly once at the DR site (``<vm>-drill-<run>``), and after cleanup none is left; the
report is complete (5 VMs with their steps, the approval, every drill VM in the cleanup list); and the
drill changed no DNS record of the plan (a drill never touches production DNS, so "DNS ends correct"
means "DNS untouched").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from seawall.contract.messages import ApproveInput, ProtectInput, ProtectResult, RunReport, UnprotectInput
from seawall.lab import LabInfo, procs
from seawall.sites.dns import sidecar_name
from tests.chaos.workers import ROOT, WorkerProcess, wait_for_failpoint
from tests.integration.replication_env import EXAMPLES, ReplicationEnv, replication_env
from tests.integration.test_recovery import (
    PLAN,
    PORT_OFFSET,
    VMS,
    dr_vms,
    stand_ins,
    start_drill,
    wait_progress,
    write_plan,
)

SITES = ("primary", "dr")
LAB_PARTS = ("vcsim-primary", "vcsim-dr", "moto", "azurite")
GATE = "web-go-ahead"
# Where each phase freezes the first worker (``name=N``: the N-th pass in that process).
FAILPOINTS = {
    # Group 1 is db-01 alone: the first finished disk is its first, the second is not yet uploaded.
    "materialize": "materialize.disk_done=1",
    # The first VM created is db-01 (group 1); the second is one of group 2's app servers.
    "boot": "create_target_vm.created=2",
    "cleanup": "cleanup_run.destroyed=1",
}


@dataclass
class Erp:
    env: ReplicationEnv
    tmp: Path
    worker_env: dict[str, str]

    def worker(self, log: Path, failpoint: str = "", failpoint_dir: Path | None = None) -> WorkerProcess:
        return WorkerProcess(
            self.env.settings,
            log,
            sites=SITES,
            failpoints=failpoint,
            failpoint_dir=failpoint_dir,
            extra_env=self.worker_env,
        )


@pytest.fixture(scope="module")
async def erp(
    lab: LabInfo, lab_state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Erp]:
    """The ERP VMs protected (seeded) once, and the plan written, for every test of this module."""
    tmp = tmp_path_factory.mktemp("recovery-crash")
    overrides = {
        "plans_dir": tmp / "plans",
        "reports_dir": tmp / "reports",
        "health_check_redirect": "127.0.0.1",
        "health_check_port_offset": PORT_OFFSET,
    }
    # The worker processes read their settings from the environment, as an operator's would.
    worker_env = {
        "SEAWALL_PLANS_DIR": str(tmp / "plans"),
        "SEAWALL_REPORTS_DIR": str(tmp / "reports"),
        "SEAWALL_HEALTH_CHECK_REDIRECT": "127.0.0.1",
        "SEAWALL_HEALTH_CHECK_PORT_OFFSET": str(PORT_OFFSET),
    }
    closer: WorkerProcess | None = None
    try:
        async with replication_env(
            lab, tmp, lab_state_dir, sites=SITES, settings_overrides=overrides, worker=False
        ) as env:
            write_plan(tmp, env.settings.inventory)
            erp = Erp(env, tmp, worker_env)
            seeder = erp.worker(tmp / "seed-worker.log")
            try:
                await asyncio.gather(
                    *(
                        env.client.execute_workflow(
                            "ProtectVM",
                            ProtectInput(vm=vm),
                            id=f"protect/{vm}",
                            task_queue=env.settings.orchestration_queue,
                            result_type=ProtectResult,
                        )
                        for vm in VMS
                    )
                )
            finally:
                seeder.stop()
            try:
                yield erp
            finally:
                # Unprotecting cancels the VMs' cycles, which needs a worker; it stays up while
                # replication_env makes sure nothing is left running.
                closer = erp.worker(tmp / "closing-worker.log")
                for vm in VMS:
                    await env.client.execute_workflow(
                        "UnprotectVM",
                        UnprotectInput(vm=vm),
                        id=f"unprotect/{vm}",
                        task_queue=env.settings.orchestration_queue,
                        result_type=int,
                    )
    finally:
        if closer is not None:
            closer.stop()


async def fail_dead_attempts(client: Client, plan: WorkflowHandle[Any, Any], dead_pid: int) -> list[str]:
    """Fail the activity attempts a SIGKILLed worker held, so their retries start now.

    Temporal cannot tell a dead worker from a slow one: an attempt it held is retried only when its
    heartbeat timeout (20 s for every long activity; test_crash_cost.py measures that path) or,
    without one, its start-to-close timeout expires. The test plays the watchdog an operator would run
    beside the workers: it fails, by id, exactly the attempts whose worker identity names the dead
    process (what ``temporal activity fail`` does); the workflows' retry policies do the rest.
    """
    prefix = f"{dead_pid}@"
    desc = await plan.describe()
    handles: list[tuple[str, str, Any]] = [(plan.id, desc.run_id, desc.raw_description)]
    for child in desc.raw_description.pending_children:
        child_desc = await client.get_workflow_handle(child.workflow_id, run_id=child.run_id).describe()
        handles.append((child.workflow_id, child.run_id, child_desc.raw_description))
    failed = []
    for workflow_id, run_id, raw in handles:
        for pending in raw.pending_activities:
            if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                continue
            if not pending.last_worker_identity.startswith(prefix):
                continue
            handle = client.get_async_activity_handle(
                workflow_id=workflow_id, run_id=run_id, activity_id=pending.activity_id
            )
            # Handed on as a heartbeat timeout would: the retry resumes from the last details recorded.
            details = await client.data_converter.decode(pending.heartbeat_details.payloads)
            with contextlib.suppress(RPCError):  # it completed or timed out in the meantime
                await handle.fail(
                    ApplicationError(f"worker {dead_pid} was SIGKILLed", type="WorkerLost"),
                    last_heartbeat_details=details,
                )
                failed.append(f"{workflow_id}: {pending.activity_type.name}")
    return failed


def restart_temporal(lab_state: Path) -> float:
    """Stop the lab's Temporal dev server by its pid file and start it again with ``seawall lab up``.

    ``lab up`` starts only the parts that are down; the SQLite file keeps every workflow's state.
    Returns how long Temporal was unavailable.
    """
    tracked = procs.live(lab_state, "temporal")
    assert tracked is not None, f"the lab at {lab_state} has no running Temporal to restart"
    others = {name: procs.live(lab_state, name) for name in LAB_PARTS}
    began = time.monotonic()
    # It leads its own session (the lab starts it so): signal its group, as `lab down` does.
    if os.getpgid(tracked.pid) == tracked.pid:
        os.killpg(tracked.pid, signal.SIGTERM)
    else:
        os.kill(tracked.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while procs.is_ours(tracked.pid, tracked.argv):
        assert time.monotonic() < deadline, f"Temporal (pid {tracked.pid}) did not stop"
        with contextlib.suppress(ChildProcessError):
            os.waitpid(tracked.pid, os.WNOHANG)
        time.sleep(0.05)
    # The console script, as the lab was started (make test, the README): `lab up` replaces a part
    # whose recorded argv differs, and moto's argv names the interpreter path (python vs python3).
    done = subprocess.run(
        [str(Path(sys.executable).parent / "seawall"), "lab", "up"],
        env={**os.environ, "SEAWALL_LAB_DIR": str(lab_state)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"lab up failed:\n{done.stdout}\n{done.stderr}"
    restarted = procs.live(lab_state, "temporal")
    assert restarted is not None and restarted.pid != tracked.pid, "Temporal was not restarted"
    # Nothing else was restarted: moto and vcsim keep their state in memory only.
    assert {name: procs.live(lab_state, name) for name in LAB_PARTS} == others
    return time.monotonic() - began


def plan_dns_names() -> set[str]:
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    records = [r for g in plan["groups"] for v in g["vms"] for r in v.get("dns", [])]
    names = {r["name"] for r in records}
    # The previous value of a changed record is kept beside it: its appearance would be a change too.
    return names | {sidecar_name(r["name"], r.get("type", "A")) for r in records}


def dns_records(lab: LabInfo) -> dict[tuple[str, str], list[str]]:
    """The plan's names in the lab's Route53 (moto): what a drill must leave as it found it."""
    r53 = boto3.session.Session().client(
        "route53",
        endpoint_url=lab.s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    names = plan_dns_names()
    out: dict[tuple[str, str], list[str]] = {}
    for zone in r53.list_hosted_zones()["HostedZones"]:
        for rr in r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]:
            name = str(rr["Name"]).rstrip(".")
            if name in names:
                out[(name, str(rr["Type"]))] = sorted(str(x["Value"]) for x in rr.get("ResourceRecords", []))
    return out


def drill_vms(lab: LabInfo, before: set[str]) -> dict[str, list[str]]:
    """Per plan VM, the DR site's VMs named as its drill copy (that were not there before the test)."""
    found: dict[str, list[str]] = {vm: [] for vm in VMS}
    for name in set(dr_vms(lab)) - before:
        for vm in VMS:
            if name.startswith(f"{vm}-drill-"):
                found[vm].append(name)
    return found


class Crash:
    """The worker processes of one test: the first (maybe armed with a failpoint), then replacements."""

    def __init__(self, erp: Erp, tmp: Path, failpoint: str) -> None:
        self.erp = erp
        self.tmp = tmp
        self.failpoint_dir = tmp / "failpoints"
        self.workers = [erp.worker(tmp / "worker-1.log", failpoint, self.failpoint_dir)]
        self.failed_attempts: list[str] = []

    async def frozen(self, failpoint: str) -> dict[str, Any]:
        name = failpoint.split("=")[0]
        return await asyncio.to_thread(wait_for_failpoint, self.failpoint_dir, name, self.workers[-1], 120)

    async def kill_and_replace(self, plan: WorkflowHandle[Any, Any]) -> None:
        dead = self.workers[-1]
        dead.kill()
        self.failed_attempts += await fail_dead_attempts(self.erp.env.client, plan, dead.proc.pid)
        self.workers.append(self.erp.worker(self.tmp / f"worker-{len(self.workers) + 1}.log"))

    def stop(self) -> None:
        for worker in self.workers[:-1]:
            worker.kill()
        self.workers[-1].stop()


async def end_run(handle: WorkflowHandle[Any, Any]) -> None:
    """A failed test must not leave its drill running: the next test starts the same plan."""
    with contextlib.suppress(RPCError):
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("crash test ended")


@pytest.mark.parametrize(
    "phase",
    [
        "materialize",
        "boot",
        "gate",
        "cleanup",
        # Restarting Temporal ends with `lab up`, which starts any lab guest that is not running: it
        # must not run while the KVM tests have a guest fenced on purpose. It runs with the exclusive ones.
        pytest.param("temporal", marks=pytest.mark.lab_exclusive),
    ],
)
async def test_drill_survives(
    erp: Erp, lab: LabInfo, lab_state_dir: Path, tmp_path: Path, phase: str
) -> None:
    before = set(dr_vms(lab))
    dns_before = dns_records(lab)
    failpoint = FAILPOINTS.get(phase, "")
    crash = Crash(erp, tmp_path, failpoint)
    frozen: dict[str, Any] = {}
    handle: WorkflowHandle[Any, RunReport] | None = None
    try:
        with stand_ins(PORT_OFFSET):
            handle = await start_drill(erp.env, ttl_s=3600)
            if phase in ("materialize", "boot"):
                frozen = await crash.frozen(failpoint)
                await crash.kill_and_replace(handle)
            if phase == "temporal":
                # The group's phase lasts through its boot delay and its children (seconds); one VM's
                # "recovering" state lasts a fraction of a second here, too short to poll for.
                await wait_progress(handle, lambda p: p["phase"] == "recovering group app")
                outage = await asyncio.to_thread(restart_temporal, lab_state_dir)
                assert outage < 60, outage
            await wait_progress(handle, lambda p: p["pending_gate"] == GATE)
            if phase == "gate":
                await crash.kill_and_replace(handle)
            await handle.execute_update("approve", ApproveInput(gate=GATE, by="chaos", comment=phase))
            await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))

            # Exactly one copy of every VM at the target while the drill runs, whatever was retried.
            running = drill_vms(lab, before)
            assert all(len(names) == 1 for names in running.values()), running

            await handle.execute_update("cleanup")
            if phase == "cleanup":
                frozen = await crash.frozen(failpoint)
                await crash.kill_and_replace(handle)
            report = await asyncio.wait_for(handle.result(), timeout=180)
    finally:
        if handle is not None:
            await end_run(handle)
        crash.stop()

    if phase in FAILPOINTS:
        assert frozen.get("failpoint") == failpoint.split("=")[0], frozen
    if phase == "materialize":
        assert frozen["vm"] == "db-01", frozen  # the lab's VM with two disks: one done, one to go
    if phase == "boot":
        assert frozen["vm"] in ("app-01", "app-02"), frozen
    # The kill caught the frozen step in flight: its attempt died with the worker and was retried.
    activity = {"materialize": "materialize_disks", "boot": "create_target_vm", "cleanup": "cleanup_run"}
    if phase in activity:
        assert any(a.endswith(activity[phase]) for a in crash.failed_attempts), crash.failed_attempts
    assert report.status == "completed" and report.mode == "test", report.failed_vms
    assert [v.vm for v in report.vms] == VMS and report.failed_vms == {}
    suffix = report.run[-8:]
    assert running == {vm: [f"{vm}-drill-{suffix}"] for vm in VMS}, (running, report.run)
    assert [v.target_name for v in report.vms] == [f"{vm}-drill-{suffix}" for vm in VMS]
    steps = ["choose recovery point", "materialize disks", "create, re-IP and power on", "health checks"]
    for v in report.vms:
        assert [s.step for s in v.steps] == steps, (v.vm, v.steps)
        assert v.health.ok and v.dns == [], v
    assert [(a.gate, a.approved, a.by) for a in report.approvals] == [(GATE, True, "chaos")]
    assert [g.step for g in report.groups] == ["db", "app", "web"]
    assert (erp.tmp / "reports" / PLAN / f"{report.run}.json").is_file()
    # After cleanup nothing of the drill is left at the DR site; production DNS was never touched.
    assert set(dr_vms(lab)) == before, "the drill left VMs behind"
    assert dns_records(lab) == dns_before
    # The report names every drill VM as removed, including those a killed cleanup attempt removed.
    assert report.cleanup is not None
    removed = sorted(r.id for r in report.cleanup.removed if r.kind == "vm")
    assert removed == sorted(f"{vm}-drill-{suffix}" for vm in VMS), report.cleanup
