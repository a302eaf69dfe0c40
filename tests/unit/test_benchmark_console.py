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


async def test_a_signal_cancels_the_run_once_and_its_cleanup_finishes() -> None:
    import asyncio
    import os
    import signal

    from benchmarks.console_fleet import stop_on_signals

    cleaned: list[str] = []
    started = asyncio.Event()

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        with stop_on_signals(task) as received:
            try:
                started.set()
                await asyncio.sleep(60)
            finally:
                # A second signal during the cleanup does not cut it short.
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(0.2)
                cleaned.append(",".join(received))

    task = asyncio.create_task(run())
    await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["SIGTERM,SIGINT"]
    # The handlers go with the block: SIGINT is Python's own again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
