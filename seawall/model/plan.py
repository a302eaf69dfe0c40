"""Recovery plans: which VMs recover where, in what order, re-addressed how, checked how, with
which hooks and approval gates.

The plan's parts live beside it: ``addressing`` (NICs, IP rules, DNS records), ``healthchecks``,
``hooks``; this module holds the plan, its groups and VMs, gates and drill schedule.

A plan file (``seawall.plans``) holds one ``RecoveryPlan``; an inventory may hold some inline. The
plan's shape travels to the ``RecoveryPlan`` workflow; its per-VM detail is read at the target
site's worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from seawall.model.sites import Site

from seawall.model.addressing import DnsRecord, NicMapping
from seawall.model.cron import check_cron
from seawall.model.guest import WindowsCustomization
from seawall.model.healthchecks import AnyHealthCheck
from seawall.model.hooks import AnyHook
from seawall.model.scalars import DnsName, Duration, FileModel, Name, duration_range, non_empty


class RecoveryMode(StrEnum):
    """How a recovery plan runs."""

    TEST = "test"  # drill into isolated networks from the latest verified point, then clean up
    PLANNED = "planned"  # final sync with the source shut down: no data loss
    UNPLANNED = "unplanned"  # the source is gone: latest verified point


class FailurePolicy(StrEnum):
    """What a plan run does when a VM (or a hook) fails to recover.

    A planned or unplanned failover never destroys what it recovered on its own: under every policy
    it stops where it is and waits for the operator — ``seawall retry`` (the failed steps again, then
    the rest of the plan), ``seawall rollback`` (an approval gate naming every VM it destroys and the
    sources it starts again; nothing happens until it is approved) or ``seawall abort`` (end the run as
    it is, then ``seawall commit``).
    """

    # Pause the run where it is (a drill too: retry, cleanup, abort or its time to live end the wait).
    STOP = "stop"
    SKIP_VM = "skip-vm"  # mark the VM failed, carry on with the rest (its dependants are skipped too)
    # Drills only: tear the whole drill down at once. Accepted in a plan that also runs for real, where
    # it acts as ``stop`` and the run's report carries a warning saying so.
    ROLLBACK_TEST = "rollback-test"


class TargetSize(FileModel):
    """The recovered VM's size; what is not given is copied from the source."""

    cpus: Annotated[int, Field(strict=True, ge=1, le=768)] | None = None
    memory_mib: Annotated[int, Field(strict=True, ge=128, le=24 * 1024 * 1024, multiple_of=4)] | None = None
    instance_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")] | None = Field(
        default=None, description="AWS targets: EC2 instance type (else chosen from cpus/memory)"
    )


class Gate(FileModel):
    """A manual approval the run waits for before a group (a Temporal update: approve or abort)."""

    name: Name
    before: Name = Field(description="the group that waits for approval")
    message: Annotated[str, non_empty("message")]
    timeout: Annotated[Duration, duration_range(timedelta(minutes=1), timedelta(days=7))] | None = Field(
        default=None,
        description="how long to wait for approval (any mode); without it a real failover waits as long "
        "as it takes and a drill until its test_ttl",
    )
    on_timeout: Literal["abort", "approve"] = Field(
        default="abort",
        description="what an unanswered gate does at its timeout: approve and go on, or abort (a drill "
        "is cleaned up; a real failover stops there, destroying nothing, and waits for the operator)",
    )
    role: Literal["operator", "admin"] | None = Field(
        default=None,
        description="the least role that may approve it (default: operator in a drill, admin in a real run)",
    )


def _cron(value: str) -> str:
    try:
        return check_cron(value)
    except ValueError as exc:
        raise PydanticCustomError("seawall_cron", "{why}", {"why": str(exc)}) from None


class PlanVM(FileModel):
    """One VM's recovery: size, networks, addresses, DNS, readiness, ordering."""

    name: Name
    size: TargetSize | None = None
    nics: list[NicMapping] = []
    dns: list[DnsRecord] = []
    depends_on: list[Name] = []
    boot_delay: Annotated[Duration, duration_range(timedelta(0), timedelta(hours=1))] = timedelta(0)
    health_checks: list[AnyHealthCheck] = []
    hostname: DnsName | None = None
    windows: WindowsCustomization | None = Field(
        default=None, description="Windows guests (by the captured guest OS): sysprep identity, domain join"
    )


