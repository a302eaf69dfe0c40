"""Resolve a VM's protection from the inventory: registered on every worker, called as a local activity."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity

from activities.context import fatal
from seawall.contract.messages import GroupCycleInput, GroupProtection, ProtectInput, Protection
from seawall.contract.names import Activity
from seawall.model import Inventory
from seawall.model.scalars import format_duration


def resolve_protection_for(
    inventory: Inventory, inp: ProtectInput, heartbeat_timeout_s: float = 20.0, gc_interval_s: float = 3600.0
) -> Protection:
    try:
        pvm = inventory.protected_vm(inp.vm)
    except LookupError:
        known = ", ".join(v.name for v in inventory.protected_vms) or "none"
        raise fatal(
            f"VM {inp.vm!r} is not protected in the inventory (protected: {known})", "NotProtected"
        ) from None
    policy_name = inp.policy or pvm.policy
    try:
        policy = inventory.policy(policy_name)
    except LookupError:
        known = ", ".join(p.name for p in inventory.policies)
        raise fatal(f"policy {policy_name!r} does not exist (policies: {known})", "UnknownPolicy") from None
    mirror = inventory.replica_store(pvm.replica_store).mirror
    for name in [pvm.replica_store] if mirror is None else [pvm.replica_store, mirror]:
        lock = getattr(inventory.replica_store(name), "object_lock", None)
        if lock is not None and lock.period < policy.retention_span:
            # plan check catches the inventory's own policy; this catches a --policy override.
            what = f"mirror {name!r} of {pvm.replica_store!r}" if name != pvm.replica_store else repr(name)
            raise fatal(
                f"replica store {what} locks points for {format_duration(lock.period)}, shorter "
                f"than policy {policy.name!r} keeps them ({format_duration(policy.retention_span)})",
                "ObjectLockTooShort",
            )
    interval = policy.interval.total_seconds()
    grace = policy.rpo_grace.total_seconds() if policy.rpo_grace is not None else interval / 2
    site = inventory.site(pvm.source_site)
    if inp.source_site is not None and inp.source_site != pvm.source_site:
        if inp.source_site not in pvm.target_sites:
            raise fatal(
                f"VM {pvm.name!r} can replicate back only from one of its target sites "
                f"({', '.join(pvm.target_sites)}), not {inp.source_site!r}",
                "NotProtected",
            )
        site = inventory.site(inp.source_site)
    return Protection(
        vm=pvm.name,
        source_site=site.name,
        source_kind=site.kind,
        policy=policy.name,
        interval_s=interval,
        grace_s=grace,
        store=pvm.replica_store,
        app_consistent=policy.app_consistent,
        retention_count=policy.retention_count,
        retention_hours=policy.retention_hours,
        heartbeat_timeout_s=heartbeat_timeout_s,
        gc_interval_s=gc_interval_s,
        mirror=inventory.replica_store(pvm.replica_store).mirror,
    )


class InventoryActivities:
    """Inventory look-ups: registered on every worker, used as local activities by workflows."""

    def __init__(
        self, load: Callable[[], Inventory], heartbeat_timeout_s: float, gc_interval_s: float
    ) -> None:
        self._load = load
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._gc_interval_s = gc_interval_s

    @activity.defn(name=Activity.RESOLVE_PROTECTION)
    def resolve_protection(self, inp: ProtectInput) -> Protection:
        # Re-read at each call so an edited inventory (policy change) applies from the next cycle on.
        return resolve_protection_for(self._load(), inp, self._heartbeat_timeout_s, self._gc_interval_s)

    @activity.defn(name=Activity.RESOLVE_GROUP)
    def resolve_group(self, inp: GroupCycleInput) -> GroupProtection:
        from activities.groups import resolve_group_for

        return resolve_group_for(self._load(), inp.group, self._heartbeat_timeout_s, self._gc_interval_s)
