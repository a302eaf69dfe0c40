"""Which workers serve a site's queue: both kinds of task must be polled, recently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from seawall.runtime.metrics.sources import serving

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FRESH = NOW - timedelta(seconds=10)
STALE = NOW - timedelta(seconds=300)


def test_workers_of_role_all_count_once_each() -> None:
    both = {"a/primary": FRESH, "b/primary": FRESH}
    assert serving({"workflow": both, "activity": dict(both)}, now=NOW, fresh_s=90) == 2


def test_a_split_pair_counts_as_one_and_half_of_it_as_none() -> None:
    pair = {"workflow": {"w/primary": FRESH}, "activity": {"a/primary": FRESH}}
    assert serving(pair, now=NOW, fresh_s=90) == 1
    # The activity process died: workflow tasks are still taken, transfers are not.
    assert serving({"workflow": {"w/primary": FRESH}, "activity": {}}, now=NOW, fresh_s=90) == 0
    assert serving({"workflow": {"w/primary": FRESH}}, now=NOW, fresh_s=90) == 0
    # The workflow process died: no cycle starts its transfers.
    assert serving({"workflow": {}, "activity": {"a/primary": FRESH}}, now=NOW, fresh_s=90) == 0


def test_only_recent_polls_count() -> None:
    pollers = {"workflow": {"w/primary": FRESH, "old/primary": STALE}, "activity": {"a/primary": STALE}}
    assert serving(pollers, now=NOW, fresh_s=90) == 0
    pollers["activity"]["b/primary"] = FRESH
    assert serving(pollers, now=NOW, fresh_s=90) == 1
