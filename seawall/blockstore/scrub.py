"""Scrubbing a repository's points: read every chunk they need, keep what is damaged out of new points
and recovery choices, and verify repaired points again (the damage records are damage.py's)."""

from __future__ import annotations

from collections.abc import Callable

from seawall.blockstore.blockread import Seen
from seawall.blockstore.damage import Damage, PointCheck, ScrubResult, point_check
from seawall.blockstore.errors import BadBlockError, PointNotFoundError
from seawall.blockstore.manifest import BadBlock, BadChunk, VerifyResult
from seawall.blockstore.points import Points
from seawall.blockstore.readback import ReadBack


class Scrubber:
    def __init__(self, points: Points, readback: ReadBack, damage: Damage) -> None:
        self._points = points
        self._readback = readback
        self._damage = damage

    def scrub(
        self,
        vm: str,
        point_ids: list[str] | None = None,
        on_point: Callable[[PointCheck], None] | None = None,
    ) -> ScrubResult:
        """Read every chunk the points need (all of ``vm``'s, or ``point_ids``), newest first.

        A row shared by several points (the same table layer) is read once. A clean point is marked
        verified (a corrupt one that a ship repaired becomes verified again); a damaged one is
        marked corrupt, unlisted as verified, and its damaged chunks recorded.
        """
        points = self._points.list_points(vm)
        if point_ids is not None:
            known = {p.point_id for p in points}
            for pid in point_ids:
                if pid not in known:
                    raise PointNotFoundError(vm, pid)
            points = [p for p in points if p.point_id in point_ids]
        seen: Seen = {}
        checks: list[PointCheck] = []
        for p in reversed(points):
            r = self._readback.verify_point(vm, p.point_id, True, True, seen)
            if r.ok:
                if p.corrupt:
                    self._damage.clear(vm, p.point_id)
            else:
                self._damage.mark_corrupt(vm, r)
            checks.append(point_check(r, p.corrupt))
            if on_point is not None:
                on_point(checks[-1])
        damaged = {c.cid: c for pc in checks for c in pc.chunks}
        if point_ids is None:
            self._damage.mark_scrubbed(vm)
        return ScrubResult(
            vm=vm,
            points=checks,
            damaged=list(damaged.values()),
            bytes_checked=sum(c.bytes_checked for c in checks),
        )

    def mark_bad_block(self, vm: str, point_id: str, err: BadBlockError) -> None:
        """A restore met a damaged block: mark the point corrupt with what it found (no second read),
        so no cycle builds on it and no recovery chooses it until a repair and a full verify."""
        chunks = [c for c in err.damaged if isinstance(c, BadChunk)]
        bad = BadBlock(disk=err.disk, block=err.block, offset=err.offset, reason=err.reason, chunks=chunks)
        result = VerifyResult(
            vm=vm,
            point_id=point_id,
            ok=False,
            disks=0,
            blocks_checked=1,
            chunks_checked=0,
            bytes_checked=0,
            bad_blocks=[bad],
        )
        self._damage.mark_corrupt(vm, result)

    def reverify_repaired(self, vm: str) -> list[PointCheck]:
        """Verify again, in full, the corrupt points of ``vm`` whose damaged chunks have all been
        repaired since (a ship read their content from the source); those that pass are verified."""
        open_damage = self._damage.load().chunks
        todo = [
            pid
            for pid, marker in self._damage.corrupt_points(vm).items()
            if marker.chunks and not any(c in open_damage for c in marker.chunks)
        ]
        if not todo:
            return []
        return self.scrub(vm, todo).points
