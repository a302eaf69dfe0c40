"""Recovery at the orchestration queue: plan loading, the plan's shape, schedules paused, the report.

The per-VM steps run at the sites' workers: ``activities.target`` (choose, materialize, create,
failback in place), ``activities.checks`` (health, DNS), ``activities.hooks``, ``activities.cleanup``
at the target site, and ``activities.fence`` at the source.
"""

from __future__ import annotations

import html
import os
import threading
from datetime import datetime
from pathlib import Path

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError

from seawall.contract.messages import (
    GroupStep,
    PlanSpec,
    RecoverVMInput,
    ReportWritten,
    RunReport,
    VMStep,
)
from seawall.model import (
    Inventory,
    RecoveryPlan,
)
from seawall.plans import PlanValidationError, load_inventory, load_plan
from seawall.runtime.config import Settings


def _fatal(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


_plan_cache: dict[tuple[str, str], tuple[tuple[object, ...], tuple[RecoveryPlan, Inventory]]] = {}
_plan_cache_lock = threading.Lock()


def _files_stamp(settings: Settings) -> tuple[object, ...]:
    """What a cached plan depends on: the inventory and every plan file, by size and mtime."""
    paths = [Path(settings.inventory), *sorted(Path(settings.plans_dir).glob("*.y*ml"))]
    stamp: list[object] = []
    for path in paths:
        try:
            st = path.stat()
            stamp.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((str(path), None))
    return tuple(stamp)


def find_plan(settings: Settings, name: str) -> tuple[RecoveryPlan, Inventory]:
    """The plan called ``name``, parsed once per change of its files.

    Every step of every VM reads its plan; parsing a 100-VM plan costs ~0.2 s of CPU, which, 40 times
    per group, was most of a large plan's orchestration overhead (benchmarks/plan.py).
    """
    key = (str(settings.inventory), f"{settings.plans_dir}:{name}")
    stamp = _files_stamp(settings)
    with _plan_cache_lock:
        hit = _plan_cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    found = _find_plan(settings, name)
    with _plan_cache_lock:
        _plan_cache[key] = (stamp, found)
    return found


def _find_plan(settings: Settings, name: str) -> tuple[RecoveryPlan, Inventory]:
    """The plan called ``name``: inline in the inventory, or a ``kind: RecoveryPlan`` file in plans_dir."""
    try:
        inventory = load_inventory(settings.inventory)
    except PlanValidationError as exc:
        raise _fatal("inventory is invalid: " + "; ".join(map(str, exc.errors[:5])), "PlanInvalid") from None
    for plan in inventory.plans:
        if plan.name == name:
            return plan, inventory
    folder = Path(settings.plans_dir)
    seen = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            head = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(head, dict) or head.get("kind") != "RecoveryPlan":
            continue
        seen.append(str(head.get("name")))
        if head.get("name") == name:
            try:
                return load_plan(path, inventory), inventory
            except PlanValidationError as exc:
                raise _fatal(
                    f"plan {name!r} is invalid: " + "; ".join(map(str, exc.errors[:5])), "PlanInvalid"
                ) from None
    raise _fatal(
        f"no recovery plan named {name!r} (plans: {', '.join(seen) or 'none'} in {folder})", "PlanInvalid"
    )


def plan_spec(plan: RecoveryPlan, inventory: Inventory, direction: str = "failover") -> PlanSpec:
    gates = {g.before: g for g in plan.gates}
    groups = []
    for group in plan.groups:
        gate = gates.get(group.name)
        groups.append(
            GroupStep(
                name=group.name,
                boot_delay_s=group.boot_delay.total_seconds(),
                vms=[
                    VMStep(
                        vm=v.name,
                        group=group.name,
                        depends_on=list(v.depends_on),
                        boot_delay_s=v.boot_delay.total_seconds(),
                    )
                    for v in group.vms
                ],
                pre_hooks=[h.name for h in group.pre_hooks],
                post_hooks=[h.name for h in group.post_hooks],
                gate=gate.name if gate else None,
                gate_message=gate.message if gate else None,
                gate_timeout_s=gate.timeout.total_seconds() if gate and gate.timeout else None,
                gate_on_timeout=gate.on_timeout if gate else "abort",
            )
        )
    # Failing back runs the same groups the other way: from the plan's target to its source.
    source, target = (plan.source_site, plan.target_site)
    if direction == "failback":
        source, target = target, source
    return PlanSpec(
        plan=plan.name,
        source_site=source,
        target_site=target,
        target_kind=inventory.site(target).kind,
        failure_policy=str(
            plan.failure_policy.value if hasattr(plan.failure_policy, "value") else plan.failure_policy
        ),
        test_ttl_s=plan.test_ttl.total_seconds(),
        pre_hooks=[h.name for h in plan.pre_hooks],
        post_hooks=[h.name for h in plan.post_hooks],
        groups=groups,
    )


def target_name(inp: RecoverVMInput) -> str:
    """The recovered VM's name: the source's for a failover, a run-suffixed one for a drill."""
    return inp.vm if inp.mode != "test" else f"{inp.vm}-drill-{inp.run[-8:]}"


class OrchestrationActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="load_plan_spec")
    def load_plan_spec(self, plan: str, direction: str = "failover") -> PlanSpec:
        found, inventory = find_plan(self.settings, plan)
        return plan_spec(found, inventory, direction)

    @activity.defn(name="write_report")
    def write_report(self, report: RunReport) -> ReportWritten:
        folder = Path(self.settings.reports_dir) / report.plan
        folder.mkdir(parents=True, exist_ok=True)
        json_path = folder / f"{report.run}.json"
        html_path = folder / f"{report.run}.html"
        _atomic_write(json_path, report.model_dump_json(indent=2))
        _atomic_write(html_path, render_html(report))
        return ReportWritten(json_path=str(json_path.resolve()), html_path=str(html_path.resolve()))

    @activity.defn(name="pause_schedules")
    async def pause_schedules(self, vms: list[str]) -> int:
        """Stop scheduled cycles of the VMs being failed over: their sources are about to be fenced."""
        from temporalio.service import RPCError, RPCStatusCode

        paused = 0
        for vm in vms:
            try:
                await (
                    activity.client()
                    .get_schedule_handle(f"replicate/{vm}")
                    .pause(note="failover in progress")
                )
                paused += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return paused


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    head = ["VM", "as", "recovery point", "point time", "achieved RPO", "time to healthy (RTO)", "IPs", "DNS"]
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
