"""The pure helpers of benchmarks.console: the timing summary, ratios, the verdict and argument checks."""

from __future__ import annotations

import pytest

from benchmarks.console import parse_args
from benchmarks.console_timing import nearest_rank, ratio, summary, verdict


def test_summary_uses_nearest_rank_and_rounds_to_the_millisecond() -> None:
    found = summary([0.3, 0.1, 0.2, 0.4, 10.0])
    assert found == {"count": 5, "p50_s": 0.3, "p95_s": 10.0, "max_s": 10.0, "min_s": 0.1, "mean_s": 2.2}
    ordered = [float(i) for i in range(1, 21)]
    assert nearest_rank(ordered, 50) == 10.0
    assert nearest_rank(ordered, 95) == 19.0
    assert summary([])["p50_s"] is None and summary([])["count"] == 0


def test_ratio_and_verdict() -> None:
    assert ratio(1.0, 0.25) == 4.0
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
    fast = verdict({"p95_s": 0.4}, {"max_s": 1.9})
    assert fast["data_under_1s"] and fast["render_under_2s"]
    slow = verdict({"p95_s": 1.0}, {"max_s": None})
    assert not slow["data_under_1s"] and not slow["render_under_2s"]


def test_arguments_are_checked() -> None:
    args = parse_args(["--vms", "200", "--temporal", "127.0.0.1:7433"])
    assert (args.vms, args.baseline_vms, args.data_runs, args.render_runs) == (200, 50, 20, 5)
    for bad in (["--vms", "0"], ["--interval-s", "10"], ["--temporal", "10.0.0.5:7233"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
