"""``GET /healthz``: liveness, for a balancer (no token needed, outside /v1)."""

from __future__ import annotations

from fastapi import APIRouter

from seawall.api.schemas import Health

router = APIRouter(tags=["meta"])


@router.get("/healthz", response_model=Health, summary="Liveness (no token needed)")
async def healthz() -> Health:
    return Health(ok=True)
