"""Placement mappings against the inventory (offline) and against the sites themselves (online).

Offline: both sites exist, a pair is mapped once, vSphere fields only for a vSphere target and AWS
fields only for an AWS one. Online (``seawall plan check`` unless ``--offline``): each name must
exist at the target site; the site answers through its adapter's ``placement_problems`` verb, so this
module knows no site kind's API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall.model import Inventory
from seawall.model.placement import AWS_FIELDS, VSPHERE_FIELDS, Placement
from seawall.plans.errors import Problem, did_you_mean

# (placement, the target site) -> [(field, message)] for names the site does not have.
SiteCheck = Callable[[Placement, Any], list[tuple[str, str]]]

_FIELDS = {"vsphere": VSPHERE_FIELDS, "aws": AWS_FIELDS}


def check_placements(inventory: Inventory) -> list[Problem]:
    problems: list[Problem] = []
    sites = {s.name: s for s in inventory.sites}
    seen: dict[tuple[str, str], int] = {}
    for index, placement in enumerate(inventory.placements):
        at = ("placements", index)
        for end in ("source", "target"):
            name = getattr(placement, end)
            if name not in sites:
                problems.append(Problem((*at, end), f"unknown site '{name}'{did_you_mean(name, sites)}"))
        pair = (placement.source, placement.target)
        if placement.source == placement.target:
            problems.append(Problem((*at, "target"), "a placement maps a site to another site, not itself"))
        if pair in seen:
            problems.append(
                Problem(
                    (*at, "target"), f"{pair[0]} -> {pair[1]} is already mapped (placements[{seen[pair]}])"
                )
            )
        seen.setdefault(pair, index)
        target = sites.get(placement.target)
        if target is None:
            continue
        allowed = _FIELDS.get(target.kind, ())
        for name in placement.names():
            if name not in allowed:
                problems.append(
                    Problem((*at, name), f"'{name}' does not apply to site '{target.name}' ({target.kind})")
                )
    return problems


def check_placements_online(inventory: Inventory, site_check: SiteCheck) -> list[Problem]:
    """Ask each placement's target site whether the names it uses exist there."""
    problems: list[Problem] = []
    sites = {s.name: s for s in inventory.sites}
    for index, placement in enumerate(inventory.placements):
        target = sites.get(placement.target)
        if target is None:
            continue
        for field, message in site_check(placement, target):
            problems.append(Problem(("placements", index, field), message))
    return problems
