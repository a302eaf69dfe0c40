"""Run reports: written by the ``write_report`` activity, read by the CLI and the API, rendered as a
self-contained HTML page.

Every run of a recovery plan writes ``<reports_dir>/<plan>/<run>.json`` (the :class:`RunReport`) and
an ``.html`` beside it. Run names start with their start time, so sorting the names orders the runs.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from seawall.contract.drills import ReportTargets
from seawall.contract.messages import Approval, RunReport
from seawall.control.errors import NoReport
from seawall.model.plan import RecoveryPlan


def paths(reports_dir: Path | str, plan: str, run: str) -> tuple[Path, Path]:
    """Where a run's report is written: its JSON and its HTML page."""
    folder = Path(reports_dir) / plan
    return folder / f"{run}.json", folder / f"{run}.html"


def write(reports_dir: Path | str, report: RunReport) -> tuple[Path, Path]:
    """Write the report's JSON and HTML (each atomically: a reader never sees half a file)."""
    json_path, html_path = paths(reports_dir, report.plan, report.run)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(json_path, report.model_dump_json(indent=2))
    _atomic_write(html_path, render_html(report))
    return json_path, html_path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def find(reports_dir: Path | str, plan: str, run: str | None = None) -> Path:
    """The JSON report of ``plan``'s run ``run`` (default: the newest); :class:`NoReport` if none.

    Run names are compared with the files found, never joined into a path: no traversal.
    """
    folder = Path(reports_dir) / plan
    found = sorted(folder.glob("*.json"))
    if run is not None:
        found = [p for p in found if p.stem == run]
    if not found:
        raise NoReport(plan, run, str(folder))
    return found[-1]


def read(reports_dir: Path | str, plan: str, run: str | None = None) -> tuple[Path, RunReport]:
    """The report found by :func:`find`, parsed, with its path (the HTML is beside it)."""
    path = find(reports_dir, plan, run)
    return path, RunReport.model_validate_json(path.read_text())


STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px}.pass{color:#1d7a3a;font-weight:bold}"
    ".fail{color:#b3261e;font-weight:bold}.axis text{font-size:11px;fill:#555}"
)
LABEL_W, BAR_W, ROW_H = 180, 900, 22


def targets_of(plan: RecoveryPlan) -> ReportTargets:
    """The plan's RPO and RTO, and each VM's RTO (its group's, else the plan's)."""
    rto = plan.rto.total_seconds() if plan.rto else None
    groups = {g.name: g.rto.total_seconds() for g in plan.groups if g.rto}
    per_vm = {vm.name: groups.get(group.name, rto) for group, vm in plan.vms()}
    return ReportTargets(
        rpo_s=plan.rpo.total_seconds() if plan.rpo else None,
        rto_s=rto,
        group_rto_s=groups,
        vm_rto_s={vm: s for vm, s in per_vm.items() if s is not None},
    )


@dataclass(frozen=True)
class VmVerdict:
    vm: str
    rpo_s: float  # achieved: the run's start minus the point's time
    rto_s: float  # achieved: healthy, from the run's start
    rpo_ok: bool | None  # None: no target
    rto_ok: bool | None

    @property
    def passed(self) -> bool:
        return self.rpo_ok is not False and self.rto_ok is not False


def verdicts(report: RunReport) -> tuple[bool, list[VmVerdict]]:
    """PASS/FAIL per recovered VM against the plan's targets, and for the run: completed, no VM
    failed, every VM within its targets."""
    t0 = datetime.fromisoformat(report.started_at)
    targets = report.targets or ReportTargets()
    out = []
    for v in report.vms:
        rpo = (t0 - datetime.fromisoformat(v.point_created_at)).total_seconds()
        rto = (datetime.fromisoformat(v.healthy_at) - t0).total_seconds()
        rto_target = targets.vm_rto_s.get(v.vm, targets.rto_s)
        out.append(
            VmVerdict(
                vm=v.vm,
                rpo_s=rpo,
                rto_s=rto,
                rpo_ok=None if targets.rpo_s is None else rpo <= targets.rpo_s,
                rto_ok=None if rto_target is None else rto <= rto_target,
            )
        )
    passed = report.status == "completed" and not report.failed_vms and all(v.passed for v in out)
    return passed, out


