"""Pure helpers of ``benchmarks.console``: the summary of repeated timings and the verdict against the
issue's targets. Kept apart so a unit test runs them without the lab."""

from __future__ import annotations

from typing import Any

TARGET_DATA_S = 1.0  # the protection page's data at 500 VMs (issue #16)
TARGET_RENDER_S = 2.0  # navigation to every VM row shown at 500 VMs


def nearest_rank(ordered: list[float], pct: float) -> float:
    """The nearest-rank percentile of an already sorted, non-empty list."""
    k = max(0, min(len(ordered) - 1, int(pct / 100 * len(ordered) + 0.999999) - 1))
    return ordered[k]


def summary(seconds: list[float]) -> dict[str, Any]:
    """count, p50/p95/max (and min, mean) in seconds, rounded to the millisecond."""
    if not seconds:
        return {"count": 0, "p50_s": None, "p95_s": None, "max_s": None, "min_s": None, "mean_s": None}
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "p50_s": round(nearest_rank(ordered, 50), 3),
        "p95_s": round(nearest_rank(ordered, 95), 3),
        "max_s": round(ordered[-1], 3),
        "min_s": round(ordered[0], 3),
        "mean_s": round(sum(ordered) / len(ordered), 3),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return round(value / baseline, 2)


def verdict(data: dict[str, Any], render: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets as booleans beside the figures they judge (p95 of the data, max of renders:
    the slow end is what an operator waits for)."""
    data_p95 = data.get("p95_s")
    render_max = render.get("max_s")
    return {
        "data_p95_s": data_p95,
        "data_under_1s": data_p95 is not None and data_p95 < TARGET_DATA_S,
        "render_max_s": render_max,
        "render_under_2s": render_max is not None and render_max < TARGET_RENDER_S,
    }
