"""Where recovered VMs land at a target site, per site pair (inventory ``placements``).

One entry per (source site, target site): what vSphere calls placement (datacenter, cluster or
resource pool, VM folder, datastore) and what an AWS target needs of its volumes (EBS type, KMS key).
A site pair without an entry uses the target site's own defaults (a vSphere site's ``datacenter``
and ``datastore``, its first cluster's root pool, the datacenter's VM folder; AWS: gp3, the account's
default EBS encryption). ``seawall plan check`` checks the names against the sites themselves.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from seawall.model.scalars import FileModel, Name

SiteName = Annotated[str, Field(min_length=1, max_length=80)]
InventoryPath = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/].*[^/]$|^[^/]$")]

VSPHERE_FIELDS = ("datacenter", "cluster", "resource_pool", "folder", "datastore")
AWS_FIELDS = ("volume_type", "kms_key")

EbsVolumeType = Literal["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"]


class Placement(FileModel):
    """Where VMs replicated from ``source`` are recovered at ``target``."""

    source: Name
    target: Name
    # vSphere targets.
    datacenter: SiteName | None = Field(default=None, description="default: the target site's datacenter")
    cluster: SiteName | None = Field(default=None, description="its root resource pool, unless resource_pool")
    resource_pool: InventoryPath | None = Field(
        default=None, description="a pool's name, or its path below the cluster (prod/erp)"
    )
    folder: InventoryPath | None = Field(
        default=None, description="VM folder path below the datacenter's VM folder (dr/erp)"
    )
    datastore: SiteName | None = Field(default=None, description="default: the target site's datastore")
    # AWS targets.
    volume_type: EbsVolumeType | None = Field(default=None, description="EBS volume type (default gp3)")
    kms_key: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        default=None, description="KMS key id, ARN or alias/NAME the volumes are encrypted with"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Placement:
        vsphere = [f for f in VSPHERE_FIELDS if getattr(self, f) is not None]
        aws = [f for f in AWS_FIELDS if getattr(self, f) is not None]
        if vsphere and aws:
            raise PydanticCustomError(
                "seawall_placement_kind",
                "a placement is for a vSphere target ({vsphere}) or an AWS one ({aws}), not both",
                {"vsphere": ", ".join(vsphere), "aws": ", ".join(aws)},
            )
        return self

    def names(self) -> list[str]:
        """The fields this placement sets."""
        return [f for f in (*VSPHERE_FIELDS, *AWS_FIELDS) if getattr(self, f) is not None]
