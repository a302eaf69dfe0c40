"""Where a cycle's transfer and verify run: a seed's on the site's seed queue, in slots of its own."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from seawall.contract.names import PATCH_SEEDS_OWN_QUEUE
    from seawall.contract.queues import seed_queue


def ship_queue(parent: str | None, site: str) -> str | None:
    """The task queue of a ship or verify of ``site``: a seed's (no parent point) goes to the site's
    seed queue, so a burst of protections never takes the slots of the cycles already running; None
    (the cycle's own queue) for an incremental, and for a seed of a cycle started before the patch."""
    if parent is not None:
        return None
    return seed_queue(site) if workflow.patched(PATCH_SEEDS_OWN_QUEUE) else None
