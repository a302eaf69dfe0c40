"""Replica store on Amazon S3 or any S3-compatible service (moto, MinIO, Ceph RGW).

Objects are written whole: a single PUT, or for large objects a multipart upload that only becomes
visible when completed (and is aborted on failure, so no orphaned parts accrue charges). The SDK's
own retries are off by default: RetryingStore is the one retry layer, so attempts do not multiply
and every retry is visible to the caller's backoff policy.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from seawall.blockstore.stores.backend import ObjectNotFound, StoreError, TransientStoreError
from seawall.blockstore.stores.s3lock import S3ObjectLock

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import PaginatorConfigTypeDef

__all__ = ["MIN_PART_SIZE", "S3Store", "map_s3_error"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024

# boto3 clients by what they were made with: making one loads and parses botocore's service model,
# tens of ms of CPU, and every activity opened the VM's store anew (at the lab, most of the CPU of a
# verify, a retention pass or a cycle's start). Clients are thread-safe; new credentials (a rotated
# key) make a new one. Secrets are keyed by digest, not kept here in the clear a second time.
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_CLIENTS_MAX = 32


def _digest(secret: str | None) -> str | None:
    return None if secret is None else hashlib.sha256(secret.encode()).hexdigest()


# S3 rejects multipart parts smaller than this (except the last one).
MIN_PART_SIZE = 5 * MiB

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
_ACCESS_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403", "Forbidden", "AccountProblem"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthorizationHeaderMalformed",
        "RequestExpired",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "PriorRequestNotComplete",
        "500",
        "502",
        "503",
        "504",
    }
)
_TRANSIENT_SDK_ERRORS: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
    # A corrupted download fails its checksum; reading again usually fixes it.
    ChecksumError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)
_CREDENTIAL_SDK_ERRORS: tuple[type[BaseException], ...] = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
)


def map_s3_error(
    exc: BaseException, *, where: str, bucket: str, op: str, key: str | None = None
) -> StoreError:
    """Translate a boto3/botocore failure into the store's error vocabulary.

    Messages name the bucket and what is wrong but never echo a server message for credential
    failures: those can quote the signed request.
    """
    target = f"{op} {key!r}" if key is not None else op
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(err.get("Message", "")).strip()
        if code in _MISSING_BUCKET_CODES:
            return StoreError(f"S3 bucket {bucket!r} does not exist ({where}; {target})")
        if code in _NOT_FOUND_CODES and key is not None:
            return ObjectNotFound(key, where)
        if code in _CREDENTIAL_CODES:
            return StoreError(
                f"S3 rejected the credentials for bucket {bucket!r} ({code}; {where}; {target}): "
                "check the access key, secret and clock"
            )
        if code in _ACCESS_CODES:
            return StoreError(
                f"access denied to S3 bucket {bucket!r} ({where}; {target}): the credentials lack "
                "permission for this operation"
            )
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStoreError(f"S3 {target} on {where} failed, may succeed later: {code} {message}")
        return StoreError(f"S3 {target} on {where} failed: {code or status} {message}".rstrip())
    if isinstance(exc, _CREDENTIAL_SDK_ERRORS):
        return StoreError(
            f"no usable AWS credentials for S3 bucket {bucket!r} ({where}): {type(exc).__name__}; "
            "set them in the environment, a profile, or the store configuration"
        )
    if isinstance(exc, NoRegionError):
        return StoreError(f"no AWS region configured for S3 bucket {bucket!r} ({where})")
    if isinstance(exc, _TRANSIENT_SDK_ERRORS):
        return TransientStoreError(f"S3 {target} on {where}: connection problem: {exc}")
    if isinstance(exc, BotoCoreError):
        return StoreError(f"S3 {target} on {where} failed: {exc}")
    return StoreError(f"S3 {target} on {where} failed: {type(exc).__name__}: {exc}")


class S3Store(S3ObjectLock):
    """An ObjectStore over one S3 bucket, every key under ``prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: S3Client | None = None,
        verify_tls: bool | str = True,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        max_pool_connections: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        sdk_max_attempts: int = 1,
        multipart_threshold: int = 64 * MiB,
        multipart_part_size: int = 16 * MiB,
        path_style: bool | None = None,
        object_lock: bool = False,
        list_page_size: int | None = None,
    ) -> None:
        """``object_lock``: the bucket has S3 Object Lock (and so versioning) enabled; deletes then
        remove every version of a key, and a locked version makes the delete fail loudly.
        ``list_page_size``: keys per listing request (None: the service's page, 1,000 on S3)."""
        if not bucket:
            raise ValueError("bucket must not be empty")
        if multipart_part_size < MIN_PART_SIZE:
            raise ValueError(f"multipart_part_size must be >= {MIN_PART_SIZE} bytes (S3's minimum part)")
        if multipart_threshold < 1:
            raise ValueError("multipart_threshold must be >= 1")
        if list_page_size is not None and not 1 <= list_page_size <= 1000:
            raise ValueError("list_page_size must be between 1 and 1000 (S3's largest page)")
        self.list_page_size = list_page_size
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.multipart_threshold = multipart_threshold
        self.multipart_part_size = multipart_part_size
        self._where = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.object_lock = object_lock
        # key -> retain-until this instance set or saw: locking a shared pack again is free.
        self._locks: dict[str, datetime] = {}
        if client is not None:
            self._client = client
            return
        if verify_tls is False:
            log.warning("TLS certificate verification is DISABLED for %s (explicit opt-out)", self._where)
        if path_style is None:
            # Emulators and most S3-compatible services on an IP or localhost only speak path style.
            path_style = endpoint_url is not None
        key = (
            endpoint_url,
            region,
            verify_tls,
            access_key_id,
            _digest(secret_access_key),
            _digest(session_token),
            profile,
            max_pool_connections,
            connect_timeout,
            read_timeout,
            sdk_max_attempts,
            path_style,
        )
        with _CLIENTS_LOCK:
            cached = _CLIENTS.get(key)
        if cached is not None:
            self._client = cached
            return
        config = Config(
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": sdk_max_attempts},
            s3={"addressing_style": "path" if path_style else "auto"},
            signature_version="s3v4",
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            profile_name=profile,
            region_name=region,
        )
        try:
            self._client = session.client("s3", endpoint_url=endpoint_url, verify=verify_tls, config=config)
        except BotoCoreError as exc:
            raise map_s3_error(exc, where=self._where, bucket=bucket, op="connect") from exc
        with _CLIENTS_LOCK:
            _CLIENTS[key] = self._client
            while len(_CLIENTS) > _CLIENTS_MAX:
                del _CLIENTS[next(iter(_CLIENTS))]

    def __repr__(self) -> str:
        return f"S3Store({self._where!r})"

    def describe(self) -> str:
        return self._where

    @property
    def client(self) -> S3Client:
        """The boto3 client, for callers that need S3 features beyond the store (lifecycle rules)."""
        return self._client

    def _full(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid store key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: BaseException, op: str, key: str | None = None) -> StoreError:
        return map_s3_error(exc, where=self._where, bucket=self.bucket, op=op, key=key)

    def check(self) -> None:
        """Fail with a clear StoreError when the bucket is missing or unreachable with these credentials."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            # HEAD responses carry no body, so a missing bucket shows only as a bare 404.
            if code in {"404", "NotFound"}:
                raise StoreError(f"S3 bucket {self.bucket!r} does not exist ({self._where})") from exc
            raise self._error(exc, "head_bucket") from exc
        except Exception as exc:
            raise self._error(exc, "head_bucket") from exc

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES:
                return False
            raise self._error(exc, "head", key) from exc
        except Exception as exc:
            raise self._error(exc, "head", key) from exc
        return True

    def put(self, key: str, data: bytes) -> bool:
        if self.exists(key):
            return False
        self._write(key, data)
        return True

    def put_overwrite(self, key: str, data: bytes) -> None:
        self._write(key, data)

    def _write(self, key: str, data: bytes) -> None:
        full = self._full(key)
        if len(data) > self.multipart_threshold:
            self._write_multipart(key, full, data)
            return
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data)
        except Exception as exc:
            raise self._error(exc, "put", key) from exc

    def _write_multipart(self, key: str, full: str, data: bytes) -> None:
        try:
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        except Exception as exc:
            raise self._error(exc, "create_multipart_upload", key) from exc
        view = memoryview(data)
        parts: list[dict[str, Any]] = []
        try:
            for number, start in enumerate(range(0, len(data), self.multipart_part_size), start=1):
                body = bytes(view[start : start + self.multipart_part_size])
                resp = self._client.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except Exception as exc:
            self._abort(full, upload_id)
            raise self._error(exc, "multipart upload", key) from exc

    def _abort(self, full: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except Exception as exc:
            # The original failure matters more; a lifecycle rule reaps what an abort leaves behind.
            log.warning("could not abort multipart upload of %r on %s: %s", full, self._where, exc)

    def get(self, key: str) -> bytes:
        full = self._full(key)
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=full)
            return resp["Body"].read()
        except Exception as exc:
            raise self._error(exc, "get", key) from exc

    def delete(self, key: str) -> None:
        if self.object_lock:
            self._delete_versions(key)
            return
        full = self._full(key)
        try:
            # S3 answers 204 for an absent key as well, which is the idempotence we want.
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in {"NoSuchKey", "404"}:
                return
            raise self._error(exc, "delete", key) from exc
        except Exception as exc:
            raise self._error(exc, "delete", key) from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            paging: PaginatorConfigTypeDef = {"PageSize": self.list_page_size} if self.list_page_size else {}
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix, PaginationConfig=paging):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(root) :]
        except Exception as exc:
            raise self._error(exc, "list", prefix) from exc

    def close(self) -> None:
        self._client.close()
