"""Seawall's domain models: sites, replica stores, policies, protected VMs, recovery points and plans.

These models are read from inventory and plan files (see ``seawall.plans``) and travel as Temporal
workflow payloads (``temporalio.contrib.pydantic.pydantic_data_converter``). ``workflows/`` imports
this module inside Temporal's sandbox, so it depends on pydantic and the standard library only, and
nothing here reads a clock, a random source or the environment.

File-facing models forbid unknown keys, so a typo is an error instead of a silently ignored setting.
Kind-specific variants (sites, replica stores, hooks, health checks, IP rules) are pydantic
discriminated unions on a ``kind`` field; use the ``Any*`` aliases as payload type hints so the
converter rebuilds the right subclass.

Durations are written ``30s``, ``5m``, ``1h30m``, ``2d``, as a number of seconds, or in ISO 8601
(``PT30S``, which is also how they serialize).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "AnyDnsZone",
    "AnyHealthCheck",
    "AnyHook",
    "AnyReplicaStore",
    "AnySite",
    "AwsSite",
    "AzureStore",
    "ChangePath",
    "CommandHook",
    "DirectorySite",
    "DirectoryStore",
    "DiskPoint",
    "DnsName",
    "DnsRecord",
    "DnsZone",
    "Duration",
    "FailurePolicy",
    "Gate",
    "Group",
    "GuestIpCheck",
    "HealthCheck",
    "Hook",
    "HttpCheck",
    "HttpHook",
    "Inventory",
    "IpRule",
    "Name",
    "Network",
    "NicMapping",
    "PlanVM",
    "ProtectedVM",
    "RecoveryMode",
    "RecoveryPlan",
    "RecoveryPoint",
    "ReplicaStore",
    "ReplicationPolicy",
    "Rfc2136Zone",
    "S3Store",
    "SecretRef",
    "Site",
    "StaticIP",
    "SubnetTranslation",
    "TargetSize",
    "TcpCheck",
    "VSphereSite",
    "format_duration",
    "parse_duration",
    "parse_secret_ref",
]


class _Model(BaseModel):
    """Base of every file-facing model: unknown keys are errors, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid")


class _Variant(_Model):
    """Base of a family of kinds; only its concrete kinds (one ``kind`` literal) can be built."""

    @model_validator(mode="before")
    @classmethod
    def _concrete_only(cls, data: Any) -> Any:
        if len(get_args(cls.model_fields["kind"].annotation)) != 1:
            # A programming error, not bad input: raised as TypeError so pydantic does not wrap it.
            raise TypeError(f"{cls.__name__} is the base of several kinds; build one of its subclasses")
        return data


# --- constrained scalar types -------------------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "seawall_name",
            "'{value}' is not a valid name: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            {"value": value[:80]},
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema({"type": "string", "pattern": _NAME_RE.pattern}),
]
"""An identifier: a DNS label (lowercase letters, digits, '-'), so it is safe in task queues and URLs."""

_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _check_dns_name(value: str) -> str:
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise PydanticCustomError(
            "seawall_dns_name",
            "'{value}' is not a valid DNS name: dot-separated labels of 1-63 letters, digits, '-' or '_', "
            "no label starting or ending with '-', at most 253 characters",
            {"value": value[:80]},
        )
    return name


