"""The console's view rules, on plain data: a VM's state word, the 24-hour point-age strip, plan
readiness and its reasons, reading run reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from seawall.console.views import (
    STRIP_CELLS,
    ProtectionRow,
    ReportSummary,
    age_strip,
    read_reports,
    readiness,
    vm_state,
)
from seawall.contract.messages import RecoverVMResult, RunReport
from seawall.control.status import SeedProgress, VMStatus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# --- the rules -------------------------------------------------------------------------------------------


def status(**changes: Any) -> VMStatus:
    base: dict[str, Any] = dict(
        vm="db-01",
        source_site="primary",
        policy="rpo-30s",
        rpo_s=30.0,
        threshold_s=60.0,
        scheduled=True,
        paused=False,
        last_point="db-01-x",
        last_point_at=NOW,
        age_s=10.0,
        breach=False,
        last_bytes_shipped=1024,
        last_change_path="hash",
        running=None,
        progress=None,
    )
    return VMStatus(**(base | changes))


def test_vm_state_says_what_to_do_first() -> None:
    assert vm_state(status()) == "protected"
    assert vm_state(status(scheduled=False, breach=False)) == "not-protected"
    assert vm_state(status(paused=True, breach=True)) == "paused"
    progress = SeedProgress(workflow_id="w", disk="d", fraction=0.5, bytes_read=1, bytes_shipped=1)
    # Shipping its first point: seeding, not a breach to chase.
    assert (
        vm_state(status(last_point=None, age_s=None, breach=True, running="w", progress=progress))
        == "seeding"
    )
    assert vm_state(status(last_point=None, age_s=None, breach=True)) == "breach"
    assert vm_state(status(age_s=99.0, breach=True, running="w")) == "breach"
    # Nobody works on it (no worker made progress for two intervals): said before "late".
    assert vm_state(status(age_s=99.0, breach=True, stalled=True)) == "stalled"
    assert vm_state(status(stalled=True, last_point=None, age_s=None, running="w")) == "stalled"
    assert vm_state(status(paused=True, stalled=True)) == "paused"
    assert vm_state(status(running="w")) == "replicating"


def test_age_strip_worst_age_per_cell() -> None:
    # A point every 10 minutes for the last two hours, then a 40-minute gap before now.
    points = [NOW - timedelta(minutes=40) - timedelta(minutes=10 * i) for i in range(12)]
    cells = age_strip(points, NOW)
    assert len(cells) == STRIP_CELLS and cells[0].start == NOW - timedelta(hours=24)
    assert cells[-1].start == NOW - timedelta(minutes=30)
    # Before the first point: no point at all, not a fresh one.
    assert all(c.worst_age_s is None for c in cells[:43])
    assert [c.worst_age_s for c in cells[-4:-2]] == [600.0, 600.0]
    # The last cell: the newest point is 40 minutes old at its end.
    assert cells[-1].worst_age_s == 2400.0
    # A point from before the window still counts at the window's start.
    old = age_strip([NOW - timedelta(hours=30)], NOW)
    assert old[0].worst_age_s == 6 * 3600 + 1800 and old[-1].worst_age_s == 30 * 3600
    assert all(c.worst_age_s is None for c in age_strip([NOW + timedelta(minutes=1)], NOW))


def row(vm: str, *, point: bool = True, breach: bool = False) -> ProtectionRow:
    return ProtectionRow(
        vm=vm,
        state="breach" if breach else "protected",
        source_site="primary",
        plans=["erp-dr"],
        store="local",
        policy="rpo-30s",
        rpo_s=30,
        threshold_s=60,
        last_point="p" if point else None,
        last_point_at=NOW if point else None,
        age_s=5 if point else None,
        breach=breach,
        last_bytes_shipped=None,
        last_change_path=None,
        last_cycle_s=None,
        progress=None,
    )


def summary(
    status: str = "completed", mode: str = "test", ago_h: float = 2, healthy_s: float = 120
) -> ReportSummary:
    end = NOW - timedelta(hours=ago_h)
    return ReportSummary(
        plan="erp-dr",
        run=f"run-{uuid.uuid4().hex[:6]}",
        mode=mode,
        status=status,
        started_at=end - timedelta(minutes=10),
        finished_at=end,
        vms=2,
        failed_vms=0,
        time_to_healthy_s=healthy_s,
    )


def test_readiness_reasons() -> None:
    rows = {"db-01": row("db-01"), "app-01": row("app-01")}
    ok = readiness(
        "erp-dr", valid=True, problems=[], vms=["db-01", "app-01"], rows=rows, reports=[summary()], now=NOW
    )
    assert ok.ready and ok.reasons == [] and ok.last_drill and ok.last_drill.age_s == 7200
    never = readiness("erp-dr", valid=True, problems=[], vms=["db-01"], rows=rows, reports=[], now=NOW)
    assert not never.ready and never.reasons == ["never drilled"]
    # The newest drill counts, not the newest run: a real failover after it is not a drill.
    failed = readiness(
        "erp-dr",
        valid=False,
        problems=["x"],
        vms=["db-01", "app-01", "web-01"],
        rows={"db-01": row("db-01", breach=True), "app-01": row("app-01", point=False)},
        reports=[summary(mode="planned", ago_h=1), summary(status="failed")],
        now=NOW,
    )
    assert failed.reasons == [
        "the plan does not pass its check",
        "no verified point for app-01, web-01",
        "RPO breached for db-01",
        "the last drill failed",
    ]
    assert failed.last_run and failed.last_run.mode == "planned"
    slow = readiness(
        "erp-dr",
        valid=True,
        problems=[],
        vms=[],
        rows={},
        reports=[summary(healthy_s=900)],
        now=NOW,
        rto_target_s=600,
    )
    assert slow.reasons == ["the last drill missed the RTO target"]
    stale = readiness(
        "erp-dr",
        valid=True,
        problems=[],
        vms=[],
        rows={},
        reports=[summary(ago_h=30)],
        now=NOW,
        max_drill_age_s=86400,
    )
    assert (
        stale.reasons == ["the last passed drill is older than max_drill_age (86400s)"]
        and stale.max_drill_age_s == 86400
    )
    # Judged against the plan's targets: a completed drill that missed them is not a passed drill, and
    # the age that counts is the last *passed* drill's.
    missed = readiness(
        "erp-dr",
        valid=True,
        problems=[],
        vms=[],
        rows={},
        reports=[summary().model_copy(update={"passed": False})],
        now=NOW,
    )
    assert missed.reasons == ["the last drill missed the plan's targets"] and missed.last_passed_drill is None
    older_pass = readiness(
        "erp-dr",
        valid=True,
        problems=[],
        vms=[],
        rows={},
        reports=[summary(ago_h=1), summary(ago_h=40)],
        now=NOW,
        max_drill_age_s=86400,
    )
    assert older_pass.ready and older_pass.last_passed_drill is not None


def run_report(plan: str, run: str, started: datetime, *, status: str = "completed") -> RunReport:
    vm = RecoverVMResult(
        vm="db-01",
        target_name="db-01-drill",
        point_id="p",
        point_created_at=started.isoformat(),
        ips=[],
        dns=[],
        health={"ok": True, "checks": [], "elapsed_s": 1.0},  # type: ignore[arg-type]
        resources=[],
        steps=[],
        started_at=started.isoformat(),
        healthy_at=(started + timedelta(seconds=42)).isoformat(),
    )
    return RunReport(
        plan=plan,
        run=run,
        mode="test",
        status=status,
        started_at=started.isoformat(),
        finished_at=(started + timedelta(minutes=5)).isoformat(),
        vms=[vm],
        failed_vms={},
        hooks=[],
        approvals=[],
        groups=[],
    )


def write_run(reports: Path, report: RunReport, html: str = "<html><body>report</body></html>") -> None:
    folder = reports / report.plan
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{report.run}.json").write_text(report.model_dump_json())
    (folder / f"{report.run}.html").write_text(html)


def test_read_reports_newest_first_and_skips_what_does_not_parse(tmp_path: Path) -> None:
    write_run(tmp_path, run_report("erp-dr", "a", NOW - timedelta(hours=3)))
    write_run(tmp_path, run_report("erp-dr", "b", NOW - timedelta(hours=1), status="failed"))
    (tmp_path / "erp-dr" / "partial.json").write_text('{"plan": "erp-dr"')
    found = read_reports(tmp_path, "erp-dr")
    assert [r.run for r in found] == ["b", "a"] and found[0].time_to_healthy_s == 42.0
    assert read_reports(tmp_path, "nothing") == []
