"""The last drill of each plan, from the run reports on disk (``<reports_dir>/<plan>/<run>.json``).

The orchestration side writes a report at the end of every run (``write_report``), a drill's after its
cleanup. A run id starts with its UTC start time, so a plan's reports sorted by name are in start
order: a scan reads newest first and stops at the newest drill and the newest *successful* drill.
A parsed file is remembered by (mtime, size), so a refresh costs a ``stat`` per report it looks at.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.runtime.config import Settings

log = logging.getLogger("seawall.runtime.metrics")


@dataclass(frozen=True)
class Drill:
    run: str
    started_at: float  # Unix time the drill run started
    success: bool  # completed, and every VM recovered and healthy


@dataclass(frozen=True)
class PlanDrills:
    last: Drill | None
    last_success: Drill | None


def drill_of(report: dict[str, object]) -> Drill | None:
    """A report's drill verdict; None for a real failover/failback or a report we cannot read."""
    if report.get("mode") != "test":
        return None
    try:
        started = datetime.fromisoformat(str(report["started_at"])).timestamp()
    except (KeyError, ValueError):
        return None
    success = report.get("status") == "completed" and not report.get("failed_vms")
    if success and report.get("targets"):
        # Judged against the plan's RPO/RTO as the report recorded them: a drill that missed them failed.
        from seawall.contract.messages import RunReport
        from seawall.reports import verdicts

        try:
            success = verdicts(RunReport.model_validate(report))[0]
        except ValueError:
            success = False
    return Drill(run=str(report.get("run", "")), started_at=started, success=success)


class DrillReports:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._parsed: dict[Path, tuple[tuple[int, int], Drill | None]] = {}

    def _read(self, path: Path) -> Drill | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            data = json.loads(path.read_text())
            drill = drill_of(data) if isinstance(data, dict) else None
        except (OSError, ValueError) as exc:
            log.warning("metrics: cannot read report %s: %s", path, exc)
            drill = None
        self._parsed[path] = (stamp, drill)
        return drill

    def plan(self, plan: str) -> PlanDrills:
        last: Drill | None = None
        success: Drill | None = None
        folder = self.folder / plan
        reports = sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []
        for path in reports:
            drill = self._read(path)
            if drill is None:
                continue
            last = last or drill
            if drill.success:
                success = drill
                break
        return PlanDrills(last=last, last_success=success)

    def scan(self, plans: list[str] | None = None) -> dict[str, PlanDrills]:
        """Every plan given (a plan without reports has no drill), plus any folder of reports."""
        names = set(plans or [])
        if self.folder.is_dir():
            names |= {p.name for p in self.folder.iterdir() if p.is_dir()}
        return {name: self.plan(name) for name in sorted(names)}


def plan_targets(settings: Settings) -> dict[str, float | None]:
    """Every plan of the catalogue, with its own ``max_drill_age`` in seconds where the plan sets one."""
    from seawall.plans.catalogue import load_catalogue

    catalogue = load_catalogue(settings.inventory, settings.plans_dir)
    out: dict[str, float | None] = {}
    for entry in catalogue.entries():
        max_age = getattr(entry.plan, "max_drill_age", None) if entry.plan is not None else None
        out[entry.name] = max_age.total_seconds() if isinstance(max_age, timedelta) else None
    return out