DnsName = Annotated[
    str,
    AfterValidator(_check_dns_name),
    WithJsonSchema({"type": "string", "maxLength": 254}),
]
"""A DNS name, normalised to lowercase without a trailing dot."""

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> Any:
    """Turn ``90s``, ``5m``, ``1h30m``, ``2d`` into a timedelta; leave anything else to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.fullmatch(text)
        if text and match:
            days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return value


def format_duration(value: timedelta) -> str:
    """The short form people write in files: ``30s``, ``5m``, ``1h30m``, ``1d``."""
    total = abs(int(value.total_seconds()))
    if total == 0:
        return "0s"
    parts = []
    # "24h" reads better than "1d"; days only start past one day.
    units = (
        (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
        if total > 86400
        else (("h", 3600), ("m", 60), ("s", 1))
    )
    for unit, size in units:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return ("-" if value < timedelta(0) else "") + "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$|^P"},
                {"type": "number", "minimum": 0},
            ],
            "description": "a duration: 30s, 5m, 1h30m, 2d, seconds as a number, or ISO 8601",
        }
    ),
]


def _duration_range(low: timedelta, high: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise PydanticCustomError(
                "seawall_duration_range",
                "{value} is out of range: must be between {low} and {high}",
                {"value": format_duration(value), "low": format_duration(low), "high": format_duration(high)},
            )
        return value

    return AfterValidator(check)


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_ID_SUFFIX_RE = re.compile(r"#[A-Za-z0-9._-]+$")


def parse_secret_ref(value: str) -> tuple[Literal["env", "file", "none"], str]:
    """Split a secret reference into its scheme and target; ValueError when it is not one.

    A trailing ``#ID`` (``file:keys/prod.key#k2``) names a key id for encryption keys
    (``seawall.blockstore.keys``); it is not part of the target. The error never repeats the
    value: a string that is not a reference is most likely the secret itself.
    """
    if value == "none":
        return "none", ""
    scheme, sep, rest = value.partition(":")
    target = _KEY_ID_SUFFIX_RE.sub("", rest)
    if sep and scheme == "env" and _ENV_NAME_RE.fullmatch(target):
        return "env", target
    if sep and scheme == "file" and target and target.strip() == target and "\n" not in target:
        return "file", target
    raise ValueError(
        "is not a secret reference: write env:VARIABLE, file:PATH or none, never the secret itself "
        "(the value is not shown)"
    )


def _check_secret_ref(value: str) -> str:
    try:
        parse_secret_ref(value)
    except ValueError as exc:
        raise PydanticCustomError("seawall_secret_ref", str(exc)) from None
    return value


SecretRef = Annotated[
    str,
    AfterValidator(_check_secret_ref),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(env:[A-Za-z_][A-Za-z0-9_]*(#[A-Za-z0-9._-]+)?|file:\S.*|none)$"}
    ),
]
"""Where a secret lives: ``env:NAME``, ``file:PATH`` (relative to the inventory file) or ``none``."""


def _check_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in ("http", "https") or not host:
        raise PydanticCustomError(
            "seawall_url", "'{value}' is not an http:// or https:// URL", {"value": value[:120]}
        )
    if "@" in host:
        # user:password@host is an inline secret: credentials belong in a reference.
        raise PydanticCustomError(
            "seawall_url_userinfo",
            "URL must not carry credentials (user:password@); use the credentials reference",
        )
    return value


HttpUrlStr = Annotated[str, AfterValidator(_check_url)]

Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


def _non_empty(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("seawall_empty", "{what} must not be empty", {"what": what})
        return value

    return AfterValidator(check)


# --- enums ----------------------------------------------------------------------------------------


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


class ChangePath(StrEnum):
    """How a replication cycle found what changed since the previous point."""

    CBT = "cbt"  # vSphere Changed Block Tracking
    HASH_COMPARE = "hash-compare"  # hashed every block and compared with the previous manifest
    FULL = "full"  # seeded the whole disk (first cycle, or a reset)


# --- sites and networks ---------------------------------------------------------------------------


class Network(_Model):
    """A network at a site; recovered VMs attach to it. On AWS it is a subnet found by its Name tag."""

    name: Name
    cidr: IPv4Network
    gateway: IPv4Address | None = Field(default=None, description="default: the first host address")
    dns_servers: list[IPv4Address] = []
    isolated: StrictBool = Field(default=False, description="no route out: safe for test failovers")
    backing: str | None = Field(
        default=None,
        min_length=1,
        description="the name at the site (vSphere port group, AWS subnet Name tag) when it differs",
    )

    @field_validator("gateway")
    @classmethod
    def _gateway_in_cidr(cls, value: IPv4Address | None, info: ValidationInfo) -> IPv4Address | None:
        cidr = info.data.get("cidr")
        if value is not None and isinstance(cidr, IPv4Network) and value not in cidr:
            raise PydanticCustomError(
                "seawall_gateway",
                "gateway {gateway} is outside the network's subnet {cidr}",
                {"gateway": str(value), "cidr": str(cidr)},
            )
        return value

    @property
    def backing_name(self) -> str:
        return self.backing or self.name

    @property
    def effective_gateway(self) -> IPv4Address:
        return self.gateway if self.gateway is not None else self.cidr.network_address + 1


class Site(_Variant):
    """A place VMs run: a vSphere vCenter/ESXi, an AWS region, or a directory of raw disk images.

    Use ``AnySite`` to accept any kind; this base holds what every kind shares.
    """

    name: Name
    kind: Literal["vsphere", "aws", "directory"]
    credentials: SecretRef = "none"
    networks: list[Network] = []

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """A human label for the site's endpoint (never a credential)."""

    def network(self, name: str) -> Network:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(f"site {self.name!r} has no network {name!r}")


