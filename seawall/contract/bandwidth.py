"""``BandwidthCoordinator``'s messages: a worker process's claim on a limit's scope and the share it gets.

Sandbox-safe (pydantic only). The share arithmetic lives here, in plain functions, so the workflow
and the unit tests use the same code and the workflow stays a thin deterministic shell around it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# A process renews every RENEW_S while it ships; one that has not renewed for EXPIRE_S (three missed
# renewals: a dead or partitioned process) drops out and its share goes back to the others.
RENEW_S = 2.0
EXPIRE_S = 7.0
# The coordinator ends when nobody claimed anything for this long; the next claim starts it again.
IDLE_S = 300.0
# A coordinator's workflow task that a dead worker process held is handed on after this (its tasks are
# tiny), and a worker's sticky queue is given up after STICKY_S: together, what a crash of the process
# that hosted the coordinator costs the claims of the others.
TASK_TIMEOUT_S = 4.0
STICKY_S = 5.0
# Continue-as-new after this many claims even if the server does not suggest it yet: short histories.
CLAIMS_PER_RUN = 1000


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BandwidthClaim(_Msg):
    """ "Process ``member`` ships under this scope" (``shipping=False``: it stopped; drop it now).

    ``limit``/``seed_limit`` are the scope's total now (the claimer reads the inventory and the time of
    day); the coordinator applies the lowest any live member reports, so a process with a newer, lower
    limit is never overruled by one with an older, higher one."""

    member: str = Field(min_length=1, max_length=200)
    shipping: bool = True
    seeding: bool = False  # at least one of its ships is a seed
    limit: float | None = Field(default=None, gt=0)
    seed_limit: float | None = Field(default=None, gt=0)


class Member(_Msg):
    member: str
    renewed_at: datetime
    seeding: bool
    limit: float | None
    seed_limit: float | None


class BandwidthGrant(_Msg):
    """The claimer's share: bytes per second for all its ships (None: no total limit now) and for its
    seeds together; ``members``: the processes sharing the scope now."""

    share: float | None
    seed_share: float | None
    members: int
    seeding_members: int


class CoordinatorState(_Msg):
    """What a coordinator carries across continue-as-new (and returns when it ends idle)."""

    scope: str
    members: list[Member] = []
    # Claims a run answers before it continues as new (the server may suggest it sooner), how long a
    # silent member counts, how long the coordinator waits for a claim before it ends.
    max_claims: int = Field(default=CLAIMS_PER_RUN, ge=1)
    expire_s: float = Field(default=EXPIRE_S, gt=0)
    idle_s: float = Field(default=IDLE_S, gt=0)


def live(members: dict[str, Member], now: datetime, expire_s: float = EXPIRE_S) -> dict[str, Member]:
    return {k: m for k, m in members.items() if (now - m.renewed_at).total_seconds() <= expire_s}


def apply_claim(
    members: dict[str, Member], claim: BandwidthClaim, now: datetime, expire_s: float = EXPIRE_S
) -> dict[str, Member]:
    """The members after ``claim`` at ``now``: expired ones gone, the claimer renewed or removed."""
    out = live(members, now, expire_s)
    if claim.shipping:
        out[claim.member] = Member(
            member=claim.member,
            renewed_at=now,
            seeding=claim.seeding,
            limit=claim.limit,
            seed_limit=claim.seed_limit,
        )
    else:
        out.pop(claim.member, None)
    return out


def grant_for(members: dict[str, Member], claim: BandwidthClaim) -> BandwidthGrant:
    """Equal shares: the total over the live members; the seed total over the members seeding."""
    limits = [m.limit for m in members.values() if m.limit is not None]
    seed_limits = [m.seed_limit for m in members.values() if m.seed_limit is not None]
    if claim.limit is not None:
        limits.append(claim.limit)
    if claim.seed_limit is not None:
        seed_limits.append(claim.seed_limit)
    n = max(1, len(members))
    seeding = max(1, sum(1 for m in members.values() if m.seeding))
    return BandwidthGrant(
        share=min(limits) / n if limits else None,
        seed_share=min(seed_limits) / seeding if seed_limits else None,
        members=len(members),
        seeding_members=sum(1 for m in members.values() if m.seeding),
    )
