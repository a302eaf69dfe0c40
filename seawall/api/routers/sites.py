"""``/v1/sites``: each site's workers (pollers on its task queue) and, with ``probe=true``, whether
its own worker reaches it now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from seawall.api.auth import Principal
from seawall.api.deps import Ctx, viewer
from seawall.api.problems import problems
from seawall.api.schemas import ok_example
from seawall.control.sites import SiteHealth, site_health

router = APIRouter(prefix="/v1", tags=["replication"])


@router.get(
    "/sites",
    response_model=list[SiteHealth],
    summary="Sites of the token's VMs: their workers, and their reachability when probe=true",
    responses={
        200: ok_example(
            [
                {
                    "site": "primary",
                    "kind": "vsphere",
                    "queue": "seawall-site-primary",
                    "pollers": 1,
                    "workers": [
                        {
                            "identity": "4242@dr-host/primary",
                            "last_poll": "2026-11-26T01:30:00Z",
                            "live": True,
                        }
                    ],
                    "reachable": True,
                    "detail": "VMware vCenter Server 8.0",
                    "probed_at": "2026-11-26T01:30:02Z",
                    "probe_worker": "4242@dr-host",
                    "probe_ms": 25,
                }
            ]
        ),
        **problems(401, 403, 422, 503),
    },
)
async def list_sites(
    ctx: Ctx,
    who: Principal = Depends(viewer),
    probe: Annotated[bool, Query(description="ask each site's own worker to probe it now")] = False,
) -> list[SiteHealth]:
    inventory, names = await ctx.vms_in_scope(who)
    # Only the sites the token's VMs run on or recover to: a scoped token does not map the estate.
    wanted: set[str] = set()
    for vm in names:
        pvm = inventory.protected_vm(vm)
        wanted.update([pvm.source_site, *pvm.target_sites])
    sites = [s.name for s in inventory.sites if s.name in wanted]
    return await site_health(
        await ctx.client(), inventory, ctx.settings.orchestration_queue, sites=sites, probe=probe
    )
