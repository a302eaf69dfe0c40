"""Recovery plans: which VMs recover where, in what order, re-addressed how, checked how, with
which hooks and approval gates.

A plan file (``seawall.plans``) holds one ``RecoveryPlan``; an inventory may hold some inline. The
plan's shape travels to the ``RecoveryPlan`` workflow; its per-VM detail is read at the target
site's worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.cron import check_cron
from seawall.model.scalars import (
    DnsName,
    Duration,
    FileModel,
    HttpUrlStr,
    Name,
    Port,
    SecretRef,
    Variant,
    check_dns_name,
    duration_range,
    non_empty,
)


class RecoveryMode(StrEnum):
    """How a recovery plan runs."""

    TEST = "test"  # drill into isolated networks from the latest verified point, then clean up
    PLANNED = "planned"  # final sync with the source shut down: no data loss
    UNPLANNED = "unplanned"  # the source is gone: latest verified point


class FailurePolicy(StrEnum):
    """What a plan run does when a VM fails to recover."""

    STOP = "stop"  # pause the run where it is and leave everything for the operator to inspect
    SKIP_VM = "skip-vm"  # mark the VM failed, carry on with the rest (its dependants are skipped too)
    ROLLBACK_TEST = "rollback-test"  # in test mode tear the whole drill down; otherwise like stop


class TargetSize(FileModel):
    """The recovered VM's size; what is not given is copied from the source."""

    cpus: Annotated[int, Field(strict=True, ge=1, le=768)] | None = None
    memory_mib: Annotated[int, Field(strict=True, ge=128, le=24 * 1024 * 1024, multiple_of=4)] | None = None
    instance_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")] | None = Field(
        default=None, description="AWS targets: EC2 instance type (else chosen from cpus/memory)"
    )


class StaticIP(FileModel):
    """Give the NIC this address at the target."""

    kind: Literal["static"] = "static"
    ip: IPv4Address
    prefix: Annotated[int, Field(strict=True, ge=1, le=32)] | None = Field(
        default=None, description="default: the target network's prefix length"
    )
    gateway: IPv4Address | None = Field(default=None, description="default: the target network's gateway")


class SubnetTranslation(FileModel):
    """Keep the host part, swap the subnet: 10.1.1.25 in 10.1.1.0/24 -> 10.2.1.25 in 10.2.1.0/24."""

    kind: Literal["translate"] = "translate"
    from_cidr: IPv4Network
    to_cidr: IPv4Network

    @model_validator(mode="after")
    def _same_size(self) -> SubnetTranslation:
        if self.from_cidr.prefixlen != self.to_cidr.prefixlen:
            raise PydanticCustomError(
                "seawall_translation",
                "subnet translation needs equal prefix lengths: {src} -> {dst}",
                {"src": str(self.from_cidr), "dst": str(self.to_cidr)},
            )
        return self

    def translate(self, address: IPv4Address) -> IPv4Address:
        if address not in self.from_cidr:
            raise ValueError(f"{address} is not in {self.from_cidr}")
        return self.to_cidr.network_address + (int(address) - int(self.from_cidr.network_address))


IpRule = Annotated[StaticIP | SubnetTranslation, Field(discriminator="kind")]


class NicMapping(FileModel):
    """Where a source NIC lands at the target, in failover and in test, and how it is re-addressed.

    Without ``ip`` the NIC keeps whatever the guest does (DHCP). In test mode the NIC joins
    ``test_network`` (which must be isolated) with ``test_ip``, or, without it, the failover
    addressing: an isolated bubble lets the application run with production-identical addresses
    (vSphere; on AWS an address must lie inside its subnet, so drills there need ``test_ip``).
    """

    source_network: Name
    target_network: Name
    test_network: Name | None = None
    ip: IpRule | None = None
    test_ip: IpRule | None = None


