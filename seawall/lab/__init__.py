"""The local lab: Temporal, two vcsim sites, moto and Azurite as real processes on 127.0.0.1."""

from seawall.lab.info import (
    AwsInfo,
    AzureInfo,
    LabDisk,
    LabInfo,
    LabNotUpError,
    LabVM,
    S3Info,
    TemporalInfo,
    VSphereSiteInfo,
    load_lab,
)

__all__ = [
    "AwsInfo",
    "AzureInfo",
    "LabDisk",
    "LabInfo",
    "LabNotUpError",
    "LabVM",
    "S3Info",
    "TemporalInfo",
    "VSphereSiteInfo",
    "load_lab",
]
