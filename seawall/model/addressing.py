"""Where a recovered VM's NICs land and how they are re-addressed (a static address or a subnet
translation), and the DNS records Seawall points at them (and puts back on cleanup and failback).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.scalars import DnsName, FileModel, Name, check_dns_name


class StaticIP(FileModel):
    """Give the NIC this address at the target."""

    kind: Literal["static"] = "static"
    ip: IPv4Address
    prefix: Annotated[int, Field(strict=True, ge=1, le=32)] | None = Field(
        default=None, description="default: the target network's prefix length"
    )
    gateway: IPv4Address | None = Field(default=None, description="default: the target network's gateway")


class SubnetTranslation(FileModel):
    """Keep the host part, swap the subnet: 10.1.1.25 in 10.1.1.0/24 -> 10.2.1.25 in 10.2.1.0/24."""

    kind: Literal["translate"] = "translate"
    from_cidr: IPv4Network
    to_cidr: IPv4Network

    @model_validator(mode="after")
    def _same_size(self) -> SubnetTranslation:
        if self.from_cidr.prefixlen != self.to_cidr.prefixlen:
            raise PydanticCustomError(
                "seawall_translation",
                "subnet translation needs equal prefix lengths: {src} -> {dst}",
                {"src": str(self.from_cidr), "dst": str(self.to_cidr)},
            )
        return self

    def translate(self, address: IPv4Address) -> IPv4Address:
        if address not in self.from_cidr:
            raise ValueError(f"{address} is not in {self.from_cidr}")
        return self.to_cidr.network_address + (int(address) - int(self.from_cidr.network_address))


IpRule = Annotated[StaticIP | SubnetTranslation, Field(discriminator="kind")]


NicModel = Literal["vmxnet3", "vmxnet2", "e1000e", "e1000", "pcnet32", "virtio", "ena"]


class NicMapping(FileModel):
    """Where a source NIC lands at the target, in failover and in test, and how it is re-addressed.

    Without ``ip`` the NIC keeps whatever the guest does (DHCP). In test mode the NIC joins
    ``test_network`` (which must be isolated) with ``test_ip``, or, without it, the failover
    addressing: an isolated bubble lets the application run with production-identical addresses
    (vSphere; on AWS an address must lie inside its subnet, so drills there need ``test_ip``).
    """

    source_network: Name
    target_network: Name
    test_network: Name | None = None
    ip: IpRule | None = None
    test_ip: IpRule | None = None
    mac: Literal["keep", "new"] | None = Field(
        default=None,
        description=(
            "the NIC's MAC address at the target (KVM): keep the source's, or let the site make a new "
            "one; default keep in a failover (the guest sees the same NIC), new in a drill (the "
            "source still runs)"
        ),
    )
    model: NicModel | None = Field(
        default=None, description="the NIC's model at the target (default: the source's)"
    )
    security_groups: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default=[],
        description="AWS targets: security group names or ids for this NIC (default: the VPC's default)",
    )


class DnsRecord(FileModel):
    """A record Seawall upserts after the VM is up, and puts back as it was before the run on drill
    cleanup, abort or rollback, and on failback (only while it still holds what Seawall set: a
    record changed by someone since is left alone and reported)."""

    zone: DnsName
    name: DnsName = Field(description="fully qualified name inside the zone")
    type: Literal["A", "CNAME"] = "A"
    ttl: Annotated[int, Field(strict=True, ge=1, le=86400)] = 60
    value: str | None = Field(default=None, description="A: default the NIC's new IP; CNAME: required")
    nic: Annotated[int, Field(strict=True, ge=0)] = Field(
        default=0, description="index of the NIC whose new IP an A record gets"
    )
    in_test: StrictBool = Field(
        default=False,
        description="set it in a drill too (a name only the drill's isolated network uses); "
        "restored at cleanup. Default: drills leave DNS alone",
    )

    @field_validator("name")
    @classmethod
    def _inside_zone(cls, value: str, info: ValidationInfo) -> str:
        zone = info.data.get("zone")
        if isinstance(zone, str) and not (value == zone or value.endswith("." + zone)):
            raise PydanticCustomError(
                "seawall_dns_zone", "'{name}' is outside zone '{zone}'", {"name": value, "zone": zone}
            )
        return value

    @field_validator("value")
    @classmethod
    def _value_matches_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("type", "A") == "A":
            try:
                IPv4Address(value)
            except ValueError:
                raise PydanticCustomError(
                    "seawall_dns_value", "'{value}' is not an IPv4 address (A record)", {"value": value[:80]}
                ) from None
            return value
        return check_dns_name(value)

    @model_validator(mode="after")
    def _cname_has_value(self) -> DnsRecord:
        if self.type == "CNAME" and self.value is None:
            raise PydanticCustomError("seawall_dns_cname", "a CNAME record needs a value")
        return self
