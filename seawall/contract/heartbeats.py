"""Typed heartbeat details: what a running activity records, and what a retry or ``status`` reads back.

Heartbeat details travel through the pydantic data converter like any payload; the writer and every
reader use the same class, so a renamed field is a type error, not a silently empty progress bar.
Sandbox-safe (pydantic only), like ``messages``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from seawall.contract.messages import ShippedDiskRef


class ShipCheckpoint(BaseModel):
    """The current disk's checkpoint as it travels in a ship heartbeat: the fields of the data path's
    ``ShipProgress`` (``seawall.blockstore.manifest``), which the contract may not import."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session: str
    vm: str
    disk: str
    block: int  # next block index to scan; every block before it is committed
    blocks_total: int
    bytes_read: int
    bytes_shipped: int
    packs_committed: int
    checkpoint: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.block / max(1, self.blocks_total))


class ShipHeartbeat(BaseModel):
    """``ship_disks``: the disks already shipped (a retry skips them) and where the current one is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    done: list[ShippedDiskRef] = []
    progress: ShipCheckpoint | None = None
    # This attempt so far: seconds shipping, and seconds its writes waited on a bandwidth limit.
    shipping_s: float = 0.0
    throttled_s: float = 0.0

    @property
    def throttled(self) -> bool:
        """A bandwidth limit holds the ship back: its writes waited a tenth of the time or more."""
        return self.throttled_s >= 1.0 and self.throttled_s >= 0.1 * self.shipping_s
