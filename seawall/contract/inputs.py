"""Activity inputs that carry only names: one model per call, so every call is typed end to end.

A workflow passes exactly one of these (or one of the requests in ``messages``) to each activity; the
activity unpacks it on its first line. ``seawall.contract.messages`` re-exports them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VMRef(_Message):
    """Activities that need only a VM's name (enable_cbt, apply_retention, fence_vm, ...)."""

    vm: str


class VMsRef(_Message):
    """pause_schedules: every VM a failover is about to fence."""

    vms: list[str]


class VMPoint(_Message):
    """start_cycle and verify_point: one recovery point of one VM."""

    vm: str
    point_id: str


class SnapshotRequest(_Message):
    """create_snapshot: named after the point, so a retried step finds the snapshot it made."""

    vm: str
    snapshot: str
    quiesce: bool


class SnapshotRelease(_Message):
    vm: str
    snapshot: str


class PlanSpecRequest(_Message):
    """load_plan_spec: a plan's shape, the other way round for a failback."""

    plan: str
    direction: str = "failover"
    # The run reads from the replica stores' mirrors: refused (PlanInvalid) before anything is done
    # when a VM's store has none.
    from_mirror: bool = False


class CleanupRequest(_Message):
    plan: str
    run: str
    mode: str


class HookRequest(_Message):
    """run_hook: a hook by name, of the plan (``group`` None) or of one group."""

    plan: str
    group: str | None
    name: str
