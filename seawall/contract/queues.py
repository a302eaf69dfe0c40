"""Task-queue names: every activity that touches a site runs on that site's queue, workflows elsewhere.

Import-light on purpose: workflows import it inside the sandbox.
"""

from __future__ import annotations

ORCHESTRATION_QUEUE = "seawall-orchestration"


def site_queue(site: str) -> str:
    """The task queue of a site's workers (``seawall-site-<name>``)."""
    return f"seawall-site-{site}"


SEED_QUEUE_PREFIX = "seawall-seeds-"


def seed_queue(site: str) -> str:
    """The queue of a site's seeds (a first full copy's ship and verify): the site's workers poll it
    with slots of its own (``SEAWALL_MAX_CONCURRENT_SEEDS``), so a burst of protections, hours of
    reading, never takes the slots the protected VMs' cycles and the recoveries need. Its own prefix:
    no site's name makes a site queue of it."""
    return f"{SEED_QUEUE_PREFIX}{site}"
