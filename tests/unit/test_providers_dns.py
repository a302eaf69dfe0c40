"""Route53Dns offline (moto in-process): zone lookup, record reads, the previous-value sidecar."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from seawall.sites.dns import (
    DnsError,
    DnsRecordSet,
    _decode_sidecar,
    _encode_sidecar,
    sidecar_name,
)
from seawall.sites.route53 import Route53Dns


@pytest.fixture
def route53(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    with mock_aws():
        yield boto3.client(
            "route53", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def _zone(route53: Any, name: str, private: bool = False) -> str:
    kw: dict[str, Any] = {}
    if private:
        kw["VPC"] = {"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"}
        kw["HostedZoneConfig"] = {"PrivateZone": True, "Comment": "private"}
    answer = route53.create_hosted_zone(Name=name, CallerReference=f"{name}-{private}", **kw)
    return str(answer["HostedZone"]["Id"])


def _put(route53: Any, zone_id: str, name: str, type: str, value: str, ttl: int = 300) -> None:
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": type,
                        "TTL": ttl,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    )


def test_sidecar_round_trip() -> None:
    record = DnsRecordSet("db.corp.example.com", "A", 300, ("10.1.3.10", "10.1.3.11"))
    assert _decode_sidecar(_encode_sidecar(record), record.name, "A") == record
    assert _decode_sidecar(_encode_sidecar(None), record.name, "A") is None
    with pytest.raises(DnsError, match="not Seawall's"):
        _decode_sidecar('"v=spf1 -all"', record.name, "A")
    assert sidecar_name("DB.corp.example.com.", "A") == "_seawall-prev-a.db.corp.example.com"


def test_zones_are_found_by_name_and_must_be_unambiguous(route53: Any) -> None:
    zone_id = _zone(route53, "corp.example.com.")
    dns = Route53Dns(route53)
    assert dns.zone_id("Corp.Example.com") == zone_id
    with pytest.raises(DnsError, match=r"no Route53 hosted zone named other\.example\.com"):
        dns.zone_id("other.example.com")
    _zone(route53, "corp.example.com.", private=True)
    with pytest.raises(DnsError, match="2 Route53 hosted zones"):
        Route53Dns(route53).zone_id("corp.example.com")
    assert Route53Dns(route53, zone_ids={"corp.example.com.": zone_id}).zone_id("corp.example.com") == zone_id


def test_get_reads_only_the_named_record(route53: Any) -> None:
    zone_id = _zone(route53, "corp.example.com.")
    _put(route53, zone_id, "zz.corp.example.com.", "A", "10.0.0.9")
    dns = Route53Dns(route53)
    # Listing starts at the name and may answer the next one: that is not "db".
    assert dns.get("corp.example.com", "db.corp.example.com", "A") is None
    _put(route53, zone_id, "db.corp.example.com.", "A", "10.1.3.10", ttl=120)
    assert dns.get("corp.example.com", "db.corp.example.com.", "A") == DnsRecordSet(
        "db.corp.example.com", "A", 120, ("10.1.3.10",)
    )
    assert dns.get("corp.example.com", "db.corp.example.com", "CNAME") is None


def test_upsert_twice_keeps_the_first_previous_value(route53: Any) -> None:
    zone_id = _zone(route53, "corp.example.com.")
    _put(route53, zone_id, "db.corp.example.com.", "A", "10.1.3.10")
    dns = Route53Dns(route53)
    first = dns.upsert("corp.example.com", "db.corp.example.com", "A", ["10.2.3.10"], 60)
    second = dns.upsert("corp.example.com", "db.corp.example.com", "A", ["10.3.3.10"], 60)
    original = DnsRecordSet("db.corp.example.com", "A", 300, ("10.1.3.10",))
    assert first.previous == second.previous == original
    assert dns.restore(second) == original
    assert dns.get("corp.example.com", "db.corp.example.com", "A") == original
    with pytest.raises(ValueError, match="at least one value"):
        dns.upsert("corp.example.com", "db.corp.example.com", "A", [], 60)
