"""The lab's disk images: deterministic, structured, and written in place."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from seawall.lab import bind
from seawall.lab.config import LabConfig
from seawall.lab.disks import REGION, disk_pattern, fill_disk, read_disk, restore_disk, write_blocks
from seawall.lab.info import (
    AwsInfo,
    AzureInfo,
    LabDisk,
    LabInfo,
    LabVM,
    S3Info,
    TemporalInfo,
    VSphereSiteInfo,
)

MIB = 1024 * 1024


def test_same_inputs_same_bytes() -> None:
    assert disk_pattern("web-01", MIB) == disk_pattern("web-01", MIB)


def test_vm_and_disk_index_change_the_bytes() -> None:
    a = disk_pattern("web-01", MIB)
    assert a != disk_pattern("web-02", MIB)
    assert a != disk_pattern("web-01", MIB, disk=1)


def test_size_and_alignment() -> None:
    assert len(disk_pattern("db-01", 4 * MIB)) == 4 * MIB
    with pytest.raises(ValueError):
        disk_pattern("db-01", MIB + 512)


def test_image_has_structure() -> None:
    image = disk_pattern("db-01", 4 * MIB)
    regions = [image[i : i + REGION] for i in range(0, len(image), REGION)]
    assert image[:512].startswith(b"SEAWALL LAB DISK vm=db-01 disk=0")
    assert image[510:512] == b"\x55\xaa"
    zero = [r for r in regions if r == bytes(REGION)]
    assert zero and len(zero) < len(regions) // 2
    ratios = [len(zlib.compress(r, 1)) / REGION for r in regions if r != bytes(REGION)]
    assert min(ratios) < 0.5  # text and tables compress
    assert max(ratios) > 0.99  # random regions do not
    assert len(set(regions)) < len(regions)  # repeated regions: dedup has something to find


def _lab(tmp_path: Path, size: int) -> LabInfo:
    flat = tmp_path / "ds" / "app-01" / "app-01-flat.vmdk"
    flat.parent.mkdir(parents=True)
    flat.write_bytes(b"")
    disk = LabDisk(
        label="Hard disk 1",
        unit=0,
        datastore_path="[ds-primary] app-01/app-01.vmdk",
        flat_name="app-01/app-01-flat.vmdk",
        file=flat,
        capacity_bytes=size,
    )
    site = VSphereSiteInfo(
        site="primary",
        host="127.0.0.1",
        port=8989,
        user="user",
        password="pass",
        credentials_file=tmp_path / "credentials" / "primary.json",
        datacenter="dc-primary",
        cluster="cluster-primary",
        hosts=["esx-primary-01.lab"],
        datastore="ds-primary",
        datastore_dir=tmp_path / "ds",
        switch="dvs-primary",
        networks=["prod-app"],
        vms=[LabVM(name="app-01", network="prod-app", host="esx-primary-01.lab", disks=[disk])],
    )
    endpoint = "http://127.0.0.1:5000"
    return LabInfo(
        state_dir=tmp_path,
        temporal=TemporalInfo(
            address="127.0.0.1:7233",
            host="127.0.0.1",
            port=7233,
            ui_url="http://127.0.0.1:8233",
            db_file=tmp_path,
        ),
        vsphere={"primary": site},
        s3=S3Info(
            endpoint_url=endpoint, bucket="b", region="us-east-1", access_key_id="t", secret_access_key="t"
        ),
        aws=AwsInfo(
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="t",
            secret_access_key="t",
            vpc_id="vpc-1",
            vpc_cidr="10.3.0.0/16",
            subnets={},
            subnet_cidrs={},
            hosted_zone_id="Z1",
            hosted_zone_name="corp.example.com.",
            credentials_file=tmp_path / "credentials" / "aws.json",
        ),
        azure=AzureInfo(
            connection_string="",
            account_name="a",
            account_key="k",
            blob_endpoint="",
            container="c",
            credentials_file=tmp_path / "credentials" / "azure.json",
        ),
        dns=bind.info(tmp_path, LabConfig()),
        disk_size=size,
        replica_key_file=tmp_path / "keys" / "replica.key",
    )


def test_fill_write_restore(tmp_path: Path) -> None:
    lab = _lab(tmp_path, MIB)
    disk = lab.primary.vm("app-01").disks[0]
    fill_disk(disk.file, "app-01", MIB)
    original = disk_pattern("app-01", MIB)
    assert read_disk(lab, "primary", "app-01") == original
    inode = disk.file.stat().st_ino

    write_blocks(lab, "primary", "app-01", 4096, b"\xff" * 512)
    changed = read_disk(lab, "primary", "app-01")
    assert changed[4096:4608] == b"\xff" * 512
    assert changed[:4096] == original[:4096] and changed[4608:] == original[4608:]
    assert disk.file.stat().st_ino == inode  # in place, as a guest write: same file, same size

    restore_disk(lab, "primary", "app-01")
    assert read_disk(lab, "primary", "app-01") == original


def test_write_blocks_refuses_to_grow_the_disk(tmp_path: Path) -> None:
    lab = _lab(tmp_path, MIB)
    fill_disk(lab.primary.vm("app-01").disks[0].file, "app-01", MIB)
    with pytest.raises(ValueError, match="outside"):
        write_blocks(lab, "primary", "app-01", MIB - 1, b"ab")
    with pytest.raises(IndexError):
        write_blocks(lab, "primary", "app-01", 0, b"a", disk=1)
    with pytest.raises(KeyError):
        write_blocks(lab, "primary", "web-09", 0, b"a")


def test_datastore_url(tmp_path: Path) -> None:
    site = _lab(tmp_path, MIB).primary
    assert site.datastore_url("app-01/app-01-flat.vmdk") == (
        "http://127.0.0.1:8989/folder/app-01/app-01-flat.vmdk?dcPath=dc-primary&dsName=ds-primary"
    )