class VSphereSite(Site):
    kind: Literal["vsphere"] = "vsphere"
    host: Annotated[str, _non_empty("host")]
    port: Port = 443
    protocol: Literal["https", "http"] = "https"
    datacenter: Annotated[str, _non_empty("datacenter")]
    datastore: Annotated[str, _non_empty("datastore")]
    insecure_tls: StrictBool = Field(
        default=False, description="skip TLS certificate checks (labs with self-signed certificates only)"
    )

    @property
    def endpoint(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}/sdk"


class AwsSite(Site):
    kind: Literal["aws"] = "aws"
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]
    endpoint_url: HttpUrlStr | None = Field(default=None, description="an AWS-compatible endpoint (moto)")

    @property
    def endpoint(self) -> str:
        return f"aws {self.region}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")


class DirectorySite(Site):
    kind: Literal["directory"] = "directory"
    path: Annotated[str, _non_empty("path")]

    @property
    def endpoint(self) -> str:
        return self.path


AnySite = Annotated[VSphereSite | AwsSite | DirectorySite, Field(discriminator="kind")]


# --- replica stores and policies ------------------------------------------------------------------


class ReplicaStore(_Variant):
    """Where replicated chunks and manifests live. Use ``AnyReplicaStore`` to accept any kind."""

    name: Name
    kind: Literal["directory", "s3", "azure"]
    credentials: SecretRef = "none"

    @property
    @abstractmethod
    def location(self) -> str:
        """A human label for where the store is (never a credential)."""


class DirectoryStore(ReplicaStore):
    kind: Literal["directory"] = "directory"
    path: Annotated[str, _non_empty("path")] = Field(description="relative to the inventory file's directory")

    @property
    def location(self) -> str:
        return self.path


class S3Store(ReplicaStore):
    kind: Literal["s3"] = "s3"
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: Annotated[str, Field(pattern=r"^([^/].*/)?$")] = Field(
        default="", description="key prefix ending in '/', or empty"
    )
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] = "us-east-1"
    endpoint_url: HttpUrlStr | None = None

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class AzureStore(ReplicaStore):
    kind: Literal["azure"] = "azure"
    container: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    # One replica per key: stores sealed with different keys share a container under different prefixes.
    prefix: Annotated[str, Field(pattern=r"^([^/].*/)?$")] = Field(
        default="", description="blob name prefix ending in '/', or empty"
    )
    account_url: HttpUrlStr | None = None
    connection_string: SecretRef | None = Field(
        default=None, description="a reference to a connection string, instead of account_url + credentials"
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> AzureStore:
        if (self.account_url is None) == (self.connection_string is None):
            raise PydanticCustomError(
                "seawall_azure_endpoint", "give exactly one of account_url and connection_string"
            )
        return self

    @property
    def location(self) -> str:
        where = f"azure {self.account_url or 'connection string'} container {self.container}"
        return f"{where} prefix {self.prefix}" if self.prefix else where


AnyReplicaStore = Annotated[DirectoryStore | S3Store | AzureStore, Field(discriminator="kind")]


_MIN_INTERVAL = timedelta(seconds=30)
_MAX_INTERVAL = timedelta(hours=24)
_MIN_GRACE = timedelta(seconds=30)


class ReplicationPolicy(_Model):
    """How often a VM is replicated, how long its points are kept, and how they are protected.

    ``rpo_grace`` is how far past one interval the newest verified point may age before the RPO
    counts as breached. The default is half the interval, at least 30 s: a cycle needs time to
    snapshot, ship, commit and verify after its interval starts, and that time does not shrink below
    a few tens of seconds on vSphere however short the interval; a proportional margin absorbs one
    slow cycle on long intervals without raising an alarm, but a missed cycle always alarms.
    """

    name: Name
    interval: Annotated[Duration, _duration_range(_MIN_INTERVAL, _MAX_INTERVAL)]
    retention_count: Annotated[int, Field(strict=True, ge=1, le=10000)] | None = None
    retention_hours: Annotated[int, Field(strict=True, ge=1, le=24 * 366)] | None = None
    app_consistent: StrictBool = Field(default=False, description="quiesce the guest (VMware Tools/VSS)")
    compression_level: Annotated[int, Field(strict=True, ge=1, le=22)] = Field(
        default=3, description="zstd level"
    )
    key_ref: SecretRef = Field(description="the replica encryption key: env:NAME or file:PATH")
    rpo_grace: Annotated[Duration, _duration_range(timedelta(0), _MAX_INTERVAL)] | None = None

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
    def rpo_threshold(self) -> timedelta:
        """Age of the newest verified point beyond which the RPO is breached."""
        return self.interval + (self.rpo_grace if self.rpo_grace is not None else _MIN_GRACE)


class ProtectedVM(_Model):
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

    @field_validator("target_sites")
    @classmethod
    def _unique_targets(cls, value: list[str]) -> list[str]:
        for name in value:
            if value.count(name) > 1:
                raise PydanticCustomError(
                    "seawall_duplicate", "target site '{name}' is listed twice", {"name": name}
                )
        return value


# --- recovery points ------------------------------------------------------------------------------


class DiskPoint(_Model):
    """One disk of a recovery point: a reference to its manifest, never its block list."""

    key: Annotated[str, Field(min_length=1, max_length=64)]
    size: Annotated[int, Field(ge=0)]
    digest: Annotated[str, Field(pattern=r"^[a-z0-9]+:[0-9a-f]{16,128}$")] = Field(
        description="algorithm:hex digest of the whole disk image"
    )
    manifest: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description="store key of this disk's manifest"
    )
    change_id: str | None = Field(default=None, description="source change id (vSphere CBT) at this point")


