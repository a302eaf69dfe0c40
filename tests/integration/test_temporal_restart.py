"""A Temporal restart in the middle of a cycle costs a 30 s-policy VM at most one missed cycle: the
interrupted cycle ends (its lost activity completions are retried, or it fails), the schedule goes on
by itself, and no two consecutive verified points are more than two intervals apart. Against the lab:
the dev server is stopped through its pid file and started again by `seawall lab up` (its SQLite file
keeps workflows and schedules), a real worker in this process rides through the outage."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import UTC, datetime
from pathlib import Path

from seawall.contract.names import schedule_id
from seawall.control.status import CycleRun, cycle_history, vm_status
from seawall.lab import LabInfo, procs
from seawall.lab.disks import restore_disk
from seawall.lab.manager import status as lab_status
from tests.integration.replication_env import ReplicationEnv, replication_env
from tests.integration.test_replication import protect, scatter_writes
from tests.integration.test_status_truth import lab_up

VM = "db-01"  # inventory policy rpo-30s
INTERVAL_S = 30.0
OUTAGE_S = 3.0
# Starting a cycle, snapshotting and shipping a few changed blocks: what a point's start may lag the
# schedule's fire by, on a loaded 2-core machine.
SLACK_S = 15.0


async def ours(env: ReplicationEnv, since: datetime) -> list[CycleRun]:
    runs = await cycle_history(env.client, VM, limit=50)
    return sorted((r for r in runs if r.started_at >= since), key=lambda r: r.started_at)


async def wait_running_cycle(env: ReplicationEnv, since: datetime, timeout: float = 40.0) -> CycleRun:
    """A cycle of ``VM`` running right now: the schedule's, or one we trigger (every few seconds until
    one is seen: a cycle of a few changed blocks may be over before a poll sees it)."""
    deadline = time.monotonic() + timeout
    next_trigger = 0.0
    while time.monotonic() < deadline:
        running = [r for r in await ours(env, since) if r.status == "RUNNING"]
        if running:
            return running[-1]
        if time.monotonic() >= next_trigger:
            await env.client.get_schedule_handle(schedule_id(VM)).trigger()
            next_trigger = time.monotonic() + 5
        await asyncio.sleep(0.1)
    raise AssertionError(f"no cycle of {VM} seen running within {timeout:.0f}s")


async def test_a_temporal_restart_mid_cycle_costs_at_most_one_missed_cycle(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    started = datetime.now(UTC)
    restarted = False
    try:
        async with replication_env(lab, tmp_path, lab_state_dir) as env:
            assert env.inventory.policy(env.inventory.protected_vm(VM).policy).interval.total_seconds() == (
                INTERVAL_S
            )
            await protect(env.client, env, VM)
            # Changed blocks make the cycle ship something, so it is caught in the middle of its work.
            scatter_writes(lab, VM, random.Random(13), count=64)
            interrupted = await wait_running_cycle(env, started)

            before = procs.live(lab_state_dir, "temporal")
            assert before is not None, "the lab's Temporal has no live pid file"
            assert procs.stop(lab_state_dir, "temporal") in ("stopped", "killed")
            restarted = True
            down_at = datetime.now(UTC)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(lab_up, lab_state_dir)
            up_at = datetime.now(UTC)
            after_restart = procs.live(lab_state_dir, "temporal")
            assert after_restart is not None and after_restart.pid != before.pid, "Temporal was not restarted"
            outage_s = (up_at - down_at).total_seconds()

            # Two points made after the restart: the schedule and the worker carry on by themselves.
            deadline = time.monotonic() + 2 * INTERVAL_S + 2 * SLACK_S
            while True:
                runs = await ours(env, started)
                after = [r for r in runs if r.started_at > up_at and r.result is not None]
                if len(after) >= 2:
                    break
                assert time.monotonic() < deadline, f"fewer than 2 points after the restart: {runs}"
                await asyncio.sleep(1)

            # The interrupted cycle did not hang: it completed (its lost completions retried) or failed.
            cut = next(r for r in runs if r.run_id == interrupted.run_id)
            assert cut.status in ("COMPLETED", "FAILED", "TIMED_OUT"), cut
            if cut.result is not None:
                assert cut.result.verified

            points = [r for r in runs if r.result is not None and r.result.verified]
            assert all(r.status != "RUNNING" for r in runs if r.started_at < up_at), runs
            starts = sorted(datetime.fromisoformat(r.result.started_at) for r in points if r.result)
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
            # At most one missed cycle: no two consecutive points further apart than two intervals (plus
            # the time the server was away and a cycle's start lag).
            assert max(gaps) <= 2 * INTERVAL_S + outage_s + SLACK_S, (gaps, outage_s, runs)
            first_after = min((r for r in points if r.started_at >= down_at), key=lambda r: r.started_at)
            assert first_after.result is not None
            back_in = (datetime.fromisoformat(first_after.result.finished_at) - up_at).total_seconds()
            assert back_in <= INTERVAL_S + SLACK_S, (back_in, runs)

            status = await vm_status(env.client, env.inventory, VM)
            assert not status.breach and status.age_s is not None and status.age_s <= 2 * INTERVAL_S, status
            print(
                f"outage {outage_s:.1f}s; interrupted cycle {cut.status}; first point after the restart "
                f"{back_in:.1f}s after it; max gap between points {max(gaps):.1f}s ({len(points)} points)"
            )
    finally:
        if restarted:
            await asyncio.to_thread(lab_up, lab_state_dir)  # a no-op when the server is back already
        unhealthy = [p.name for p in lab_status(lab_state_dir) if not p.healthy]
        vminfo = next(v for v in lab.vsphere["primary"].vms if v.name == VM)
        for index in range(len(vminfo.disks)):
            restore_disk(lab, "primary", VM, index)
        assert not unhealthy, f"the lab is left unhealthy: {unhealthy}"
