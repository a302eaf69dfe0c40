"""Which activities a worker registers: per site it serves, and for the orchestration queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.context import SiteContext
from activities.probe import ProbeActivities
from seawall.config import Settings
from seawall.plans import load_inventory


def activities_for_site(site: str, settings: Settings) -> list[Callable[..., Any]]:
    ctx = SiteContext(load_inventory(settings.inventory), site)
    probe = ProbeActivities(ctx)
    return [probe.probe_site]


def orchestration_activities(settings: Settings) -> list[Callable[..., Any]]:
    return []
