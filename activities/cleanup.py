"""At the target site: put back the DNS records a run changed, then remove everything it made,
listing what every attempt found."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.checks import CheckActivities
from activities.context import site_errors
from activities.heartbeat import Beat, keep_alive
from activities.recovery import find_plan, target_name
from seawall.contract.messages import CleanupOutcome, CleanupRequest, DnsChange, RecoverVMInput, Resource
from seawall.contract.names import Activity, drill_network_name
from seawall.sites.dns import DnsError


class CleanupActivities(CheckActivities):
    @activity.defn(name=Activity.CLEANUP_RUN)
    def cleanup_run(self, req: CleanupRequest) -> CleanupOutcome:
        """Restore the run's DNS changes and remove everything tagged with ``run`` at this site; what
        is already gone counts as removed, a record already restored as restored."""
        plan, run = req.plan, req.run
        # What a killed earlier attempt found (and may already have destroyed or restored) comes back
        # from its heartbeat, so the outcome lists everything the run made, not just what this saw.
        details = activity.info().heartbeat_details
        last: dict[str, Any] = details[0] if details and isinstance(details[0], dict) else {}
        previous = last.get("found", [])
        earlier = [DnsChange.model_validate(d) for d in last.get("dns", [])]
        dns = self._restore_dns(req, earlier, previous)
        dns_seen = [d.model_dump(mode="json") for d in dns]

        # vCenter tasks can outlast the heartbeat timeout: the ticker repeats the newest details.
        beat = Beat({"found": previous, "dns": dns_seen})

        def heartbeat(found: dict[str, Any]) -> None:
            beat({**found, "dns": dns_seen})

        with keep_alive(beat), site_errors():
            removed = self.ctx.adapter.cleanup_run(
                run, lambda: self._run_folders(plan, run), heartbeat, previous
            )
            # The drill's own network goes last, once no VM of the run is attached to it.
            network = drill_network_name(run)
            if self.ctx.adapter.remove_run_network(network):
                removed.append(Resource(kind="network", id=network, site=self.ctx.site.name))
        failed = [d.detail for d in dns if d.outcome == "failed"]
        if failed:
            # Everything else is gone; the records go back once their server answers (a retry
            # finds the VMs already removed and keeps what this attempt restored).
            raise ApplicationError("DNS not yet restored: " + "; ".join(failed), type="DnsUnavailable")
        return CleanupOutcome(
            removed=removed,
            dns_restored=[d.detail for d in dns if d.outcome == "restored"],
            dns=dns,
            dns_conflicts=[d.detail for d in dns if d.outcome == "conflict"],
        )

    def _restore_dns(
        self, req: CleanupRequest, earlier: list[DnsChange], found: list[str]
    ) -> list[DnsChange]:
        """First, while the recovered VMs still exist: every record of the plan that this run changed
        goes back to its value from before the run (a drill can only have changed its ``in_test``
        records, so only those are looked at). An earlier attempt's outcome is kept: its restore or
        conflict left no sidecar behind for this attempt to find."""
        plan, _ = find_plan(self.settings, req.plan)
        done = {(d.zone, d.name, d.type): d for d in earlier if d.outcome in ("restored", "conflict")}
        out: list[DnsChange] = []
        for _, pv in plan.vms():
            for record in pv.dns:
                if req.mode == "test" and not record.in_test:
                    continue
                key = (str(record.zone), str(record.name), record.type)
                if key in done:
                    out.append(done[key])
                    continue
                try:
                    out.append(self._revert(record, run=req.run))
                except (DnsError, ApplicationError) as exc:
                    out.append(
                        DnsChange(
                            name=key[1],
                            type=key[2],
                            value="",
                            previous=None,
                            zone=key[0],
                            outcome="failed",
                            detail=f"{key[1]} {key[2]}: {self.ctx.redact(str(exc))}",
                        )
                    )
                activity.heartbeat({"found": found, "dns": [d.model_dump(mode="json") for d in out]})
        return out

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
