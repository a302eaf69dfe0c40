"""Smoke test of the bandwidth benchmark: it runs (two worker processes, a Temporal dev server of its
own) and prints one JSON object with the right keys; the rate is checked loosely (a shared machine)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bandwidth


def test_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    code = bandwidth.main(["--json", "--size-mib", "8", "--limit-mb-s", "4", "--processes", "2"])
    out = json.loads(capsys.readouterr().out)
    assert out["size_bytes"] == 8 * 1024 * 1024 and out["limited"]["bytes"] >= out["size_bytes"]
    assert len(out["limited"]["processes"]) == 2 and out["worker_processes"] == 2
    limit = out["limit_bytes_per_s"]
    # The two processes together: no faster than the limit (generous margin for scheduling)...
    assert out["limited"]["bytes_per_s"] <= 1.2 * limit, out
    # ...while each applying the whole limit itself ships at about twice it.
    assert out["uncoordinated_rate_vs_limit"] > 1.3, out
    assert out["unlimited"]["bytes_per_s"] > 2 * limit, out
    assert code == (0 if out["within_10pct"] else 1)
