"""The API benchmark's structure at a tiny load: a real ``seawall api serve``, two plan files, a few
requests. (The figures themselves are machine-dependent and not asserted; ``python -m benchmarks.api
--json`` is the measurement.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks.api import main, percentiles, write_plans
from seawall.plans import load_catalogue

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_generated_plans_are_valid_and_distinct(tmp_path: Path) -> None:
    folder = write_plans(tmp_path / "plans", 3)
    catalogue = load_catalogue(EXAMPLES / "inventory.yaml", folder)
    assert sorted(catalogue.names()) == ["erp-dr", "erp-dr-0001", "erp-dr-0002"]
    assert all(entry.plan is not None for entry in catalogue.entries())
    assert yaml.safe_load((folder / "erp-dr-0002.yaml").read_text())["kind"] == "RecoveryPlan"


def test_percentiles_are_nearest_rank_in_ms() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentiles(samples) == {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert percentiles([]) == {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}


def test_a_tiny_bounded_run_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    # The request count bounds the run: the duration is only a backstop (a loaded CI machine once
    # served 29 of 30 requests in 10 s).
    args = ["--plans", "2", "--clients", "3", "--requests", "30", "--duration-s", "120", "--warmup", "3"]
    out = main([*args, "--health-every-ms", "5", "--json"])
    assert json.loads(capsys.readouterr().out) == out
    assert list(out["runs"]) == ["current"]  # no --baseline-src: no baseline run
    (run,) = out["runs"]["current"]
    assert run["plans"] == 2
    assert run["statuses"] == {"200": 30} and run["errors"] == {}
    assert run["requests"] == 30 and run["elapsed_s"] < 120
    assert run["body_bytes"] > 100
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        assert run["latency"][key] > 0
    assert run["healthz"]["samples"] >= 1
    assert len(run["loadavg_before"]) == len(run["loadavg_after"]) == 3
    assert run["server_cpu_s"] is not None and run["server_cpu_ms_per_request"] is not None
    targets = run["targets"]
    assert set(targets) == {
        "requests_per_s",
        "rps_at_least_500",
        "p99_ms",
        "p99_under_100ms",
        "healthz_p99_ms",
        "healthz_p99_under_50ms",
    }
    assert all(isinstance(targets[k], bool) for k in targets if k.endswith(("500", "100ms", "50ms")))
    assert "compete" in out["generator"] and "no Temporal" in out["server"]
    assert out["targets"] == {"requests_per_s": 500.0, "p99_ms": 100.0, "healthz_p99_ms": 50.0}
