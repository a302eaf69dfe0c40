"""The fleet side of ``benchmarks.console``: protect N VMs, and undo it all, also when stopped by a
signal (SIGINT/SIGTERM cancel the run once; its cleanup is idempotent: a VM already unprotected, a
protect never started, a schedule already gone are all fine)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from seawall.contract.names import Workflow, gc_schedule_id, protect_id
from seawall.contract.search import SA_SITE
from seawall.control import replication


async def protect_all(client: Client, queue: str, vms: list[str], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(vm: str) -> None:
        async with gate:
            await replication.protect(client, queue, vm)

    await asyncio.gather(*(one(vm) for vm in vms))


async def teardown(client: Client, queue: str, site: str, vms: list[str], concurrency: int) -> list[str]:
    """Unprotect every VM (its schedule goes), cancel cycles still running, delete the GC schedule.
    Returns what could not be undone, so the output says so rather than hiding it."""
    gate = asyncio.Semaphore(concurrency)
    left: list[str] = []

    async def one(vm: str) -> None:
        async with gate:
            try:
                # A protect cut short by a signal still runs in Temporal: ended first, or it would make
                # the VM's schedule after its unprotect. One already closed (or never started) is fine.
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(protect_id(vm)).terminate("benchmark cleanup")
                await replication.unprotect(client, queue, vm)
            except Exception as exc:  # reported, and the others still go
                left.append(f"{vm}: {exc}")

    await asyncio.gather(*(one(vm) for vm in vms))
    running = (
        f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_SITE.name} = "{site}" '
        'AND ExecutionStatus = "Running"'
    )
    async for wf in client.list_workflows(running):
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        with contextlib.suppress(RPCError):
            await handle.cancel()
    with contextlib.suppress(RPCError):
        await client.get_schedule_handle(gc_schedule_id(f"{site}-store")).delete()
    return left


@contextlib.contextmanager
def stop_on_signals(task: asyncio.Task[Any]) -> Iterator[list[str]]:
    """While in the block, SIGINT and SIGTERM cancel ``task`` (its cleanup runs in its ``finally``)
    once; a further signal only says the cleanup is under way. Yields the names of signals received."""
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def stop(name: str) -> None:
        received.append(name)
        if len(received) == 1:
            sys.stderr.write(f"{name}: stopping; cleaning up what this run created\n")
            task.cancel()
        else:
            sys.stderr.write(f"{name}: the cleanup is under way; it ends by itself\n")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        yield received
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
