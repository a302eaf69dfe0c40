"""Orchestration overhead of a test failover: a generated N-VM plan in G groups against the lab's DR vCenter.

    python -m benchmarks.plan --vms 100 --groups 5 --json

Needs the running lab (``seawall lab up``; ``SEAWALL_LAB_DIR`` picks another one): its Temporal dev
server and its ``dr`` vcsim. N raw-image VMs (64 KiB disks) on a directory source site are protected
once (seeded; their schedules are deleted at once, so no replication competes with the failover), then
a test failover of a plan with G groups (run in order, no gates, no hooks, guest-IP health checks only)
recovers them as drill copies at the DR vCenter. The workers run as the deploy files run a site's: the
workflow tasks in this process, the activity tasks in a ``seawall worker --role activities`` beside it
(``--no-split``: both in this process). The drill is then cleaned up.

Definitions, from the run's report (every time below is Temporal's own record of the run):

- ``wall_s``: from the client's start of the RecoveryPlan workflow to the end of its last group.
- ``waits_s``: the simulated boot/health waits on the critical path. The ``health checks`` step is the
  one step whose length belongs to the recovered machine (booting until its check passes), not to
  Seawall; the groups run one after another, so the critical path holds, per group, the longest
  ``health checks`` step of its VMs, plus any configured boot delays (none here). ``waits_s`` is the
  sum of those per-group maxima.
- ``overhead_s``: ``wall_s - waits_s``, the orchestration overhead; issue #17's target is <= 8 s for
  100 VMs in 5 groups on this machine.
- ``failover_cpu_s``: CPU seconds the workers' process (with this client), the lab's Temporal and the
  DR vcsim used from the start to the drill running; with ``load_avg_1m`` beside them: on a shared
  machine the wall times grow with the load, the CPU seconds (the work) much less.
- ``critical_path``: the overhead taken apart along the last VM to become healthy in each group:
  starting its child workflow, each step, the gaps between steps (workflow tasks), and the time from
  its end to the group's end; ``between_groups_s`` is the plan workflow's time from one group's end
  to the next one's start.
- ``recover_vm_history``: per-activity counts (regular activities by type, local activities as
  markers, workflow tasks, events) from one RecoverVM history.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from benchmarks import workerproc
from benchmarks.fleet import vm_name, write_fleet
from benchmarks.output import emit
from seawall.contract.messages import FailoverInput, RunReport
from seawall.contract.names import Query, gc_schedule_id, recover_id, recover_vm_id, schedule_id
from seawall.control import recovery, replication
from seawall.lab import LabInfo, load_lab, procs
from seawall.lab import config as lab_config
from seawall.plans import load_plan
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect

HEALTH_STEP = "health checks"
# Addresses for the drill copies: one /16 holds any N this benchmark is run with.
TARGET_CIDR = "10.61.0.0/16"


def _secs(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def group_sizes(vms: int, groups: int) -> list[int]:
    """``vms`` split into ``groups`` in order, as evenly as possible (earlier groups take the rest)."""
    base, rest = divmod(vms, groups)
    return [base + (1 if g < rest else 0) for g in range(groups)]


def write_inventory_and_plan(
    workdir: Path, lab: LabInfo, vms: int, groups: int, disk_kib: int
) -> tuple[str, str]:
    """The fleet's inventory with the lab's DR vCenter as target, and a plan in ``workdir/plans``.

    Returns (source site, plan name). Site and plan names are unique per run: they name the task
    queues and the plan's workflow id, so runs against one lab never take each other's tasks.
    """
    tag = uuid.uuid4().hex[:8]
    site = f"bench-{tag}"
    target = f"{site}-dr"
    plan_name = f"bench-plan-{tag}"
    inventory_path = write_fleet(workdir, vms, disk_bytes=disk_kib * 1024, site=site, prefix=site)
    inventory = yaml.safe_load(inventory_path.read_text())
    dr = lab.vsphere["dr"]
    isolated = dr.isolated_networks[0]
    production = next(n for n in dr.networks if n not in dr.isolated_networks)
    for entry in inventory["sites"]:
        if entry["name"] == site:
            entry["networks"] = [{"name": "bench-src", "cidr": "10.60.0.0/16"}]
    inventory["sites"] = [s for s in inventory["sites"] if s["name"] != target] + [
        {
            "name": target,
            "kind": "vsphere",
            "host": dr.host,
            "port": dr.port,
            "protocol": dr.protocol,
            "datacenter": dr.datacenter,
            "datastore": dr.datastore,
            "credentials": f"file:{dr.credentials_file}",
            "networks": [
                {"name": "bench-dr", "cidr": TARGET_CIDR, "backing": production},
                {"name": "bench-drill", "cidr": TARGET_CIDR, "backing": isolated, "isolated": True},
            ],
        }
    ]
    inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))

    first_host = IPv4Address(TARGET_CIDR.split("/")[0]) + 10
    names = [vm_name(i, site) for i in range(vms)]
    plan_groups = []
    start = 0
    for g, size in enumerate(group_sizes(vms, groups)):
        members = []
        for i in range(start, start + size):
            members.append(
                {
                    "name": names[i],
                    "size": {"cpus": 1, "memory_mib": 512},
                    "nics": [
                        {
                            "source_network": "bench-src",
                            "target_network": "bench-dr",
                            "test_network": "bench-drill",
                            "ip": {"kind": "static", "ip": str(first_host + i)},
                        }
                    ],
                    "health_checks": [{"kind": "guest-ip", "timeout": "5m"}],
                }
            )
        plan_groups.append({"name": f"tier-{g + 1}", "vms": members})
        start += size
    plan = {
        "kind": "RecoveryPlan",
        "version": 1,
        "inventory": str(inventory_path),
        "name": plan_name,
        "description": f"benchmark: {vms} VMs in {groups} groups",
        "source_site": site,
        "target_site": target,
        "failure_policy": "stop",
        "test_ttl": "2h",
        "groups": plan_groups,
    }
    plans = workdir / "plans"
    plans.mkdir(exist_ok=True)
    path = plans / f"{plan_name}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    load_plan(path)  # a plan the workflow would refuse must fail here, with its located errors
    return site, plan_name


def plan_groups(workdir: Path, plan_name: str) -> dict[str, list[str]]:
    """The plan's groups, in order, with their VMs' names."""
    plan = yaml.safe_load((workdir / "plans" / f"{plan_name}.yaml").read_text())
    return {g["name"]: [v["name"] for v in g["vms"]] for g in plan["groups"]}


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used, from /proc; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds this process (the workers), the lab's Temporal and the DR vcsim spend in a window:
    the work the failover costs, which unlike its wall time does not grow with the machine's load."""

    def __init__(self, state: Path, activities_pid: int | None = None) -> None:
        self.pids = {"workers": os.getpid()}
        if activities_pid is not None:  # --split: the activity worker's process (nice execs it)
            self.pids["activities"] = activities_pid
        for part, label in (("temporal", "temporal"), ("vcsim-dr", "vcsim_dr")):
            tracked = procs.live(state, part)
            if tracked is not None:
                self.pids[label] = tracked.pid
        self._start = self._read()

    def _read(self) -> dict[str, float | None]:
        return {name: _proc_cpu_s(pid) for name, pid in self.pids.items()}

    def spent(self) -> dict[str, float]:
        end = self._read()
        return {
            f"{name}_cpu_s": round(after - before, 2)
            for name, after in end.items()
            if after is not None and (before := self._start.get(name)) is not None
        }


