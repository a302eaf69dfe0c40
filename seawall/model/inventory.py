"""The inventory: sites and their networks, replica stores, replication policies, protected VMs and
DNS zones (and any plans written inline).

Each kind of entry lives in its own module (``sites``, ``stores``, ``protection``,
``dnszones``); this one gathers them into the file's top level and looks entries up by name.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from seawall.model.dnszones import AnyDnsZone, DnsZone, Rfc2136Zone
from seawall.model.notify import AnyNotifyTarget
from seawall.model.placement import Placement
from seawall.model.plan import RecoveryPlan
from seawall.model.protection import ConsistencyGroup, ProtectedVM, ReplicationPolicy
from seawall.model.scalars import FileModel
from seawall.model.sites import AnySite, AwsSite, DirectorySite, KvmSite, VSphereSite
from seawall.model.stores import AnyReplicaStore, AzureStore, DirectoryStore, S3Store


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

    def groups_of(self, vms: list[str]) -> list[str]:
        """The names of the consistency groups any of ``vms`` belongs to, sorted."""
        return sorted({g.name for vm in vms if (g := self.group_of(vm)) is not None})

    def plan(self, name: str) -> RecoveryPlan:
        return _find(self.plans, name, "plan")


def _find(items: list[Any], name: str, what: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {what} named {name!r}")
