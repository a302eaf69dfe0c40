"""The source domain's XML, kept with each recovery point in the replica store, sealed with its key.

The KVM target re-creates the source's machine from it (``domxml``). It is stored beside the point's
manifest as one object sealed like a chunk (AES-GCM with the replica's key, bound to its object key),
so it is as private as the disks and never travels through workflow history: the source's worker
writes it with the point, the target's worker reads it while materializing.
"""

from __future__ import annotations

from typing import Any

from seawall.blockstore.stores.backend import ObjectNotFound

KIND = b"kvmx"
MAX_BYTES = 1 << 20


def object_key(vm: str, point_id: str) -> str:
    return f"kvm-domain/{vm}/{point_id}.xml"


def save_domain_xml(repo: Any, vm: str, point_id: str, xml: str) -> None:
    """Store ``xml`` for the point (idempotent: the same point always captures the same XML)."""
    data = xml.encode()
    if len(data) > MAX_BYTES:
        raise ValueError(f"domain XML of {vm} is {len(data)} bytes: not a domain description")
    oid = object_key(vm, point_id).encode()
    repo.store.put_overwrite(object_key(vm, point_id), repo.codec.seal(KIND, oid, data))


def load_domain_xml(repo: Any, vm: str, point_id: str) -> str | None:
    """The XML captured with the point, None when the point has none (not from a KVM site)."""
    key = object_key(vm, point_id)
    try:
        blob = repo.store.get(key)
    except ObjectNotFound:
        return None
    return bytes(
        repo.codec.open(KIND, key.encode(), blob, f"domain XML of {vm} at {point_id}", verify_id=False)
    ).decode()
