"""Run reports: written by the ``write_report`` activity, read by the CLI and the API, rendered as a
self-contained HTML page.

Every run of a recovery plan writes ``<reports_dir>/<plan>/<run>.json`` (the :class:`RunReport`) and
an ``.html`` beside it. Run names start with their start time, so sorting the names orders the runs.
"""

from __future__ import annotations

import html
import os
from datetime import datetime
from pathlib import Path

from seawall.contract.messages import RunReport
from seawall.control.errors import NoReport


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
    "td,th{border:1px solid #ccc;padding:4px 8px}"
)


def render_html(report: RunReport) -> str:
    """A self-contained page: summary, per-VM evidence, and a timeline of groups and VMs (inline SVG)."""
    esc = html.escape
    t0 = datetime.fromisoformat(report.started_at)
    t1 = datetime.fromisoformat(report.finished_at)
    span = max((t1 - t0).total_seconds(), 1.0)
    bars: list[tuple[str, float, float, str]] = []
    for g in report.groups:
        bars.append((f"group {g.step}", _secs(g.started_at, t0), _secs(g.finished_at, t0), "#4a78c2"))
    for v in report.vms:
        bars.append((v.vm, _secs(v.started_at, t0), _secs(v.healthy_at, t0), "#3c9a5f"))
    width, row = 900, 22
    svg = [f'<svg width="{width + 200}" height="{row * len(bars) + 30}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, a, b, color) in enumerate(bars):
        x = 180 + a / span * width
        w = max(2.0, (b - a) / span * width)
        y = 10 + i * row
        svg.append(f'<text x="0" y="{y + 14}" font-size="12">{esc(label)}</text>')
        svg.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" fill="{color}">'
            f"<title>{a:.1f}s - {b:.1f}s</title></rect>"
        )
    svg.append("</svg>")
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(c))}</td>"
            for c in (
                v.vm,
                v.target_name,
                v.point_id,
                v.replica_store or "-",
                v.point_created_at,
                f"{_secs(v.started_at, datetime.fromisoformat(v.point_created_at)):.0f}s",
                f"{(datetime.fromisoformat(v.healthy_at) - t0).total_seconds():.1f}s",
                ", ".join(v.ips),
                ", ".join(f"{d.name}={d.value}" for d in v.dns) or "-",
            )
        )
        + "</tr>"
        for v in report.vms
    )
    failed = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in report.failed_vms.items())
    hooks = "".join(
        f"<li>{esc(h.name)}: {'ok' if h.ok else 'failed'} — {esc(h.detail)}</li>" for h in report.hooks
    )
    approvals = "".join(
        f"<li>{esc(a.gate)}: {'approved' if a.approved else 'rejected'} "
        f"by {esc(a.by)} at {esc(a.at)} {esc(a.comment)}</li>"
        for a in report.approvals
    )
    cleanup = (
        "".join(f"<li>{esc(r.kind)} {esc(r.id)} at {esc(r.site)}</li>" for r in report.cleanup.removed)
        if report.cleanup
        else ""
    )
    title = f"Seawall {esc(report.plan)} {esc(report.run)}"
    head = [
        "VM",
        "as",
        "recovery point",
        "replica store",
        "point time",
        "achieved RPO",
        "time to healthy (RTO)",
        "IPs",
        "DNS",
    ]
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>Seawall run {esc(report.run)}: plan {esc(report.plan)} ({esc(report.mode)}) — {esc(report.status)}</h1>
<p>Started {esc(report.started_at)}, finished {esc(report.finished_at)} ({span:.1f}s).</p>
<h2>Timeline</h2>{"".join(svg)}
<h2>Recovered VMs</h2><table><tr>{header}</tr>{rows}</table>
<h2>Failed</h2><ul>{failed or "<li>none</li>"}</ul>
<h2>Hooks</h2><ul>{hooks or "<li>none</li>"}</ul>
<h2>Approvals</h2><ul>{approvals or "<li>none</li>"}</ul>
<h2>Fencing</h2><ul>{"".join(f"<li>{esc(n)}</li>" for n in report.fencing) or "<li>not needed</li>"}</ul>
<h2>Cleanup</h2><ul>{cleanup or "<li>none</li>"}</ul>
</body></html>
"""


def _secs(iso: str, t0: datetime) -> float:
    return (datetime.fromisoformat(iso) - t0).total_seconds()
