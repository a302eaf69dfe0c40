"""Damaged chunks: found by a verify, kept out of dedup, repaired in place by the next ship.

A chunk is sealed on its own (codec.py) and named by its content, and the same plaintext sealed again
with the same key and zstd level has the same length. So when a later ship reads the content of a
damaged chunk from the source again, the freshly sealed chunk fits exactly where the damaged one
lies in its pack: writing it there repairs *every* point that references it, and a full verify then
proves them again. Until then:

- every point a verify found referencing a damaged chunk carries ``corrupt/<vm>/<point>.json`` and is
  not listed as verified (so it is never a cycle's parent nor a recovery's choice);
- the chunk is in ``damage/chunks.json``: the chunk index never dedups to it and an incremental
  verify never trusts a row that references it, so no new point inherits it.

A pack is rewritten only when every repaired chunk's new length equals the old one, and only the
damaged byte ranges change; a pack GC already removed is not recreated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from seawall.blockstore.errors import CorruptObjectError
from seawall.blockstore.layout import DAMAGE_KEY, corrupt_key, pack_key, scrub_key, verified_key
from seawall.blockstore.manifest import BadChunk, VerifyResult
from seawall.blockstore.signed import SignedObjects
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DamagedChunk(_Model):
    chunk: BadChunk
    found_at: datetime
    points: list[str] = Field(default_factory=list, description="<vm>/<point> found referencing it")


class DamageList(_Model):
    chunks: dict[str, DamagedChunk] = Field(default_factory=dict, description="by chunk id (hex)")
    healed: dict[str, datetime] = Field(default_factory=dict, description="chunk id -> repaired at")


class CorruptMarker(_Model):
    vm: str
    point_id: str
    found_at: datetime
    chunks: list[str] = Field(description="damaged chunk ids (hex) the point references")
    problems: list[str]


class ScrubMark(_Model):
    vm: str
    at: datetime


def read_damage(signed: SignedObjects) -> DamageList:
    try:
        return signed.get(DAMAGE_KEY, DamageList)
    except ObjectNotFound:
        return DamageList()


class Damage:
    """Record, look up and repair damaged chunks of one store."""

    def __init__(self, store: ObjectStore, signed: SignedObjects, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._signed = signed
        self._clock = clock

    def load(self) -> DamageList:
        return read_damage(self._signed)

    def damaged_refs(self) -> dict[bytes, BadChunk]:
        """chunk id -> where the damaged copy lies (what ships repair and dedup avoids)."""
        return {bytes.fromhex(cid): d.chunk for cid, d in self.load().chunks.items()}

    def corrupt_points(self, vm: str) -> dict[str, CorruptMarker]:
        out: dict[str, CorruptMarker] = {}
        for k in self._store.list(f"corrupt/{vm}/"):
            name = k.rsplit("/", 1)[-1]
            if not name.endswith(".json"):
                continue
            try:
                out[name[:-5]] = self._signed.get(k, CorruptMarker)
            except (ObjectNotFound, CorruptObjectError):
                continue
        return out

    def mark_corrupt(self, vm: str, result: VerifyResult) -> CorruptMarker:
        """A verify found the point damaged: unlist it as verified and record its damaged chunks.

        The verified marker goes first: a crash between the two leaves a point that is merely
        unverified, never one that is verified and damaged.
        """
        now = self._clock()
        chunks = {c.cid: c for b in result.bad_blocks for c in b.chunks}
        self._store.delete(verified_key(vm, result.point_id))
        marker = CorruptMarker(
            vm=vm,
            point_id=result.point_id,
            found_at=now,
            chunks=sorted(chunks),
            problems=[f"{b.disk} block {b.block}: {b.reason}" for b in result.bad_blocks[:20]]
            + list(result.errors[:20]),
        )
        self._signed.put_overwrite(corrupt_key(vm, result.point_id), marker)
        if chunks:
            dl = self.load()
            merged = dict(dl.chunks)
            where = f"{vm}/{result.point_id}"
            for cid, c in chunks.items():
                old = merged.get(cid)
                points = sorted({*(old.points if old else []), where})
                merged[cid] = DamagedChunk(chunk=c, found_at=old.found_at if old else now, points=points)
            self._signed.put_overwrite(DAMAGE_KEY, dl.model_copy(update={"chunks": merged}))
        return marker

    def last_scrub(self, vm: str) -> datetime | None:
        try:
            return self._signed.get(scrub_key(vm), ScrubMark).at
        except (ObjectNotFound, CorruptObjectError):
            return None

    def mark_scrubbed(self, vm: str) -> None:
        self._signed.put_overwrite(scrub_key(vm), ScrubMark(vm=vm, at=self._clock()))

    def clear(self, vm: str, point_id: str) -> None:
        """The point verified clean again (after a repair): no longer corrupt."""
        self._store.delete(corrupt_key(vm, point_id))

    def repair(self, sealed: Mapping[bytes, bytes]) -> list[str]:
        """Write freshly sealed copies of damaged chunks over the damaged ones; the chunk ids repaired.

        ``sealed``: chunk id -> the chunk sealed again from the source's bytes. A copy whose length
        differs (another zstd level, another key) is not written; the chunk stays damaged.
        """
        damaged = self.damaged_refs()
        by_pack: dict[str, list[tuple[BadChunk, bytes]]] = {}
        for cid, blob in sealed.items():
            c = damaged.get(cid)
            if c is not None and len(blob) == c.length:
                by_pack.setdefault(c.pack, []).append((c, blob))
        repaired: list[str] = []
        for pack_hex, fixes in by_pack.items():
            key = pack_key(bytes.fromhex(pack_hex))
            try:
                data = bytearray(self._store.get(key))
            except ObjectNotFound:
                continue  # GC removed the pack: nothing references it any more
            for c, blob in fixes:
                if c.offset + c.length <= len(data):
                    data[c.offset : c.offset + c.length] = blob
                    repaired.append(c.cid)
            self._store.put_overwrite(key, bytes(data))
        if repaired:
            dl = self.load()
            now = self._clock()
            self._signed.put_overwrite(
                DAMAGE_KEY,
                DamageList(
                    chunks={k: v for k, v in dl.chunks.items() if k not in repaired},
                    healed={**dl.healed, **dict.fromkeys(repaired, now)},
                ),
            )
        return repaired


class PointCheck(_Model):
    """One point's verdict in a scrub."""

    point_id: str
    ok: bool
    was_corrupt: bool = Field(default=False, description="marked corrupt before this check")
    blocks_checked: int
    bytes_checked: int
    problems: list[str] = Field(default_factory=list)
    chunks: list[BadChunk] = Field(default_factory=list, description="damaged chunks it references")


class ScrubResult(_Model):
    vm: str
    points: list[PointCheck]
    damaged: list[BadChunk] = Field(description="distinct damaged chunks found")
    bytes_checked: int

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)


def point_check(result: VerifyResult, was_corrupt: bool) -> PointCheck:
    chunks = {c.cid: c for b in result.bad_blocks for c in b.chunks}
    return PointCheck(
        point_id=result.point_id,
        ok=result.ok,
        was_corrupt=was_corrupt,
        blocks_checked=result.blocks_checked,
        bytes_checked=result.bytes_checked,
        problems=[f"{b.disk} block {b.block} @ {b.offset}: {b.reason}" for b in result.bad_blocks[:20]]
        + list(result.errors[:20]),
        chunks=list(chunks.values()),
    )
