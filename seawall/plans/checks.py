"""The second pass: what a valid schema cannot know. Names that must exist, names that must be
unique, addresses that must fit their networks, DNS records that must not collide, dependencies
that must be satisfiable.

The checks work on models, not files: a ``Problem`` is a path in the model and a message, located
at a file's line by whoever read the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address
from typing import Any

from seawall.model import AwsSite, Hook, Inventory, PlanVM, RecoveryPlan
from seawall.plans.errors import Loc, Problem, did_you_mean, format_loc
from seawall.plans.nics import check_nic
from seawall.plans.placements import check_placements
from seawall.plans.stores import check_lock as _check_lock
from seawall.plans.stores import stores_without_mirror


def _duplicates(names: Sequence[str], prefix: Loc, what: str) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for index, name in enumerate(names):
        if name in first:
            where = format_loc((*prefix, first[name]))
            problems.append(
                Problem((*prefix, index, "name"), f"{what} '{name}' is already defined ({where})")
            )
        else:
            first[name] = index
    return problems


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    return f"unknown {what} '{name}'{did_you_mean(name, known)}"


def check_inventory(inventory: Inventory) -> list[Problem]:
    """References and uniqueness inside an inventory (its inline plans included)."""
    problems: list[Problem] = []
    problems += _duplicates([s.name for s in inventory.sites], ("sites",), "site")
    problems += _duplicates([s.name for s in inventory.replica_stores], ("replica_stores",), "replica store")
    problems += _duplicates([p.name for p in inventory.policies], ("policies",), "policy")
    problems += _duplicates([v.name for v in inventory.protected_vms], ("protected_vms",), "protected VM")
    problems += _duplicates([z.name for z in inventory.dns_zones], ("dns_zones",), "DNS zone")
    problems += _duplicates([p.name for p in inventory.plans], ("plans",), "plan")

    sites = {site.name: site for site in inventory.sites}
    for index, site in enumerate(inventory.sites):
        problems += _duplicates([n.name for n in site.networks], ("sites", index, "networks"), "network")

    policies = {policy.name for policy in inventory.policies}
    stores = {store.name for store in inventory.replica_stores}
    by_name = {store.name: store for store in inventory.replica_stores}
    for index, store in enumerate(inventory.replica_stores):
        if store.mirror is None:
            continue
        at_m: Loc = ("replica_stores", index, "mirror")
        if store.mirror == store.name:
            problems.append(Problem(at_m, f"replica store '{store.name}' cannot mirror to itself"))
        elif store.mirror not in stores:
            problems.append(Problem(at_m, _unknown("replica store", store.mirror, stores)))
        elif by_name[store.mirror].mirror is not None:
            problems.append(
                Problem(at_m, f"mirror '{store.mirror}' has a mirror of its own: mirrors are one level deep")
            )
    for index, vm in enumerate(inventory.protected_vms):
        at: Loc = ("protected_vms", index)
        if vm.source_site not in sites:
            problems.append(Problem((*at, "source_site"), _unknown("site", vm.source_site, sites)))
        for target_index, target in enumerate(vm.target_sites):
            if target == vm.source_site:
                problems.append(
                    Problem((*at, "target_sites", target_index), f"'{target}' is the VM's source site")
                )
            elif target not in sites:
                problems.append(Problem((*at, "target_sites", target_index), _unknown("site", target, sites)))
        if vm.policy not in policies:
            problems.append(Problem((*at, "policy"), _unknown("policy", vm.policy, policies)))
        if vm.replica_store not in stores:
            problems.append(
                Problem((*at, "replica_store"), _unknown("replica store", vm.replica_store, stores))
            )
        else:
            problems += _check_lock(inventory, vm.replica_store, vm.policy, at)
            # The mirror's copies are kept by the same policy: its lock must cover it too.
            mirror = next(s for s in inventory.replica_stores if s.name == vm.replica_store).mirror
            if mirror is not None and mirror in stores:
                problems += _check_lock(inventory, mirror, vm.policy, at, mirror_of=vm.replica_store)

    for index, zone in enumerate(inventory.dns_zones):
        if zone.provider != "route53":
            continue  # an RFC 2136 zone names its server, not a site: its updates go from the target's worker
        zone_site = sites.get(zone.site)
        if zone_site is None:
            problems.append(Problem(("dns_zones", index, "site"), _unknown("site", zone.site, sites)))
        elif zone.provider == "route53" and not isinstance(zone_site, AwsSite):
            problems.append(
                Problem(
                    ("dns_zones", index, "site"), f"route53 zones need an aws site; '{zone.site}' is not one"
                )
            )

    problems += check_placements(inventory)
    problems += _check_groups(inventory)
    problems += _duplicates([n.name for n in inventory.notifications], ("notifications",), "notification")
    for index, notify_target in enumerate(inventory.notifications):
        for site_index, site_name in enumerate(notify_target.sites):
            if site_name not in sites:
                problems.append(
                    Problem(("notifications", index, "sites", site_index), _unknown("site", site_name, sites))
                )

    for index, plan in enumerate(inventory.plans):
        problems += [Problem(("plans", index, *p.loc), p.message) for p in check_plan(plan, inventory)]
    return problems


def _check_groups(inventory: Inventory) -> list[Problem]:
    """Consistency groups: members are protected VMs of one source site, one replica store and the
    group's policy, each in one group only (a VM has one schedule)."""
    problems = _duplicates([g.name for g in inventory.consistency_groups], ("consistency_groups",), "group")
    protected = {vm.name: vm for vm in inventory.protected_vms}
    policies = {policy.name for policy in inventory.policies}
    member_of: dict[str, str] = {}
    for index, group in enumerate(inventory.consistency_groups):
        at: Loc = ("consistency_groups", index)
        if group.policy not in policies:
            problems.append(Problem((*at, "policy"), _unknown("policy", group.policy, policies)))
        sites: set[str] = set()
        stores: set[str] = set()
        for vm_index, name in enumerate(group.vms):
            where: Loc = (*at, "vms", vm_index)
            vm = protected.get(name)
            if vm is None:
                problems.append(Problem(where, _unknown("protected VM", name, protected)))
                continue
            if name in member_of:
                problems.append(
                    Problem(where, f"VM '{name}' is already in consistency group '{member_of[name]}'")
                )
            member_of[name] = group.name
            if vm.policy != group.policy:
                problems.append(
                    Problem(
                        where,
                        f"VM '{name}' has policy '{vm.policy}'; its group replicates with '{group.policy}'",
                    )
                )
            sites.add(vm.source_site)
            stores.add(vm.replica_store)
        if len(sites) > 1:
            problems.append(
                Problem((*at, "vms"), f"members come from several source sites: {', '.join(sorted(sites))}")
            )
        if len(stores) > 1:
            problems.append(
                Problem(
                    (*at, "vms"),
                    f"members replicate into several replica stores: {', '.join(sorted(stores))}",
                )
            )
    return problems


