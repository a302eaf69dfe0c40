"""Which replica store serves a recovery: the VM's own store, or that store's mirror.

The mirror serves when the VM's store cannot be read (its region is gone), or always when the plan
(``from_mirror``) or the operator (``seawall failover --from-mirror``) says so. A consistency group
chooses its group point once, from one store, and every member then reads that store first (the
point ids are the same in both, so a member may still fall back to the other one). The store that
served is recorded with the chosen point and named in the report per VM.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import fatal
from seawall.blockstore.configs import META_KEY as CONFIG_META
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.layout import config_key
from seawall.blockstore.stores.backend import StoreError
from seawall.model import Inventory

OpenRepo = Callable[[str, str], Any]  # (vm, store name) -> Repository


def stores_to_read(
    inv: Inventory, vm: str, *, from_mirror: bool = False, store: str | None = None
) -> list[str]:
    """The stores to read ``vm``'s points from, in order: ``store`` first when one was chosen for
    the VM's group; only the mirror with ``from_mirror`` (refused, by name, without one)."""
    primary = inv.protected_vm(vm).replica_store
    mirror = inv.replica_store(primary).mirror
    if from_mirror:
        if mirror is None:
            raise fatal(
                f"{vm}: recovery from the mirror was asked for, but its replica store {primary!r} has "
                "no mirror (give the store a `mirror`, or recover without --from-mirror / from_mirror)",
                "NoMirror",
            )
        return [mirror]
    order = [primary] if mirror is None else [primary, mirror]
    if store is not None and store in order:
        order = [store, *(s for s in order if s != store)]
    return order


def read_from(
    vm: str, open_repo: OpenRepo, read: Callable[[Any], Any], order: list[str], what: str
) -> tuple[str, Any, Any]:
    """(store, repository, ``read(repository)``) from the first store of ``order`` that answers;
    a store that cannot be read is logged and the next one tried. None answering: StoreUnavailable
    (retried) naming each store and why."""
    errors: list[str] = []
    for i, name in enumerate(order):
        try:
            repo = open_repo(vm, name)
            return name, repo, read(repo)
        except (StoreError, DataPathError) as exc:
            if len(order) == 1:
                raise ApplicationError(f"replica of {what}: {exc}", type="StoreUnavailable") from None
            errors.append(f"store {name!r}: {exc}")
            if i + 1 < len(order):
                activity.logger.warning(
                    "replica store %s of %s unreadable (%s): reading %s", name, what, exc, order[i + 1]
                )
    raise ApplicationError(f"replica of {what}: {'; '.join(errors)}", type="StoreUnavailable")


def verified_points(repo: Any, vm: str) -> list[Any]:
    return [p for p in repo.list_points(vm) if p.verified]


def group_candidates(repo: Any, group: str, vms: list[str], limit: datetime | None) -> list[Any]:
    """The group's points (oldest first, at or before ``limit``) whose every member in ``vms`` has
    its verified point in ``repo``."""
    verified = {vm: {p.point_id for p in verified_points(repo, vm)} for vm in vms}
    return [
        g
        for g in repo.groups.list(group)
        if (limit is None or g.created_at <= limit) and all(g.point_id in verified[vm] for vm in vms)
    ]


def missing_config(inv: Inventory, vm: str, point_id: str, store: str | None) -> str:
    """Why a point's source configuration is missing, and what to do, for the report."""
    primary = inv.protected_vm(vm).replica_store
    key = config_key(vm, point_id)
    if store is not None and store != primary:
        return (
            f"point {point_id} of {vm} in replica store {store!r} (the mirror of {primary!r}) lacks its "
            f"source configuration {key!r}, which its manifest records: the point was mirrored before "
            f"configurations were copied with points. The next replication cycle of {vm} copies it "
            f"from {primary!r} (only missing objects); or recover without the mirror once {primary!r} "
            "answers"
        )
    return (
        f"point {point_id} of {vm} in replica store {primary!r} lacks its source configuration {key!r}, "
        "which its manifest records (deleted or lost): choose an older point with --point"
    )


def check_config(inv: Inventory, repo: Any, vm: str, point_id: str, manifest: Any, store: str) -> None:
    """Refuse, before anything is made at the target, a point whose recorded configuration is gone:
    the machine could not be re-created as the source was."""
    if CONFIG_META in manifest.meta and not repo.store.exists(config_key(vm, point_id)):
        raise fatal(missing_config(inv, vm, point_id, store), "ConfigMissing")
