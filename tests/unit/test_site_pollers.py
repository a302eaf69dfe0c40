"""Who polls a site's queue: live identities of either kind of task, and the kinds nobody polls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from seawall.runtime.metrics.sources import idle_kinds, live_workers

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FRESH = NOW - timedelta(seconds=10)
STALE = NOW - timedelta(seconds=300)


def test_workers_of_role_all_count_once_each_and_leave_no_kind_idle() -> None:
    both = {"a/primary": FRESH, "b/primary": FRESH}
    pollers = {"workflow": both, "activity": dict(both)}
    assert live_workers(pollers, now=NOW, fresh_s=90) == 2
    assert idle_kinds(pollers, now=NOW, fresh_s=90) == []


def test_a_split_pair_is_two_processes_and_half_of_one_leaves_a_kind_idle() -> None:
    pair = {"workflow": {"w/primary": FRESH}, "activity": {"a/primary": FRESH}}
    assert live_workers(pair, now=NOW, fresh_s=90) == 2 and idle_kinds(pair, now=NOW, fresh_s=90) == []
    # The activity process died, or every one of its slots is busy: workflow tasks are still taken.
    half = {"workflow": {"w/primary": FRESH}, "activity": {"a/primary": STALE}}
    assert live_workers(half, now=NOW, fresh_s=90) == 1
    assert idle_kinds(half, now=NOW, fresh_s=90) == ["activity"]
    assert idle_kinds({"activity": {"a/primary": FRESH}}, now=NOW, fresh_s=90) == ["workflow"]


def test_only_recent_polls_count() -> None:
    pollers = {"workflow": {"w/primary": STALE}, "activity": {"a/primary": STALE}}
    assert live_workers(pollers, now=NOW, fresh_s=90) == 0
    assert idle_kinds(pollers, now=NOW, fresh_s=90) == ["workflow", "activity"]
    assert live_workers(pollers, now=NOW, fresh_s=600) == 2


def test_a_seed_queue_is_its_sites_and_no_site_name_makes_a_site_queue_of_it() -> None:
    from seawall.contract.queues import seed_queue, site_queue
    from seawall.runtime.metrics.sources import site_of_queue

    assert site_of_queue(seed_queue("primary")) == "primary" == site_of_queue(site_queue("primary"))
    assert site_of_queue("seawall-orchestration") == "orchestration"
    # A site named like another's seed queue cannot collide with it.
    assert seed_queue("primary") not in {site_queue(name) for name in ("seeds-primary", "primary-seeds")}
