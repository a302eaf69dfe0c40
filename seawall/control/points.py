"""A VM's recovery points as its replica holds them, each with the configuration captured with it.

Read straight from the replica store with the inventory's references (store credentials and the
policy's key are resolved in this process, as at a worker): a point's configuration is sealed with
the replica's key and never passes through Temporal. Entries naming a secret are scrubbed again on
the way out, so a configuration stored by an older Seawall cannot show one either.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ValidationError

from seawall.blockstore.errors import DataPathError
from seawall.blockstore.keys import KeyRefError
from seawall.blockstore.stores.backend import StoreError
from seawall.control.errors import ControlError, NotFound
from seawall.model import Inventory
from seawall.model.sourceconfig import SourceConfig
from seawall.security.secrets import SecretError


class ReplicaUnavailable(ControlError):
    """The replica store cannot be read (unreachable, wrong key, a damaged object)."""


class PointDetail(BaseModel):
    vm: str
    point_id: str
    created_at: datetime
    parent: str | None
    verified: bool
    disks: dict[str, int]  # disk -> bytes
    source_config: SourceConfig | None
    config_note: str | None = None  # why there is no configuration, when there is none


NO_CONFIG = "taken before configurations were captured: recovery uses the plan and the site's defaults"


def vm_points(inventory: Inventory, vm: str) -> list[PointDetail]:
    """Every committed point of ``vm``, oldest first, with its configuration (secrets scrubbed)."""
    from seawall.sites.replica import open_repository

    known = {p.name: p for p in inventory.protected_vms}
    if vm not in known:
        raise NotFound(f"protected_vms: no VM named {vm!r} (known: {', '.join(known) or 'none'})")
    pvm = known[vm]
    try:
        repo = open_repository(inventory, pvm.replica_store, inventory.policy(pvm.policy))
        out = []
        for p in repo.list_points(vm):
            raw = repo.read_source_config(vm, p.point_id)
            config = None if raw is None else SourceConfig.model_validate_json(raw).scrubbed()
            out.append(
                PointDetail(
                    vm=vm,
                    point_id=p.point_id,
                    created_at=p.created_at,
                    parent=p.parent,
                    verified=p.verified,
                    disks=dict(p.disks),
                    source_config=config,
                    config_note=None if config is not None else NO_CONFIG,
                )
            )
        return out
    except (KeyRefError, SecretError, StoreError, DataPathError) as exc:
        raise ReplicaUnavailable(f"replica of {vm} ({pvm.replica_store}): {exc}") from None
    except ValidationError as exc:
        raise ReplicaUnavailable(
            f"replica of {vm}: a stored configuration is invalid ({exc.error_count()} errors)"
        ) from None
