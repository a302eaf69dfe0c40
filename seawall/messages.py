"""Workflow inputs and results: small, typeable in the Temporal UI's Start Workflow form.

Sandbox-safe (pydantic + stdlib only) like ``seawall.models``. They carry names and ids, never secrets,
manifests or block lists: payloads fail at 2 MB and histories at 50 MB.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSiteInput(_Message):
    """Start from the UI as ``{"site": "primary"}``."""

    site: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class SiteProbe(_Message):
    """What a site's worker could see of the site: reachable, what answered, and how long it took."""

    site: str
    kind: str
    reachable: bool
    detail: str
    elapsed_ms: int
    worker: str
