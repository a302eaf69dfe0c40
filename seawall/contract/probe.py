"""A site probe's input and result (the ``ProbeSite`` workflow): what a site's worker could see.

Sandbox-safe (pydantic + stdlib only) like every ``seawall.contract`` module.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seawall.contract.names import NAME_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSiteInput(_Message):
    """Start from the UI as ``{"site": "primary"}``."""

    site: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)


class SiteProbe(_Message):
    """What a site's worker could see of the site: reachable, what answered, and how long it took."""

    site: str
    kind: str
    reachable: bool
    detail: str
    elapsed_ms: int
    worker: str
