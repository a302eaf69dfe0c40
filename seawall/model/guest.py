"""Guest customization the plan asks for beyond addresses: Windows identity and domain membership.

A Windows guest recovered at a vSphere site gets a sysprep customization (computer name, static
addresses and DNS from the NIC plan, domain or workgroup). Passwords are references (``env:``,
``file:``) resolved at the target site's worker and handed to vCenter only: never in a workflow
history, a report or a log.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.scalars import DnsName, FileModel, SecretRef


class WindowsCustomization(FileModel):
    """How a Windows guest is re-identified at the target (vSphere sysprep)."""

    domain: DnsName | None = Field(default=None, description="Active Directory domain to join")
    join_credentials: SecretRef | None = Field(
        default=None,
        description="reference to JSON {user, password} of an account allowed to join the domain",
    )
    workgroup: Annotated[str, Field(min_length=1, max_length=15)] | None = Field(
        default=None, description="without a domain: the workgroup (default WORKGROUP)"
    )
    admin_password: SecretRef | None = Field(
        default=None, description="reference to the local Administrator password to set (default: keep)"
    )
    organization: Annotated[str, Field(min_length=1, max_length=64)] = "Seawall"
    owner: Annotated[str, Field(min_length=1, max_length=64)] = "Seawall"
    time_zone: Annotated[int, Field(strict=True, ge=0, le=300)] = Field(
        default=85, description="Windows time zone index (85: GMT)"
    )

    @model_validator(mode="after")
    def _join(self) -> WindowsCustomization:
        if self.domain is not None and self.join_credentials in (None, "none"):
            raise PydanticCustomError(
                "seawall_domain_join",
                "joining domain '{domain}' needs join_credentials (a reference)",
                {"domain": self.domain},
            )
        if self.domain is not None and self.workgroup is not None:
            raise PydanticCustomError("seawall_domain_join", "give a domain or a workgroup, not both")
        return self
