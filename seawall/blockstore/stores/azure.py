"""Replica store on Azure Blob Storage (or Azurite) as block blobs, each written whole.

A block blob uploaded in several blocks only becomes visible when its block list is committed, so a
reader never sees a partial object. ``put`` relies on the service's If-None-Match: * precondition
(``overwrite=False``) rather than a separate existence check, which also makes it race-free. The
SDK's own retries are off by default: RetryingStore is the one retry layer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import requests
import requests.adapters
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient
from urllib3.util.retry import Retry

from seawall.blockstore.stores.backend import ObjectNotFound, StoreError, TransientStoreError

__all__ = ["AzureBlobStore", "map_azure_error"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024

_MISSING_CONTAINER_CODES = frozenset({"ContainerNotFound", "ContainerBeingDeleted"})
_NOT_FOUND_CODES = frozenset({"BlobNotFound"})
_AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "InsufficientAccountPermissions",
        "NoAuthenticationInformation",
        "InvalidAuthenticationInfo",
        "AccountIsDisabled",
    }
)
_TRANSIENT_CODES = frozenset({"ServerBusy", "InternalError", "OperationTimedOut", "OperationTimedout"})


def _error_code(exc: HttpResponseError) -> str:
    code: Any = getattr(exc, "error_code", None)
    response: Any = exc.response
    if not code and response is not None:
        code = response.headers.get("x-ms-error-code")
    # The SDK hands back a StorageErrorCode enum whose str() is its Python name, not the wire code.
    return str(getattr(code, "value", code) or "")


def map_azure_error(
    exc: BaseException, *, where: str, container: str, op: str, key: str | None = None
) -> StoreError:
    """Translate an azure-core/azure-storage-blob failure into the store's error vocabulary.

    Messages name the container and what is wrong, never a key, token or SAS.
    """
    target = f"{op} {key!r}" if key is not None else op
    if isinstance(exc, HttpResponseError):
        code = _error_code(exc)
        status = int(exc.status_code or 0)
        if code in _MISSING_CONTAINER_CODES:
            return StoreError(f"Azure container {container!r} does not exist ({where}; {target})")
        if isinstance(exc, ResourceNotFoundError) and key is not None and code in _NOT_FOUND_CODES | {""}:
            return ObjectNotFound(key, where)
        if isinstance(exc, ClientAuthenticationError) and not status and not code:
            # Raised before any request when the SDK cannot sign (e.g. a malformed account key).
            return StoreError(
                f"cannot authenticate to Azure container {container!r} ({where}): {type(exc).__name__}"
            )
        if isinstance(exc, ClientAuthenticationError) or code in _AUTH_CODES or status in (401, 403):
            return StoreError(
                f"Azure rejected the credentials or permissions for container {container!r} "
                f"({code or status}; {where}; {target}): check the account key, SAS or role assignment"
            )
        if code in _TRANSIENT_CODES or status >= 500 or status in (408, 429):
            return TransientStoreError(
                f"Azure {target} on {where} failed, may succeed later: {code or status}"
            )
        return StoreError(f"Azure {target} on {where} failed: {code or status} {exc.reason or ''}".rstrip())
    if isinstance(exc, ServiceRequestError | ServiceResponseError | IncompleteReadError):
        return TransientStoreError(
            f"Azure {target} on {where}: connection problem: {type(exc).__name__}: {exc}"
        )
    if isinstance(exc, requests.RequestException | ConnectionError | TimeoutError):
        return TransientStoreError(f"Azure {target} on {where}: connection problem: {exc}")
    if isinstance(exc, AzureError):
        return StoreError(f"Azure {target} on {where} failed: {type(exc).__name__}: {exc}")
    return StoreError(f"Azure {target} on {where} failed: {type(exc).__name__}: {exc}")


class AzureBlobStore:
    """An ObjectStore over one blob container, every key under ``prefix``.

    Authenticate with ``connection_string`` (Azurite, account keys) or ``account_url`` plus a
    ``credential`` (SAS string, AzureNamedKeyCredential, or an azure-identity TokenCredential).
    """

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        verify_tls: bool | str = True,
        max_connections: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        sdk_retry_total: int = 0,
        max_single_put_size: int = 64 * MiB,
        max_block_size: int = 16 * MiB,
        client: ContainerClient | None = None,
        list_page_size: int | None = None,
    ) -> None:
        """``list_page_size``: names per listing request (None: the service's page, 5,000 on Azure)."""
        if not container:
            raise ValueError("container must not be empty")
        if list_page_size is not None and not 1 <= list_page_size <= 5000:
            raise ValueError("list_page_size must be between 1 and 5000 (Azure's largest page)")
        self.list_page_size = list_page_size
        self.container = container
        self.prefix = prefix.strip("/")
        if client is None:
            if (connection_string is None) == (account_url is None):
                raise ValueError("give exactly one of connection_string or account_url (with credential)")
            if verify_tls is False:
                log.warning(
                    "TLS certificate verification is DISABLED for Azure container %r (explicit opt-out)",
                    container,
                )
            session = requests.Session()
            # One pooled connection per worker thread; the SDK's own urllib3 retries stay off.
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=4,
                pool_maxsize=max_connections,
                max_retries=Retry(total=False, redirect=False, raise_on_status=False),
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._session: requests.Session | None = session
            transport = RequestsTransport(
                session=session,
                session_owner=False,
                connection_verify=verify_tls,
                connection_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
            options: dict[str, Any] = {
                "transport": transport,
                "retry_total": sdk_retry_total,
                "connection_verify": verify_tls,
                "connection_timeout": connect_timeout,
                "read_timeout": read_timeout,
                "max_single_put_size": max_single_put_size,
                "max_block_size": max_block_size,
            }
            if connection_string is not None:
                client = ContainerClient.from_connection_string(
                    connection_string, container, credential=credential, **options
                )
            else:
                assert account_url is not None
                client = ContainerClient(account_url, container, credential=credential, **options)
        else:
            self._session = None
        self._client = client
        account = getattr(client, "account_name", None) or "account"
        base = f"azure://{account}/{container}"
        self._where = f"{base}/{self.prefix}" if self.prefix else base

    def __repr__(self) -> str:
        return f"AzureBlobStore({self._where!r})"

    def describe(self) -> str:
        return self._where

    @property
    def client(self) -> ContainerClient:
        """The SDK's container client, for callers that need features beyond the store."""
        return self._client

    def _full(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid store key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: BaseException, op: str, key: str | None = None) -> StoreError:
        return map_azure_error(exc, where=self._where, container=self.container, op=op, key=key)

    def check(self) -> None:
        """Fail with a clear StoreError when the container is missing or these credentials cannot reach it."""
        try:
            self._client.get_container_properties()
        except ResourceNotFoundError as exc:
            raise StoreError(f"Azure container {self.container!r} does not exist ({self._where})") from exc
        except Exception as exc:
            raise self._error(exc, "get_container_properties") from exc

    def put(self, key: str, data: bytes) -> bool:
        full = self._full(key)
        try:
            self._client.upload_blob(full, data, overwrite=False, max_concurrency=1)
        except ResourceExistsError as exc:
            if _error_code(exc) in ("BlobAlreadyExists", ""):
                return False
            raise self._error(exc, "put", key) from exc
        except Exception as exc:
            raise self._error(exc, "put", key) from exc
        return True

    def put_overwrite(self, key: str, data: bytes) -> None:
        full = self._full(key)
        try:
            self._client.upload_blob(full, data, overwrite=True, max_concurrency=1)
        except Exception as exc:
            raise self._error(exc, "put", key) from exc

    def get(self, key: str) -> bytes:
        full = self._full(key)
        try:
            return self._client.download_blob(full, max_concurrency=1).readall()
        except Exception as exc:
            raise self._error(exc, "get", key) from exc

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            return bool(self._client.get_blob_client(full).exists())
        except Exception as exc:
            raise self._error(exc, "exists", key) from exc

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client.delete_blob(full)
        except ResourceNotFoundError as exc:
            if _error_code(exc) in _MISSING_CONTAINER_CODES:
                raise self._error(exc, "delete", key) from exc
        except Exception as exc:
            raise self._error(exc, "delete", key) from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.list_page_size
            for name in self._client.list_blob_names(name_starts_with=root + prefix, results_per_page=pages):
                yield name[len(root) :]
        except Exception as exc:
            raise self._error(exc, "list", prefix) from exc

    def close(self) -> None:
        self._client.close()
        if self._session is not None:
            self._session.close()
