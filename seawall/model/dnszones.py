"""DNS zones Seawall may change records in: Route53 (``provider: route53``, the default) or an
authoritative server taking RFC 2136 dynamic updates; ``AnyDnsZone`` accepts either.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator
from pydantic_core import PydanticCustomError

from seawall.model.scalars import DnsName, FileModel, Name, Port, SecretRef, non_empty


class DnsZone(FileModel):
    """A Route53 zone Seawall may change records in (``provider: route53``, the default)."""

    name: DnsName
    provider: Literal["route53"] = "route53"
    site: Name = Field(description="the AWS site whose Route53 holds the zone")
    hosted_zone_id: Annotated[str, Field(pattern=r"^(/hostedzone/)?Z[A-Z0-9]{1,32}$")] | None = Field(
        default=None, description="default: looked up by name"
    )
    credentials: SecretRef | None = Field(default=None, description="default: the site's credentials")


class Rfc2136Zone(FileModel):
    """A zone on an authoritative server that takes RFC 2136 dynamic updates signed with TSIG (BIND,
    Knot, PowerDNS). The worker that recovers a VM sends the update, so it must reach ``server``."""

    name: DnsName
    provider: Literal["rfc2136"] = "rfc2136"
    server: Annotated[str, non_empty("server")] = Field(description="the zone's primary: address or name")
    port: Port = 53
    tsig_key_name: DnsName
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    credentials: SecretRef = Field(
        description="the TSIG key: its base64 secret, or a BIND key file (tsig-keygen's output)"
    )

    @field_validator("credentials")
    @classmethod
    def _key_required(cls, value: str) -> str:
        if value == "none":
            raise PydanticCustomError(
                "seawall_key_required", "dynamic updates are signed with TSIG: credentials cannot be none"
            )
        return value


def _dns_provider(value: Any) -> str:
    # provider was optional before RFC 2136 zones existed: a zone without one is a Route53 zone.
    if isinstance(value, dict):
        return str(value.get("provider", "route53"))
    return str(getattr(value, "provider", "route53"))


AnyDnsZone = Annotated[
    Annotated[DnsZone, Tag("route53")] | Annotated[Rfc2136Zone, Tag("rfc2136")],
    Discriminator(
        _dns_provider,
        custom_error_type="seawall_dns_provider",
        custom_error_message="unknown DNS provider: expected 'route53' or 'rfc2136'",
    ),
]
