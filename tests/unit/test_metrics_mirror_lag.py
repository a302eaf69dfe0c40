"""The mirror-lag gauge's source: the newest completed cycle's ``mirror_lag``, read once per cycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from seawall.contract.messages import CycleResult
from seawall.runtime.metrics.sources import CycleReader

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Run:
    id: str
    run_id: str
    status: WorkflowExecutionStatus
    start_time: datetime
    close_time: datetime | None


class Handle:
    def __init__(self, result: CycleResult, reads: list[str], key: str) -> None:
        self._result, self._reads, self._key = result, reads, key

    async def result(self) -> CycleResult:
        self._reads.append(self._key)
        return self._result


class FakeClient:
    """Only what CycleReader asks of a Temporal client: the VM's cycles and their results."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.results: dict[str, CycleResult] = {}
        self.reads: list[str] = []

    def add(self, n: int, lag: int | None) -> None:
        started = T0 + timedelta(seconds=30 * n)
        point = f"{started:%Y%m%dT%H%M%SZ}-{n:012x}"
        self.runs.append(
            Run(
                f"cycle/app-01/{n}",
                f"r{n}",
                WorkflowExecutionStatus.COMPLETED,
                started,
                started + timedelta(seconds=5),
            )
        )
        self.results[f"r{n}"] = CycleResult(
            vm="app-01", point_id=point, parent=None, started_at=started.isoformat(),
            finished_at=(started + timedelta(seconds=5)).isoformat(), change_path="cbt", bytes_read=1,
            bytes_shipped=1, verified=True, retention_deleted=[], mirror=None if lag is None else "azure",
            mirror_lag=lag,
        )  # fmt: skip

    async def _list(self) -> AsyncIterator[Run]:
        for run in self.runs:
            yield run

    def list_workflows(self, query: str, limit: int) -> AsyncIterator[Run]:
        return self._list()

    def get_workflow_handle(self, workflow_id: str, run_id: str, result_type: Any) -> Handle:
        return Handle(self.results[run_id], self.reads, run_id)

    def get_schedule_handle(self, schedule_id: str) -> NoSchedule:
        return NoSchedule()


class NoSchedule:
    async def describe(self) -> None:
        raise RPCError("schedule not found", RPCStatusCode.NOT_FOUND, b"")


async def test_the_newest_cycle_says_how_far_the_mirror_lags_and_each_result_is_read_once() -> None:
    client = FakeClient()
    reader = CycleReader()
    client.add(1, 0)
    client.add(2, 3)  # the mirror's store went away: three points it lacks
    seen = await reader.replication(client, "app-01")  # type: ignore[arg-type]
    assert seen.mirror_lag == 3
    client.add(3, 0)  # back: the next cycle copied what it lacked
    seen = await reader.replication(client, "app-01")  # type: ignore[arg-type]
    assert seen.mirror_lag == 0
    assert sorted(client.reads) == ["r1", "r2", "r3"]  # a completed cycle's result never changes


async def test_a_store_without_a_mirror_reports_no_lag() -> None:
    client = FakeClient()
    client.add(1, None)
    assert (await CycleReader().replication(client, "app-01")).mirror_lag is None  # type: ignore[arg-type]
