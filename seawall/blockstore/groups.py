"""Consistency group points: one signed record per group point, written last.

``groups/<group>/<point>.json`` names the members whose points (same point id, each at
``points/<vm>/<point>.json``) were snapshotted behind one barrier. It is written only after every
member's point is committed *and verified*, so a listed group point is always recoverable as a
whole; a cycle that failed for one member leaves no group point (the members' points stay as
ordinary per-VM points, never chosen for a group recovery).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from seawall.blockstore.errors import PointConflictError
from seawall.blockstore.manifest import check_name, utcnow
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore


class GroupPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    point_id: str
    vms: list[str]
    created_at: datetime
    app_consistent: bool
    snapshots_started_at: str
    snapshots_finished_at: str
    notes: list[str] = []

    def same_content(self, other: GroupPoint) -> bool:
        return self.model_dump(exclude={"created_at"}) == other.model_dump(exclude={"created_at"})


def group_point_key(group: str, point_id: str) -> str:
    return f"groups/{group}/{point_id}.json"


class GroupPoints:
    def __init__(self, store: ObjectStore, signed: SignedObjects) -> None:
        self._store = store
        self._signed = signed

    def commit(self, point: GroupPoint) -> tuple[GroupPoint, bool]:
        """Write the record once; the same content again is a no-op (returns the stored one and False)."""
        check_name("group", point.group)
        check_name("point id", point.point_id)
        okey = group_point_key(point.group, point.point_id)
        if self._signed.put(okey, point):
            return point, True
        existing = self._signed.get(okey, GroupPoint)
        if not point.same_content(existing):
            raise PointConflictError(
                f"group point {point.point_id!r} of {point.group!r} exists with other content"
            )
        return existing, False

    def list(self, group: str) -> list[GroupPoint]:
        """The group's points, oldest first."""
        check_name("group", group)
        out = []
        for key in self._store.list(f"groups/{group}/"):
            if not key.endswith(".json"):
                continue
            try:
                out.append(self._signed.get(key, GroupPoint))
            except ObjectNotFound:
                continue  # deleted by retention meanwhile
        out.sort(key=lambda p: (p.created_at, p.point_id))
        return out

    def delete(self, group: str, point_id: str) -> None:
        self._store.delete(group_point_key(group, point_id))


def new_group_point(
    group: str,
    point_id: str,
    vms: list[str],
    app_consistent: bool,
    window: tuple[str, str],
    notes: list[str],
    now: datetime | None = None,
) -> GroupPoint:
    return GroupPoint(
        group=group,
        point_id=point_id,
        vms=sorted(vms),
        created_at=now or utcnow(),
        app_consistent=app_consistent,
        snapshots_started_at=window[0],
        snapshots_finished_at=window[1],
        notes=notes,
    )
