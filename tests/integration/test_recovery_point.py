"""A plan recovers an older point chosen by time (the CLI's ``--point``, the API's ``point_time``, both
``seawall.control.recovery.start_failover`` with ``FailoverInput.point_time``), and the report shows the
achieved RPO of what it recovered."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from seawall.contract.messages import ApproveInput, FailoverInput, RunReport
from seawall.contract.names import schedule_id
from seawall.control import recovery
from seawall.control.status import cycle_history
from seawall.lab import LabInfo
from tests.integration.test_recovery import PLAN, VMS, dr_vms, protected_erp, stand_ins, wait_progress
from tests.integration.test_scrub import no_cycle_running


async def test_a_drill_recovers_the_point_at_or_before_point_time_and_reports_its_rpo(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    before = set(dr_vms(lab))
    # The lab's namespace keeps earlier tests' cycles of the same VMs: only this test's count.
    began = datetime.now(UTC)
    async with protected_erp(lab, tmp_path, lab_state_dir) as env:
        # The schedules stop here (a VM whose policy is 30 s may already have made a second point while
        # the others were seeded); a cycle already started finishes first, so the points are final.
        for vm in VMS:
            await env.client.get_schedule_handle(schedule_id(vm)).pause()
        for vm in VMS:
            await no_cycle_running(env.client, vm)
        # Each VM's newest point of this test; the cut lies after all of them and before a newer one.
        seeds = {}
        for vm in VMS:
            history = await cycle_history(env.client, vm, limit=20)
            mine = [r for r in history if r.result is not None and r.started_at >= began]
            assert mine, vm
            newest = max(mine, key=lambda r: r.started_at)
            assert newest.result is not None
            seeds[vm] = newest.result.point_id
        await asyncio.sleep(1.5)
        cut = datetime.now(UTC)
        await asyncio.sleep(1.5)
        for vm in VMS:
            await env.client.get_schedule_handle(schedule_id(vm)).unpause()
            await env.client.get_schedule_handle(schedule_id(vm)).trigger()
        newer = {vm: await env.wait_cycle_after(vm, cut, timeout=240) for vm in VMS}
        assert all(newer[vm] != seeds[vm] for vm in VMS)
        with stand_ins(env.settings.health_check_port_offset):
            handle = await recovery.start_failover(
                env.client,
                env.settings.orchestration_queue,
                FailoverInput(plan=PLAN, mode="test", point_time=cut.isoformat(), ttl_s=3600),
            )
            await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead", timeout=300)
            await recovery.approve(env.client, PLAN, ApproveInput(gate="web-go-ahead", by="alice"))
            await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"), timeout=300)
            await recovery.cleanup(env.client, PLAN)
            report: RunReport = await handle.result()
    assert report.status == "completed" and [v.vm for v in report.vms] == VMS
    for v in report.vms:
        # The older point, not the newest: each VM's seed, taken before the cut.
        assert v.point_id == seeds[v.vm] != newer[v.vm], v
        point_time = datetime.fromisoformat(v.point_created_at)
        assert point_time <= cut
        started = datetime.fromisoformat(v.started_at)
        assert v.achieved_rpo_s is not None
        assert abs(v.achieved_rpo_s - (started - point_time).total_seconds()) < 0.01
        assert v.achieved_rpo_s > (started - cut).total_seconds()  # older than anything after the cut
    # The report as written (JSON and HTML) carries it.
    folder = tmp_path / "reports" / PLAN
    written = json.loads((folder / f"{report.run}.json").read_text())
    assert [round(v["achieved_rpo_s"]) for v in written["vms"]] == [
        round(v.achieved_rpo_s or 0) for v in report.vms
    ]
    html = (folder / f"{report.run}.html").read_text()
    assert "achieved RPO" in html and all(v.point_id in html for v in report.vms)
    assert set(dr_vms(lab)) == before
