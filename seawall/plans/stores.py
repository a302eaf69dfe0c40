"""Checks of the replica stores a plan's VMs use: object lock periods (a store's and its mirror's)
against the retention, and whether every store has a mirror when a plan recovers from mirrors."""

from __future__ import annotations

from seawall.model import Inventory, ObjectLockSpec, RecoveryPlan
from seawall.model.scalars import format_duration
from seawall.plans.errors import Loc, Problem

__all__ = ["check_lock", "stores_without_mirror"]


def check_lock(
    inventory: Inventory, store_name: str, policy_name: str, at: Loc, mirror_of: str | None = None
) -> list[Problem]:
    """A lock shorter than the retention would leave the oldest points deletable by anyone holding
    the store's keys while the operator believes them kept."""
    store = next(s for s in inventory.replica_stores if s.name == store_name)
    lock = getattr(store, "object_lock", None)
    policy = next((p for p in inventory.policies if p.name == policy_name), None)
    if not isinstance(lock, ObjectLockSpec) or policy is None:
        return []
    span = policy.retention_span
    if lock.period >= span:
        return []
    return [
        Problem(
            (*at, "replica_store"),
            (
                f"mirror '{store_name}' of replica store '{mirror_of}'"
                if mirror_of
                else f"replica store '{store_name}'"
            )
            + f" locks points for {format_duration(lock.period)}, shorter than "
            f"policy '{policy_name}' keeps them ({format_duration(span)}): set its object_lock.period to "
            f"at least {format_duration(span)}",
        )
    ]


def stores_without_mirror(plan: RecoveryPlan, inventory: Inventory) -> list[str]:
    """The plan's VMs whose replica store has no mirror, as ``vm ('store')`` (unknown names are
    other checks' business)."""
    stores = {store.name: store for store in inventory.replica_stores}
    protected = {vm.name: vm for vm in inventory.protected_vms}
    return sorted(
        {
            f"{vm.name} ('{pvm.replica_store}')"
            for _, vm in plan.vms()
            if (pvm := protected.get(vm.name)) is not None
            and (store := stores.get(pvm.replica_store)) is not None
            and store.mirror is None
        }
    )
