"""One worker process per site, each holding only its own site's credentials, run a whole ERP drill.

The ``primary`` worker (with the orchestration queue) and the ``dr`` worker (``--no-orchestration``)
are separate OS processes configured by env, as on two hosts: each has its own inventory whose
credential references point into its own folder, where only its site's credential file (plus the
replica stores', which both sides read) exists. Protect + one scheduled cycle + a test failover of the
ERP plan + cleanup must complete, and every activity and workflow task in the histories must have been
handled by a worker of the site whose queue it was on (build_workers names its pollers
``<pid>@<host>/<site>``). The first dr worker is frozen at a failpoint mid-group 2 (an app VM created
at the DR site, not yet re-IPed or powered on) and SIGKILLed; a second dr process takes over and
finishes the plan: workers of a site are interchangeable.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from seawall.contract.messages import ApproveInput, ProtectInput, ProtectResult, RunReport, UnprotectInput
from seawall.contract.queues import seed_queue, site_queue
from seawall.control import replication
from seawall.control.status import cycle_history
from seawall.lab import LabInfo
from tests.chaos.test_recovery_crash import fail_dead_attempts
from tests.integration.replication_env import ROOT, ReplicationEnv, replication_env
from tests.integration.test_recovery import (
    VMS,
    dr_vms,
    free_offset,
    stand_ins,
    start_drill,
    wait_progress,
    write_plan,
)

GATE = "web-go-ahead"
# What each worker may read: its site's credentials and the replica stores' (S3 and Azure).
CREDENTIALS = {"primary": {"primary", "aws", "azure"}, "dr": {"dr", "aws", "azure"}}


class SiteWorker:
    """``seawall worker --site NAME [--no-orchestration]`` as its own process, configured by env only."""

    def __init__(self, site: str, home: Path, env: dict[str, str], *, orchestration: bool, n: int) -> None:
        argv = [sys.executable, "-m", "seawall.cli", "worker", "--site", site]
        if not orchestration:
            argv.append("--no-orchestration")
        self.site = site
        self.log = home / f"worker-{site}-{n}.log"
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120  # a hang, not a speed (as the chaos workers)
        while "worker started" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{site} worker did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def site_home(tmp: Path, site: str, inventory: Path, lab_state: Path) -> Path:
    """A folder as a site's host would have: its inventory, its credential files, its plans."""
    home = tmp / site
    creds = home / "credentials"
    creds.mkdir(parents=True)
    for name in CREDENTIALS[site]:
        shutil.copy(lab_state / "credentials" / f"{name}.json", creds / f"{name}.json")
    data = yaml.safe_load(inventory.read_text())
    for entry in [*data["sites"], *data["replica_stores"]]:
        ref = entry.get("credentials")
        if isinstance(ref, str) and ref.startswith("file:"):
            # Every reference points into this host's folder; the other site's file is simply not there.
            entry["credentials"] = f"file:{creds / Path(ref[5:]).name}"
    own = home / "inventory.yaml"
    own.write_text(yaml.safe_dump(data, sort_keys=False))
    write_plan(home, own)
    return home


