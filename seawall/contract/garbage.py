"""Garbage collection of a replica store (the ``CollectGarbage`` workflow and its schedule).

Sandbox-safe (pydantic + stdlib only).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.names import NAME_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GcInput(_Message):
    """Start from the UI as ``{"store": "local", "site": "primary"}``: whose worker reaches the store."""

    store: str = Field(pattern=NAME_PATTERN)
    site: str = Field(pattern=NAME_PATTERN)


class GcOutcome(_Message):
    store: str
    packs_deleted: int
    tables_deleted: int
    condemned: int
    live_sessions: int
    locked: int = 0  # unreferenced objects an unexpired object lock kept


class GcScheduleRequest(_Message):
    store: str
    site: str
    interval_s: float
