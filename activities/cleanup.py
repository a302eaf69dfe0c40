"""At the target site: remove everything a run made, listing what every attempt found."""

from __future__ import annotations

from temporalio import activity

from activities.context import site_errors
from activities.heartbeat import Beat, keep_alive
from activities.recovery import find_plan, target_name
from activities.target import TargetSite
from seawall.contract.messages import CleanupOutcome, CleanupRequest, RecoverVMInput, Resource
from seawall.contract.names import Activity, drill_network_name


class CleanupActivities(TargetSite):
    @activity.defn(name=Activity.CLEANUP_RUN)
    def cleanup_run(self, req: CleanupRequest) -> CleanupOutcome:
        """Remove everything tagged with ``run`` at this site; what is already gone counts as removed."""
        plan, run = req.plan, req.run
        # What a killed earlier attempt found (and may already have destroyed) comes back from its
        # heartbeat, so the outcome lists everything the run made, not just what this attempt saw.
        details = activity.info().heartbeat_details
        previous = details[0].get("found", []) if details and isinstance(details[0], dict) else []
        # vCenter tasks can outlast the heartbeat timeout: the ticker repeats the newest details.
        beat = Beat(details[0] if details else {"found": []})
        with keep_alive(beat), site_errors():
            removed = self.ctx.adapter.cleanup_run(run, lambda: self._run_folders(plan, run), beat, previous)
            # The drill's own network goes last, once no VM of the run is attached to it.
            network = drill_network_name(run)
            if self.ctx.adapter.remove_run_network(network):
                removed.append(Resource(kind="network", id=network, site=self.ctx.site.name))
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
