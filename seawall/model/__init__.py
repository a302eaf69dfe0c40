"""Seawall's domain models: sites, replica stores, policies, protected VMs and recovery plans.

These models are read from inventory and plan files (see ``seawall.plans``) and travel as Temporal
workflow payloads (``temporalio.contrib.pydantic.pydantic_data_converter``). They depend on pydantic
and the standard library only, and nothing here reads a clock, a random source or the environment,
so they are safe inside Temporal's sandbox.

File-facing models forbid unknown keys, so a typo is an error instead of a silently ignored setting.
Kind-specific variants (sites, replica stores, hooks, health checks, IP rules) are pydantic
discriminated unions on a ``kind`` field; use the ``Any*`` aliases as payload type hints so the
converter rebuilds the right subclass.

The rooms: ``scalars`` (names, durations, secret references, the file-model bases), ``inventory``
(sites, stores, policies, protected VMs, DNS zones), ``plan`` (recovery plans), ``ipplan`` (where
each NIC lands: pure computation over a plan). This module names the package's public API.
"""

from __future__ import annotations

from seawall.model.guest import WindowsCustomization
from seawall.model.inventory import (
    AnyDnsZone,
    AnyReplicaStore,
    AnySite,
    AwsSite,
    AzureStore,
    ConsistencyGroup,
    DirectorySite,
    DirectoryStore,
    DnsZone,
    Inventory,
    KvmSite,
    Network,
    ObjectLockSpec,
    ProtectedVM,
    ReplicaStore,
    ReplicationPolicy,
    Rfc2136Zone,
    S3Store,
    Site,
    SnapshotHook,
    VSphereSite,
)
from seawall.model.placement import Placement
from seawall.model.plan import (
    AnyHealthCheck,
    AnyHook,
    CommandHook,
    DnsRecord,
    FailurePolicy,
    Gate,
    Group,
    GuestIpCheck,
    HealthCheck,
    Hook,
    HttpCheck,
    HttpHook,
    IpRule,
    NicMapping,
    PlanVM,
    RecoveryMode,
    RecoveryPlan,
    StaticIP,
    SubnetTranslation,
    TargetSize,
    TcpCheck,
)
from seawall.model.scalars import (
    DnsName,
    Duration,
    Name,
    SecretRef,
    format_duration,
    parse_duration,
    parse_secret_ref,
)

__all__ = [
    "AnyDnsZone",
    "AnyHealthCheck",
    "AnyHook",
    "AnyReplicaStore",
    "AnySite",
    "AwsSite",
    "AzureStore",
    "CommandHook",
    "ConsistencyGroup",
    "DirectorySite",
    "DirectoryStore",
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
    "KvmSite",
    "Name",
    "Network",
    "NicMapping",
    "ObjectLockSpec",
    "Placement",
    "PlanVM",
    "ProtectedVM",
    "RecoveryMode",
    "RecoveryPlan",
    "ReplicaStore",
    "ReplicationPolicy",
    "Rfc2136Zone",
    "S3Store",
    "SecretRef",
    "Site",
    "SnapshotHook",
    "StaticIP",
    "SubnetTranslation",
    "TargetSize",
    "TcpCheck",
    "VSphereSite",
    "WindowsCustomization",
    "format_duration",
    "parse_duration",
    "parse_secret_ref",
]
