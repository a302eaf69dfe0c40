"""The site registry: each inventory site kind resolves to its one adapter; an unknown kind is named."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from seawall.contract.messages import ChosenPoint
from seawall.model import AwsSite, DirectorySite, KvmSite, Site, VSphereSite
from seawall.sites.aws.adapter import AwsAdapter
from seawall.sites.base import BaseAdapter, SiteAdapter, SiteError
from seawall.sites.directory.adapter import DirectoryAdapter
from seawall.sites.kvm.adapter import KvmAdapter
from seawall.sites.registry import ADAPTERS, UnknownSiteKind, adapter_class, adapter_for
from seawall.sites.vsphere.adapter import VSphereAdapter

VSPHERE = VSphereSite(name="dc1", host="vc.example", datacenter="DC", datastore="ds1")
AWS = AwsSite(name="cloud", region="eu-west-1")
DIRECTORY = DirectorySite(name="disks", path="/srv/images")
KVM = KvmSite(name="kvm-a", uri="qemu:///system", pool="default")


@pytest.mark.parametrize(
    ("site", "cls"),
    [(VSPHERE, VSphereAdapter), (AWS, AwsAdapter), (DIRECTORY, DirectoryAdapter), (KVM, KvmAdapter)],
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
    with pytest.raises(UnknownSiteKind, match="'xen'") as err:
        adapter_class("xen")
    assert err.value.kind == "xen"
    assert "known kinds: aws, directory, kvm, vsphere" in str(err.value)
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
    with pytest.raises(SiteError, match="failback in place needs a vSphere or KVM site, not aws"):
        aws.restore_in_place("web", point, reader=None, heartbeat=print)  # type: ignore[arg-type]
    assert directory.cleanup_run("run", list, print, []) == []


def test_dns_zone_resolves_to_its_provider_through_its_sites_adapter() -> None:
    from seawall.model import DnsZone
    from seawall.sites.dns import DnsError, provider_for
    from seawall.sites.route53 import Route53Dns

    zone = DnsZone(name="example.com", site="cloud")
    aws = adapter_for(AWS)
    assert isinstance(aws, AwsAdapter)
    asked: list[str] = []

    def aws_site(name: str) -> SiteAdapter:
        asked.append(name)
        return aws

    provider = provider_for(zone, aws_site)
    assert isinstance(provider, Route53Dns) and asked == ["cloud"]
    with pytest.raises(DnsError, match="Route53 is reached through an aws site, not directory"):
        provider_for(zone, lambda _: adapter_for(DIRECTORY))
    unknown = DnsZone.model_construct(name="example.com", site="cloud", provider="bind")
    with pytest.raises(DnsError, match="no provider 'bind' \\(known: rfc2136, route53\\)"):
        provider_for(unknown, aws_site)


def test_an_rfc2136_zone_needs_no_site_and_a_bad_key_is_a_credentials_error(tmp_path: Path) -> None:
    from seawall.model import Rfc2136Zone
    from seawall.sites.dns import provider_for
    from seawall.sites.rfc2136 import Rfc2136Dns

    key = tmp_path / "tsig.key"
    key.write_text(
        'key "seawall-lab." {\n  algorithm hmac-sha256;\n  secret "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";\n};\n'
    )
    zone = Rfc2136Zone(
        name="corp.example.com",
        server="127.0.0.1",
        port=8053,
        tsig_key_name="seawall-lab",
        credentials=f"file:{key}",
    )

    def no_site(name: str) -> SiteAdapter:
        raise AssertionError(f"an RFC 2136 zone asked for site {name!r}")

    assert isinstance(provider_for(zone, no_site), Rfc2136Dns)
    missing = zone.model_copy(update={"credentials": f"file:{tmp_path / 'gone.key'}"})
    with pytest.raises(SiteError) as refused:
        provider_for(missing, no_site)
    assert refused.value.type == "CredentialsError" and not refused.value.retryable
