"""Sites and their networks: a vSphere vCenter/ESXi, an AWS region, a directory of raw disk
images, a libvirt (QEMU/KVM) host; ``AnySite`` accepts any kind (a discriminated union on ``kind``).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from datetime import timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from seawall.model.bandwidth import BandwidthLimit
from seawall.model.scalars import (
    Duration,
    FileModel,
    HttpUrlStr,
    Name,
    Port,
    SecretRef,
    Variant,
    duration_range,
    non_empty,
)


class Network(FileModel):
    """A network at a site; recovered VMs attach to it. On AWS it is a subnet found by its Name tag."""

    name: Name
    cidr: IPv4Network
    gateway: IPv4Address | None = Field(default=None, description="default: the first host address")
    dns_servers: list[IPv4Address] = []
    isolated: StrictBool = Field(default=False, description="no route out: safe for test failovers")
    backing: str | None = Field(
        default=None,
        min_length=1,
        description="the name at the site (vSphere port group, AWS subnet Name tag) when it differs",
    )

    @field_validator("gateway")
    @classmethod
    def _gateway_in_cidr(cls, value: IPv4Address | None, info: ValidationInfo) -> IPv4Address | None:
        cidr = info.data.get("cidr")
        if value is not None and isinstance(cidr, IPv4Network) and value not in cidr:
            raise PydanticCustomError(
                "seawall_gateway",
                "gateway {gateway} is outside the network's subnet {cidr}",
                {"gateway": str(value), "cidr": str(cidr)},
            )
        return value

    @property
    def backing_name(self) -> str:
        return self.backing or self.name

    @property
    def effective_gateway(self) -> IPv4Address:
        return self.gateway if self.gateway is not None else self.cidr.network_address + 1


class Site(Variant):
    """A place VMs run: a vSphere vCenter/ESXi, an AWS region, or a directory of raw disk images.

    Use ``AnySite`` to accept any kind; this base holds what every kind shares.
    """

    name: Name
    kind: Literal["vsphere", "aws", "directory", "kvm"]
    credentials: SecretRef = "none"
    networks: list[Network] = []
    # Can Seawall make a drill its own isolated network here (``drill_network``)? The adapter of a kind
    # that can implements ``ensure_run_network``; plan check refuses ``per-run`` where it cannot.
    makes_networks: ClassVar[bool] = False
    bandwidth_limit: BandwidthLimit | None = Field(
        default=None, description="bytes per second all replication from this site may ship"
    )

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """A human label for the site's endpoint (never a credential)."""

    def network(self, name: str) -> Network:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(f"site {self.name!r} has no network {name!r}")


class VSphereSite(Site):
    kind: Literal["vsphere"] = "vsphere"
    makes_networks: ClassVar[bool] = True  # a distributed port group per drill
    host: Annotated[str, non_empty("host")]
    port: Port = 443
    protocol: Literal["https", "http"] = "https"
    datacenter: Annotated[str, non_empty("datacenter")]
    datastore: Annotated[str, non_empty("datastore")]
    insecure_tls: StrictBool = Field(
        default=False, description="skip TLS certificate checks (labs with self-signed certificates only)"
    )

    @property
    def endpoint(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}/sdk"


class AwsSite(Site):
    kind: Literal["aws"] = "aws"
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]
    endpoint_url: HttpUrlStr | None = Field(default=None, description="an AWS-compatible endpoint (moto)")

    @property
    def endpoint(self) -> str:
        return f"aws {self.region}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")


class DirectorySite(Site):
    kind: Literal["directory"] = "directory"
    path: Annotated[str, non_empty("path")]

    @property
    def endpoint(self) -> str:
        return self.path


class KvmSite(Site):
    """A libvirt host running QEMU/KVM: domains are VMs, one storage pool holds their disks.

    ``networks`` are libvirt networks (``backing`` when the libvirt name differs); an ``isolated``
    one is a drill network. ``credentials`` is ``none`` for a local socket, else a reference to a
    ``{user, password}`` pair libvirt's authentication callback answers with.
    """

    kind: Literal["kvm"] = "kvm"
    uri: Annotated[str, Field(pattern=r"^[a-z][a-z0-9+.-]*://", description="libvirt connection URI")]
    pool: Annotated[str, non_empty("pool")] = Field(description="the libvirt storage pool for disks")
    backup_dir: Annotated[str, non_empty("backup_dir")] | None = Field(
        default=None,
        description=(
            "a directory the libvirt host and this site's worker share, for the backup's NBD sockets "
            "and scratch files; default: 'seawall-backup' beside the pool's directory"
        ),
    )
    shutdown_grace: Annotated[Duration, duration_range(timedelta(0), timedelta(hours=1))] = Field(
        default=timedelta(seconds=30),
        description="fencing: how long a guest may take to shut down before its domain is destroyed",
    )

    @field_validator("uri")
    @classmethod
    def _no_password_in_uri(cls, value: str) -> str:
        if re.search(r"://[^/@?]*:[^/@?]*@", value):
            raise PydanticCustomError(
                "seawall_uri_credentials",
                "URI must not carry a password (user:password@): put it in credentials as a reference",
            )
        return value

    @property
    def endpoint(self) -> str:
        # A URI may carry a user name (qemu+ssh://user@host/system), never a password (refused above).
        return self.uri


AnySite = Annotated[VSphereSite | AwsSite | DirectorySite | KvmSite, Field(discriminator="kind")]
