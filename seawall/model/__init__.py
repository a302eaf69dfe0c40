"""Seawall's domain models: sites, replica stores, policies, protected VMs and recovery plans.

These models are read from inventory and plan files (see ``seawall.plans``) and travel as Temporal
workflow payloads (``temporalio.contrib.pydantic.pydantic_data_converter``). They depend on pydantic
and the standard library only, and nothing here reads a clock, a random source or the environment,
so they are safe inside Temporal's sandbox.

File-facing models forbid unknown keys, so a typo is an error instead of a silently ignored setting.
Kind-specific variants (sites, replica stores, hooks, health checks, IP rules) are pydantic
discriminated unions on a ``kind`` field; use the ``Any*`` aliases as payload type hints so the
converter rebuilds the right subclass.

The rooms: ``scalars`` (names, durations, secret references, the file-model bases), ``sites``
(sites and networks), ``stores`` (replica stores), ``protection`` (policies, protected VMs,
consistency groups), ``dnszones``, ``inventory`` (the file's top level, gathering them), ``plan``
(recovery plans) with ``addressing`` (NICs, IP rules, DNS records), ``healthchecks`` and ``hooks``,
``ipplan`` (where each NIC lands: pure computation over a plan). This module names the
package's public API.
"""

from __future__ import annotations

from seawall.model.addressing import DnsRecord, IpRule, NicMapping, StaticIP, SubnetTranslation
from seawall.model.dnszones import AnyDnsZone, DnsZone, Rfc2136Zone
from seawall.model.guest import WindowsCustomization
from seawall.model.healthchecks import AnyHealthCheck, GuestIpCheck, HealthCheck, HttpCheck, TcpCheck
from seawall.model.hooks import AnyHook, CommandHook, Hook, HttpHook
from seawall.model.inventory import Inventory
from seawall.model.placement import Placement
from seawall.model.plan import FailurePolicy, Gate, Group, PlanVM, RecoveryMode, RecoveryPlan, TargetSize
from seawall.model.protection import ConsistencyGroup, ProtectedVM, ReplicationPolicy, SnapshotHook
from seawall.model.scalars import (
    DnsName,
    Duration,
    Name,
    SecretRef,
    format_duration,
    parse_duration,
    parse_secret_ref,
)
from seawall.model.sites import AnySite, AwsSite, DirectorySite, KvmSite, Network, Site, VSphereSite
from seawall.model.stores import (
    AnyReplicaStore,
    AzureStore,
    DirectoryStore,
    ObjectLockSpec,
    ReplicaStore,
    S3Store,
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