class RecoveryPoint(_Model):
    """A committed, complete image of a VM at one moment (incremental forever, synthetic full)."""

    vm: Name
    point_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
    created_at: AwareDatetime
    disks: list[DiskPoint]
    verified: StrictBool = False
    app_consistent: StrictBool = False
    change_path: ChangePath
    bytes_shipped: Annotated[int, Field(ge=0)] = 0


# --- recovery plans -------------------------------------------------------------------------------


class TargetSize(_Model):
    """The recovered VM's size; what is not given is copied from the source."""

    cpus: Annotated[int, Field(strict=True, ge=1, le=768)] | None = None
    memory_mib: Annotated[int, Field(strict=True, ge=128, le=24 * 1024 * 1024, multiple_of=4)] | None = None
    instance_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")] | None = Field(
        default=None, description="AWS targets: EC2 instance type (else chosen from cpus/memory)"
    )


class StaticIP(_Model):
    """Give the NIC this address at the target."""

    kind: Literal["static"] = "static"
    ip: IPv4Address
    prefix: Annotated[int, Field(strict=True, ge=1, le=32)] | None = Field(
        default=None, description="default: the target network's prefix length"
    )
    gateway: IPv4Address | None = Field(default=None, description="default: the target network's gateway")


class SubnetTranslation(_Model):
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


class NicMapping(_Model):
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


class DnsRecord(_Model):
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
        return _check_dns_name(value)

    @model_validator(mode="after")
    def _cname_has_value(self) -> DnsRecord:
        if self.type == "CNAME" and self.value is None:
            raise PydanticCustomError("seawall_dns_cname", "a CNAME record needs a value")
        return self


_HOOK_TIMEOUT = (timedelta(seconds=1), timedelta(hours=4))
_CHECK_TIMEOUT = (timedelta(seconds=1), timedelta(hours=2))


class HealthCheck(_Variant):
    """How Seawall knows a recovered VM is ready (not merely powered on). Use ``AnyHealthCheck``."""

    kind: Literal["tcp", "http", "guest-ip"]
    timeout: Annotated[Duration, _duration_range(*_CHECK_TIMEOUT)] = timedelta(minutes=10)


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


class Hook(_Variant):
    """A step run before/after a plan or group. Use ``AnyHook``."""

    name: Name
    kind: Literal["command", "http"]
    timeout: Annotated[Duration, _duration_range(*_HOOK_TIMEOUT)] = timedelta(minutes=5)
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


class Gate(_Model):
    """A manual approval the run waits for before a group (a Temporal update: approve or abort)."""

    name: Name
    before: Name = Field(description="the group that waits for approval")
    message: Annotated[str, _non_empty("message")]
    timeout: Annotated[Duration, _duration_range(timedelta(minutes=1), timedelta(days=7))] | None = None
    on_timeout: Literal["abort", "approve"] = "abort"


class PlanVM(_Model):
    """One VM's recovery: size, networks, addresses, DNS, readiness, ordering."""

    name: Name
    size: TargetSize | None = None
    nics: list[NicMapping] = []
    dns: list[DnsRecord] = []
    depends_on: list[Name] = []
    boot_delay: Annotated[Duration, _duration_range(timedelta(0), timedelta(hours=1))] = timedelta(0)
    health_checks: list[AnyHealthCheck] = []
    hostname: DnsName | None = None


class Group(_Model):
    """VMs that recover in parallel; groups run in order."""

    name: Name
    boot_delay: Annotated[Duration, _duration_range(timedelta(0), timedelta(hours=1))] = Field(
        default=timedelta(0), description="wait after the previous group is ready"
    )
    pre_hooks: list[AnyHook] = []
    post_hooks: list[AnyHook] = []
    vms: Annotated[list[PlanVM], Field(min_length=1)]


