"""Key rotation of a replica store: ``seawall keys rotate STORE``.

Unlike the other actions this one talks to the store and KMS directly, not through Temporal: it is
one small, idempotent write (a new wrapped data key, then the pointer to it) that an admin holding
the store's and the KMS key's credentials runs where those credentials are. Workers pick the new
key up at their next repository open (every activity opens one), so the next point is sealed with
it; every older point names its data key id in its manifest and stays readable through the ring.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from seawall.blockstore.envelope import KmsKeys
from seawall.control.errors import InvalidState, NotFound
from seawall.model import Inventory

__all__ = ["KeyRotation", "rotate_store_key", "store_kms_key"]


class KeyRotation(BaseModel):
    model_config = ConfigDict(frozen=True)
    store: str
    kms_key: str
    previous_key_id: str | None
    key_id: str
    keys_in_ring: int


def store_kms_key(inventory: Inventory, store: str) -> str:
    """The one KMS key the policies of the store's VMs name (``kms:`` stripped)."""
    if store not in {s.name for s in inventory.replica_stores}:
        known = ", ".join(s.name for s in inventory.replica_stores) or "none"
        raise NotFound(f"no replica store named {store!r} (known: {known})")
    refs = {
        inventory.policy(vm.policy).key_ref for vm in inventory.protected_vms if vm.replica_store == store
    }
    kms = sorted(r.removeprefix("kms:") for r in refs if r.startswith("kms:"))
    if not refs:
        raise InvalidState(f"no protected VM uses replica store {store!r}: nothing is keyed there yet")
    if not kms or len(refs) > 1:
        raise InvalidState(
            f"replica store {store!r} is keyed by {', '.join(sorted(refs))}: `keys rotate` rotates a "
            "store keyed by one kms: key; for an env:/file: key, set the policy's key_ref to the new "
            "key and list the old one under previous_key_refs"
        )
    return kms[0]


def rotate_store_key(inventory: Inventory, store: str) -> KeyRotation:
    """Make a new data key (wrapped by the policies' KMS key) the one new points use."""
    from seawall.sites.replica import open_store

    kms_key = store_kms_key(inventory, store)
    keys = KmsKeys(open_store(inventory, store), kms_key)
    previous, made = keys.rotate()
    ring = keys.ring(skip=made.key_id)
    return KeyRotation(
        store=store, kms_key=kms_key, previous_key_id=previous, key_id=made.key_id, keys_in_ring=len(ring) + 1
    )
