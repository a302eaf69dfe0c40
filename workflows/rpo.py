"""WatchRpo: tells people when a protected VM's newest verified point gets older than its RPO allows,
and when it recovers. One long-running workflow (``watch/rpo``): check, compare with the breaches it
already told, notify the changes, sleep; continue-as-new now and then, carrying what it told.

An event's key names the VM and the point the breach was seen with (``rpo/<vm>/breach/<point>``), so a
retried or replayed notification is one message, and a breach is told once however long it lasts.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.notify import notify
from workflows.plan import QUICK

with workflow.unsafe.imports_passed_through():
    from activities.rpo import RpoActivities
    from seawall.contract.drills import NotifyRequest, RpoCheck, RpoWatchInput, VmRpo
    from seawall.contract.names import Workflow
    from seawall.model.notify import Event

# Checks per run before continue-as-new: keeps the history short (about 10 events per check).
CHECKS_PER_RUN = 100


def _age(seconds: float | None) -> str:
    return "no verified point" if seconds is None else f"{seconds:.0f}s"


@workflow.defn(name=Workflow.WATCH_RPO)
class WatchRpoWorkflow:
    @workflow.run
    async def run(self, inp: RpoWatchInput) -> None:
        told = dict(inp.breached)
        for _ in range(CHECKS_PER_RUN):
            found: RpoCheck = await workflow.execute_activity_method(
                RpoActivities.check_rpo,
                inp,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=QUICK,
                summary="check every protected VM's newest verified point against its RPO",
            )
            for vm in found.vms:
                if vm.breach and vm.vm not in told:
                    told[vm.vm] = f"rpo/{vm.vm}/breach/{vm.last_point or 'none'}"
                    await notify(self._event(Event.RPO_BREACH, told[vm.vm], vm))
                elif not vm.breach and vm.vm in told:
                    key = told.pop(vm.vm).replace("/breach/", "/recovered/", 1)
                    await notify(self._event(Event.RPO_RECOVERED, key, vm))
            await workflow.sleep(inp.interval_s, summary="until the next RPO check")
        workflow.continue_as_new(RpoWatchInput(interval_s=inp.interval_s, breached=told))

    @staticmethod
    def _event(event: Event, key: str, vm: VmRpo) -> NotifyRequest:
        what = "is older than its RPO allows" if event == Event.RPO_BREACH else "is within its RPO again"
        return NotifyRequest(
            event=event.value,
            key=key,
            site=vm.site,
            summary=f"{vm.vm}: the newest verified point {what}",
            facts={
                "vm": vm.vm,
                "newest point": vm.last_point or "none",
                "age": _age(vm.age_s),
                "allowed": f"{vm.threshold_s:.0f}s",
            },
        )