class DnsRecord(FileModel):
    """A record Seawall upserts after the VM is up (and reverts on cleanup/failback)."""

    zone: DnsName
    name: DnsName = Field(description="fully qualified name inside the zone")
    type: Literal["A", "CNAME"] = "A"
    ttl: Annotated[int, Field(strict=True, ge=1, le=86400)] = 60
    value: str | None = Field(default=None, description="A: default the NIC's new IP; CNAME: required")
    nic: Annotated[int, Field(strict=True, ge=0)] = Field(
        default=0, description="index of the NIC whose new IP an A record gets"
    )

    @field_validator("name")
    @classmethod
    def _inside_zone(cls, value: str, info: ValidationInfo) -> str:
        zone = info.data.get("zone")
        if isinstance(zone, str) and not (value == zone or value.endswith("." + zone)):
            raise PydanticCustomError(
                "seawall_dns_zone", "'{name}' is outside zone '{zone}'", {"name": value, "zone": zone}
            )
        return value

    @field_validator("value")
    @classmethod
    def _value_matches_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("type", "A") == "A":
            try:
                IPv4Address(value)
            except ValueError:
                raise PydanticCustomError(
                    "seawall_dns_value", "'{value}' is not an IPv4 address (A record)", {"value": value[:80]}
                ) from None
            return value
        return check_dns_name(value)

    @model_validator(mode="after")
    def _cname_has_value(self) -> DnsRecord:
        if self.type == "CNAME" and self.value is None:
            raise PydanticCustomError("seawall_dns_cname", "a CNAME record needs a value")
        return self


_HOOK_TIMEOUT = (timedelta(seconds=1), timedelta(hours=4))
_CHECK_TIMEOUT = (timedelta(seconds=1), timedelta(hours=2))


class HealthCheck(Variant):
    """How Seawall knows a recovered VM is ready (not merely powered on). Use ``AnyHealthCheck``."""

    kind: Literal["tcp", "http", "guest-ip"]
    timeout: Annotated[Duration, duration_range(*_CHECK_TIMEOUT)] = timedelta(minutes=10)


class TcpCheck(HealthCheck):
    kind: Literal["tcp"] = "tcp"
    port: Port


class HttpCheck(HealthCheck):
    """GET ``url``, or ``scheme://<new ip>:port/path`` when no url is given; expect ``status``."""

    kind: Literal["http"] = "http"
    url: HttpUrlStr | None = None
    scheme: Literal["http", "https"] = "http"
    port: Port | None = None
    path: Annotated[str, Field(pattern=r"^/")] = "/"
    status: Annotated[int, Field(strict=True, ge=100, le=599)] = 200

    @model_validator(mode="after")
    def _url_or_parts(self) -> HttpCheck:
        # Compared with the defaults, not model_fields_set: a payload round trip sets every field.
        if self.url is not None and (self.scheme != "http" or self.port is not None or self.path != "/"):
            raise PydanticCustomError(
                "seawall_http_check", "give url, or scheme/port/path at the VM's new address, not both"
            )
        return self


class GuestIpCheck(HealthCheck):
    """Wait until the guest reports its expected new address (VMware Tools / the cloud's view)."""

    kind: Literal["guest-ip"] = "guest-ip"


AnyHealthCheck = Annotated[TcpCheck | HttpCheck | GuestIpCheck, Field(discriminator="kind")]


class Hook(Variant):
    """A step run before/after a plan or group. Use ``AnyHook``."""

    name: Name
    kind: Literal["command", "http"]
    timeout: Annotated[Duration, duration_range(*_HOOK_TIMEOUT)] = timedelta(minutes=5)
    site: Name | None = Field(default=None, description="whose worker runs it; default the target site")
    continue_on_failure: StrictBool = False


class CommandHook(Hook):
    kind: Literal["command"] = "command"
    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        description="argv; run without a shell"
    )


class HttpHook(Hook):
    kind: Literal["http"] = "http"
    url: HttpUrlStr
    method: Literal["GET", "POST", "PUT"] = "POST"
    credentials: SecretRef = Field(default="none", description="a bearer token reference")


AnyHook = Annotated[CommandHook | HttpHook, Field(discriminator="kind")]


class Gate(FileModel):
    """A manual approval the run waits for before a group (a Temporal update: approve or abort)."""

    name: Name
    before: Name = Field(description="the group that waits for approval")
    message: Annotated[str, non_empty("message")]
    timeout: Annotated[Duration, duration_range(timedelta(minutes=1), timedelta(days=7))] | None = None
    on_timeout: Literal["abort", "approve"] = "abort"
    approvers: Literal["operator", "admin"] = Field(
        default="operator", description="the least API role that may approve this gate"
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
    failure_policy: FailurePolicy = FailurePolicy.STOP
    test_ttl: Annotated[Duration, duration_range(timedelta(minutes=10), timedelta(days=14))] = Field(
        default=timedelta(hours=24), description="a test failover is cleaned up after this long"
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

    def vms(self) -> Iterator[tuple[Group, PlanVM]]:
        for group in self.groups:
            for vm in group.vms:
                yield group, vm

    def vm(self, name: str) -> PlanVM:
        for _, vm in self.vms():
            if vm.name == name:
                return vm
        raise KeyError(f"plan {self.name!r} has no VM {name!r}")
