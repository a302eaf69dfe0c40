"""The plan benchmark's arithmetic: group split, critical-path waits and overhead from a report.

The benchmark itself needs the lab (``python -m benchmarks.plan --vms 10 --groups 2`` is its smoke run);
what it computes from a run's report is checked here on a report whose times are known.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.plan import HEALTH_STEP, critical_path, group_sizes
from seawall.contract.messages import HealthOutcome, RecoverVMResult, RunReport, StepTime

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def vm(name: str, start: float, steps: list[tuple[str, float]]) -> RecoverVMResult:
    """A VM whose steps run back to back from ``start`` for the given lengths."""
    times = []
    t = start
    for step, length in steps:
        times.append(StepTime(step=step, started_at=at(t), finished_at=at(t + length)))
        t += length
    return RecoverVMResult(
        vm=name,
        target_name=f"{name}-drill",
        point_id="p",
        point_created_at=at(0),
        ips=[],
        dns=[],
        health=HealthOutcome(ok=True, checks=[], elapsed_s=0.0),
        resources=[],
        steps=times,
        started_at=at(start),
        healthy_at=at(t),
    )


def test_groups_split_evenly_in_order() -> None:
    assert group_sizes(100, 5) == [20] * 5
    assert group_sizes(10, 3) == [4, 3, 3]
    assert sum(group_sizes(7, 7)) == 7


def test_waits_are_the_longest_health_step_per_group_and_the_rest_is_overhead() -> None:
    # Group a: 0..5 s; its slowest health check is 2 s (VM a2), its last VM to finish is a1.
    a1 = vm("a1", 0.5, [("choose recovery point", 1.0), ("materialize disks", 2.0), (HEALTH_STEP, 1.0)])
    a2 = vm("a2", 0.2, [("materialize disks", 1.0), (HEALTH_STEP, 2.0)])
    # Group b: 5.5..9 s, one VM with a 3 s health check.
    b1 = vm("b1", 5.6, [("create, re-IP and power on", 0.2), (HEALTH_STEP, 3.0)])
    report = RunReport(
        plan="p",
        run="r",
        mode="test",
        status="completed",
        started_at=at(0),
        finished_at=at(10),
        vms=[a1, a2, b1],
        failed_vms={},
        hooks=[],
        approvals=[],
        groups=[
            StepTime(step="a", started_at=at(0), finished_at=at(5)),
            StepTime(step="b", started_at=at(5.5), finished_at=at(9)),
        ],
    )
    path = critical_path(report, {"a": ["a1", "a2"], "b": ["b1"]})
    assert path["waits_s"] == 2.0 + 3.0
    first, second = path["per_group"]
    assert (first["span_s"], first["wait_s"], first["overhead_s"], first["critical_vm"]) == (
        5.0,
        2.0,
        3.0,
        "a1",
    )
    assert first["critical_vm_times_s"]["start_child_s"] == 0.5
    assert first["critical_vm_times_s"]["child_end_to_group_end_s"] == 0.5
    assert second["overhead_s"] == 0.5 and second["vms"] == 1
    assert path["critical_path_s"]["between_groups_s"] == 0.5
    assert path["step_s_over_all_vms"][HEALTH_STEP] == {"mean": 2.0, "max": 3.0}
