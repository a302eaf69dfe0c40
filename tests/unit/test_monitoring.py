"""deploy/monitoring/: the alert rules pass promtool (syntax and their own unit tests), the Grafana
dashboard is a valid classic dashboard model whose queries use only metrics that exist, and the
metric computations behind the alerts judge breach, stalled and drills from real inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from temporalio.common import MetricMeter

from seawall.model import Inventory
from seawall.plans import load_inventory
from seawall.runtime.metrics import DrillReports, SeawallMetrics, VmState, grace_for
from seawall.runtime.metrics.sources import Replication, ScheduleSeen

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "prometheus-rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
CHART = ROOT / "deploy" / "helm" / "seawall"

# Temporal SDK metrics the dashboard may use (names as the SDK's Prometheus exporter spells them;
# tests/integration/test_metrics.py checks each one the dashboard uses in a real worker's scrape).
SDK_METRICS = {
    "temporal_request",
    "temporal_request_failure",
    "temporal_activity_execution_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_activity_execution_failed",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_worker_task_slots_available",
    "temporal_num_pollers",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: run scripts/setup.sh (Debian package prometheus)")
    return found


# --- the metric names -------------------------------------------------------------------------------


def exported_metrics() -> tuple[set[str], set[str]]:
    """(every series name the worker exports, the histograms among them), from the sources."""
    names: set[str] = set()
    histograms: set[str] = set()
    for source in (ROOT / "seawall" / "runtime" / "metrics").glob("*.py"):
        text = source.read_text()
        names |= set(re.findall(r"\"(seawall_[a-z_]+)\"", text))
        histograms |= set(re.findall(r"create_histogram(?:_float)?\(\s*\"(seawall_[a-z_]+)\"", text))
    return names, histograms


def known_series() -> set[str]:
    names, histograms = exported_metrics()
    out = set(names)
    for base in histograms | {
        "temporal_activity_execution_latency",
        "temporal_activity_schedule_to_start_latency",
    }:
        out |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return out | SDK_METRICS | {"up"}


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:seawall|temporal)_[a-z0-9_]+)\b", expr))


def test_the_worker_exports_what_the_alerts_need() -> None:
    names, histograms = exported_metrics()
    assert {
        "seawall_rpo_breach",
        "seawall_rpo_threshold_seconds",
        "seawall_vm_protected",
        "seawall_replication_stalled",
        "seawall_replication_paused",
        "seawall_site_pollers",
        "seawall_site_last_poll_timestamp_seconds",
        "seawall_plan_last_drill_timestamp_seconds",
        "seawall_plan_last_drill_success",
        "seawall_plan_last_successful_drill_timestamp_seconds",
        "seawall_plan_max_drill_age_seconds",
        "seawall_plan_last_successful_drill_age_seconds",
    } <= names
    assert histograms == {"seawall_cycle_duration_seconds", "seawall_plan_step_duration_seconds"}


# --- Prometheus rules -------------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "prometheus-rules.test.yml", "prometheus-rules.drill-age.test.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_every_alert_is_documented_tested_and_uses_real_metrics() -> None:
    alerts = {r["alert"]: r for r in rules()}
    assert {
        "SeawallRpoBreach",
        "SeawallReplicationStalled",
        "SeawallSiteNoPollers",
        "SeawallDrillTooOld",
        "SeawallDrillFailed",
    } <= set(alerts)
    guide = (ROOT / "docs" / "OPERATIONS.md").read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", guide, flags=re.M)}
    tested = {
        check["alertname"]
        for path in MONITORING.glob("prometheus-rules*.test.yml")
        for case in yaml.safe_load(path.read_text())["tests"]
        for check in case.get("alert_rule_test", [])
        if check["exp_alerts"]
    }
    known = known_series()
    for name, rule in alerts.items():
        notes = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(notes), name
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/OPERATIONS.md" and anchor in anchors, (name, notes["runbook"], sorted(anchors))
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert name in tested, f"{name} has no promtool test where it fires"
        used = metrics_in(rule["expr"])
        assert used and used <= known, (name, used - known)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# --- Grafana dashboard ------------------------------------------------------------------------------

# The classic dashboard JSON model (grafana.com/docs, "Dashboard JSON model"), as much of it as this
# dashboard uses, strictly: an import that Grafana would reject or silently mangle fails here.
_DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
_GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
_TARGET = {
    "type": "object",
    "required": ["refId", "expr", "datasource"],
    "properties": {
        "refId": {"type": "string", "pattern": "^[A-Z]$"},
        "expr": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "legendFormat": {"type": "string"},
        "datasource": _DATASOURCE,
        "instant": {"type": "boolean"},
        "range": {"type": "boolean"},
        "format": {"enum": ["time_series", "table", "heatmap"]},
    },
    "additionalProperties": False,
}
_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["row", "timeseries", "stat", "table", "gauge", "bargauge", "text"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "gridPos": _GRID,
        "datasource": _DATASOURCE,
        "targets": {"type": "array", "items": _TARGET},
        "fieldConfig": {
            "type": "object",
            "required": ["defaults", "overrides"],
            "properties": {"defaults": {"type": "object"}, "overrides": {"type": "array"}},
        },
        "options": {"type": "object"},
        "transformations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "options"],
                "properties": {"id": {"type": "string"}},
            },
        },
        "collapsed": {"type": "boolean"},
        "panels": {"type": "array", "maxItems": 0},
    },
    "additionalProperties": False,
    "if": {"properties": {"type": {"const": "row"}}},
    "then": {"required": ["collapsed", "panels"]},
    "else": {
        "required": ["targets", "datasource", "fieldConfig"],
        "properties": {"targets": {"minItems": 1}},
    },
}
_VARIABLE = {
    "type": "object",
    "required": ["name", "type"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
        "type": {"enum": ["datasource", "query", "custom", "constant", "interval", "textbox"]},
    },
}
DASHBOARD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "uid",
        "title",
        "tags",
        "timezone",
        "editable",
        "graphTooltip",
        "panels",
        "time",
        "templating",
        "annotations",
        "refresh",
        "schemaVersion",
        "version",
    ],
    "properties": {
        "id": {"type": ["integer", "null"]},
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{8,40}$"},
        "title": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "timezone": {"enum": ["browser", "utc", ""]},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {"list": {"type": "array", "items": _VARIABLE}},
        },
        "annotations": {"type": "object", "required": ["list"]},
        "refresh": {"type": "string", "pattern": r"^(\d+[smhd])?$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "version": {"type": "integer"},
        "panels": {"type": "array", "minItems": 1, "items": _PANEL},
    },
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_dashboard_is_a_valid_grafana_dashboard_model(dashboard: dict[str, Any]) -> None:
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    # Panels do not overlap on the 24-column grid.
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_dashboard_queries_use_only_real_metrics_and_defined_variables(dashboard: dict[str, Any]) -> None:
    known = known_series()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used: set[str] = set()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    for expr in exprs:
        names = metrics_in(expr)
        assert names, f"no Seawall or SDK metric in {expr!r}"
        assert names <= known, f"{expr!r} uses {sorted(names - known)}: exported by nothing"
        assert set(re.findall(r"\$(\w+)", expr)) <= variables, expr
        used |= names
    # What the issue asks the dashboard to show.
    for wanted in (
        "seawall_rpo_age_seconds",
        "seawall_rpo_threshold_seconds",
        "seawall_rpo_breach",
        "seawall_bytes_shipped_total",
        "seawall_cycle_duration_seconds_bucket",
        "seawall_plan_step_duration_seconds_bucket",
        "seawall_site_pollers",
        "seawall_plan_last_drill_timestamp_seconds",
        "seawall_plan_last_drill_success",
    ):
        assert wanted in used, wanted
    assert any(n.startswith("temporal_") for n in used), "no SDK metric on the dashboard"


def dashboard_sdk_metrics() -> set[str]:
    """The SDK series the dashboard uses (the integration test finds each in a real scrape)."""
    data = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    return {n for e in exprs for n in metrics_in(e) if n.startswith("temporal_")}


# --- Helm: the optional PrometheusRule and dashboard ConfigMap --------------------------------------


def test_chart_ships_the_rules_and_dashboard_only_when_asked() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    monitoring = values["monitoring"]
    assert monitoring["prometheusRule"]["enabled"] is False
    assert monitoring["grafanaDashboard"]["enabled"] is False
    text = (CHART / "templates" / "monitoring.yaml").read_text()
    assert ".Values.monitoring.prometheusRule.enabled" in text
    assert ".Values.monitoring.grafanaDashboard.enabled" in text
    # The chart carries copies (Helm reads files only inside the chart): they must be the same files.
    for name in ("prometheus-rules.yml", "grafana-dashboard.json"):
        assert (CHART / "files" / name).read_bytes() == (MONITORING / name).read_bytes(), (
            f"deploy/helm/seawall/files/{name} differs from deploy/monitoring/{name}: copy it"
        )
    assert "kind: PrometheusRule" in text and "kind: ConfigMap" in text
    assert "grafanaDashboard.label" in text


# --- what the gauges compute ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "inventory.yaml")


def test_threshold_follows_the_schedule_not_the_inventory(inventory: Inventory) -> None:
    # app-01 is rpo-5m in the inventory; protected with --policy rpo-30s its schedule says 30 s.
    assert grace_for(inventory, "app-01", 30.0) == 30.0  # rpo-30s's grace, not rpo-5m's 150 s
    assert grace_for(inventory, "app-01", 300.0) == 150.0
    assert grace_for(inventory, "web-01", 900.0) == 600.0  # rpo-15m sets rpo_grace: 10m
    assert grace_for(inventory, "web-01", 7200.0) == 3600.0  # no policy has 2 h: the default rule
    metrics = SeawallMetrics(MetricMeter.noop, inventory, ["primary"])
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    schedule = ScheduleSeen(
        paused=False, interval_s=30.0, site="primary", created_at=now - timedelta(hours=1)
    )
    metrics.replication_seen(
        "app-01",
        Replication(schedule=schedule, point_at=now - timedelta(seconds=45), progress_at=now),
        now=now.timestamp(),
    )
    state = metrics.state("app-01")
    assert state is not None and state.threshold_s == 60.0 and state.protected
    assert not state.breached(now.timestamp())
    assert state.breached(now.timestamp() + 20)  # point 65 s old > 60 s
    metrics.update(now=now.timestamp())


def test_an_unprotected_vm_is_never_breached_or_stalled(inventory: Inventory) -> None:
    metrics = SeawallMetrics(MetricMeter.noop, inventory, ["primary"])
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    metrics.replication_seen(
        "db-01",
        Replication(schedule=None, point_at=now - timedelta(days=3), progress_at=None),
        now=now.timestamp(),
    )
    state = metrics.state("db-01")
    assert state is not None and state.protected is False and state.threshold_s is None
    assert not state.breached(now.timestamp()) and not state.stalled(now.timestamp())


def test_stalled_means_no_progress_for_two_intervals_not_merely_late() -> None:
    now = 1_000_000.0
    late = VmState(
        "primary", protected=True, interval_s=30, threshold_s=60, point_at=now - 300, progress_at=now - 5
    )
    assert late.breached(now) and not late.stalled(now)  # a slow seed heartbeating: late, not stalled
    stuck = VmState(
        "primary", protected=True, interval_s=30, threshold_s=60, point_at=now - 70, progress_at=now - 61
    )
    assert stuck.breached(now) and stuck.stalled(now)
    stuck.paused = True
    assert not stuck.stalled(now)  # a paused schedule is not expected to make progress
    fresh = VmState(
        "primary", protected=True, interval_s=30, threshold_s=60, point_at=now - 40, progress_at=now - 40
    )
    assert not fresh.breached(now) and not fresh.stalled(now)


def test_a_new_point_from_the_interceptor_clears_breach_and_stall(inventory: Inventory) -> None:
    metrics = SeawallMetrics(MetricMeter.noop, inventory, ["primary"])
    now = 2_000_000.0
    schedule = ScheduleSeen(paused=False, interval_s=30.0, site="primary", created_at=None)
    old = datetime.fromtimestamp(now - 600, UTC)
    metrics.replication_seen("db-01", Replication(schedule=schedule, point_at=old, progress_at=old), now=now)
    state = metrics.state("db-01")
    assert state is not None and state.breached(now) and state.stalled(now)
    assert "db-01" in metrics.due(now + 20, refresh_s=60)  # looks bad on 20 s old knowledge: re-read
    assert "db-01" not in metrics.due(now + 5, refresh_s=60)  # just read
    metrics.cycle_verified("db-01", "primary", datetime.fromtimestamp(now - 10, UTC), now=now)
    assert not state.breached(now) and not state.stalled(now)


def test_a_reprotected_vm_is_reported_at_its_schedules_site(inventory: Inventory) -> None:
    metrics = SeawallMetrics(MetricMeter.noop, inventory, ["primary"], fleet=True)
    assert "web-02" in metrics.vms
    schedule = ScheduleSeen(paused=False, interval_s=900.0, site="dr", created_at=None)
    metrics.replication_seen("web-02", Replication(schedule=schedule, point_at=None, progress_at=None))
    state = metrics.state("web-02")
    assert state is not None and state.site == "dr"


def _report(folder: Path, plan: str, run: str, **fields: Any) -> Path:
    (folder / plan).mkdir(parents=True, exist_ok=True)
    path = folder / plan / f"{run}.json"
    body = {"plan": plan, "run": run, "mode": "test", "status": "completed", "failed_vms": {}}
    body.update(fields)
    path.write_text(json.dumps(body))
    return path


def test_drills_from_reports_newest_first_and_cached_by_mtime(tmp_path: Path) -> None:
    t0 = "2026-11-01T10:00:00+00:00"
    t1 = "2026-11-20T10:00:00+00:00"
    t2 = "2026-11-28T10:00:00+00:00"
    _report(tmp_path, "erp-dr", "20261101T100000Z-aaaa", started_at=t0)
    _report(tmp_path, "erp-dr", "20261120T100000Z-bbbb", started_at=t1, mode="planned")  # not a drill
    newest = _report(tmp_path, "erp-dr", "20261128T100000Z-cccc", started_at=t2, failed_vms={"db-01": "boom"})
    _report(tmp_path, "web-dr", "20261128T100000Z-dddd", started_at=t2, status="aborted")
    (tmp_path / "erp-dr" / "20261129T100000Z-eeee.json.tmp").write_text("{half")  # a write in progress
    reports = DrillReports(tmp_path)
    found = reports.scan(["erp-dr", "web-dr", "never-dr"])
    erp = found["erp-dr"]
    assert erp.last is not None and erp.last.run == "20261128T100000Z-cccc" and not erp.last.success
    assert erp.last_success is not None and erp.last_success.run == "20261101T100000Z-aaaa"
    assert erp.last_success.started_at == datetime.fromisoformat(t0).timestamp()
    assert found["web-dr"].last is not None and found["web-dr"].last_success is None
    assert found["never-dr"].last is None and found["never-dr"].last_success is None
    # A rewritten report is read again; an unchanged one is not.
    newest.write_text(json.dumps({"mode": "test", "run": "x", "status": "completed", "started_at": t2}))
    os.utime(newest, ns=(newest.stat().st_atime_ns, newest.stat().st_mtime_ns + 1_000_000))
    again = reports.scan(["erp-dr"])["erp-dr"]
    assert again.last is not None and again.last.success and again.last_success == again.last


def test_a_drill_that_missed_its_targets_did_not_pass(tmp_path: Path) -> None:
    from seawall.contract.messages import HealthOutcome, RecoverVMResult

    t0 = "2026-11-28T10:00:00+00:00"
    db = RecoverVMResult(
        vm="db-01",
        target_name="db-01-drill",
        point_id="p",
        point_created_at="2026-11-28T09:59:00+00:00",
        ips=[],
        dns=[],
        health=HealthOutcome(ok=True, checks=[], elapsed_s=1.0),
        resources=[],
        steps=[],
        started_at=t0,
        healthy_at="2026-11-28T10:20:00+00:00",
    ).model_dump(mode="json")
    common = {
        "started_at": t0,
        "finished_at": "2026-11-28T10:30:00+00:00",
        "vms": [db],
        "hooks": [],
        "approvals": [],
        "groups": [],
    }
    _report(tmp_path, "erp-dr", "20261128T100000Z-aaaa", **common, targets={"rto_s": 1800.0})
    _report(tmp_path, "slow-dr", "20261128T100000Z-bbbb", **common, targets={"rto_s": 600.0})
    found = DrillReports(tmp_path).scan()
    assert found["erp-dr"].last_success is not None  # healthy after 20 min, within 30
    assert found["slow-dr"].last is not None and not found["slow-dr"].last.success  # not within 10


def test_chart_monitoring_template_renders_the_files_as_yaml() -> None:
    """No helm binary here: render the template's few actions by hand (both toggles on) and parse it."""
    text = (CHART / "templates" / "monitoring.yaml").read_text()
    files = {
        name: (CHART / "files" / name).read_text()
        for name in ("prometheus-rules.yml", "grafana-dashboard.json")
    }

    def file_get(match: re.Match[str]) -> str:
        indent = int(match.group(2))
        return "\n" + "\n".join(
            " " * indent + line if line else "" for line in files[match.group(1)].splitlines()
        )

    rendered = re.sub(r'\{\{- \.Files\.Get "files/([\w.-]+)" \| nindent (\d+) \}\}', file_get, text)
    rendered = re.sub(
        r"\{\{ \.Values\.monitoring\.grafanaDashboard\.label \}\}", "grafana_dashboard", rendered
    )
    rendered = re.sub(r"\{\{ include \"seawall\.fullname\" \. \}\}", "seawall", rendered)
    rendered = "\n".join(
        line for line in rendered.splitlines() if not re.fullmatch(r"\s*\{\{.*\}\}\s*", line)
    )
    assert "{{-" not in rendered.replace("{{ $", ""), rendered  # only the alert templates remain
    rule, dashboard = [d for d in yaml.safe_load_all(rendered) if d]
    assert rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert dashboard["kind"] == "ConfigMap" and dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["seawall-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def test_the_interceptor_reads_the_activities_one_model_inputs() -> None:
    """verify_point and ship_disks take one input model; a verified point reaches the gauges from it."""
    from seawall.contract.messages import VerifyOutcome, VMPoint
    from seawall.runtime.metrics.interceptor import _ActivityMetrics

    seen: list[tuple[str, str, object]] = []

    class Recorder:
        def cycle_verified(self, vm: str, site: str, taken: object) -> None:
            seen.append((vm, site, taken))

    observer = _ActivityMetrics.__new__(_ActivityMetrics)
    observer._metrics = Recorder()  # type: ignore[assignment]
    ok = VerifyOutcome(ok=True, blocks_checked=1, bytes_checked=1, problems=[])
    observer._observe("verify_point", "primary", [VMPoint(vm="app-01", point_id="20261201T120000Z-abc")], ok)
    bad = ok.model_copy(update={"ok": False})
    observer._observe("verify_point", "primary", [VMPoint(vm="app-01", point_id="20261201T120100Z-abd")], bad)
    assert [(vm, site) for vm, site, _ in seen] == [("app-01", "primary")]
    assert seen[0][2] is not None
