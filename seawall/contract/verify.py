"""Verifying replicas in full (a scrub): the ``VerifyReplica`` workflow's input and result, and the
failure type a recovery raises on bad data.

Sandbox-safe like every contract module (pydantic + stdlib). Not re-exported by ``messages.py``:
these travel only between the scrub, its doors and status.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.names import NAME_PATTERN

CORRUPT_REPLICA: Final = "CorruptReplica"
"""ApplicationError type of a point whose stored data fails its checks: never retried; a recovery
falls back to an older point that verifies."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerifyInput(_Message):
    """``seawall verify VM [--point P]``: every point of the VM, or the ones named."""

    vm: str = Field(pattern=NAME_PATTERN)
    points: list[str] = Field(default_factory=list, description="point ids; empty: all of them")


class PointVerdict(_Message):
    point_id: str
    ok: bool
    was_corrupt: bool = False
    problems: list[str] = Field(default_factory=list)
    damaged_chunks: list[str] = Field(default_factory=list, description="chunk <id> in pack <id> @ <offset>")


class VerifyReport(_Message):
    """What a full verify found; ``status`` reads the newest one of each VM."""

    vm: str
    ok: bool
    points: list[PointVerdict]
    damaged_chunks: list[str] = Field(default_factory=list, description="distinct, named")
    bytes_checked: int = 0
    open_damage: int = Field(default=0, description="damaged chunks of the store not yet repaired")
    healed: int = Field(default=0, description="damaged chunks of the store repaired so far")
    finished_at: str = ""

    @property
    def corrupt_points(self) -> list[str]:
        return [p.point_id for p in self.points if not p.ok]
