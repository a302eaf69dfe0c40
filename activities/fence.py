"""At the source site: make sure the original cannot keep running beside its replica (and, after an
approved rollback, start it again)."""

from __future__ import annotations

from temporalio import activity

from activities.context import SiteContext, site_errors
from seawall.contract.messages import VMRef
from seawall.contract.names import Activity


class FenceActivities:
    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    @activity.defn(name=Activity.FENCE_VM)
    def fence_vm(self, req: VMRef) -> str:
        vm = req.vm
        # A site that cannot power VMs off refuses (FenceUnsupported): the workflow asks an operator.
        with site_errors():
            return self.ctx.adapter.fence(vm)

    @activity.defn(name=Activity.START_SOURCE)
    def start_source(self, req: VMRef) -> str:
        """After an approved rollback of a real failover: the fenced original runs again."""
        with site_errors():
            return self.ctx.adapter.start_source(req.vm)
