"""What the console shows, computed from plain data: no Temporal, no HTTP, so every rule is unit-tested.

The routes (``seawall.console.routes``) gather the inputs (replication status, cycle times, run reports)
and these functions turn them into the rows and badges a DR administrator reads at a glance.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from seawall.contract.messages import RunReport
from seawall.control.status import VMStatus, vm_state
from seawall.reports import verdicts

# The protection page's strip: 24 hours in 48 half-hour cells, each coloured by the worst point age in it.
STRIP_HOURS = 24
STRIP_CELLS = 48


class StripCell(BaseModel):
    start: datetime
    worst_age_s: float | None = Field(description="the oldest the newest verified point got; None: no point")


class ProtectionRow(BaseModel):
    """One protected VM as the protection page shows it."""

    vm: str
    state: str = Field(
        description=(
            "not-protected | seeding | replicating | throttled | protected | breach | stalled | paused"
        )
    )
    source_site: str
    plans: list[str]
    store: str
    policy: str
    rpo_s: float
    threshold_s: float
    last_point: str | None
    last_point_at: datetime | None
    age_s: float | None
    breach: bool
    last_bytes_shipped: int | None
    last_change_path: str | None
    last_cycle_s: float | None = Field(description="how long the newest completed cycle took")
    progress: float | None = Field(description="a running seed or cycle's fraction shipped")


class ReportSummary(BaseModel):
    plan: str
    run: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime
    vms: int
    failed_vms: int
    time_to_healthy_s: float | None = Field(description="from the run's start until its last VM was healthy")
    passed: bool | None = Field(
        default=None, description="completed, no VM failed, every VM within the targets (None: not judged)"
    )


class LastDrill(BaseModel):
    run: str
    status: str
    finished_at: datetime
    age_s: float
    time_to_healthy_s: float | None
    passed: bool = False


class DrillPlan(BaseModel):
    """The plan's drill schedule, as its file and Temporal have it."""

    cron: str
    approve_gates: bool
    paused: bool | None = Field(
        description="None: the schedule is not in Temporal yet (seawall plan schedule)"
    )
    next_at: datetime | None


class Readiness(BaseModel):
    """Would this plan work today? Each reason is a sentence an administrator can act on."""

    plan: str
    valid: bool
    problems: list[str]
    vms: list[str]
    vms_without_point: list[str]
    vms_in_breach: list[str]
    last_drill: LastDrill | None
    last_passed_drill: LastDrill | None = Field(description="the newest drill that passed (the badge's age)")
    last_run: ReportSummary | None
    rto_target_s: float | None
    max_drill_age_s: float | None
    schedule: DrillPlan | None = None
    ready: bool
    reasons: list[str]


def protection_row(
    status: VMStatus, store: str, plans: Sequence[str], last_cycle_s: float | None
) -> ProtectionRow:
    return ProtectionRow(
        vm=status.vm,
        state=vm_state(status),
        source_site=status.source_site,
        plans=sorted(plans),
        store=store,
        policy=status.policy,
        rpo_s=status.rpo_s,
        threshold_s=status.threshold_s,
        last_point=status.last_point,
        last_point_at=status.last_point_at,
        age_s=status.age_s,
        breach=status.breach,
        last_bytes_shipped=status.last_bytes_shipped,
        last_change_path=status.last_change_path,
        last_cycle_s=last_cycle_s,
        progress=status.progress.fraction if status.progress else None,
    )


def age_strip(
    points: Iterable[datetime], now: datetime, hours: int = STRIP_HOURS, cells: int = STRIP_CELLS
) -> list[StripCell]:
    """The worst age of the newest verified point in each cell of the last ``hours``.

    ``points`` are the times of verified points (any order, may reach back before the window). Within a
    cell the age grows until the next point lands, so the worst is at the cell's end or just before a
    point inside it. A stretch with no point yet has no age at all (None): not protected, not "fresh".
    """
    times = sorted(p for p in points if p <= now)
    width = timedelta(hours=hours) / cells
    start0 = now - timedelta(hours=hours)
    out: list[StripCell] = []
    for i in range(cells):
        a, b = start0 + width * i, start0 + width * (i + 1)
        worst: float | None = None
        # The point in force at the cell's start, then every point that lands inside it.
        first_inside = bisect_right(times, a)
        inside = times[first_inside : bisect_left(times, b)]
        chain = ([times[first_inside - 1]] if first_inside else []) + inside
        for j, t in enumerate(chain):
            until = chain[j + 1] if j + 1 < len(chain) else b
            age = (until - t).total_seconds()
            worst = age if worst is None else max(worst, age)
        out.append(StripCell(start=a, worst_age_s=worst))
    return out


