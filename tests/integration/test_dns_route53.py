"""Route53 on the lab's moto: upsert returns the value from before Seawall's change, restore puts it back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from seawall.lab import LabInfo
from seawall.sites.dns import DnsConflictError, DnsRecordSet, sidecar_name
from seawall.sites.route53 import Route53Dns

pytestmark = pytest.mark.lab


@pytest.fixture
def route53(lab: LabInfo) -> Any:
    return boto3.client(
        "route53",
        endpoint_url=lab.aws.endpoint_url,
        region_name=lab.aws.region,
        aws_access_key_id=lab.aws.access_key_id,
        aws_secret_access_key=lab.aws.secret_access_key,
    )


@pytest.fixture
def zone(lab: LabInfo) -> str:
    return lab.aws.hosted_zone_name.removesuffix(".")


@pytest.fixture
def name(route53: Any, lab: LabInfo, zone: str) -> Iterator[str]:
    fqdn = f"t-{uuid.uuid4().hex[:8]}.{zone}"
    yield fqdn
    # Whatever a failed test left: the record (any type) and the sidecars.
    sets = route53.list_resource_record_sets(HostedZoneId=lab.aws.hosted_zone_id)["ResourceRecordSets"]
    mine = [s for s in sets if fqdn in s["Name"]]
    if mine:
        route53.change_resource_record_sets(
            HostedZoneId=lab.aws.hosted_zone_id,
            ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": s} for s in mine]},
        )


def _names(route53: Any, lab: LabInfo, fqdn: str) -> list[tuple[str, str]]:
    sets = route53.list_resource_record_sets(HostedZoneId=lab.aws.hosted_zone_id)["ResourceRecordSets"]
    return sorted((s["Name"], s["Type"]) for s in sets if fqdn in s["Name"])


def test_upsert_returns_the_previous_value_and_restore_puts_it_back(
    route53: Any, lab: LabInfo, zone: str, name: str
) -> None:
    dns = Route53Dns(route53)
    assert dns.zone_id(zone).endswith(lab.aws.hosted_zone_id)
    route53.change_resource_record_sets(
        HostedZoneId=lab.aws.hosted_zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name + ".",
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "10.1.1.21"}],
                    },
                }
            ]
        },
    )
    original = DnsRecordSet(name, "A", 300, ("10.1.1.21",))
    assert dns.get(zone, name, "A") == original

    change = dns.upsert(zone, name, "A", ["10.2.1.21"], 60)
    assert change.previous == original
    assert dns.get(zone, name, "A") == DnsRecordSet(name, "A", 60, ("10.2.1.21",))
    # The activity crashed before it could record the change: its retry still learns the original.
    retry = dns.upsert(zone, name, "A", ["10.2.1.21"], 60)
    assert retry == change
    assert (sidecar_name(name, "A") + ".", "TXT") in _names(route53, lab, name)

    assert dns.restore(change) == original
    assert dns.get(zone, name, "A") == original
    assert _names(route53, lab, name) == [(name + ".", "A")], "the sidecar goes with the restore"
    assert dns.restore(change) == original, "restoring twice is a no-op"


def test_a_new_record_is_deleted_on_restore(route53: Any, lab: LabInfo, zone: str, name: str) -> None:
    dns = Route53Dns(route53)
    change = dns.upsert(zone, name, "CNAME", [f"app-01.{zone}"], 120)
    assert change.previous is None
    assert dns.get(zone, name, "CNAME") == DnsRecordSet(name, "CNAME", 120, (f"app-01.{zone}.",))
    # A second failover to another target keeps the original "absent" as the value to go back to.
    second = dns.upsert(zone, name, "CNAME", [f"app-02.{zone}"], 120)
    assert second.previous is None
    assert dns.restore(second) is None
    assert dns.get(zone, name, "CNAME") is None
    assert _names(route53, lab, name) == []


def test_restore_leaves_a_record_someone_else_changed(
    route53: Any, lab: LabInfo, zone: str, name: str
) -> None:
    dns = Route53Dns(route53)
    change = dns.upsert(zone, name, "A", ["10.2.1.30"], 60)
    route53.change_resource_record_sets(
        HostedZoneId=lab.aws.hosted_zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name + ".",
                        "Type": "A",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "10.9.9.9"}],
                    },
                }
            ]
        },
    )
    with pytest.raises(DnsConflictError, match=r"10\.9\.9\.9"):
        dns.restore(change)
    assert dns.get(zone, name, "A") == DnsRecordSet(name, "A", 60, ("10.9.9.9",))
    assert dns.restore(change, force=True) is None
    assert _names(route53, lab, name) == []
