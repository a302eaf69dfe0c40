"""Replica stores: where replicated chunks and manifests live (a directory, S3 with optional Object
Lock, Azure Blob); ``AnyReplicaStore`` accepts any kind.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.bandwidth import BandwidthLimit
from seawall.model.scalars import (
    Duration,
    FileModel,
    HttpUrlStr,
    Name,
    SecretRef,
    Variant,
    duration_range,
    non_empty,
)


class ReplicaStore(Variant):
    """Where replicated chunks and manifests live. Use ``AnyReplicaStore`` to accept any kind."""

    name: Name
    kind: Literal["directory", "s3", "azure"]
    credentials: SecretRef = "none"
    bandwidth_limit: BandwidthLimit | None = Field(
        default=None, description="bytes per second all replication into this store may ship"
    )
    mirror: Name | None = Field(
        default=None, description="another replica store every verified point is copied to and verified in"
    )

    @property
    @abstractmethod
    def location(self) -> str:
        """A human label for where the store is (never a credential)."""


class DirectoryStore(ReplicaStore):
    kind: Literal["directory"] = "directory"
    path: Annotated[str, non_empty("path")] = Field(description="relative to the inventory file's directory")

    @property
    def location(self) -> str:
        return self.path


class ObjectLockSpec(FileModel):
    """S3 Object Lock on every object a point needs, for ``period`` after the point is created.

    ``compliance``: nobody, the account root included, can delete a locked object early;
    ``governance``: only a principal with s3:BypassGovernanceRetention that asks for it. The bucket
    must have been created with Object Lock enabled. The period must cover the retention of every
    policy whose VMs use the store (checked by ``plan check`` and ``protect``).
    """

    mode: Literal["governance", "compliance"]
    period: Annotated[Duration, duration_range(timedelta(seconds=1), timedelta(days=36500))]


class S3Store(ReplicaStore):
    kind: Literal["s3"] = "s3"
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: Annotated[str, Field(pattern=r"^([^/].*/)?$")] = Field(
        default="", description="key prefix ending in '/', or empty"
    )
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] = "us-east-1"
    endpoint_url: HttpUrlStr | None = None
    object_lock: ObjectLockSpec | None = Field(
        default=None, description="immutable points: S3 Object Lock mode and period per point"
    )

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class AzureStore(ReplicaStore):
    kind: Literal["azure"] = "azure"
    container: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    # One replica per key: stores sealed with different keys share a container under different prefixes.
    prefix: Annotated[str, Field(pattern=r"^([^/].*/)?$")] = Field(
        default="", description="blob name prefix ending in '/', or empty"
    )
    account_url: HttpUrlStr | None = None
    connection_string: SecretRef | None = Field(
        default=None, description="a reference to a connection string, instead of account_url + credentials"
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> AzureStore:
        if (self.account_url is None) == (self.connection_string is None):
            raise PydanticCustomError(
                "seawall_azure_endpoint", "give exactly one of account_url and connection_string"
            )
        return self

    @property
    def location(self) -> str:
        where = f"azure {self.account_url or 'connection string'} container {self.container}"
        return f"{where} prefix {self.prefix}" if self.prefix else where


AnyReplicaStore = Annotated[DirectoryStore | S3Store | AzureStore, Field(discriminator="kind")]
