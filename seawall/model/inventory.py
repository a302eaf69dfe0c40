"""The inventory: sites and their networks, replica stores, replication policies, protected VMs and
DNS zones (and any plans written inline).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from datetime import timedelta
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from seawall.model.bandwidth import BandwidthLimit
from seawall.model.notify import AnyNotifyTarget
from seawall.model.placement import Placement
from seawall.model.plan import RecoveryPlan
from seawall.model.scalars import (
    DnsName,
    Duration,
    FileModel,
    HttpUrlStr,
    KeyRef,
    Name,
    Port,
    SecretRef,
    Variant,
    duration_range,
    non_empty,
)

# --- sites and networks ---------------------------------------------------------------------------


class Network(FileModel):
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


class Site(Variant):
    """A place VMs run: a vSphere vCenter/ESXi, an AWS region, or a directory of raw disk images.

    Use ``AnySite`` to accept any kind; this base holds what every kind shares.
    """

    name: Name
    kind: Literal["vsphere", "aws", "directory", "kvm"]
    credentials: SecretRef = "none"
    networks: list[Network] = []
    # Can Seawall make a drill its own isolated network here (``drill_network``)? The adapter of a kind
    # that can implements ``ensure_run_network``; plan check refuses ``per-run`` where it cannot.
    makes_networks: ClassVar[bool] = False
    bandwidth_limit: BandwidthLimit | None = Field(
        default=None, description="bytes per second all replication from this site may ship"
    )

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
    makes_networks: ClassVar[bool] = True  # a distributed port group per drill
    host: Annotated[str, non_empty("host")]
    port: Port = 443
    protocol: Literal["https", "http"] = "https"
    datacenter: Annotated[str, non_empty("datacenter")]
    datastore: Annotated[str, non_empty("datastore")]
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
    path: Annotated[str, non_empty("path")]

    @property
    def endpoint(self) -> str:
        return self.path


class KvmSite(Site):
    """A libvirt host running QEMU/KVM: domains are VMs, one storage pool holds their disks.

    ``networks`` are libvirt networks (``backing`` when the libvirt name differs); an ``isolated``
    one is a drill network. ``credentials`` is ``none`` for a local socket, else a reference to a
    ``{user, password}`` pair libvirt's authentication callback answers with.
    """

    kind: Literal["kvm"] = "kvm"
    uri: Annotated[str, Field(pattern=r"^[a-z][a-z0-9+.-]*://", description="libvirt connection URI")]
    pool: Annotated[str, non_empty("pool")] = Field(description="the libvirt storage pool for disks")
    backup_dir: Annotated[str, non_empty("backup_dir")] | None = Field(
        default=None,
        description=(
            "a directory the libvirt host and this site's worker share, for the backup's NBD sockets "
            "and scratch files; default: 'seawall-backup' beside the pool's directory"
        ),
    )
    shutdown_grace: Annotated[Duration, duration_range(timedelta(0), timedelta(hours=1))] = Field(
        default=timedelta(seconds=30),
        description="fencing: how long a guest may take to shut down before its domain is destroyed",
    )

    @field_validator("uri")
    @classmethod
    def _no_password_in_uri(cls, value: str) -> str:
        if re.search(r"://[^/@?]*:[^/@?]*@", value):
            raise PydanticCustomError(
                "seawall_uri_credentials",
                "URI must not carry a password (user:password@): put it in credentials as a reference",
            )
        return value

    @property
    def endpoint(self) -> str:
        # A URI may carry a user name (qemu+ssh://user@host/system), never a password (refused above).
        return self.uri


AnySite = Annotated[VSphereSite | AwsSite | DirectorySite | KvmSite, Field(discriminator="kind")]


# --- replica stores and policies ------------------------------------------------------------------


class ReplicaStore(Variant):
    """Where replicated chunks and manifests live. Use ``AnyReplicaStore`` to accept any kind."""

    name: Name
    kind: Literal["directory", "s3", "azure"]
    credentials: SecretRef = "none"
    bandwidth_limit: BandwidthLimit | None = Field(
        default=None, description="bytes per second all replication into this store may ship"
    )
    mirror: Name | None = Field(
        default=None, description="another replica store every verified point is copied to and verified in"
    )

    @property
    @abstractmethod
    def location(self) -> str:
        """A human label for where the store is (never a credential)."""


class DirectoryStore(ReplicaStore):
    kind: Literal["directory"] = "directory"
    path: Annotated[str, non_empty("path")] = Field(description="relative to the inventory file's directory")

    @property
    def location(self) -> str:
        return self.path


class ObjectLockSpec(FileModel):
    """S3 Object Lock on every object a point needs, for ``period`` after the point is created.

    ``compliance``: nobody, the account root included, can delete a locked object early;
    ``governance``: only a principal with s3:BypassGovernanceRetention that asks for it. The bucket
    must have been created with Object Lock enabled. The period must cover the retention of every
    policy whose VMs use the store (checked by ``plan check`` and ``protect``).
    """

    mode: Literal["governance", "compliance"]
    period: Annotated[Duration, duration_range(timedelta(seconds=1), timedelta(days=36500))]


class S3Store(ReplicaStore):
    kind: Literal["s3"] = "s3"
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: Annotated[str, Field(pattern=r"^([^/].*/)?$")] = Field(
        default="", description="key prefix ending in '/', or empty"
    )
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] = "us-east-1"
    endpoint_url: HttpUrlStr | None = None
    object_lock: ObjectLockSpec | None = Field(
        default=None, description="immutable points: S3 Object Lock mode and period per point"
    )

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


# --- DNS zones and the inventory -----------------------------------------------------------------


class DnsZone(FileModel):
    """A Route53 zone Seawall may change records in (``provider: route53``, the default)."""

    name: DnsName
    provider: Literal["route53"] = "route53"
    site: Name = Field(description="the AWS site whose Route53 holds the zone")
    hosted_zone_id: Annotated[str, Field(pattern=r"^(/hostedzone/)?Z[A-Z0-9]{1,32}$")] | None = Field(
        default=None, description="default: looked up by name"
    )
    credentials: SecretRef | None = Field(default=None, description="default: the site's credentials")


class Rfc2136Zone(FileModel):
    """A zone on an authoritative server that takes RFC 2136 dynamic updates signed with TSIG (BIND,
    Knot, PowerDNS). The worker that recovers a VM sends the update, so it must reach ``server``."""

    name: DnsName
    provider: Literal["rfc2136"] = "rfc2136"
    server: Annotated[str, non_empty("server")] = Field(description="the zone's primary: address or name")
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


class Inventory(FileModel):
    """Everything Seawall knows about: sites, stores, policies, protected VMs, DNS zones, plans."""

    sites: list[AnySite] = []
    replica_stores: list[AnyReplicaStore] = []
    policies: list[ReplicationPolicy] = []
    protected_vms: list[ProtectedVM] = []
    dns_zones: list[AnyDnsZone] = []
    consistency_groups: list[ConsistencyGroup] = []
    plans: list[RecoveryPlan] = []
    placements: list[Placement] = []
    notifications: list[AnyNotifyTarget] = []

    def placement(self, source: str, target: str) -> Placement | None:
        """Where VMs from ``source`` land at ``target`` (None: the target site's defaults)."""
        return next((p for p in self.placements if (p.source, p.target) == (source, target)), None)

    def site(self, name: str) -> VSphereSite | AwsSite | DirectorySite | KvmSite:
        return _find(self.sites, name, "site")

    def replica_store(self, name: str) -> DirectoryStore | S3Store | AzureStore:
        return _find(self.replica_stores, name, "replica store")

    def policy(self, name: str) -> ReplicationPolicy:
        return _find(self.policies, name, "policy")

    def protected_vm(self, name: str) -> ProtectedVM:
        # By name through an index: the fleet's status looks every VM up several times, and a scan of
        # 500 VMs for each made it quadratic. Rebuilt when the list is replaced or changes length.
        listed, index = self.vms_by_name
        found = index.get(name)
        if listed is self.protected_vms and len(index) == len(listed) and found is not None:
            return found
        return _find(self.protected_vms, name, "protected VM")  # the list was changed: no index

    @cached_property
    def vms_by_name(self) -> tuple[list[ProtectedVM], dict[str, ProtectedVM]]:
        """The list the index was built from, and the index."""
        return self.protected_vms, {vm.name: vm for vm in self.protected_vms}

    def dns_zone(self, name: str) -> DnsZone | Rfc2136Zone:
        return _find(self.dns_zones, name, "DNS zone")

    def consistency_group(self, name: str) -> ConsistencyGroup:
        return _find(self.consistency_groups, name, "consistency group")

    def group_of(self, vm: str) -> ConsistencyGroup | None:
        """The consistency group ``vm`` belongs to, if any (a VM is in at most one)."""
        return next((g for g in self.consistency_groups if vm in g.vms), None)

    def plan(self, name: str) -> RecoveryPlan:
        return _find(self.plans, name, "plan")


def _find(items: list[Any], name: str, what: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {what} named {name!r}")
