"""Smoke test of the bandwidth benchmark: it runs and prints one JSON object with the right keys.

The rate is reported, with a loose sanity bound only (a shared machine is noisy)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bandwidth


def test_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    code = bandwidth.main(["--json", "--size-mib", "8", "--limit-mb-s", "4", "--ships", "2"])
    out = json.loads(capsys.readouterr().out)
    assert out["size_bytes"] == 8 * 1024 * 1024 and out["limited_shipped_bytes"] >= out["size_bytes"]
    limit = out["limit_bytes_per_s"]
    # After the one-second burst, no faster than the limit (generous margin for scheduling).
    assert (out["limited_shipped_bytes"] - limit) / out["limited_s"] <= 1.15 * limit, out
    assert code == (0 if out["within_10pct"] else 1)
