"""Open a VM's replica repository from the inventory: its store, credentials and encryption key.

Runs at a worker (credentials and keys are resolved here, never passed through Temporal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seawall.blockstore.envelope import KmsKeys
from seawall.blockstore.immutable import ObjectLock
from seawall.blockstore.keys import KeyMaterial, KeyRing, load_key
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.blockstore.stores.retrying import RetryingStore
from seawall.blockstore.table import BLOCK
from seawall.model import AzureStore, Inventory, ReplicationPolicy, S3Store
from seawall.model import DirectoryStore as DirectoryStoreModel
from seawall.runtime.bandwidth import Scope, throttle
from seawall.security.secrets import resolve, resolve_credentials, resolve_text


def open_store(inventory: Inventory, store_name: str) -> ObjectStore:
    spec = inventory.replica_store(store_name)
    if isinstance(spec, DirectoryStoreModel):
        return DirectoryStore(Path(spec.path))
    if isinstance(spec, S3Store):
        from seawall.blockstore.stores.s3 import S3Store as S3Backend

        creds = resolve_credentials(spec.credentials)
        return RetryingStore(
            S3Backend(
                spec.bucket,
                spec.prefix,
                endpoint_url=spec.endpoint_url,
                region=spec.region,
                access_key_id=creds.get("aws_access_key_id"),
                secret_access_key=creds.get("aws_secret_access_key"),
                session_token=creds.get("aws_session_token"),
                object_lock=spec.object_lock is not None,
            )
        )
    if isinstance(spec, AzureStore):
        from seawall.blockstore.stores.azure import AzureBlobStore

        if spec.connection_string is not None:
            backend = AzureBlobStore(
                spec.container, spec.prefix, connection_string=resolve_text(spec.connection_string)
            )
        else:
            backend = AzureBlobStore(
                spec.container,
                spec.prefix,
                account_url=spec.account_url,
                credential=_azure_credential(spec.credentials),
            )
        return RetryingStore(backend)
    raise ValueError(f"replica store {store_name!r} has unsupported kind {spec.kind!r}")


def _azure_credential(ref: str) -> Any:
    """An account key pair (JSON ``account_name`` + ``account_key``) or a SAS token (plain text)."""
    secret = resolve(ref)
    if secret is None:
        return None
    if secret.is_json_object():
        from azure.core.credentials import AzureNamedKeyCredential

        creds = resolve_credentials(ref, required=("account_name", "account_key"))
        return AzureNamedKeyCredential(str(creds["account_name"]), str(creds["account_key"]))
    return secret.text()


def open_keys(store: ObjectStore, policy: ReplicationPolicy) -> tuple[KeyMaterial, KeyRing]:
    """The key new points are sealed with and the ring of older ones (a rotation keeps them).

    ``kms:`` keys live wrapped in the store (envelope.py): every data key it holds joins the ring.
    ``env:``/``file:`` keys: the policy's ``previous_key_refs`` do.
    """
    ring = KeyRing()
    if policy.key_ref.startswith("kms:"):
        kms = KmsKeys(store, policy.key_ref.removeprefix("kms:"))
        key = kms.current()
        ring = kms.ring(skip=key.key_id)
    else:
        key = load_key(policy.key_ref)
    for ref in policy.previous_key_refs:
        if not ref.startswith("kms:"):  # a kms: store's older keys are already in the ring
            ring.add_ref(ref)
    return key, ring


def limit_scopes(inventory: Inventory, store_name: str, site: str | None, vm: str | None) -> list[Scope]:
    """Every limit a ship from ``site`` of ``vm`` into ``store_name`` draws from: the site's and the
    store's totals (shared by every worker process, through their coordinators) and the VM's own."""
    scopes = []
    if site is not None and (limit := inventory.site(site).bandwidth_limit) is not None:
        scopes.append(Scope(f"site:{site}", limit, coordinated=True))
    if (limit := inventory.replica_store(store_name).bandwidth_limit) is not None:
        scopes.append(Scope(f"store:{store_name}", limit, coordinated=True))
    if vm is not None and (limit := inventory.protected_vm(vm).bandwidth_limit) is not None:
        # One cycle of a VM at a time: its limit needs no coordination between processes.
        scopes.append(Scope(f"vm:{vm}", limit, coordinated=False))
    return scopes


def throttled(
    inventory: Inventory,
    store: ObjectStore,
    store_name: str,
    site: str | None,
    *,
    vm: str | None = None,
    seed: bool = False,
) -> ObjectStore:
    """The store with every bandwidth limit that applies (``seed``: the seed limits too)."""
    return throttle(store, limit_scopes(inventory, store_name, site, vm), seed=seed)


def open_repository(
    inventory: Inventory,
    store_name: str,
    policy: ReplicationPolicy,
    *,
    checkpoint_mib: int | None = None,
    site: str | None = None,
    vm: str | None = None,
    seed: bool = False,
) -> Repository:
    """``checkpoint_mib`` overrides how much a ship scans between durable checkpoints (default 1 GiB).
    ``site``: the worker's site, whose bandwidth limit its writes share (with the store's); ``vm``: the
    VM shipped, with its own limit; ``seed``: a seed, under the seed limits."""
    extra: dict[str, Any] = {}
    if checkpoint_mib is not None:
        extra["checkpoint_blocks"] = max(1, checkpoint_mib * 1024 * 1024 // BLOCK)
        extra["checkpoint_bytes"] = checkpoint_mib * 1024 * 1024
    spec = inventory.replica_store(store_name)
    lock = getattr(spec, "object_lock", None)
    store = throttled(inventory, open_store(inventory, store_name), store_name, site, vm=vm, seed=seed)
    key, ring = open_keys(store, policy)
    return Repository(
        store,
        key,
        ring=ring,
        zstd_level=policy.compression_level,
        object_lock=ObjectLock(lock.mode, lock.period) if lock is not None else None,
        **extra,
    )


def open_mirror(
    inventory: Inventory, primary: Repository, store_name: str, *, site: str | None = None
) -> tuple[str, Repository] | None:
    """The mirror of ``store_name`` (its name and repository), None when the store has none. It is
    opened with the primary's key and ring: it holds the same sealed objects."""
    mirror = inventory.replica_store(store_name).mirror
    if mirror is None:
        return None
    store = throttled(inventory, open_store(inventory, mirror), mirror, site)
    # The mirror's own object lock (if its store sets one): its copies are as immutable as the
    # primary's, and its retention respects its locks (blockstore/mirror.py locks what it copies).
    lock = getattr(inventory.replica_store(mirror), "object_lock", None)
    return mirror, Repository(
        store,
        primary.key,
        ring=primary.ring,
        object_lock=ObjectLock(lock.mode, lock.period) if lock is not None else None,
    )
