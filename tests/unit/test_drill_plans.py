"""Plans that promise: targets (RPO, RTO per plan and group), max_drill_age and a drill schedule whose
cron is checked where the plan is read (file:line errors); reports judged PASS/FAIL against the
targets, on a time axis."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from seawall import reports
from seawall.contract.drills import ReportTargets
from seawall.contract.messages import HealthOutcome, RecoverVMResult, RunReport, StepTime
from seawall.model.cron import check_cron
from seawall.plans import check_files, load_plan

ROOT = Path(__file__).resolve().parents[2]
ERP = yaml.safe_load((ROOT / "examples" / "erp-dr.yaml").read_text())


def plan_file(tmp: Path, **extra: Any) -> Path:
    data = dict(ERP, inventory=str(ROOT / "examples" / "inventory.yaml"), **extra)
    path = tmp / "erp-dr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("*/2 * * *", "has 5 fields"),
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 0 0 * *", "day of month: 0 is out of range 1-31"),
        ("0 0 * 13 *", "month: 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week: 8 is out of range 0-7"),
        ("*/0 * * * *", "a step of 0 never fires"),
        ("0 5-3 * * *", "runs backwards"),
        ("0 3 * * fun", "'fun' is not a number"),
        ("@sometimes", "unknown macro"),
    ],
)
def test_a_bad_drill_cron_is_a_located_error(tmp_path: Path, cron: str, why: str) -> None:
    path = plan_file(tmp_path, drill_schedule={"cron": cron})
    errors = [str(e) for e in check_files([path])]
    assert len(errors) == 1, errors
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith("cron:")
    )
    assert errors[0].startswith(f"{path}:{line}: drill_schedule.cron: "), errors[0]
    assert why in errors[0]


@pytest.mark.parametrize(
    "cron", ["*/2 * * * *", "0 3 * * mon-fri", "30 1 1,15 jan-jun/2 *", "@daily", "0 0 * * 7"]
)
def test_good_crons_pass(cron: str) -> None:
    assert check_cron(cron) == cron


def test_targets_and_schedule_load(tmp_path: Path) -> None:
    groups = [dict(g) for g in ERP["groups"]]
    groups[0]["rto"] = "5m"
    path = plan_file(
        tmp_path,
        rpo="15m",
        rto="30m",
        max_drill_age="7d",
        drill_schedule={"cron": "0 3 * * SUN", "approve_gates": True, "health_timeout": "45m"},
        groups=groups,
    )
    assert check_files([path]) == []
    plan = load_plan(path)
    assert (
        plan.drill_schedule
        and plan.drill_schedule.cron == "0 3 * * sun"
        and plan.drill_schedule.approve_gates
    )
    targets = reports.targets_of(plan)
    first = groups[0]["name"]
    assert targets.rpo_s == 900 and targets.rto_s == 1800 and targets.group_rto_s == {first: 300}
    assert {targets.vm_rto_s[vm["name"]] for vm in groups[0]["vms"]} == {300}
    assert {targets.vm_rto_s[vm["name"]] for vm in groups[-1]["vms"]} == {1800}


def test_unknown_schedule_keys_and_bad_targets_are_located(tmp_path: Path) -> None:
    path = plan_file(tmp_path, rto="0s", drill_schedule={"cron": "@daily", "aprove_gates": True})
    text = "\n".join(str(e) for e in check_files([path]))
    assert re.search(r":\d+: rto: 0s is out of range", text), text
    assert "drill_schedule.aprove_gates" in text


T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def vm(name: str, point_age_s: float, healthy_s: float) -> RecoverVMResult:
    """A VM recovered from a point ``point_age_s`` older than the run, healthy ``healthy_s`` into it."""
    return RecoverVMResult(
        vm=name,
        target_name=f"{name}-drill-x",
        point_id="p",
        point_created_at=(T0 - timedelta(seconds=point_age_s)).isoformat(),
        ips=["10.2.0.5"],
        dns=[],
        health=HealthOutcome(ok=True, checks=[], elapsed_s=1.0),
        resources=[],
        steps=[],
        started_at=T0.isoformat(),
        healthy_at=(T0 + timedelta(seconds=healthy_s)).isoformat(),
    )


def report(targets: ReportTargets | None, *vms: RecoverVMResult, status: str = "completed") -> RunReport:
    return RunReport(
        plan="erp-dr",
        run="20261126T010000Z-abcd1234",
        mode="test",
        status=status,
        started_at="2026-11-26T01:00:00+00:00",
        finished_at="2026-11-26T01:20:00+00:00",
        vms=list(vms),
        failed_vms={},
        hooks=[],
        approvals=[],
        groups=[
            StepTime(
                step="db", started_at="2026-11-26T01:00:00+00:00", finished_at="2026-11-26T01:08:00+00:00"
            )
        ],
        targets=targets,
    )


def test_verdicts_against_the_targets() -> None:
    targets = ReportTargets(rpo_s=600, rto_s=900, vm_rto_s={"db-01": 300})
    passed, per_vm = reports.verdicts(report(targets, vm("db-01", 120, 240), vm("app-01", 120, 600)))
    assert passed and [(v.vm, v.rpo_ok, v.rto_ok) for v in per_vm] == [
        ("db-01", True, True),
        ("app-01", True, True),
    ]
    passed, per_vm = reports.verdicts(report(targets, vm("db-01", 120, 420), vm("app-01", 1200, 600)))
    assert not passed and [(v.rpo_ok, v.rto_ok) for v in per_vm] == [(True, False), (False, True)]
    # No targets: judged by the run alone; a failed run fails.
    assert reports.verdicts(report(None, vm("db-01", 120, 420)))[0]
    assert not reports.verdicts(report(None, vm("db-01", 120, 420), status="failed"))[0]


def test_the_html_report_shows_targets_verdicts_and_a_time_axis() -> None:
    targets = ReportTargets(rpo_s=600, rto_s=900, group_rto_s={"db": 300}, vm_rto_s={"db-01": 300})
    page = reports.render_html(report(targets, vm("db-01", 120, 420), vm("app-01", 120, 600)))
    assert '<p id="verdict">Result: <span class="fail">FAIL</span></p>' in page
    assert "<li>RPO: 600s</li>" in page and "<li>RTO: 900s</li>" in page and "group db: RTO 300s" in page
    rows = re.findall(r"<tr><td>(db-01|app-01)</td>.*?</tr>", page)
    assert rows == ["db-01", "app-01"]
    db_row = re.search(r"<tr><td>db-01</td>.*?</tr>", page)
    assert db_row and db_row.group(0).endswith('<td class="verdict"><span class="fail">FAIL</span></td></tr>')
    # The time axis: ticks from 0:00 to the run's 20 minutes, evenly spaced, labelled m:ss.
    ticks = re.findall(r'<text class="tick" x="([\d.]+)"[^>]*>([\d:]+)</text>', page)
    labels = [t for _, t in ticks]
    assert labels[0] == "0:00" and labels[-1] == "20:00" and 4 <= len(labels) <= 11, labels
    xs = [float(x) for x, _ in ticks]
    steps = {round(b - a, 1) for a, b in pairwise(xs)}
    assert len(steps) == 1, steps
    assert "time since the run started" in page
    ok = reports.render_html(report(targets, vm("db-01", 120, 240)))
    assert '<p id="verdict">Result: <span class="pass">PASS</span></p>' in ok


def test_plan_schedule_with_an_invalid_inventory_is_a_located_error_not_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from seawall.cli import app

    bad = tmp_path / "inventory.yaml"
    bad.write_text("kind: Inventory\nversion: 1\nsites: [{name: Bad}]\n")
    env = {
        "SEAWALL_INVENTORY": str(bad),
        "SEAWALL_PLANS_DIR": str(tmp_path),
        "SEAWALL_TEMPORAL_ADDRESS": "127.0.0.1:9",
    }
    done = CliRunner().invoke(app, ["plan", "schedule"], env=env)
    assert done.exit_code == 2, done.output
    assert done.output.startswith(f"{bad}:3: sites[0]") and "Traceback" not in done.output
