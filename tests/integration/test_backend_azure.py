"""AzureBlobStore against the lab's Azurite: naming, prefix isolation, block uploads, error mapping.

The ObjectStore contract itself runs for every backend in test_store_conformance.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from seawall.blockstore.stores.azure import AzureBlobStore
from seawall.blockstore.stores.backend import StoreError, TransientStoreError
from seawall.blockstore.stores.retrying import RetryingStore
from seawall.lab import LabInfo

pytestmark = pytest.mark.lab

MiB = 1024 * 1024


def make_store(lab: LabInfo, prefix: str, **kwargs: Any) -> AzureBlobStore:
    return AzureBlobStore(
        kwargs.pop("container", lab.azure.container),
        prefix,
        connection_string=kwargs.pop("connection_string", lab.azure.connection_string),
        **kwargs,
    )


@pytest.fixture
def prefix() -> str:
    return f"test-backend-azure/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(lab: LabInfo, prefix: str) -> Iterator[AzureBlobStore]:
    store = make_store(lab, prefix)
    yield store
    for key in list(store.list()):
        store.delete(key)
    store.close()


def test_describe_check_and_prefix_isolation(store: AzureBlobStore, prefix: str, lab: LabInfo) -> None:
    assert store.describe() == f"azure://{lab.azure.account_name}/{lab.azure.container}/{prefix}"
    assert lab.azure.account_key not in store.describe()
    store.check()

    store.put("chunks/aa/aa01", b"first")
    store.put_overwrite("heads/web-01", b"p2")
    store.put("chunks/bb/bb01", b"")
    store.delete("chunks/aa/aa01")

    raw = sorted(store.client.list_blob_names(name_starts_with=prefix + "/"))
    assert raw == [f"{prefix}/chunks/bb/bb01", f"{prefix}/heads/web-01"]


def test_concurrent_puts_of_one_key_write_once(store: AzureBlobStore) -> None:
    # Content-addressed writers race on the same key; exactly one creates it, the rest see it present
    # (a conditional create: stronger than the contract's "at least one", which S3 cannot promise).
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.put("chunks/same", b"same bytes"), range(16)))
    assert results.count(True) == 1
    assert store.get("chunks/same") == b"same bytes"


def test_large_objects_are_committed_as_blocks(lab: LabInfo, prefix: str) -> None:
    store = make_store(lab, prefix, max_single_put_size=4 * MiB, max_block_size=2 * MiB)
    data = os.urandom(9 * MiB + 77)
    try:
        assert store.put("packs/big", data) is True
        committed, _ = store.client.get_blob_client(f"{prefix}/packs/big").get_block_list("committed")
        assert len(committed) == 5
        assert store.get("packs/big") == data
        assert store.put("packs/big", data) is False
        store.put_overwrite("packs/big", data[:100])
        assert store.get("packs/big") == data[:100]
    finally:
        for key in list(store.list()):
            store.delete(key)
        store.close()


def test_missing_container_is_a_clear_permanent_error(lab: LabInfo, prefix: str) -> None:
    name = f"no-such-container-{uuid.uuid4().hex[:8]}"
    store = make_store(lab, prefix, container=name)
    calls = (store.check, lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: list(store.list()))
    for call in calls:
        with pytest.raises(StoreError) as info:
            call()
        assert not isinstance(info.value, TransientStoreError)
        assert f"container {name!r} does not exist" in str(info.value)
    sleeps: list[float] = []
    with pytest.raises(StoreError):
        RetryingStore(store, attempts=5, sleep=sleeps.append).put("k", b"v")
    assert sleeps == []
    store.close()


def test_wrong_account_key_is_a_permanent_auth_error(lab: LabInfo, prefix: str) -> None:
    wrong = lab.azure.connection_string.replace(lab.azure.account_key, "A" * 86 + "==")
    store = make_store(lab, prefix, connection_string=wrong)
    with pytest.raises(StoreError) as info:
        store.put("k", b"v")
    assert not isinstance(info.value, TransientStoreError)
    assert "credentials or permissions" in str(info.value)
    assert lab.azure.account_key not in str(info.value)
    store.close()


def test_unreachable_endpoint_is_transient_and_retried(lab: LabInfo, prefix: str) -> None:
    down = lab.azure.connection_string.replace(lab.azure.blob_endpoint, "http://127.0.0.1:9/devstoreaccount1")
    assert down != lab.azure.connection_string
    store = make_store(lab, prefix, connection_string=down, connect_timeout=1.0)
    sleeps: list[float] = []
    retrying = RetryingStore(store, attempts=3, base_delay=0.01, max_delay=0.02, sleep=sleeps.append)
    with pytest.raises(TransientStoreError, match="gave up after 3 attempts"):
        retrying.get("k")
    assert len(sleeps) == 2
    store.close()