def critical_path(report: RunReport, groups: dict[str, list[str]]) -> dict[str, Any]:
    """Waits and overhead along the critical path, from the report's group and per-VM step times."""
    by_vm = {v.vm: v for v in report.vms}
    per_group = []
    parts: dict[str, float] = {}
    for group, following in zip(report.groups, [*report.groups[1:], None], strict=True):
        members = [by_vm[name] for name in groups[group.step] if name in by_vm]
        health = [
            _secs(s.started_at, s.finished_at) for v in members for s in v.steps if s.step == HEALTH_STEP
        ]
        wait = max(health, default=0.0)
        span = _secs(group.started_at, group.finished_at)
        last = max(members, key=lambda v: v.healthy_at) if members else None
        detail: dict[str, float] = {}
        if last is not None:
            detail["start_child_s"] = _secs(group.started_at, last.started_at)
            for step in last.steps:
                detail[f"{step.step}_s"] = _secs(step.started_at, step.finished_at)
            gaps = sum(
                _secs(a.finished_at, b.started_at) for a, b in zip(last.steps, last.steps[1:], strict=False)
            )
            detail["between_steps_s"] = gaps
            detail["child_end_to_group_end_s"] = _secs(last.healthy_at, group.finished_at)
            for key, value in detail.items():
                parts[key] = parts.get(key, 0.0) + value
        if following is not None:
            gap = _secs(group.finished_at, following.started_at)
            parts["between_groups_s"] = parts.get("between_groups_s", 0.0) + gap
        per_group.append(
            {
                "group": group.step,
                "vms": len(members),
                "span_s": round(span, 3),
                "wait_s": round(wait, 3),
                "overhead_s": round(span - wait, 3),
                "critical_vm": last.vm if last else None,
                "critical_vm_times_s": {k: round(v, 3) for k, v in detail.items()},
            }
        )
    steps: dict[str, list[float]] = {}
    for v in report.vms:
        for s in v.steps:
            steps.setdefault(s.step, []).append(_secs(s.started_at, s.finished_at))
    return {
        "waits_s": sum(g["wait_s"] for g in per_group),
        "per_group": per_group,
        "critical_path_s": {k: round(v, 3) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "step_s_over_all_vms": {
            k: {"mean": round(statistics.fmean(v), 3), "max": round(max(v), 3)} for k, v in steps.items()
        },
    }


async def history_counts(client: Client, workflow_id: str) -> dict[str, Any]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    by_type: Counter[str] = Counter()
    local = tasks = 0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            by_type[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            local += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks += 1
    return {
        "regular_activities": dict(by_type),
        "regular_total": sum(by_type.values()),
        "local_activities": local,
        "workflow_tasks": tasks,
        "events": len(history.events),
    }


async def activity_latencies(client: Client, workflow_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per activity type over the given histories: time queued (scheduled -> a worker took it), time
    running (taken -> completed), and the workflow's reaction (completed -> its next workflow task done).

    Queued and reaction are Temporal's share (server round trips, task dispatch, workflow tasks);
    running is the activity's own work (here: vcsim and pyvmomi) plus the worker's contention.
    """
    samples: dict[str, dict[str, list[float]]] = {}
    for workflow_id in workflow_ids:
        events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
        at = {e.event_id: e.event_time.ToDatetime() for e in events}
        kind: dict[int, str] = {}
        started: dict[int, int] = {}
        for i, e in enumerate(events):
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                kind[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[e.activity_task_started_event_attributes.scheduled_event_id] = e.event_id
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = e.activity_task_completed_event_attributes
                name = kind[attrs.scheduled_event_id]
                begun = at[started[attrs.scheduled_event_id]]
                done = next(
                    (
                        later.event_time.ToDatetime()
                        for later in events[i + 1 :]
                        if later.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                    ),
                    at[e.event_id],
                )
                per = samples.setdefault(name, {"queued": [], "running": [], "reaction": []})
                per["queued"].append((begun - at[attrs.scheduled_event_id]).total_seconds())
                per["running"].append((at[e.event_id] - begun).total_seconds())
                per["reaction"].append((done - at[e.event_id]).total_seconds())
    return {
        name: {
            f"{part}_{stat}": round(fn(values), 3)
            for part, values in parts.items()
            for stat, fn in (("mean", statistics.fmean), ("max", max))
        }
        for name, parts in samples.items()
    }


async def _wait_phase(handle: WorkflowHandle[Any, Any], prefix: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = await handle.query(Query.PROGRESS)
        if str(progress["phase"]).startswith(prefix):
            return
        desc = await handle.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            raise RuntimeError(f"the run ended {desc.status.name}: {progress}")
        await asyncio.sleep(0.25)
    raise RuntimeError(f"no {prefix!r} within {timeout:.0f}s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    lab = load_lab(lab_config.state_dir())
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seawall-bench-plan-"))
    workdir.mkdir(parents=True, exist_ok=True)
    site, plan_name = write_inventory_and_plan(workdir, lab, args.vms, args.groups, args.disk_kib)
    target = f"{site}-dr"
    vms = [vm_name(i, site) for i in range(args.vms)]
    settings = Settings(
        temporal_address=lab.temporal.address,
        inventory=workdir / "inventory.yaml",
        orchestration_queue=f"bench-orchestration-{uuid.uuid4().hex[:8]}",
        max_concurrent_activities=args.slots,
        graceful_shutdown_s=5,
        plans_dir=workdir / "plans",
        reports_dir=workdir / "reports",
    )
    client = await connect(settings)
    async with workerproc.running(
        client,
        [site, target],
        settings,
        split=args.split,
        niceness=args.activities_nice,
        identity="bench-plan",
    ) as running:
        t_seed = time.perf_counter()
        queue = settings.orchestration_queue
        await asyncio.gather(*(replication.protect(client, queue, vm) for vm in vms))
        seed_s = time.perf_counter() - t_seed
        # One point per VM is all a failover needs; cycles would compete with what is measured.
        for vm in vms:
            with contextlib.suppress(RPCError):
                await client.get_schedule_handle(schedule_id(vm)).delete()
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(gc_schedule_id(f"{site}-store")).delete()

        started = datetime.now(UTC)
        t0 = time.perf_counter()
        cpu = CpuMeter(lab_config.state_dir(), running.activities_pid)
        handle = await recovery.start_failover(
            client, queue, FailoverInput(plan=plan_name, mode="test", ttl_s=7200)
        )
        await _wait_phase(handle, "drill running", timeout=args.timeout_s)
        observed_s = time.perf_counter() - t0
        failover_cpu = cpu.spent()
        t_cleanup = time.perf_counter()
        await recovery.cleanup(client, plan_name)
        report = await handle.result()
        cleanup_s = time.perf_counter() - t_cleanup
    activities_cpu = running.activities_cpu_s

    if report.status != "completed" or len(report.vms) != args.vms:
        raise RuntimeError(f"the failover did not complete: {report.status}, failed {report.failed_vms}")
    wall_s = _secs(started.isoformat(), report.groups[-1].finished_at)
    path = critical_path(report, plan_groups(workdir, plan_name))
    waits_s = path.pop("waits_s")
    overhead_s = wall_s - waits_s
    history = await history_counts(client, recover_vm_id(plan_name, report.run, vms[0]))
    plan_history = await history_counts(client, recover_id(plan_name))
    latencies = await activity_latencies(client, [recover_vm_id(plan_name, report.run, vm) for vm in vms])
    removed_vms = sum(1 for r in (report.cleanup.removed if report.cleanup else []) if r.kind == "vm")
    return {
        "vms": args.vms,
        "groups": args.groups,
        "disk_bytes": args.disk_kib * 1024,
        "worker_activity_slots": args.slots,
        "temporal": lab.temporal.address,
        "seed_all_s": round(seed_s, 3),
        "wall_s": round(wall_s, 3),
        "observed_by_client_s": round(observed_s, 3),
        "waits_s": round(waits_s, 3),
        "overhead_s": round(overhead_s, 3),
        "overhead_target_s": 8.0 if (args.vms, args.groups) == (100, 5) else None,
        "overhead_per_vm_s": round(overhead_s / args.vms, 4),
        # CPU seconds spent until the drill ran (whole processes: the workers' process includes
        # this benchmark's client), and the machine's load then: the figures above depend on both.
        "failover_cpu_s": failover_cpu,
        # --split: workflow tasks in this process, activity tasks in a worker process of their own.
        "split": bool(args.split),
        "activity_process_cpu_s": activities_cpu,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cleanup_s": round(cleanup_s, 3),
        "cleanup_removed_vms": removed_vms,
        **path,
        "recover_vm_history": history,
        "plan_history": {k: plan_history[k] for k in ("workflow_tasks", "events")},
        "recover_vm_activity_s": latencies,
        "run": report.run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--disk-kib", type=int, default=64)
    parser.add_argument("--slots", type=int, default=32, help="worker max_concurrent_activities")
    parser.add_argument("--timeout-s", type=float, default=900, help="give up on the failover after this")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="workflow tasks in this process, activity tasks in a `seawall worker --role activities`, "
        "as every deploy file runs a site's worker (default); --no-split: both in this process",
    )
    parser.add_argument("--activities-nice", type=int, default=0, help="the activity process's niceness")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.groups <= args.vms:
        parser.error("--groups: between 1 and --vms")
    if args.vms > 60000:
        parser.error("--vms: at most 60000 (one /16 of drill addresses)")
    # The SDK core logs (e.g. slow workflow tasks) would go to stdout, into the JSON: send them to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    Runtime.set_default(
        Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                )
            )
        )
    )
    result = asyncio.run(run(args))
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