class RecoveryPlan(_Model):
    """An application's failover: which VMs, from where to where, in what order, re-addressed how."""

    name: Name
    description: str = ""
    source_site: Name
    target_site: Name
    failure_policy: FailurePolicy = FailurePolicy.STOP
    test_ttl: Annotated[Duration, _duration_range(timedelta(minutes=10), timedelta(days=14))] = Field(
        default=timedelta(hours=24), description="a test failover is cleaned up after this long"
    )
    pre_hooks: list[AnyHook] = []
    post_hooks: list[AnyHook] = []
    gates: list[Gate] = []
    groups: Annotated[list[Group], Field(min_length=1)]

    def vms(self) -> Iterator[tuple[Group, PlanVM]]:
        for group in self.groups:
            for vm in group.vms:
                yield group, vm

    def vm(self, name: str) -> PlanVM:
        for _, vm in self.vms():
            if vm.name == name:
                return vm
        raise KeyError(f"plan {self.name!r} has no VM {name!r}")


# --- inventory ------------------------------------------------------------------------------------


class DnsZone(_Model):
    """A Route53 zone Seawall may change records in (``provider: route53``, the default)."""

    name: DnsName
    provider: Literal["route53"] = "route53"
    site: Name = Field(description="the AWS site whose Route53 holds the zone")
    hosted_zone_id: Annotated[str, Field(pattern=r"^(/hostedzone/)?Z[A-Z0-9]{1,32}$")] | None = Field(
        default=None, description="default: looked up by name"
    )
    credentials: SecretRef | None = Field(default=None, description="default: the site's credentials")


# --- RFC 2136 DNS zones (seawall.providers.rfc2136) -----------------------------------------------


class Rfc2136Zone(_Model):
    """A zone on an authoritative server that takes RFC 2136 dynamic updates signed with TSIG (BIND,
    Knot, PowerDNS). The worker that recovers a VM sends the update, so it must reach ``server``."""

    name: DnsName
    provider: Literal["rfc2136"] = "rfc2136"
    server: Annotated[str, _non_empty("server")] = Field(description="the zone's primary: address or name")
    port: Port = 53
    tsig_key_name: DnsName
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    credentials: SecretRef = Field(
        description="the TSIG key: its base64 secret, or a BIND key file (tsig-keygen's output)"
    )

    @field_validator("credentials")
    @classmethod
    def _key_required(cls, value: str) -> str:
        if value == "none":
            raise PydanticCustomError(
                "seawall_key_required", "dynamic updates are signed with TSIG: credentials cannot be none"
            )
        return value


def _dns_provider(value: Any) -> str:
    # provider was optional before RFC 2136 zones existed: a zone without one is a Route53 zone.
    if isinstance(value, dict):
        return str(value.get("provider", "route53"))
    return str(getattr(value, "provider", "route53"))


AnyDnsZone = Annotated[
    Annotated[DnsZone, Tag("route53")] | Annotated[Rfc2136Zone, Tag("rfc2136")],
    Discriminator(
        _dns_provider,
        custom_error_type="seawall_dns_provider",
        custom_error_message="unknown DNS provider: expected 'route53' or 'rfc2136'",
    ),
]

# --- end of RFC 2136 DNS zones ---------------------------------------------------------------------


class Inventory(_Model):
    """Everything Seawall knows about: sites, stores, policies, protected VMs, DNS zones, plans."""

    sites: list[AnySite] = []
    replica_stores: list[AnyReplicaStore] = []
    policies: list[ReplicationPolicy] = []
    protected_vms: list[ProtectedVM] = []
    dns_zones: list[AnyDnsZone] = []
    plans: list[RecoveryPlan] = []

    def site(self, name: str) -> VSphereSite | AwsSite | DirectorySite:
        return _find(self.sites, name, "site")

    def replica_store(self, name: str) -> DirectoryStore | S3Store | AzureStore:
        return _find(self.replica_stores, name, "replica store")

    def policy(self, name: str) -> ReplicationPolicy:
        return _find(self.policies, name, "policy")

    def protected_vm(self, name: str) -> ProtectedVM:
        return _find(self.protected_vms, name, "protected VM")

    def dns_zone(self, name: str) -> DnsZone | Rfc2136Zone:
        return _find(self.dns_zones, name, "DNS zone")

    def plan(self, name: str) -> RecoveryPlan:
        return _find(self.plans, name, "plan")


def _find(items: list[Any], name: str, what: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {what} named {name!r}")
