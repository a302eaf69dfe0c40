"""At the target site: remove everything a run made, listing what every attempt found."""

from __future__ import annotations

from temporalio import activity

from activities.context import site_errors
from activities.recovery import find_plan, target_name
from activities.target import TargetSite
from seawall.contract.messages import CleanupOutcome, CleanupRequest, RecoverVMInput
from seawall.contract.names import Activity


class CleanupActivities(TargetSite):
    @activity.defn(name=Activity.CLEANUP_RUN)
    def cleanup_run(self, req: CleanupRequest) -> CleanupOutcome:
        """Remove everything tagged with ``run`` at this site; what is already gone counts as removed."""
        plan, run = req.plan, req.run
        # What a killed earlier attempt found (and may already have destroyed) comes back from its
        # heartbeat, so the outcome lists everything the run made, not just what this attempt saw.
        details = activity.info().heartbeat_details
        previous = details[0].get("found", []) if details and isinstance(details[0], dict) else []
        with site_errors():
            removed = self.ctx.adapter.cleanup_run(
                run, lambda: self._run_folders(plan, run), activity.heartbeat, previous
            )
        return CleanupOutcome(removed=removed, dns_restored=[])

    def _run_folders(self, plan_name: str, run: str) -> list[str]:
        """Where a drill of the plan put its VMs' disks, whether or not the VMs were created: the
        folder, as ``[datastore] folder`` when the site pair's placement maps another datastore."""
        plan, inv = find_plan(self.settings, plan_name)
        folders = []
        for g in plan.groups:
            for v in g.vms:
                folder = target_name(
                    RecoverVMInput(
                        plan=plan_name, run=run, mode="test", vm=v.name, target_site=plan.target_site
                    )
                )
                placement = inv.placement(plan.source_site, plan.target_site)
                if placement is not None and placement.datastore is not None:
                    folder = f"[{placement.datastore}] {folder}"
                folders.append(folder)
        return folders
