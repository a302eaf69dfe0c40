"""The ObjectStore contract (stores/backend.py), one suite run against every backend.

Like restic's internal/backend/test: each test takes ``store`` and runs once per backend --
the local directory, S3 on the lab's moto, Azure Blob on the lab's Azurite. What only one
backend promises (S3 multipart, Azure block lists, exactly-one-winner races, error mapping,
describe() formats, prefix isolation in the raw bucket) stays in that backend's own tests.

The remote stores are built with small multipart / block thresholds, so the large-object tests
go through the chunked upload paths as well as the single-request ones, and with listing pages of
LIST_PAGE keys, so a listing of a few hundred keys crosses pages (S3's own page is 1,000 keys,
Azure's 5,000).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from seawall.blockstore.stores.azure import AzureBlobStore
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, StoreError
from seawall.blockstore.stores.directory import DirectoryStore
from seawall.blockstore.stores.s3 import MIN_PART_SIZE, S3Store
from seawall.lab import LabInfo

MiB = 1024 * 1024
LIST_PAGE = 100

BACKENDS = [
    pytest.param("directory", id="directory"),
    pytest.param("s3", id="s3", marks=pytest.mark.lab),
    pytest.param("azure", id="azure", marks=pytest.mark.lab),
]


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if kind == "directory":
        return DirectoryStore(tmp_path / "store")
    lab: LabInfo = request.getfixturevalue("lab")
    prefix = f"test-conformance/{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        return S3Store(
            lab.s3.bucket,
            prefix,
            endpoint_url=lab.s3.endpoint_url,
            region=lab.s3.region,
            access_key_id=lab.s3.access_key_id,
            secret_access_key=lab.s3.secret_access_key,
            multipart_threshold=MIN_PART_SIZE,
            multipart_part_size=MIN_PART_SIZE,
            list_page_size=LIST_PAGE,
        )
    return AzureBlobStore(
        lab.azure.container,
        prefix,
        connection_string=lab.azure.connection_string,
        max_single_put_size=4 * MiB,
        max_block_size=2 * MiB,
        list_page_size=LIST_PAGE,
    )


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    store = open_store(request.param, request, tmp_path)
    yield store
    for key in list(store.list()):
        store.delete(key)
    close = getattr(store, "close", None)
    if close is not None:
        close()


def test_is_an_object_store(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert isinstance(store.describe(), str) and store.describe()


def test_put_writes_once(store: ObjectStore) -> None:
    assert store.exists("chunks/aa/aa01") is False
    assert store.put("chunks/aa/aa01", b"first") is True
    assert store.put("chunks/aa/aa01", b"other") is False, "an existing key is never rewritten by put"
    assert store.get("chunks/aa/aa01") == b"first"
    assert store.exists("chunks/aa/aa01") is True


def test_put_overwrite_replaces(store: ObjectStore) -> None:
    store.put_overwrite("heads/web-01", b"p1")  # creates an absent key
    assert store.get("heads/web-01") == b"p1"
    store.put_overwrite("heads/web-01", b"p2")
    assert store.get("heads/web-01") == b"p2"
    assert store.put("heads/web-01", b"p3") is False
    assert store.get("heads/web-01") == b"p2"
    store.put_overwrite("heads/web-01", b"x")  # shorter: nothing of the old object remains
    assert store.get("heads/web-01") == b"x"
    assert store.put("chunks/ab/abc", b"one") is True
    store.put_overwrite("chunks/ab/abc", b"three")
    assert store.get("chunks/ab/abc") == b"three"


def test_empty_and_binary_objects(store: ObjectStore) -> None:
    assert store.put("chunks/bb/bb01", b"") is True
    assert store.exists("chunks/bb/bb01") is True
    assert store.get("chunks/bb/bb01") == b""
    every_byte = bytes(range(256)) * 17
    assert store.put("packs/00/every-byte", every_byte) is True
    assert store.get("packs/00/every-byte") == every_byte


def test_missing_objects(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("points/vm/missing.json")
    assert info.value.key == "points/vm/missing.json"
    assert store.exists("points/vm/missing.json") is False
    store.delete("points/vm/missing.json")  # deleting an absent key succeeds


def test_delete_is_idempotent_and_the_key_can_be_written_again(store: ObjectStore) -> None:
    store.put("chunks/aa/aa01", b"first")
    store.delete("chunks/aa/aa01")
    store.delete("chunks/aa/aa01")
    assert store.exists("chunks/aa/aa01") is False
    with pytest.raises(ObjectNotFound) as info:
        store.get("chunks/aa/aa01")
    assert info.value.key == "chunks/aa/aa01"
    # GC deletes a pack that a later ship may write again under the same content address.
    assert store.put("chunks/aa/aa01", b"again") is True
    assert store.get("chunks/aa/aa01") == b"again"


def test_list_by_prefix(store: ObjectStore) -> None:
    keys = ["points/vm1/p1.json", "points/vm1/p2.json", "points/vm10/p1.json", "packs/aa/aa01", "top"]
    for k in keys:
        store.put(k, b"x")
    assert sorted(store.list()) == sorted(keys)
    assert sorted(store.list("")) == sorted(keys)
    assert sorted(store.list("points/vm1/")) == ["points/vm1/p1.json", "points/vm1/p2.json"]
    # A prefix is a string prefix, not a directory: "points/vm1" also matches vm10.
    assert sorted(store.list("points/vm1")) == [
        "points/vm1/p1.json",
        "points/vm1/p2.json",
        "points/vm10/p1.json",
    ]
    assert list(store.list("missing/")) == []
    assert list(store.list("nothing/")) == []
    store.delete("points/vm1/p1.json")
    assert sorted(store.list("points/")) == ["points/vm1/p2.json", "points/vm10/p1.json"]


def test_a_prefix_is_not_an_object(store: ObjectStore) -> None:
    store.put("a/b", b"1")
    assert store.exists("a") is False
    with pytest.raises(ObjectNotFound):
        store.get("a")
    store.delete("a")
    assert store.get("a/b") == b"1"


def test_the_repositorys_key_names_round_trip(store: ObjectStore) -> None:
    # Every character a vm, disk, point or session name may hold (manifest.NAME_RE).
    keys = [
        "points/web-01.example@site+a=1/2026-12-01T12.00.00Z.ab12.json",
        "verified/web-01.example@site+a=1/2026-12-01T12.00.00Z.ab12.json",
        "sessions/web-01.disk_0.0123456789abcdef0123456789abcdef.json",
        "packs/0f/0f" + "e1" * 15,
        "index/0f/0f" + "e1" * 15,
        "tables/9a/9a" + "00" * 31,
        "gc/condemned.json",
    ]
    for i, k in enumerate(keys):
        assert store.put(k, f"object {i}".encode()) is True
    for i, k in enumerate(keys):
        assert store.exists(k) is True
        assert store.get(k) == f"object {i}".encode()
    assert sorted(store.list()) == sorted(keys)
    assert list(store.list("points/web-01.example@site+a=1/")) == [keys[0]]


def test_invalid_keys_are_refused(store: ObjectStore) -> None:
    for key in ("", "/abs"):
        with pytest.raises((StoreError, ValueError)):
            store.put(key, b"x")
        with pytest.raises((StoreError, ValueError)):
            store.get(key)
    assert list(store.list()) == []


def test_large_objects(store: ObjectStore) -> None:
    big = bytes(range(251)) * ((12 * MiB + 77) // 251) + b"tail"
    assert store.put("packs/big", big) is True
    assert store.get("packs/big") == big
    assert store.put("packs/big", big[:100]) is False
    assert store.get("packs/big") == big
    store.put_overwrite("packs/big", big[:100])
    assert store.get("packs/big") == big[:100]
    store.put_overwrite("packs/big", big[::-1])
    assert store.get("packs/big") == big[::-1]
    assert sorted(store.list("packs/")) == ["packs/big"]


def listing_requests(store: ObjectStore) -> list[str]:
    """The listing requests ``store`` sends from now on, one per page (none: a directory)."""
    sent: list[str] = []
    if isinstance(store, S3Store):
        store._client.meta.events.register(
            "before-call.s3.ListObjectsV2", lambda params, **_: sent.append(str(params["url_path"]))
        )
    elif isinstance(store, AzureBlobStore):
        assert store._session is not None

        def seen(response: requests.Response, *args: object, **kwargs: object) -> None:
            if "comp=list" in str(response.request.url):
                sent.append(str(response.request.url))

        store._session.hooks["response"].append(seen)
    return sent


def test_listing_yields_every_key_past_one_page(store: ObjectStore) -> None:
    # Two and a half pages; 16 writers at once also exercise concurrent puts.
    keys = [f"chunks/{i:04x}" for i in range(LIST_PAGE * 5 // 2)]
    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(lambda k: store.put(k, k.encode()), keys))
    requests_sent = listing_requests(store)
    assert sorted(store.list("chunks/")) == keys
    if not isinstance(store, DirectoryStore):
        assert len(requests_sent) == 3, requests_sent  # each page asked for, none left out
    assert store.get("chunks/00f9") == b"chunks/00f9"
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(store.delete, keys))
    assert list(store.list("chunks/")) == []


def test_concurrent_puts_of_one_key(store: ObjectStore) -> None:
    # Content-addressed writers race on the same key with the same bytes: at least one writes it,
    # and every reader then sees those bytes. (Azure and the directory promise exactly one winner;
    # S3's check-then-put may let two write the same content, which is harmless.)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.put("chunks/same", b"same bytes"), range(16)))
    assert results.count(True) >= 1
    assert store.get("chunks/same") == b"same bytes"
    assert list(store.list("chunks/")) == ["chunks/same"]


def test_a_reader_never_sees_a_partly_written_object(store: ObjectStore) -> None:
    versions = [bytes([v]) * (MiB + v) for v in (1, 2)]
    store.put_overwrite("heads/vm", versions[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(store.get("heads/vm"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            store.put_overwrite("heads/vm", versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen and all(s in versions for s in seen)
    assert store.get("heads/vm") == versions[1]
