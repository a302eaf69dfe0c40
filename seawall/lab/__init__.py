"""The local lab: Temporal, two vcsim sites, moto, Azurite and BIND as real processes on 127.0.0.1."""

from seawall.lab.info import (
    AwsInfo,
    AzureInfo,
    DnsInfo,
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
    "DnsInfo",
    "LabDisk",
    "LabInfo",
    "LabNotUpError",
    "LabVM",
    "S3Info",
    "TemporalInfo",
    "VSphereSiteInfo",
    "load_lab",
]
