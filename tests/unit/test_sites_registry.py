"""The site registry: each inventory site kind resolves to its one adapter; an unknown kind is named."""

from __future__ import annotations

import typing

import pytest

from seawall.contract.messages import ChosenPoint
from seawall.model import AwsSite, DirectorySite, Site, VSphereSite
from seawall.sites.aws.adapter import AwsAdapter
from seawall.sites.base import BaseAdapter, SiteError
from seawall.sites.directory.adapter import DirectoryAdapter
from seawall.sites.registry import ADAPTERS, UnknownSiteKind, adapter_class, adapter_for
from seawall.sites.vsphere.adapter import VSphereAdapter

VSPHERE = VSphereSite(name="dc1", host="vc.example", datacenter="DC", datastore="ds1")
AWS = AwsSite(name="cloud", region="eu-west-1")
DIRECTORY = DirectorySite(name="disks", path="/srv/images")


@pytest.mark.parametrize(
    ("site", "cls"), [(VSPHERE, VSphereAdapter), (AWS, AwsAdapter), (DIRECTORY, DirectoryAdapter)]
)
def test_each_kind_resolves_to_its_adapter(site: Site, cls: type[BaseAdapter]) -> None:
    assert adapter_class(site.kind) is cls
    adapter = adapter_for(site)  # type: ignore[arg-type]
    assert type(adapter) is cls
    assert adapter.site is site


def test_every_inventory_site_kind_has_an_adapter() -> None:
    kinds = set(typing.get_args(Site.model_fields["kind"].annotation))
    assert kinds == set(ADAPTERS)


def test_unknown_kind_is_a_clear_error_naming_it() -> None:
    with pytest.raises(UnknownSiteKind, match="'kvm'") as err:
        adapter_class("kvm")
    assert err.value.kind == "kvm"
    assert "known kinds: aws, directory, vsphere" in str(err.value)
    assert isinstance(err.value, LookupError)


def test_an_adapter_refuses_a_site_of_another_kind() -> None:
    with pytest.raises(TypeError, match="'cloud' \\(aws\\)"):
        VSphereAdapter(AWS)


def test_verbs_a_kind_lacks_are_refused_with_the_operators_message() -> None:
    aws, directory = adapter_for(AWS), adapter_for(DIRECTORY)
    with pytest.raises(SiteError, match="cannot power VMs off; confirm by hand") as fence:
        directory.fence("web")
    assert fence.value.type == "FenceUnsupported" and not fence.value.retryable
    with pytest.raises(SiteError, match="which has no VMs to snapshot") as snap:
        aws.create_snapshot("web", "s", quiesce=False, only=None)
    assert snap.value.type == "UnsupportedSource"
    with pytest.raises(SiteError, match="which has no VMs to snapshot"):
        directory.enable_cbt("web")
    with pytest.raises(SiteError, match="which has no VMs to snapshot"), aws.open_disks("web", "s"):
        pass
    with pytest.raises(SiteError, match="which has no VMs to snapshot"):
        aws.release_snapshot("web", "s")
    with pytest.raises(SiteError, match=r"site disks \(directory\) cannot run recovered VMs") as target:
        directory.guest_ips("web")
    assert target.value.type == "PlanInvalid"
    point = ChosenPoint(point_id="p", created_at="2026-01-01T00:00:00+00:00", disks=[])
    with pytest.raises(SiteError, match="failback in place needs a vSphere site, not aws"):
        aws.restore_in_place("web", point, reader=None, heartbeat=print)  # type: ignore[arg-type]
    assert directory.cleanup_run("run", list, print, []) == []


def test_dns_zone_resolves_to_its_provider_through_its_sites_adapter() -> None:
    from seawall.model import DnsZone
    from seawall.sites.dns import DnsError, Route53Dns, provider_for

    zone = DnsZone(name="example.com", site="cloud")
    aws = adapter_for(AWS)
    assert isinstance(aws, AwsAdapter)
    provider = provider_for(zone, aws)
    assert isinstance(provider, Route53Dns)
    with pytest.raises(DnsError, match="Route53 is reached through an aws site, not directory"):
        provider_for(zone, adapter_for(DIRECTORY))
    unknown = DnsZone.model_construct(name="example.com", site="cloud", provider="bind")
    with pytest.raises(DnsError, match="no provider 'bind' \\(known: route53\\)"):
        provider_for(unknown, aws)
