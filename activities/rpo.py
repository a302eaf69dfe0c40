"""``check_rpo``: every protected VM's RPO state, as ``seawall status`` computes it (from Temporal's
schedules and completed cycles), for the watcher that tells people of breaches."""

from __future__ import annotations

from temporalio import activity

from seawall.contract.drills import RpoCheck, RpoWatchInput, VmRpo
from seawall.contract.names import Activity
from seawall.control.replication import statuses
from seawall.control.status import vm_state
from seawall.plans import load_inventory
from seawall.runtime.config import Settings


class RpoActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name=Activity.CHECK_RPO)
    async def check_rpo(self, _: RpoWatchInput) -> RpoCheck:
        inventory = load_inventory(self._settings.inventory)
        found = await statuses(activity.client(), inventory, [p.name for p in inventory.protected_vms])
        return RpoCheck(
            vms=[
                VmRpo(
                    vm=s.vm,
                    site=s.source_site,
                    # Only a VM that is meant to replicate is in breach: a paused or unprotected one is not.
                    breach=vm_state(s) == "breach",
                    last_point=s.last_point,
                    age_s=s.age_s,
                    threshold_s=s.threshold_s,
                )
                for s in found
            ]
        )
