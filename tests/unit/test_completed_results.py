"""Completed workflows' results are fetched once per process (status, console and API ask on every
request for the newest cycles of every VM)."""

from __future__ import annotations

from typing import Any

from seawall.control.results import completed_result


class Handle:
    def __init__(self, calls: list[tuple[str, str]], key: tuple[str, str]) -> None:
        self.calls, self.key = calls, key

    async def result(self) -> str:
        self.calls.append(self.key)
        return f"result of {self.key[0]}/{self.key[1]}"


class Client:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.calls: list[tuple[str, str]] = []

    def get_workflow_handle(self, workflow_id: str, run_id: str, result_type: Any) -> Handle:
        return Handle(self.calls, (workflow_id, run_id))


async def test_a_completed_result_is_fetched_once_per_client_and_run() -> None:
    a, b = Client("ns-a"), Client("ns-b")
    for _ in range(3):
        assert await completed_result(a, "cycle/x", "r1", str) == "result of cycle/x/r1"  # type: ignore[arg-type]
    assert a.calls == [("cycle/x", "r1")]
    await completed_result(a, "cycle/x", "r2", str)  # type: ignore[arg-type]
    await completed_result(b, "cycle/x", "r1", str)  # type: ignore[arg-type]
    assert a.calls == [("cycle/x", "r1"), ("cycle/x", "r2")] and b.calls == [("cycle/x", "r1")]
