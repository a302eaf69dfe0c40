"""One VM's recovery (the ``RecoverVM`` workflow): its input, the point chosen, the disks and VM
made at the target, DNS and health, its result, and the activity requests that carry them.

Sandbox-safe (pydantic + stdlib only). Names and ids only: the plan's per-VM detail stays in the
plan file, read by the target site's worker.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecoverVMInput(_Message):
    plan: str
    run: str
    mode: str
    vm: str
    target_site: str
    point_time: str | None = None
    # Failback: write the point onto the original VM's disks and start it, instead of a new VM.
    in_place: bool = False
    # Points this run found corrupt: choose_point then takes the newest older one that verifies.
    refused: list[str] = []
    # The point chosen for the VM's whole consistency group (choose_point then takes exactly it).
    point_id: str | None = None
    drill_dns: bool = False
    # Read the point from the VM's store's mirror (plan or operator), even if the store answers.
    from_mirror: bool = False
    # The store the group's point was chosen from (the VM's store or its mirror): read it there.
    store: str | None = None


class ChosenPoint(_Message):
    point_id: str
    created_at: str
    disks: list[str]
    # The guest's addresses at the source when the point was taken (for subnet translation).
    source_ips: list[str] = []
    # Why this point, when it is not simply the newest verified one (a fallback: what was refused).
    note: str = ""
    # Taken with the guest quiesced; one member of a consistency group's point.
    app_consistent: bool = False
    consistency_group: str | None = None
    # The replica store that served the point: the VM's store, or its mirror when the store could
    # not be reached (None in runs recorded before mirrors: the VM's store).
    store: str | None = None


class Resource(_Message):
    """Something a run made at the target, recorded as soon as it exists so cleanup is exact."""

    kind: str  # vm | datastore-dir | ebs-snapshot | image | instance | dns | network
    id: str
    site: str
    detail: str = ""


class Materialized(_Message):
    point: ChosenPoint
    disks: list[str]
    resources: list[Resource]


class TargetVM(_Message):
    name: str
    ips: list[str]
    resources: list[Resource]
    notes: list[str] = []  # what was not as the source was (defaults, fallbacks), for the report


class DnsChange(_Message):
    """One DNS record a run changed (``outcome`` "set": ``previous`` is the value before, None when the
    record did not exist) or put back ("restored": ``value`` is what it holds again, "" when it was
    removed; ``previous`` what Seawall had set), or could not put back ("conflict": someone changed
    it since; left alone) or found nothing to put back ("unchanged")."""

    name: str
    type: str
    value: str
    previous: str | None
    zone: str
    outcome: str = "set"
    detail: str = ""


class HealthOutcome(_Message):
    ok: bool
    checks: list[str]
    elapsed_s: float


class StepTime(_Message):
    step: str
    started_at: str
    finished_at: str


class RecoverVMResult(_Message):
    vm: str
    target_name: str
    point_id: str
    point_created_at: str
    ips: list[str]
    dns: list[DnsChange]
    health: HealthOutcome
    resources: list[Resource]
    steps: list[StepTime]
    started_at: str
    healthy_at: str
    # Achieved RPO: how much older than this VM's recovery the recovered point is (seconds).
    achieved_rpo_s: float | None = None
    point_note: str = ""  # why this point (a corrupt newer point refused), else empty
    notes: list[str] = []
    app_consistent: bool = False
    consistency_group: str | None = None
    replica_store: str | None = None  # the store the point was read from (the VM's or its mirror)


# --- activity inputs: one model per call, so every call is typed end to end -------------------------
# A workflow passes exactly one of these (or one of the requests in the contract's modules) to each
# activity; the activity unpacks it on its first line. Those carrying only names are in
# contract/inputs.py.


class PointRestore(_Message):
    """materialize_disks and restore_in_place: which VM of which run, from which point."""

    target: RecoverVMInput
    point: ChosenPoint
    # A fallback after a corrupt point: what the refused point half-wrote may be overwritten.
    replaces: bool = False


class CreateTargetRequest(_Message):
    target: RecoverVMInput
    disks: Materialized


class RecoveredVM(_Message):
    """check_health and update_dns: a recovered VM as its creation reported it."""

    target: RecoverVMInput
    vm: TargetVM
