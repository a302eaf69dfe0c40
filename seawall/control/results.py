"""Results of closed workflows, fetched once per client.

A completed cycle's result never changes, yet ``status``, the console and the API ask for the newest
cycles of every VM on every request: without this, each request costs one GetWorkflowExecutionHistory
per cycle per VM. One cache per client (the API keeps one client for its life; it goes with the
client), keyed by workflow id, run id and result type; bounded (cleared when full, like the metrics'
cycle reader) so a long-running API process does not grow without end.

A cycle that recorded its result in its memo (``cycle-result-memo``) needs no history fetch at all: the
visibility listing that found it carries the result (``listed_result``).
"""

from __future__ import annotations

import weakref
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowExecution, WorkflowFailureError

from seawall.contract.failures import failure_reason
from seawall.contract.names import MEMO_RESULT

__all__ = ["closed_failure", "completed_result", "listed_result"]

T = TypeVar("T")

_LIMIT = 50_000
_caches: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, Any], Any]] = weakref.WeakKeyDictionary()


def _cache(client: Client) -> dict[tuple[str, str, Any], Any]:
    cache = _caches.setdefault(client, {})
    if len(cache) >= _LIMIT:
        cache.clear()
    return cache


async def completed_result(client: Client, workflow_id: str, run_id: str, result_type: type[T]) -> T:
    """The result of a COMPLETED run (the caller checked its status), from the cache when known."""
    cache = _cache(client)
    key = (workflow_id, run_id, result_type)
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=result_type)
    result = await handle.result()
    cache[key] = result
    return result


async def listed_result(client: Client, wf: WorkflowExecution, result_type: type[T]) -> T:
    """The result of a COMPLETED run found by a visibility listing: from its memo when the workflow
    recorded it there (no round trip), else from its history (once per client)."""
    cache = _cache(client)
    key = (wf.id, wf.run_id, result_type)
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    memo = getattr(wf, "raw_info", None)
    if memo is not None and MEMO_RESULT in memo.memo.fields:
        result: T = await wf.memo_value(MEMO_RESULT, type_hint=result_type)
        cache[key] = result
        return result
    return await completed_result(client, wf.id, wf.run_id, result_type)


async def closed_failure(client: Client, workflow_id: str, run_id: str) -> str | None:
    """Why a closed, not completed run ended (failed, timed out, terminated, cancelled); None when it
    turns out to have completed. Closed runs never change: fetched once per client."""
    cache = _cache(client)
    key = (workflow_id, run_id, "failure")
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    reason: str | None = None
    try:
        await client.get_workflow_handle(workflow_id, run_id=run_id).result()
    except WorkflowFailureError as exc:
        reason = failure_reason(exc)
    except Exception as exc:  # a status line, whatever the SDK raised; not kept: it may pass
        return str(exc)
    cache[key] = reason
    return reason
