"""Task-queue names: every activity that touches a site runs on that site's queue, workflows elsewhere.

Import-light on purpose: workflows import it inside the sandbox.
"""

from __future__ import annotations

ORCHESTRATION_QUEUE = "seawall-orchestration"


def site_queue(site: str) -> str:
    """The task queue of a site's workers (``seawall-site-<name>``)."""
    return f"seawall-site-{site}"