def worker_env(home: Path, temporal: str, orchestration_queue: str, offset: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEAWALL_", "AWS_", "AZURE_"))}
    env.update(
        SEAWALL_TEMPORAL_ADDRESS=temporal,
        SEAWALL_INVENTORY=str(home / "inventory.yaml"),
        SEAWALL_PLANS_DIR=str(home / "plans"),
        SEAWALL_REPORTS_DIR=str(home / "reports"),
        SEAWALL_ORCHESTRATION_QUEUE=orchestration_queue,
        SEAWALL_HEARTBEAT_TIMEOUT_S="10",
        SEAWALL_GRACEFUL_SHUTDOWN_S="1",
        SEAWALL_MAX_CONCURRENT_ACTIVITIES="8",
        SEAWALL_HEALTH_CHECK_REDIRECT="127.0.0.1",
        SEAWALL_HEALTH_CHECK_PORT_OFFSET=str(offset),
    )
    return env


def wait_frozen(path: Path, worker: SiteWorker, timeout: float = 90.0) -> dict[str, Any]:
    """What a worker frozen at a failpoint (seawall.runtime.failpoints) was doing."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"failpoint {path.name} not reached:\n{worker.log.read_text()[-4000:]}")
        time.sleep(0.05)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def handled_by(client: Client, roots: list[tuple[str, str | None]]) -> list[tuple[str, str, str]]:
    """(kind, task queue, worker identity) of every activity and workflow task started in the trees
    of workflows rooted at ``roots``, children included."""
    seen: list[tuple[str, str, str]] = []
    todo = list(roots)
    visited: set[tuple[str, str | None]] = set()
    while todo:
        wf_id, run_id = todo.pop()
        if (wf_id, run_id) in visited:
            continue
        visited.add((wf_id, run_id))
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        scheduled: dict[int, tuple[str, str]] = {}
        queue = ""
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                queue = event.workflow_execution_started_event_attributes.task_queue.name
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                seen.append(("workflow task", queue, event.workflow_task_started_event_attributes.identity))
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = (attrs.activity_type.name, attrs.task_queue.name)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                name, activity_queue = scheduled[started.scheduled_event_id]
                seen.append((name, activity_queue, started.identity))
            elif event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                child = event.child_workflow_execution_started_event_attributes.workflow_execution
                todo.append((child.workflow_id, child.run_id))
    return seen


async def scheduled_cycle(env: ReplicationEnv, vm: str) -> tuple[str, str]:
    """Trigger the VM's schedule once (``seawall replicate-now``) and wait for that cycle's point."""
    before = datetime.now(UTC)
    await replication.replicate_now(env.client, vm)
    point = await env.wait_cycle_after(vm, before)
    [run] = [r for r in await cycle_history(env.client, vm) if r.result and r.result.point_id == point]
    return run.workflow_id, run.run_id


async def test_site_workers_with_only_their_own_credentials_run_a_drill_and_replace_each_other(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    began = time.monotonic()
    before = set(dr_vms(lab))
    offset = free_offset()
    async with replication_env(lab, tmp_path, lab_state_dir, worker=False) as env:
        queue = env.settings.orchestration_queue
        homes = {s: site_home(tmp_path, s, env.settings.inventory, lab_state_dir) for s in CREDENTIALS}
        # Each host lacks the other site's credential file: the isolation the test relies on.
        assert not (homes["primary"] / "credentials" / "dr.json").exists()
        assert not (homes["dr"] / "credentials" / "primary.json").exists()
        envs = {s: worker_env(homes[s], lab.temporal.address, queue, offset) for s in CREDENTIALS}
        primary = SiteWorker("primary", tmp_path, envs["primary"], orchestration=True, n=1)
        failpoints = tmp_path / "failpoints"
        # The first VM created is db-01 (group 1); the second is one of group 2's app servers.
        armed = {"SEAWALL_FAILPOINTS": "create_target_vm.created=2", "SEAWALL_FAILPOINT_DIR": str(failpoints)}
        dr = [SiteWorker("dr", tmp_path, {**envs["dr"], **armed}, orchestration=False, n=1)]
        roots: list[tuple[str, str | None]] = []
        try:
            protected = await asyncio.gather(
                *(
                    env.client.execute_workflow(
                        "ProtectVM",
                        ProtectInput(vm=vm),
                        id=f"protect/{vm}",
                        task_queue=queue,
                        result_type=ProtectResult,
                    )
                    for vm in VMS
                )
            )
            assert [p.vm for p in protected] == VMS
            roots += [(f"protect/{vm}", None) for vm in VMS]
            roots.append(await scheduled_cycle(env, "db-01"))

            with stand_ins(offset):
                handle = await start_drill(env, ttl_s=3600)
                roots.append((handle.id, None))
                # The first dr worker froze mid-group 2 (an app VM created, not yet powered on): kill it.
                frozen = await asyncio.to_thread(
                    wait_frozen, failpoints / "create_target_vm.created.json", dr[0]
                )
                dr[0].kill()
                # Play the watchdog for the dead worker's attempts, as tests/chaos does, so their
                # retries do not wait out a heartbeat or start-to-close timeout.
                lost = await fail_dead_attempts(env.client, handle, dr[0].pid)
                dr.append(SiteWorker("dr", tmp_path, envs["dr"], orchestration=False, n=2))
                await wait_progress(handle, lambda p: p["pending_gate"] == GATE)
                await handle.execute_update("approve", ApproveInput(gate=GATE, by="multisite"))
                await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))
                drill = {name for name in set(dr_vms(lab)) - before}
                assert sorted(n.split("-drill-")[0] for n in drill) == sorted(VMS), drill
                await handle.execute_update("cleanup")
                report: RunReport = await asyncio.wait_for(handle.result(), timeout=120)

            for vm in VMS:
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )
            seen = await handled_by(env.client, roots)
        finally:
            for worker in dr[:-1]:
                worker.kill()
            dr[-1].stop()
            primary.stop()

    assert frozen["vm"] in ("app-01", "app-02") and frozen["pid"] == dr[0].pid, frozen
    assert any(a.endswith("create_target_vm") for a in lost), lost
    assert report.status == "completed" and report.mode == "test", report.failed_vms
    assert [v.vm for v in report.vms] == VMS and report.failed_vms == {}
    assert report.cleanup is not None
    assert sorted(r.id for r in report.cleanup.removed if r.kind == "vm") == sorted(drill)
    assert set(dr_vms(lab)) == before, "the drill left VMs behind"

    # Every task ran on a worker of the site whose queue it was on, and only there.
    owners = {
        queue: ({primary.pid}, "orchestration"),
        site_queue("primary"): ({primary.pid}, "primary"),
        site_queue("dr"): ({w.pid for w in dr}, "dr"),
        # The seeds' ship and verify, in the primary site worker's seed slots.
        seed_queue("primary"): ({primary.pid}, "primary/seeds"),
    }
    by_queue: dict[str, set[str]] = defaultdict(set)
    pids_seen: dict[str, set[int]] = defaultdict(set)
    for kind, task_queue, identity in seen:
        pids, suffix = owners[task_queue]
        pid = int(identity.split("@", 1)[0])
        assert pid in pids and identity.endswith(f"/{suffix}"), (kind, task_queue, identity)
        by_queue[task_queue].add(kind)
        pids_seen[task_queue].add(pid)
    assert {"ship_disks", "verify_point"} <= by_queue[seed_queue("primary")], by_queue
    assert "enable_cbt" in by_queue[site_queue("primary")], by_queue
    recovery = {"materialize_disks", "create_target_vm", "check_health", "cleanup_run"}
    assert recovery <= by_queue[site_queue("dr")], by_queue
    assert {"resolve_protection", "ensure_schedule", "load_plan_spec", "write_report"} <= by_queue[queue]
    # Both dr processes did part of the plan: the second took over from the first.
    assert pids_seen[site_queue("dr")] == {dr[0].pid, dr[1].pid}, pids_seen
    assert time.monotonic() - began < 180
