"""KVM sites: the inventory model, the registry entry, and plan check's live question when unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from seawall.model import Inventory, KvmSite
from seawall.plans import check
from seawall.sites.base import SiteError
from seawall.sites.kvm.adapter import KvmAdapter
from seawall.sites.registry import adapter_for, site_problems

INVENTORY = """\
kind: Inventory
sites:
  - name: kvm-a
    kind: kvm
    uri: "qemu:///system?socket={socket}"
    pool: kvm-a-pool
    networks:
      - {{name: kvm-a-prod, cidr: 10.40.1.0/24}}
      - {{name: drill, backing: kvm-a-drill, cidr: 10.40.100.0/24, isolated: true}}
"""


def test_a_kvm_site_reads_from_the_inventory_and_resolves_to_its_adapter() -> None:
    inv = Inventory.model_validate(
        {
            "sites": [
                {
                    "name": "kvm-a",
                    "kind": "kvm",
                    "uri": "qemu:///system",
                    "pool": "p",
                    "networks": [{"name": "d", "cidr": "10.0.0.0/24", "isolated": True, "backing": "br-d"}],
                }
            ]
        }
    )
    site = inv.site("kvm-a")
    assert isinstance(site, KvmSite)
    assert site.endpoint == "qemu:///system" and site.network("d").backing_name == "br-d"
    adapter = adapter_for(site)
    assert isinstance(adapter, KvmAdapter) and adapter.site is site


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("uri", "/var/run/libvirt/sock", "String should match pattern"),
        ("pool", "", "pool"),
        ("backup_dir", "", "backup_dir"),
        ("credentials", "hunter2", "is not a secret reference"),
        ("uri", "qemu+tcp://root:hunter2@kvm.example/system", "URI must not carry a password"),
    ],
)
def test_bad_kvm_site_fields_are_named(field: str, value: str, message: str) -> None:
    data = {"name": "kvm-a", "kind": "kvm", "uri": "qemu:///system", "pool": "p", field: value}
    with pytest.raises(ValidationError, match=message) as err:
        KvmSite.model_validate(data)
    assert err.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    "uri", ["qemu+ssh://root@kvm.example:2222/system", "qemu:///system?socket=/run/a:b@c", "test:///default"]
)
def test_user_names_ports_and_socket_paths_are_fine_in_a_uri(uri: str) -> None:
    assert KvmSite(name="k", uri=uri, pool="p").endpoint == uri


def test_an_unreachable_kvm_site_is_not_a_plan_check_error(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY.format(socket=tmp_path / "no-such-sock"))
    report = check([path], live=True)
    assert report.ok, report.errors
    site = KvmSite(name="kvm-a", uri=f"qemu:///system?socket={tmp_path}/no-such-sock", pool="p")
    assert site_problems(site) == []
    with pytest.raises(SiteError) as err:
        adapter_for(site).probe()
    assert err.value.type == "SiteUnreachable" and err.value.retryable
    assert "kvm-a" in str(err.value)