def _check_hooks(hooks: Sequence[Hook], at: Loc, sites: dict[str, Any], problems: list[Problem]) -> None:
    problems += _duplicates([hook.name for hook in hooks], at, "hook")
    for index, hook in enumerate(hooks):
        if hook.site is not None and hook.site not in sites:
            problems.append(Problem((*at, index, "site"), _unknown("site", hook.site, sites)))


def check_plan(plan: RecoveryPlan, inventory: Inventory) -> list[Problem]:
    """Everything about a plan that its schema cannot know: names it refers to, addresses, order."""
    return _PlanChecker(plan, inventory).run()


class _PlanChecker:
    def __init__(self, plan: RecoveryPlan, inventory: Inventory) -> None:
        self.plan = plan
        self.inventory = inventory
        self.problems: list[Problem] = []
        self.sites = {site.name: site for site in inventory.sites}
        self.protected = {vm.name: vm for vm in inventory.protected_vms}
        self.zones = {zone.name: zone for zone in inventory.dns_zones}
        self.source = self.sites.get(plan.source_site)
        self.target = self.sites.get(plan.target_site)
        self.group_of: dict[str, int] = {}
        for group_index, group in enumerate(plan.groups):
            for vm in group.vms:
                self.group_of.setdefault(vm.name, group_index)
        self.used: dict[str, dict[IPv4Address, str]] = {"ip": {}, "test_ip": {}}
        self.records: dict[str, tuple[str, str]] = {}

    def add(self, at: Loc, message: str) -> None:
        self.problems.append(Problem(at, message))

    def _check_mirrors(self) -> None:
        """``from_mirror``: every VM's replica store must have a mirror to recover from."""
        lacking = stores_without_mirror(self.plan, self.inventory)
        if lacking:
            self.add(
                ("from_mirror",),
                f"from_mirror: the replica stores of {', '.join(lacking)} have no mirror: give those "
                "stores a mirror, or drop from_mirror",
            )

    def run(self) -> list[Problem]:
        plan = self.plan
        if self.source is None:
            self.add(("source_site",), _unknown("site", plan.source_site, self.sites))
        if self.target is None:
            self.add(("target_site",), _unknown("site", plan.target_site, self.sites))
        elif plan.target_site == plan.source_site:
            self.add(("target_site",), "the target site is the source site")
            self.target = None  # one error says it all; checks against the source would only echo it
        if self.target is not None and plan.drill_network == "per-run" and not self.target.makes_networks:
            self.add(
                ("drill_network",),
                f"per-run drill networks need a target that can make networks; '{self.target.name}' is "
                f"{self.target.kind}, which cannot: give each NIC a fixed isolated test_network, or use "
                "drill_network: disconnected",
            )

        if plan.from_mirror:
            self._check_mirrors()
        group_names = [group.name for group in plan.groups]
        self.problems += _duplicates(group_names, ("groups",), "group")
        _check_hooks(plan.pre_hooks, ("pre_hooks",), self.sites, self.problems)
        _check_hooks(plan.post_hooks, ("post_hooks",), self.sites, self.problems)
        self.problems += _duplicates([gate.name for gate in plan.gates], ("gates",), "gate")
        for index, gate in enumerate(plan.gates):
            if gate.before not in group_names:
                self.add(("gates", index, "before"), _unknown("group", gate.before, group_names))

        placed: set[str] = set()
        for group_index, group in enumerate(plan.groups):
            _check_hooks(group.pre_hooks, ("groups", group_index, "pre_hooks"), self.sites, self.problems)
            _check_hooks(group.post_hooks, ("groups", group_index, "post_hooks"), self.sites, self.problems)
            for vm_index, vm in enumerate(group.vms):
                at: Loc = ("groups", group_index, "vms", vm_index)
                if vm.name in placed:
                    first_group = plan.groups[self.group_of[vm.name]].name
                    self.add((*at, "name"), f"VM '{vm.name}' is already in group '{first_group}'")
                    continue
                placed.add(vm.name)
                self.check_replica(vm, at)
                self.check_size(vm, at)
                for nic_index, nic in enumerate(vm.nics):
                    check_nic(
                        nic,
                        vm.name,
                        self.source,
                        self.target,
                        (*at, "nics", nic_index),
                        self.used,
                        self.problems,
                    )
                self.check_dns(vm, at)
                self.check_dependencies(vm, group_index, at)
        self.problems += _cycles(plan)
        return self.problems

    def check_replica(self, vm: PlanVM, at: Loc) -> None:
        """The VM must be replicated from this plan's source to this plan's target."""
        replica = self.protected.get(vm.name)
        if replica is None:
            self.add(
                (*at, "name"),
                f"VM '{vm.name}' is not protected in the inventory{did_you_mean(vm.name, self.protected)}",
            )
        elif replica.source_site != self.plan.source_site:
            self.add(
                (*at, "name"),
                f"VM '{vm.name}' is protected from site '{replica.source_site}', "
                f"not from the plan's source site '{self.plan.source_site}'",
            )
        elif self.target is not None and self.plan.target_site not in replica.target_sites:
            self.add(
                (*at, "name"),
                f"VM '{vm.name}' is not replicated to site '{self.plan.target_site}' "
                f"(its target sites: {', '.join(replica.target_sites)})",
            )

    def check_size(self, vm: PlanVM, at: Loc) -> None:
        if vm.windows is not None and self.target is not None and self.target.kind != "vsphere":
            # Only vSphere customizes a guest from outside; elsewhere the guest's own tooling must.
            self.add(
                (*at, "windows"),
                f"Windows customization applies to vsphere targets, not '{self.target.kind}'",
            )
        if vm.size is None or vm.size.instance_type is None or self.target is None:
            return
        if not isinstance(self.target, AwsSite):
            self.add(
                (*at, "size", "instance_type"),
                f"instance_type applies to aws targets, not '{self.target.kind}'",
            )

    def check_dns(self, vm: PlanVM, at: Loc) -> None:
        for index, record in enumerate(vm.dns):
            record_at: Loc = (*at, "dns", index)
            if record.zone not in self.zones:
                self.add((*record_at, "zone"), _unknown("DNS zone", record.zone, self.zones))
            if record.type == "A" and record.value is None and record.nic >= len(vm.nics):
                self.add(
                    (*record_at, "nic"),
                    f"VM '{vm.name}' has no NIC {record.nic} to take the address from; "
                    f"add it under nics or give a value",
                )
            # Two upserts of one name overwrite each other, and a CNAME cannot share its name.
            if record.name in self.records:
                kind, owner = self.records[record.name]
                self.add(
                    (*record_at, "name"), f"'{record.name}' already has an {kind} record, set by VM '{owner}'"
                )
            else:
                self.records[record.name] = (record.type, vm.name)

    def check_dependencies(self, vm: PlanVM, group_index: int, at: Loc) -> None:
        for index, dependency in enumerate(vm.depends_on):
            dep_at: Loc = (*at, "depends_on", index)
            if dependency == vm.name:
                self.add(dep_at, f"VM '{vm.name}' depends on itself")
            elif dependency not in self.group_of:
                self.add(
                    dep_at,
                    f"'{dependency}' is not a VM of this plan{did_you_mean(dependency, self.group_of)}",
                )
            elif self.group_of[dependency] > group_index:
                later = self.plan.groups[self.group_of[dependency]].name
                self.add(
                    dep_at,
                    f"'{dependency}' boots in a later group ('{later}'), so '{vm.name}' would wait forever",
                )


