"""S3Store without a server: botocore's Stubber for request shapes, fake failures for error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import ANY, Stubber

from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, StoreError, TransientStoreError
from seawall.blockstore.stores.s3 import MIN_PART_SIZE, S3Store, map_s3_error

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=SECRET
    )


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def client_error(code: str, status: int, message: str = "") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


def test_is_an_object_store(client: Any) -> None:
    assert isinstance(S3Store("b", client=client), ObjectStore)


def test_describe_and_repr_name_bucket_and_prefix_but_no_credentials() -> None:
    store = S3Store(
        "replica", "/site-a/", region="us-east-1", access_key_id="AKIDEXAMPLE", secret_access_key=SECRET
    )
    assert store.describe() == "s3://replica/site-a"
    assert SECRET not in repr(store) and SECRET not in store.describe()
    assert "AKIDEXAMPLE" not in repr(store)
    assert S3Store("replica", region="us-east-1").describe() == "s3://replica"


def test_put_checks_presence_first(client: Any, stub: Stubber) -> None:
    store = S3Store("b", "p", client=client)
    stub.add_client_error(
        "head_object",
        service_error_code="404",
        http_status_code=404,
        expected_params={"Bucket": "b", "Key": "p/chunks/aa"},
    )
    stub.add_response("put_object", {}, expected_params={"Bucket": "b", "Key": "p/chunks/aa", "Body": b"x"})
    assert store.put("chunks/aa", b"x") is True
    stub.add_response(
        "head_object", {"ContentLength": 1}, expected_params={"Bucket": "b", "Key": "p/chunks/aa"}
    )
    assert store.put("chunks/aa", b"x") is False


def test_put_overwrite_skips_the_check(client: Any, stub: Stubber) -> None:
    stub.add_response("put_object", {}, expected_params={"Bucket": "b", "Key": "heads/vm", "Body": b"1"})
    S3Store("b", client=client).put_overwrite("heads/vm", b"1")


def test_get_missing_key_is_object_not_found(client: Any, stub: Stubber) -> None:
    stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    with pytest.raises(ObjectNotFound) as info:
        S3Store("b", "p", client=client).get("points/x.json")
    assert info.value.key == "points/x.json"
    assert "s3://b/p" in str(info.value)


def test_missing_bucket_is_a_permanent_error_naming_the_bucket(client: Any, stub: Stubber) -> None:
    stub.add_client_error("get_object", service_error_code="NoSuchBucket", http_status_code=404)
    with pytest.raises(StoreError) as info:
        S3Store("nope", client=client).get("k")
    assert not isinstance(info.value, TransientStoreError | ObjectNotFound)
    assert "'nope' does not exist" in str(info.value)


def test_exists_and_delete(client: Any, stub: Stubber) -> None:
    store = S3Store("b", client=client)
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_response("head_object", {})
    stub.add_response("delete_object", {}, expected_params={"Bucket": "b", "Key": "k"})
    stub.add_response("delete_object", {}, expected_params={"Bucket": "b", "Key": "k"})
    assert store.exists("k") is False
    assert store.exists("k") is True
    store.delete("k")
    store.delete("k")


def test_list_pages_and_strips_prefix(client: Any, stub: Stubber) -> None:
    stub.add_response(
        "list_objects_v2",
        {
            "Contents": [{"Key": "p/chunks/a"}, {"Key": "p/chunks/b"}],
            "IsTruncated": True,
            "NextContinuationToken": "t",
        },
        expected_params={"Bucket": "b", "Prefix": "p/chunks/"},
    )
    stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": "p/chunks/c"}], "IsTruncated": False},
        expected_params={"Bucket": "b", "Prefix": "p/chunks/", "ContinuationToken": "t"},
    )
    assert list(S3Store("b", "p", client=client).list("chunks/")) == ["chunks/a", "chunks/b", "chunks/c"]


def test_multipart_upload_for_large_objects(client: Any, stub: Stubber) -> None:
    store = S3Store("b", client=client, multipart_threshold=MIN_PART_SIZE, multipart_part_size=MIN_PART_SIZE)
    data = bytes(range(256)) * ((2 * MIN_PART_SIZE + 1000) // 256)
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_response(
        "create_multipart_upload", {"UploadId": "u1"}, expected_params={"Bucket": "b", "Key": "big"}
    )
    for n in (1, 2, 3):
        stub.add_response(
            "upload_part",
            {"ETag": f'"e{n}"'},
            expected_params={"Bucket": "b", "Key": "big", "UploadId": "u1", "PartNumber": n, "Body": ANY},
        )
    stub.add_response(
        "complete_multipart_upload",
        {},
        expected_params={
            "Bucket": "b",
            "Key": "big",
            "UploadId": "u1",
            "MultipartUpload": {"Parts": [{"PartNumber": n, "ETag": f'"e{n}"'} for n in (1, 2, 3)]},
        },
    )
    assert store.put("big", data) is True


def test_failed_multipart_upload_is_aborted(client: Any, stub: Stubber) -> None:
    store = S3Store("b", client=client, multipart_threshold=10, multipart_part_size=MIN_PART_SIZE)
    stub.add_response("create_multipart_upload", {"UploadId": "u1"})
    stub.add_response("upload_part", {"ETag": '"e1"'})
    stub.add_client_error("upload_part", service_error_code="SlowDown", http_status_code=503)
    stub.add_response(
        "abort_multipart_upload", {}, expected_params={"Bucket": "b", "Key": "big", "UploadId": "u1"}
    )
    with pytest.raises(TransientStoreError, match="SlowDown"):
        store.put_overwrite("big", b"\0" * (MIN_PART_SIZE + 1))


def test_part_size_below_s3_minimum_is_rejected() -> None:
    with pytest.raises(ValueError, match="multipart_part_size"):
        S3Store("b", region="us-east-1", multipart_part_size=1024)


@pytest.mark.parametrize("size", [0, 1001])
def test_a_listing_page_s3_cannot_serve_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="list_page_size must be between 1 and 1000"):
        S3Store("b", region="us-east-1", list_page_size=size)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
        ("RequestTimeout", 400),
        ("Throttling", 400),
        ("WhateverNew", 502),
        ("TooManyRequests", 429),
    ],
)
def test_throttling_and_server_errors_are_transient(code: str, status: int) -> None:
    err = map_s3_error(client_error(code, status), where="s3://b", bucket="b", op="put", key="k")
    assert isinstance(err, TransientStoreError)


@pytest.mark.parametrize(
    ("code", "status", "needle"),
    [
        ("AccessDenied", 403, "access denied to S3 bucket 'b'"),
        ("InvalidAccessKeyId", 403, "rejected the credentials for bucket 'b'"),
        ("SignatureDoesNotMatch", 403, "rejected the credentials for bucket 'b'"),
        ("ExpiredToken", 400, "rejected the credentials for bucket 'b'"),
        ("NoSuchBucket", 404, "bucket 'b' does not exist"),
        ("InvalidObjectState", 403, "InvalidObjectState"),
    ],
)
def test_access_and_configuration_errors_are_permanent(code: str, status: int, needle: str) -> None:
    err = map_s3_error(
        client_error(code, status, message=f"quoting {SECRET}"), where="s3://b", bucket="b", op="get", key="k"
    )
    assert type(err) is StoreError
    assert needle in str(err)
    if code != "InvalidObjectState":
        # Credential and permission failures never echo the server's message, which may quote the request.
        assert SECRET not in str(err)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ConnectionResetError("reset by peer"),
    ],
)
def test_connection_failures_are_transient(exc: Exception) -> None:
    assert isinstance(map_s3_error(exc, where="s3://b", bucket="b", op="get", key="k"), TransientStoreError)


def test_missing_credentials_is_permanent_and_says_so() -> None:
    err = map_s3_error(NoCredentialsError(), where="s3://b", bucket="b", op="put", key="k")
    assert type(err) is StoreError
    assert "no usable AWS credentials" in str(err)


def test_connection_errors_from_a_client_become_transient() -> None:
    class DownClient:
        def head_object(self, **_: Any) -> None:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

        def get_object(self, **_: Any) -> None:
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1:1")

    store = S3Store("b", client=DownClient())  # type: ignore[arg-type]
    with pytest.raises(TransientStoreError):
        store.put("k", b"v")
    with pytest.raises(TransientStoreError):
        store.get("k")


def test_invalid_keys_are_rejected(client: Any) -> None:
    store = S3Store("b", client=client)
    for key in ("", "/abs"):
        with pytest.raises(ValueError):
            store.get(key)


def test_stores_made_alike_share_one_client_and_new_credentials_make_another() -> None:
    """Every activity opens its VM's store: the boto3 client (its service model parsed, tens of ms of
    CPU) is made once per endpoint and credentials, not once per opening."""

    def store(secret: str, bucket: str = "replicas") -> S3Store:
        return S3Store(
            bucket,
            endpoint_url="http://127.0.0.1:9",
            region="us-east-1",
            access_key_id="AKIDEXAMPLE",
            secret_access_key=secret,
        )

    first = store("secret-1")
    assert store("secret-1").client is first.client
    assert store("secret-1", bucket="other").client is first.client  # the bucket is per call
    assert store("secret-2").client is not first.client  # a rotated key logs in as itself
