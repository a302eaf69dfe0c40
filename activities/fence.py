"""At the source site: make sure the original cannot keep running beside its replica."""

from __future__ import annotations

from temporalio import activity

from activities.context import SiteContext, site_errors


class FenceActivities:
    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    @activity.defn(name="fence_vm")
    def fence_vm(self, vm: str) -> str:
        # A site that cannot power VMs off refuses (FenceUnsupported): the workflow asks an operator.
        with site_errors():
            return self.ctx.adapter.fence(vm)