def _tick_step(span: float) -> float:
    """A readable tick interval giving 4-10 ticks over ``span`` seconds."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200):
        if span / step <= 10:
            return float(step)
    return 86400.0


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def timeline_svg(bars: list[tuple[str, float, float, str]], span: float) -> str:
    """Bars on a time axis: ticks and grid lines at readable intervals, labelled m:ss from the start."""
    esc = html.escape
    height = ROW_H * len(bars) + 56  # the bars, the axis, its tick labels and its caption
    svg = [
        f'<svg class="timeline" width="{LABEL_W + BAR_W + 20}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="timeline">'
    ]
    step = _tick_step(span)
    axis_y = 10 + ROW_H * len(bars) + 4
    svg.append(
        f'<g class="axis"><line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + BAR_W}" '
        f'y2="{axis_y}" stroke="#555"/>'
    )
    tick = 0.0
    while tick <= span + 1e-9:
        x = LABEL_W + tick / span * BAR_W
        svg.append(f'<line x1="{x:.1f}" y1="6" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#ddd"/>')
        svg.append(
            f'<text class="tick" x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{_clock(tick)}</text>'
        )
        tick += step
    svg.append(
        f'<text x="{LABEL_W + BAR_W}" y="{axis_y + 30}" text-anchor="end">'
        "time since the run started (m:ss)</text></g>"
    )
    for i, (label, a, b, color) in enumerate(bars):
        x = LABEL_W + a / span * BAR_W
        w = max(2.0, (b - a) / span * BAR_W)
        y = 10 + i * ROW_H
        svg.append(f'<text x="0" y="{y + 14}" font-size="12">{esc(label)}</text>')
        svg.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" fill="{color}">'
            f"<title>{esc(label)}: {_clock(a)} - {_clock(b)}</title></rect>"
        )
    svg.append("</svg>")
    return "".join(svg)


def _mark(ok: bool | None) -> str:
    if ok is None:
        return '<span class="none">no target</span>'
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def _target(seconds: float | None) -> str:
    return "not set" if seconds is None else f"{seconds:.0f}s"


def _identity(a: Approval) -> str:
    """A verified identity shows its role; a claimed name (no signed intent) says so."""
    if a.verified:
        return f" ({html.escape(a.role or '')}, verified)"
    return "" if a.by in ("timeout", "abort") else " (unverified name)"


def render_html(report: RunReport) -> str:
    """A self-contained page: verdict against the plan's targets, per-VM evidence, and a timeline of
    groups and VMs on a time axis (inline SVG)."""
    esc = html.escape
    t0 = datetime.fromisoformat(report.started_at)
    t1 = datetime.fromisoformat(report.finished_at)
    span = max((t1 - t0).total_seconds(), 1.0)
    bars: list[tuple[str, float, float, str]] = []
    for g in report.groups:
        bars.append((f"group {g.step}", _secs(g.started_at, t0), _secs(g.finished_at, t0), "#4a78c2"))
    for v in report.vms:
        bars.append((v.vm, _secs(v.started_at, t0), _secs(v.healthy_at, t0), "#3c9a5f"))
    passed, per_vm = verdicts(report)
    judged = {v.vm: v for v in per_vm}
    targets = report.targets or ReportTargets()
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(c))}</td>"
            for c in (
                v.vm,
                v.target_name,
                v.point_id + (f" (group {v.consistency_group})" if v.consistency_group else ""),
                "app-consistent" if v.app_consistent else "crash-consistent",
                v.replica_store or "-",
                v.point_created_at,
                f"{judged[v.vm].rpo_s:.0f}s",
                f"{judged[v.vm].rto_s:.1f}s",
                ", ".join(v.ips),
                ", ".join(
                    f"{d.name}={d.value}" + ("" if d.outcome == "set" else f" ({d.outcome})") for d in v.dns
                )
                or "-",
            )
        )
        + f"<td>{_mark(judged[v.vm].rpo_ok)}</td><td>{_mark(judged[v.vm].rto_ok)}</td>"
        + f'<td class="verdict">{_mark(judged[v.vm].passed)}</td></tr>'
        for v in report.vms
    )
    # What each check saw, the guest's own words included (a KVM guest's "ready" line, last record).
    checks = "".join(f"<li>{esc(v.vm)}: {esc(line)}</li>" for v in report.vms for line in v.health.checks)
    failed = "".join(
        f'<li>{esc(k)}: {esc(v)} <span class="fail">FAIL</span></li>' for k, v in report.failed_vms.items()
    )
    # What a recovered VM did not copy from its source (a point without a captured configuration...).
    notes = "".join(f"<li>{esc(v.vm)}: {esc(n)}</li>" for v in report.vms for n in v.notes)
    hooks = "".join(
        f"<li>{esc(h.name)}: {'ok' if h.ok else 'failed'} — {esc(h.detail)}</li>" for h in report.hooks
    )
    signed = [report.authorised_by] if report.authorised_by else []
    approvals = "".join(
        f"<li>{esc(a.gate)}: {'approved' if a.approved else 'rejected'} "
        f"by {esc(a.by)}{_identity(a)} at {esc(a.at)} {esc(a.comment)}</li>"
        for a in [*signed, *report.approvals]
    )
    cleanup = (
        "".join(f"<li>{esc(r.kind)} {esc(r.id)} at {esc(r.site)}</li>" for r in report.cleanup.removed)
        + "".join(f"<li>DNS {esc(d.outcome)}: {esc(d.detail)}</li>" for d in report.cleanup.dns)
        if report.cleanup
        else ""
    )
    groups_rto = "".join(f"<li>group {esc(g)}: RTO {s:.0f}s</li>" for g, s in targets.group_rto_s.items())
    title = f"Seawall {esc(report.plan)} {esc(report.run)}"
    head = [
        "VM",
        "as",
        "recovery point",
        "consistency",
        "replica store",
        "point time",
        "achieved RPO",
        "time to healthy (RTO)",
        "IPs",
        "DNS",
        "RPO",
        "RTO",
        "result",
    ]
    header = "".join(f"<th>{h}</th>" for h in head)
    verdict = '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>Seawall run {esc(report.run)}: plan {esc(report.plan)} ({esc(report.mode)}) — {esc(report.status)}</h1>
<p id="verdict">Result: {verdict}</p>
<p>Started {esc(report.started_at)}, finished {esc(report.finished_at)} ({span:.1f}s).</p>
<h2>Targets</h2><ul id="targets"><li>RPO: {_target(targets.rpo_s)}</li>
<li>RTO: {_target(targets.rto_s)}</li>{groups_rto}</ul>
<h2>Timeline</h2>{timeline_svg(bars, span)}
<h2>Recovered VMs</h2><table><tr>{header}</tr>{rows}</table>
<h2>Health checks</h2><ul>{checks or "<li>none</li>"}</ul>
<h2>Configuration notes</h2><ul>{notes or "<li>none: every VM is as its source was</li>"}</ul>
<h2>Failed</h2><ul>{failed or "<li>none</li>"}</ul>
<h2>Hooks</h2><ul>{hooks or "<li>none</li>"}</ul>
<h2>Approvals</h2><ul>{approvals or "<li>none</li>"}</ul>
<h2>Fencing</h2><ul>{"".join(f"<li>{esc(n)}</li>" for n in report.fencing) or "<li>not needed</li>"}</ul>
<h2>Cleanup</h2><ul>{cleanup or "<li>none</li>"}</ul>
<h2>Decisions</h2><ul>{"".join(f"<li>{esc(d)}</li>" for d in report.decisions) or "<li>none</li>"}</ul>
{_rollback(report)}{"".join(f"<p><strong>Warning:</strong> {esc(w)}</p>" for w in report.warnings)}
</body></html>
"""


def _rollback(report: RunReport) -> str:
    """What an approved rollback destroyed and started again, if the run was rolled back."""
    rb, esc = report.rollback, html.escape
    if rb is None:
        return ""
    destroyed = "".join(f"<li>{esc(r.kind)} {esc(r.id)} at {esc(r.site)}</li>" for r in rb.destroyed.removed)
    started = "".join(f"<li>{esc(n)}</li>" for n in rb.sources_started)
    return (
        f"<h2>Rollback</h2><p>Requested by {esc(rb.requested_by)}, approved by {esc(rb.approved_by)}; "
        f"{rb.schedules_resumed} schedules resumed.</p>"
        f"<h3>Destroyed</h3><ul>{destroyed or '<li>none</li>'}</ul>"
        f"<h3>Sources started</h3><ul>{started or '<li>none</li>'}</ul>"
    )


def _secs(iso: str, t0: datetime) -> float:
    return (datetime.fromisoformat(iso) - t0).total_seconds()
