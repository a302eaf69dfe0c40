"""Results of completed workflows, fetched once per client.

A completed cycle's result never changes, yet ``status``, the console and the API ask for the newest
cycles of every VM on every request: without this, each request costs one GetWorkflowExecutionHistory
per cycle per VM. One cache per client (the API keeps one client for its life; it goes with the
client), keyed by workflow id, run id and result type; bounded (cleared when full, like the metrics'
cycle reader) so a long-running API process does not grow without end.
"""

from __future__ import annotations

import weakref
from typing import Any, TypeVar

from temporalio.client import Client

__all__ = ["completed_result"]

T = TypeVar("T")

_LIMIT = 50_000
_caches: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, type[Any]], Any]] = weakref.WeakKeyDictionary()


async def completed_result(client: Client, workflow_id: str, run_id: str, result_type: type[T]) -> T:
    """The result of a COMPLETED run (the caller checked its status), from the cache when known."""
    cache = _caches.setdefault(client, {})
    key = (workflow_id, run_id, result_type)
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=result_type)
    result = await handle.result()
    if len(cache) >= _LIMIT:
        cache.clear()
    cache[key] = result
    return result