Target = Annotated[Duration, duration_range(timedelta(seconds=1), timedelta(days=30))]


class Group(FileModel):
    """VMs that recover in parallel; groups run in order."""

    name: Name
    boot_delay: Annotated[Duration, duration_range(timedelta(0), timedelta(hours=1))] = Field(
        default=timedelta(0), description="wait after the previous group is ready"
    )
    pre_hooks: list[AnyHook] = []
    post_hooks: list[AnyHook] = []
    vms: Annotated[list[PlanVM], Field(min_length=1)]
    rto: Target | None = Field(default=None, description="this group healthy within this of the run's start")


class DrillSchedule(FileModel):
    """Drills that run themselves: a Temporal Schedule starts a test failover, waits until every VM is
    healthy, cleans up and records the result."""

    cron: Annotated[str, AfterValidator(_cron)] = Field(
        description="when, as five cron fields (minute hour day-of-month month day-of-week, UTC) or @daily"
    )
    approve_gates: StrictBool = Field(
        default=False,
        description="the schedule approves the plan's gates itself; otherwise the run waits and notifies",
    )
    health_timeout: Annotated[Duration, duration_range(timedelta(minutes=1), timedelta(days=1))] = Field(
        default=timedelta(hours=2), description="a drill not healthy by then failed (it is cleaned up)"
    )
    paused: StrictBool = False


class RecoveryPlan(FileModel):
    """An application's failover: which VMs, from where to where, in what order, re-addressed how."""

    name: Name
    description: str = ""
    source_site: Name
    target_site: Name
    failure_policy: FailurePolicy = Field(
        default=FailurePolicy.STOP,
        description="stop | skip-vm | rollback-test (drills only; a real failover stops instead). A real "
        "failover is never torn down without an approved rollback",
    )
    test_ttl: Annotated[Duration, duration_range(timedelta(minutes=10), timedelta(days=14))] = Field(
        default=timedelta(hours=24),
        description="a test failover is cleaned up this long after it started, whatever it is doing "
        "(waiting at a gate, stopped after a failure, or running)",
    )
    drill_network: Literal["auto", "per-run", "disconnected"] = Field(
        default="auto",
        description="in a drill, a NIC without a fixed test_network joins: per-run, the drill's own "
        "isolated network made at the target for the run and removed by its cleanup (plan check refuses "
        "it where the target kind cannot make networks, e.g. aws); disconnected, its target network with "
        "the NIC disconnected; auto (default), per-run where the target can make networks, else "
        "disconnected",
    )
    from_mirror: bool = Field(
        default=False,
        description="recover every VM from its replica store's mirror, even when the store itself "
        "answers (a region known to be compromised or lost); without it the mirror serves only when "
        "the store cannot be reached. `seawall failover --from-mirror` asks the same for one run",
    )
    pre_hooks: list[AnyHook] = []
    post_hooks: list[AnyHook] = []
    gates: list[Gate] = []
    groups: Annotated[list[Group], Field(min_length=1)]
    # What the plan promises, shown in reports as PASS/FAIL and in readiness.
    rpo: Target | None = Field(default=None, description="largest acceptable age of a recovered point")
    rto: Target | None = Field(default=None, description="every VM healthy within this of the run's start")
    max_drill_age: Annotated[Duration, duration_range(timedelta(hours=1), timedelta(days=366))] | None = (
        Field(default=None, description="the plan is not ready when its last passed drill is older than this")
    )
    drill_schedule: DrillSchedule | None = None

    def per_run_network(self, target: Site) -> bool:
        """Do this plan's drills get their own network at ``target``?"""
        if self.drill_network == "auto":
            return target.makes_networks
        return self.drill_network == "per-run"

    def vms(self) -> Iterator[tuple[Group, PlanVM]]:
        for group in self.groups:
            for vm in group.vms:
                yield group, vm

    def vm(self, name: str) -> PlanVM:
        for _, vm in self.vms():
            if vm.name == name:
                return vm
        raise KeyError(f"plan {self.name!r} has no VM {name!r}")