def _cycles(plan: RecoveryPlan) -> list[Problem]:
    """Dependency cycles, each reported once, at the edge that closes it, with its whole path.

    Edges to later groups are left out: each is an error of its own already, and any cycle through
    one would only repeat it.
    """
    group_of: dict[str, int] = {}
    for group_index, group in enumerate(plan.groups):
        for vm in group.vms:
            group_of.setdefault(vm.name, group_index)
    edges: dict[str, list[tuple[str, Loc]]] = {}
    for group_index, group in enumerate(plan.groups):
        for vm_index, vm in enumerate(group.vms):
            if vm.name in edges:
                continue
            edges[vm.name] = [
                (dep, ("groups", group_index, "vms", vm_index, "depends_on", dep_index))
                for dep_index, dep in enumerate(vm.depends_on)
                if dep != vm.name and group_of.get(dep, -1) <= group_index
            ]
    problems = []
    reported: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        path.append(name)
        for dependency, at in edges.get(name, []):
            if dependency not in edges or dependency in done:
                continue
            if dependency in path:
                cycle = path[path.index(dependency) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    problems.append(Problem(at, "dependency cycle: " + " -> ".join([*cycle, dependency])))
                continue
            visit(dependency, path)
        path.pop()
        done.add(name)

    for name in edges:
        if name not in done:
            visit(name, [])
    return problems
