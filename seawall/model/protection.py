"""What is protected and how: replication policies (interval, retention, keys, RPO grace), protected
VMs, and consistency groups with their freeze/thaw snapshot hooks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, StrictBool, field_validator, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.bandwidth import BandwidthLimit
from seawall.model.scalars import Duration, FileModel, KeyRef, Name, duration_range

_MIN_INTERVAL = timedelta(seconds=30)
_MAX_INTERVAL = timedelta(hours=24)
_MIN_GRACE = timedelta(seconds=30)


class ReplicationPolicy(FileModel):
    """How often a VM is replicated, how long its points are kept, and how they are protected.

    ``rpo_grace`` is how far past one interval the newest verified point may age before the RPO
    counts as breached. The default is half the interval, at least 30 s: a cycle needs time to
    snapshot, ship, commit and verify after its interval starts, and that time does not shrink below
    a few tens of seconds on vSphere however short the interval; a proportional margin absorbs one
    slow cycle on long intervals without raising an alarm, but a missed cycle always alarms.
    """

    name: Name
    interval: Annotated[Duration, duration_range(_MIN_INTERVAL, _MAX_INTERVAL)]
    retention_count: Annotated[int, Field(strict=True, ge=1, le=10000)] | None = None
    retention_hours: Annotated[int, Field(strict=True, ge=1, le=24 * 366)] | None = None
    app_consistent: StrictBool = Field(default=False, description="quiesce the guest (VMware Tools/VSS)")
    compression_level: Annotated[int, Field(strict=True, ge=1, le=22)] = Field(
        default=3, description="zstd level"
    )
    key_ref: KeyRef = Field(description="the replica encryption key: env:NAME, file:PATH or kms:KEY")
    previous_key_refs: list[KeyRef] = Field(
        default_factory=list,
        description="keys of older points after a rotation of an env:/file: key (still readable)",
    )
    rpo_grace: Annotated[Duration, duration_range(timedelta(0), _MAX_INTERVAL)] | None = None

    @field_validator("key_ref")
    @classmethod
    def _key_required(cls, value: str) -> str:
        if value == "none":
            raise PydanticCustomError(
                "seawall_key_required", "replicas are always encrypted: key_ref cannot be none"
            )
        return value

    @model_validator(mode="after")
    def _retention_and_grace(self) -> ReplicationPolicy:
        if self.retention_count is None and self.retention_hours is None:
            raise PydanticCustomError("seawall_retention", "give retention_count, retention_hours, or both")
        if self.rpo_grace is None:
            # Filled in here, not at read time, so the value travels explicitly in payloads.
            self.rpo_grace = max(self.interval / 2, _MIN_GRACE)
        return self

    @property
    def retention_span(self) -> timedelta:
        """How long a point may be kept: the longer of the count (at one point per interval) and
        the hours, since retention keeps the union of both."""
        spans = [timedelta(0)]
        if self.retention_count is not None:
            spans.append(self.interval * self.retention_count)
        if self.retention_hours is not None:
            spans.append(timedelta(hours=self.retention_hours))
        return max(spans)

    @property
    def rpo_threshold(self) -> timedelta:
        """Age of the newest verified point beyond which the RPO is breached."""
        return self.interval + (self.rpo_grace if self.rpo_grace is not None else _MIN_GRACE)


class ProtectedVM(FileModel):
    """A VM Seawall replicates: from its source site, with a policy, into a store, for target sites."""

    name: Name = Field(description="the VM's name at the source site")
    source_site: Name
    moref: Annotated[str, Field(pattern=r"^vm-\d+$")] | None = Field(
        default=None, description="vSphere managed object id; pins the VM when names are not unique"
    )
    disks: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1)] | None = (
        Field(default=None, description="disk keys to replicate; default all")
    )
    policy: Name
    replica_store: Name
    target_sites: Annotated[list[Name], Field(min_length=1)]
    bandwidth_limit: BandwidthLimit | None = Field(
        default=None, description="bytes per second this VM's ships may use (seawall.model.bandwidth)"
    )

    @field_validator("target_sites")
    @classmethod
    def _unique_targets(cls, value: list[str]) -> list[str]:
        for name in value:
            if value.count(name) > 1:
                raise PydanticCustomError(
                    "seawall_duplicate", "target site '{name}' is listed twice", {"name": name}
                )
        return value


class SnapshotHook(FileModel):
    """A command the source site's worker runs around a consistency group's snapshots: ``freeze``
    before (flush and hold the application's writes), ``thaw`` after (always, even when the freeze
    hung or a snapshot failed). Run without a shell; killed at its timeout."""

    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        description="argv; run without a shell"
    )
    timeout: Annotated[Duration, duration_range(timedelta(seconds=1), timedelta(minutes=30))] = timedelta(
        seconds=60
    )


class ConsistencyGroup(FileModel):
    """VMs of one application replicated together: one schedule, their snapshots taken behind one
    barrier (all taken, then all shipped), a group point committed only when every member's point
    is verified, and recovery of all members from the same group point."""

    name: Name
    policy: Name = Field(description="the members' one replication policy (each member names it too)")
    vms: Annotated[list[Name], Field(min_length=1)]
    freeze: SnapshotHook | None = None
    thaw: SnapshotHook | None = None

    @field_validator("vms")
    @classmethod
    def _unique_members(cls, value: list[str]) -> list[str]:
        for name in value:
            if value.count(name) > 1:
                raise PydanticCustomError("seawall_duplicate", "VM '{name}' is listed twice", {"name": name})
        return value
