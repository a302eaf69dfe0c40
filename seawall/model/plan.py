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
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from seawall.model.inventory import Site

from seawall.model.cron import check_cron
from seawall.model.guest import WindowsCustomization
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


NicModel = Literal["vmxnet3", "vmxnet2", "e1000e", "e1000", "pcnet32", "virtio", "ena"]


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
    mac: Literal["keep", "new"] | None = Field(
        default=None,
        description=(
            "the NIC's MAC address at the target (KVM): keep the source's, or let the site make a new "
            "one; default keep in a failover (the guest sees the same NIC), new in a drill (the "
            "source still runs)"
        ),
    )
    model: NicModel | None = Field(
        default=None, description="the NIC's model at the target (default: the source's)"
    )
    security_groups: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default=[],
        description="AWS targets: security group names or ids for this NIC (default: the VPC's default)",
    )


class DnsRecord(FileModel):
    """A record Seawall upserts after the VM is up, and puts back as it was before the run on drill
    cleanup, abort or rollback, and on failback (only while it still holds what Seawall set: a
    record changed by someone since is left alone and reported)."""

    zone: DnsName
    name: DnsName = Field(description="fully qualified name inside the zone")
    type: Literal["A", "CNAME"] = "A"
    ttl: Annotated[int, Field(strict=True, ge=1, le=86400)] = 60
    value: str | None = Field(default=None, description="A: default the NIC's new IP; CNAME: required")
    nic: Annotated[int, Field(strict=True, ge=0)] = Field(
        default=0, description="index of the NIC whose new IP an A record gets"
    )
    in_test: StrictBool = Field(
        default=False,
        description="set it in a drill too (a name only the drill's isolated network uses); "
        "restored at cleanup. Default: drills leave DNS alone",
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


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class CommandHook(Hook):
    """Run without a shell, with only PATH, LANG and the variables named here: never the worker's
    own environment, which holds site credentials and keys."""

    kind: Literal["command"] = "command"
    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        description="argv; run without a shell"
    )
    env: dict[EnvName, str] = Field(default={}, description="variables the command gets (plain values)")
    secret_env: dict[EnvName, SecretRef] = Field(
        default={},
        description="variables resolved from secret references at the worker (masked in the output)",
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
