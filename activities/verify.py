"""Full verify (a scrub) of a VM's replica, at the source site's worker where the store's key lives.

Every chunk each point needs is read and checked; damaged points are marked corrupt (never verified,
never chosen) and their chunks recorded, so the next cycle repairs them from the source
(``seawall.blockstore.damage``). Progress is heartbeated per point and every few seconds between.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from activities.context import fatal
from activities.heartbeat import Beat, keep_alive
from activities.replica import ReplicaSite
from seawall.blockstore.damage import DamageList, PointCheck, ScrubResult
from seawall.blockstore.errors import DataPathError, PointNotFoundError
from seawall.blockstore.stores.backend import StoreError
from seawall.contract.names import Activity
from seawall.contract.verify import PointVerdict, VerifyInput, VerifyReport


def verify_report(result: ScrubResult, damage: DamageList) -> VerifyReport:
    return VerifyReport(
        vm=result.vm,
        ok=result.ok,
        points=[verdict(p) for p in result.points],
        damaged_chunks=[c.name for c in result.damaged],
        bytes_checked=result.bytes_checked,
        open_damage=len(damage.chunks),
        healed=len(damage.healed),
        finished_at=datetime.now(UTC).isoformat(),
    )


def verdict(p: PointCheck) -> PointVerdict:
    return PointVerdict(
        point_id=p.point_id,
        ok=p.ok,
        was_corrupt=p.was_corrupt,
        problems=p.problems[:10],
        damaged_chunks=[c.name for c in p.chunks],
    )


class VerifyActivities(ReplicaSite):
    @activity.defn(name=Activity.SCRUB_REPLICA)
    def scrub_replica(self, req: VerifyInput) -> VerifyReport:
        repo = self._repository(req.vm)
        beat = Beat({"vm": req.vm, "points_checked": 0})
        checked: list[str] = []

        def on_point(p: PointCheck) -> None:
            checked.append(p.point_id)
            beat({"vm": req.vm, "points_checked": len(checked), "last": p.point_id, "ok": p.ok})

        with keep_alive(beat):
            try:
                result = repo.scrub(req.vm, req.points or None, on_point)
                damage = repo.damage()
            except PointNotFoundError as exc:
                raise fatal(str(exc), "PointNotFound") from None
            except (StoreError, DataPathError) as exc:
                raise self._store_error(req.vm, exc) from None
        return verify_report(result, damage)