def _time_to_healthy(report: RunReport) -> float | None:
    if not report.vms:
        return None
    t0 = datetime.fromisoformat(report.started_at)
    return max((datetime.fromisoformat(v.healthy_at) - t0).total_seconds() for v in report.vms)


def summarize(report: RunReport) -> ReportSummary:
    return ReportSummary(
        plan=report.plan,
        run=report.run,
        mode=report.mode,
        status=report.status,
        started_at=datetime.fromisoformat(report.started_at),
        finished_at=datetime.fromisoformat(report.finished_at),
        vms=len(report.vms),
        failed_vms=len(report.failed_vms),
        time_to_healthy_s=_time_to_healthy(report),
        passed=verdicts(report)[0],
    )


def read_reports(reports_dir: Path, plan: str) -> list[ReportSummary]:
    """A plan's run reports, newest first. A file that does not parse (being written, or from another
    version) is left out rather than failing the whole list."""
    out: list[ReportSummary] = []
    for path in (reports_dir / plan).glob("*.json"):
        try:
            out.append(summarize(RunReport.model_validate_json(path.read_text())))
        except (OSError, ValueError, ValidationError):
            continue
    out.sort(key=lambda r: r.started_at, reverse=True)
    return out


def _passed(r: ReportSummary) -> bool:
    # A summary not judged against targets (an older report) passes when it completed with no VM failed.
    return r.passed if r.passed is not None else r.status == "completed" and r.failed_vms == 0


def readiness(
    plan: str,
    *,
    valid: bool,
    problems: Sequence[str],
    vms: Sequence[str],
    rows: dict[str, ProtectionRow],
    reports: Sequence[ReportSummary],
    now: datetime,
    rto_target_s: float | None = None,
    max_drill_age_s: float | None = None,
    schedule: DrillPlan | None = None,
) -> Readiness:
    """Ready means: the plan checks, every VM has a verified point within its RPO, and the newest drill
    passed within its RTO target (if the plan has one). No drill at all is a reason, not a failure to
    compute: a plan nobody has tested is not known to work."""
    without = [vm for vm in vms if vm not in rows or rows[vm].last_point is None]
    breach = [vm for vm in vms if vm in rows and rows[vm].last_point is not None and rows[vm].breach]
    drills = [r for r in reports if r.mode == "test"]
    last = drills[0] if drills else None
    passed = next((r for r in drills if _passed(r)), None)

    def as_drill(r: ReportSummary) -> LastDrill:
        return LastDrill(
            run=r.run,
            status=r.status,
            finished_at=r.finished_at,
            age_s=(now - r.finished_at).total_seconds(),
            time_to_healthy_s=r.time_to_healthy_s,
            passed=_passed(r),
        )

    last_drill = as_drill(last) if last else None
    last_passed = as_drill(passed) if passed else None
    reasons: list[str] = []
    if not valid:
        reasons.append("the plan does not pass its check")
    if without:
        reasons.append("no verified point for " + ", ".join(without))
    if breach:
        reasons.append("RPO breached for " + ", ".join(breach))
    if last_drill is None:
        reasons.append("never drilled")
    elif last_drill.status != "completed":
        reasons.append(f"the last drill {last_drill.status}")
    elif not last_drill.passed:
        reasons.append("the last drill missed the plan's targets")
    elif max_drill_age_s is not None and (last_passed is None or last_passed.age_s > max_drill_age_s):
        reasons.append(f"the last passed drill is older than max_drill_age ({max_drill_age_s:g}s)")
    elif (
        rto_target_s is not None
        and last_drill.time_to_healthy_s is not None
        and last_drill.time_to_healthy_s > rto_target_s
    ):
        reasons.append("the last drill missed the RTO target")
    return Readiness(
        plan=plan,
        valid=valid,
        problems=list(problems),
        vms=list(vms),
        vms_without_point=without,
        vms_in_breach=breach,
        last_drill=last_drill,
        last_passed_drill=last_passed,
        last_run=reports[0] if reports else None,
        rto_target_s=rto_target_s,
        max_drill_age_s=max_drill_age_s,
        schedule=schedule,
        ready=not reasons,
        reasons=reasons,
    )
