"""AzureBlobStore without a server: a fake ContainerClient and constructed azure-core errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from seawall.blockstore.stores.azure import AzureBlobStore, map_azure_error
from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, StoreError, TransientStoreError

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONN = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


def http_error(cls: type[HttpResponseError], status: int, code: str | None) -> HttpResponseError:
    err = cls(message=f"status {status}")
    err.status_code = status
    err.error_code = code  # type: ignore[attr-defined]
    return err


class FakeBlob:
    def __init__(self, container: FakeContainer, name: str) -> None:
        self.container = container
        self.name = name

    def exists(self) -> bool:
        self.container.check()
        return self.name in self.container.blobs


class FakeDownload:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def readall(self) -> bytes:
        return self.data


class FakeContainer:
    account_name = "acct"

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fail: Exception | None = None

    def check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def upload_blob(self, name: str, data: bytes, overwrite: bool = False, **_: Any) -> None:
        self.check()
        if not overwrite and name in self.blobs:
            raise http_error(ResourceExistsError, 409, "BlobAlreadyExists")
        self.blobs[name] = data

    def download_blob(self, name: str, **_: Any) -> FakeDownload:
        self.check()
        if name not in self.blobs:
            raise http_error(ResourceNotFoundError, 404, "BlobNotFound")
        return FakeDownload(self.blobs[name])

    def get_blob_client(self, name: str) -> FakeBlob:
        return FakeBlob(self, name)

    def delete_blob(self, name: str, **_: Any) -> None:
        self.check()
        if name not in self.blobs:
            raise http_error(ResourceNotFoundError, 404, "BlobNotFound")
        del self.blobs[name]

    def list_blob_names(
        self, name_starts_with: str = "", results_per_page: int | None = None
    ) -> Iterator[str]:
        self.check()
        yield from (n for n in list(self.blobs) if n.startswith(name_starts_with))

    def get_container_properties(self) -> dict[str, str]:
        self.check()
        return {}

    def close(self) -> None:
        pass


@pytest.fixture
def fake() -> FakeContainer:
    return FakeContainer()


@pytest.fixture
def store(fake: FakeContainer) -> AzureBlobStore:
    return AzureBlobStore("replica", "site-a", client=fake)  # type: ignore[arg-type]


def test_is_an_object_store(store: AzureBlobStore) -> None:
    assert isinstance(store, ObjectStore)


def test_describe_never_shows_the_key() -> None:
    real = AzureBlobStore("replica", "p/", connection_string=CONN)
    assert real.describe() == "azure://devstoreaccount1/replica/p"
    assert KEY not in real.describe() and KEY not in repr(real)
    real.close()


@pytest.mark.parametrize("size", [0, 5001])
def test_a_listing_page_azure_cannot_serve_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="list_page_size must be between 1 and 5000"):
        AzureBlobStore("c", connection_string=CONN, list_page_size=size)


def test_needs_exactly_one_way_to_connect() -> None:
    with pytest.raises(ValueError):
        AzureBlobStore("c")
    with pytest.raises(ValueError):
        AzureBlobStore("c", connection_string=CONN, account_url="http://127.0.0.1:1/acct")


def test_put_is_idempotent_and_prefixed(store: AzureBlobStore, fake: FakeContainer) -> None:
    assert store.put("chunks/aa", b"x") is True
    assert store.put("chunks/aa", b"x") is False
    assert fake.blobs == {"site-a/chunks/aa": b"x"}
    store.put_overwrite("chunks/aa", b"y")
    assert store.get("chunks/aa") == b"y"


def test_get_exists_delete_list(store: AzureBlobStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("missing")
    assert info.value.key == "missing"
    assert not store.exists("missing")
    store.put("a/1", b"")
    store.put("a/2", b"")
    store.put("b/1", b"")
    assert sorted(store.list("a/")) == ["a/1", "a/2"]
    assert sorted(store.list()) == ["a/1", "a/2", "b/1"]
    store.delete("a/1")
    store.delete("a/1")
    assert not store.exists("a/1")


def test_missing_container_is_permanent_and_named(store: AzureBlobStore, fake: FakeContainer) -> None:
    fake.fail = http_error(ResourceNotFoundError, 404, "ContainerNotFound")
    for call in (lambda: store.get("k"), lambda: store.put("k", b""), lambda: store.delete("k"), store.check):
        with pytest.raises(StoreError) as info:
            call()
        assert type(info.value) is StoreError
        assert "container 'replica' does not exist" in str(info.value)


def test_connection_problems_are_transient(store: AzureBlobStore, fake: FakeContainer) -> None:
    fake.fail = ServiceRequestError("connection refused")
    with pytest.raises(TransientStoreError):
        store.put("k", b"")
    fake.fail = ServiceResponseError("connection reset")
    with pytest.raises(TransientStoreError):
        store.get("k")


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (HttpResponseError, 503, "ServerBusy"),
        (HttpResponseError, 500, "InternalError"),
        (HttpResponseError, 500, "OperationTimedOut"),
        (HttpResponseError, 502, None),
        (HttpResponseError, 429, None),
        (HttpResponseError, 408, None),
    ],
)
def test_server_errors_are_transient(cls: type[HttpResponseError], status: int, code: str | None) -> None:
    err = map_azure_error(
        http_error(cls, status, code), where="azure://a/c", container="c", op="put", key="k"
    )
    assert isinstance(err, TransientStoreError)


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (ClientAuthenticationError, 403, "AuthenticationFailed"),
        (HttpResponseError, 403, "AuthorizationPermissionMismatch"),
        (HttpResponseError, 401, "NoAuthenticationInformation"),
    ],
)
def test_auth_errors_are_permanent(cls: type[HttpResponseError], status: int, code: str) -> None:
    err = map_azure_error(
        http_error(cls, status, code), where="azure://a/c", container="c", op="get", key="k"
    )
    assert type(err) is StoreError
    assert "credentials or permissions for container 'c'" in str(err)


def test_signing_failure_is_permanent() -> None:
    err = map_azure_error(ClientAuthenticationError("bad key"), where="azure://a/c", container="c", op="put")
    assert type(err) is StoreError
    assert "cannot authenticate" in str(err)


def test_enum_error_codes_are_recognised() -> None:
    from azure.storage.blob import StorageErrorCode

    err = http_error(ResourceNotFoundError, 404, None)
    err.error_code = StorageErrorCode.CONTAINER_NOT_FOUND  # type: ignore[attr-defined]
    mapped = map_azure_error(err, where="azure://a/c", container="c", op="get", key="k")
    assert "does not exist" in str(mapped)
