"""Bootstrap and health of the cloud emulators: moto (S3, EC2, Route53) and Azurite (Blob).

moto keeps S3 on disk (seawall/lab/moto_server.py) but EC2 and Route53 in memory only, so the lab
looks each object up before creating it and runs this after every `lab up`: a restarted moto gets its
VPC and zone back (with new ids, which is why the ids are read into LabInfo each time rather than
remembered), and its bucket and objects as they were.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from seawall.lab import config as c
from seawall.lab.info import AwsInfo, AzureInfo, S3Info


def moto_url(port: int) -> str:
    return f"http://{c.HOST}:{port}"


def _client(service: str, port: int) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=moto_url(port),
        region_name=c.AWS_REGION,
        aws_access_key_id=c.AWS_KEY_ID,
        aws_secret_access_key=c.AWS_SECRET,
        config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10),
    )


def ping_moto(port: int) -> str:
    # moto's own dashboard page: answers as soon as the server is up and costs no AWS call.
    resp = requests.get(f"{moto_url(port)}/moto-api/", timeout=2)
    resp.raise_for_status()
    return "moto answers"


def _named(tags: list[dict[str, str]] | None) -> str | None:
    for tag in tags or []:
        if tag.get("Key") == "Name":
            return tag.get("Value")
    return None


def bootstrap_moto(port: int, credentials_file: Path) -> tuple[S3Info, AwsInfo]:
    s3 = _client("s3", port)
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if c.REPLICA_BUCKET not in buckets:
        s3.create_bucket(Bucket=c.REPLICA_BUCKET)

    ec2 = _client("ec2", port)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [c.VPC_NAME]}])["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(
            CidrBlock=c.VPC_CIDR,
            TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": c.VPC_NAME}]}],
        )["Vpc"]["VpcId"]
    existing = {
        _named(s.get("Tags")): s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    }
    subnets: dict[str, str] = {}
    for name, cidr in c.SUBNETS.items():
        if name in existing:
            subnets[name] = existing[name]
            continue
        subnets[name] = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=cidr,
            AvailabilityZone=f"{c.AWS_REGION}a",
            TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": name}]}],
        )["Subnet"]["SubnetId"]

    r53 = _client("route53", port)
    zones = r53.list_hosted_zones_by_name(DNSName=c.HOSTED_ZONE)["HostedZones"]
    zone = next((z for z in zones if z["Name"] == c.HOSTED_ZONE), None)
    if zone is None:
        zone = r53.create_hosted_zone(
            Name=c.HOSTED_ZONE,
            CallerReference=f"seawall-lab-{c.HOSTED_ZONE}",
            HostedZoneConfig={"Comment": "Seawall lab", "PrivateZone": False},
        )["HostedZone"]
    zone_id = zone["Id"].rsplit("/", 1)[-1]

    s3_info = S3Info(
        endpoint_url=moto_url(port),
        bucket=c.REPLICA_BUCKET,
        region=c.AWS_REGION,
        access_key_id=c.AWS_KEY_ID,
        secret_access_key=c.AWS_SECRET,
    )
    aws_info = AwsInfo(
        endpoint_url=moto_url(port),
        region=c.AWS_REGION,
        access_key_id=c.AWS_KEY_ID,
        secret_access_key=c.AWS_SECRET,
        vpc_id=vpc_id,
        vpc_cidr=c.VPC_CIDR,
        subnets=subnets,
        subnet_cidrs=dict(c.SUBNETS),
        hosted_zone_id=zone_id,
        hosted_zone_name=c.HOSTED_ZONE,
        credentials_file=credentials_file,
    )
    return s3_info, aws_info


def check_moto(port: int) -> str:
    s3 = _client("s3", port)
    s3.head_bucket(Bucket=c.REPLICA_BUCKET)
    ec2 = _client("ec2", port)
    if not ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [c.VPC_NAME]}])["Vpcs"]:
        raise RuntimeError(f"moto answers but has no VPC {c.VPC_NAME}")
    return f"bucket {c.REPLICA_BUCKET}, VPC {c.VPC_NAME}"


def azurite_info(port: int, credentials_file: Path) -> AzureInfo:
    endpoint = f"http://{c.HOST}:{port}/{c.AZURITE_ACCOUNT}"
    return AzureInfo(
        connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName={c.AZURITE_ACCOUNT};"
            f"AccountKey={c.AZURITE_KEY};BlobEndpoint={endpoint};"
        ),
        account_name=c.AZURITE_ACCOUNT,
        account_key=c.AZURITE_KEY,
        blob_endpoint=endpoint,
        container=c.REPLICA_CONTAINER,
        credentials_file=credentials_file,
    )


def _blob_service(port: int) -> Any:
    from azure.storage.blob import BlobServiceClient

    # No retries: Azure's default policy backs off 15 s after a refused connection, and the lab polls
    # on its own while Azurite starts.
    return BlobServiceClient.from_connection_string(
        azurite_info(port, Path()).connection_string, connection_timeout=3, read_timeout=10, retry_total=0
    )


def ping_azurite(port: int) -> str:
    _blob_service(port).get_account_information()
    return "azurite answers"


def bootstrap_azurite(port: int, credentials_file: Path) -> AzureInfo:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        _blob_service(port).create_container(c.REPLICA_CONTAINER)
    return azurite_info(port, credentials_file)


def check_azurite(port: int) -> str:
    container = _blob_service(port).get_container_client(c.REPLICA_CONTAINER)
    if not container.exists():
        raise RuntimeError(f"azurite answers but has no container {c.REPLICA_CONTAINER}")
    return f"container {c.REPLICA_CONTAINER}"
