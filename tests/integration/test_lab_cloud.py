"""moto (S3, EC2, Route53) and Azurite (Blob) answer with what the lab set up."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from azure.storage.blob import BlobServiceClient

from seawall.lab import LabInfo


def _aws(lab: LabInfo, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=lab.aws.endpoint_url,
        region_name=lab.aws.region,
        aws_access_key_id=lab.aws.access_key_id,
        aws_secret_access_key=lab.aws.secret_access_key,
    )


def test_s3_object_round_trip(lab: LabInfo) -> None:
    s3 = _aws(lab, "s3")
    key = f"tests/lab/{uuid.uuid4().hex}"
    body = bytes(range(256)) * 64
    s3.put_object(Bucket=lab.s3.bucket, Key=key, Body=body)
    try:
        assert s3.get_object(Bucket=lab.s3.bucket, Key=key)["Body"].read() == body
        ranged = s3.get_object(Bucket=lab.s3.bucket, Key=key, Range="bytes=100-199")["Body"].read()
        assert ranged == body[100:200]
    finally:
        s3.delete_object(Bucket=lab.s3.bucket, Key=key)
    assert lab.s3.bucket == "seawall-replica"


def test_vpc_subnets_and_zone(lab: LabInfo) -> None:
    ec2 = _aws(lab, "ec2")
    vpc = ec2.describe_vpcs(VpcIds=[lab.aws.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.3.0.0/16"
    assert {"Key": "Name", "Value": "seawall-lab"} in vpc["Tags"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [lab.aws.vpc_id]}])["Subnets"]
    by_name = {t["Value"]: s for s in subnets for t in s.get("Tags", []) if t["Key"] == "Name"}
    expected = {
        "aws-web": "10.3.1.0/24",
        "aws-app": "10.3.2.0/24",
        "aws-db": "10.3.3.0/24",
        "aws-drill": "10.3.100.0/22",
    }
    for name, cidr in expected.items():
        assert by_name[name]["CidrBlock"] == cidr
        assert by_name[name]["SubnetId"] == lab.aws.subnets[name]

    zone = _aws(lab, "route53").get_hosted_zone(Id=lab.aws.hosted_zone_id)["HostedZone"]
    assert zone["Name"] == "corp.example.com."


def test_azurite_page_blob(lab: LabInfo) -> None:
    service = BlobServiceClient.from_connection_string(lab.azure.connection_string)
    container = service.get_container_client(lab.azure.container)
    assert container.exists()
    blob = container.get_blob_client(f"tests/lab/{uuid.uuid4().hex}.vhd")
    size = 1024 * 1024
    blob.create_page_blob(size=size)
    try:
        page = bytes(range(256)) * 16  # 4 KiB: page writes are 512-byte aligned
        blob.upload_page(page, offset=8192, length=len(page))
        assert blob.download_blob(offset=8192, length=len(page)).readall() == page
        assert blob.download_blob(offset=0, length=512).readall() == bytes(512)
        assert blob.get_blob_properties().size == size
    finally:
        blob.delete_blob()
