"""KVM target pieces without libvirt: names, the recovered domain's XML, the identity from the plan."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from seawall.model.ipplan import NicPlan
from seawall.sites.base import SiteError
from seawall.sites.kvm import domxml
from seawall.sites.kvm.console import parse_console_line
from seawall.sites.kvm.identity import Identity
from seawall.sites.kvm.runnames import console_name, made_by_run, volume_name
from seawall.sites.kvm.target import identity_for

RUN = "20261201T150000Z-abcdef12"

SOURCE = """<domain type='qemu' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>kdb-01</name>
  <uuid>650236be-5d13-433f-91be-79c4c0a82299</uuid>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model>
    <topology sockets='1' cores='1' threads='1'/></cpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/a/pool/kdb-01-system.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/a/iso/install.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/a/pool/kdb-01-data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:56:40:b2'/>
      <source network='kvm-a-prod'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='/a/consoles/kdb-01.console'/>
      <target type='isa-serial' port='0'/>
    </serial>
    <console type='file'>
      <source path='/a/consoles/kdb-01.console'/>
      <target type='serial' port='0'/>
    </console>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='NETDEV'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=swmgmt,addr=0x10'/>
  </qemu:commandline>
</domain>""".replace(
    "NETDEV",
    "user,id=swmgmt,restrict=on,net=10.40.1.0/24,host=10.40.1.1,dhcpstart=10.40.1.254,dns=10.40.1.253,"
    "hostfwd=tcp:127.0.0.1:9341-10.40.1.11:80",
)

TAG = domxml.RecoveryTag("kvm-dr", RUN, "kdb-01", console="/b/pool/c.log")
IDENT = Identity("kdb-01", "10.41.100.11", 24, "10.41.100.1")


def materialized() -> str:
    return domxml.recovery_domain_xml(
        SOURCE, name="kdb-01-drill-abcdef12", tag=TAG, disks=["/b/pool/s.qcow2", "/b/pool/d.qcow2"],
        console_path="/b/pool/c.log",
    )  # fmt: skip


def test_materialized_domain_has_new_name_no_uuid_new_disks_and_console() -> None:
    root = ET.fromstring(materialized())
    assert root.findtext("name") == "kdb-01-drill-abcdef12"
    assert root.find("uuid") is None and "id" not in root.attrib
    assert domxml.disk_sources(root) == [("vda", "/b/pool/s.qcow2"), ("vdb", "/b/pool/d.qcow2")]
    assert root.find("devices/disk/backingStore") is None and root.find(".//alias") is None
    cdrom = next(d for d in root.findall("devices/disk") if d.get("device") == "cdrom")
    assert cdrom.find("source") is None  # the source site's ISO is not at the target
    assert [s.get("path") for s in root.findall("devices/serial/source")] == ["/b/pool/c.log"]
    assert root.find("devices/console") is None
    assert domxml.read_tag(root) == TAG
    # The NIC is still the source's until create_vm maps it.
    assert root.find("devices/interface/source").get("network") == "kvm-a-prod"  # type: ignore[union-attr]


def test_configured_domain_maps_nic_size_mac_and_health_forward() -> None:
    tag = domxml.RecoveryTag(TAG.plan, TAG.run, TAG.vm, health_port=40123, console=TAG.console)
    xml = domxml.configure_domain_xml(
        materialized(),
        tag=tag,
        nics=[domxml.NicTarget("kvm-b-drill", keep_mac=False)],
        cpus=2,
        identity=IDENT,
    )
    root = ET.fromstring(xml)
    iface = root.find("devices/interface")
    assert iface is not None and iface.get("type") == "network"
    assert iface.find("source").get("network") == "kvm-b-drill"  # type: ignore[union-attr]
    assert iface.find("mac") is None and iface.find("target") is None and iface.find("link") is None
    assert root.findtext("vcpu") == "2" and root.find("cpu/topology") is None
    assert root.findtext("memory") == "262144"  # not named by the plan: the source's
    assert domxml.user_netdev_forward(root) == ("10.41.100.11", 40123)
    args = [a.get("value") for a in root.iter(f"{{{domxml.QEMU_NS}}}arg")]
    netdev = args[1] or ""
    assert "net=10.41.100.0/24" in netdev and "host=10.41.100.1" in netdev and "restrict=on" in netdev
    assert netdev.startswith("user,id=swmgmt,") and "10.40.1." not in netdev
    assert domxml.read_tag(root) == tag
    # Idempotent: configuring again changes nothing.
    assert (
        domxml.configure_domain_xml(
            xml, tag=tag, nics=[domxml.NicTarget("kvm-b-drill", keep_mac=False)], cpus=2, identity=IDENT
        )
        == xml
    )


def test_keep_mac_disconnected_nic_and_memory() -> None:
    xml = domxml.configure_domain_xml(
        materialized(), tag=TAG, nics=[domxml.NicTarget("kvm-b-prod", connected=False)], memory_mib=512
    )
    root = ET.fromstring(xml)
    assert root.find("devices/interface/mac").get("address") == "52:54:00:56:40:b2"  # type: ignore[union-attr]
    assert root.find("devices/interface/link").get("state") == "down"  # type: ignore[union-attr]
    assert root.findtext("memory") == root.findtext("currentMemory") == str(512 * 1024)
    assert root.findtext("vcpu") == "1"
    # Without an identity the guest keeps its address; the forward still moves to a new port.
    assert domxml.user_netdev_forward(root) == ("10.40.1.11", 9341)


def test_disks_and_nics_must_pair_up() -> None:
    with pytest.raises(domxml.DomainXmlError, match="2 disks, the recovery point 1"):
        domxml.recovery_domain_xml(SOURCE, name="x", tag=TAG, disks=["/one"], console_path="/c")
    with pytest.raises(domxml.DomainXmlError, match="1 NICs, the plan maps 0"):
        domxml.configure_domain_xml(materialized(), tag=TAG, nics=[])


@pytest.mark.parametrize(
    "xml",
    ["<domain", "<vm/>", "<!DOCTYPE d [<!ENTITY a 'b'>]><domain>&a;</domain>", "<domain>" + "x" * (1 << 20)],
)
def test_bad_xml_is_refused(xml: str) -> None:
    with pytest.raises(domxml.DomainXmlError):
        domxml.parse(xml)


def test_foreign_domain_has_no_tag() -> None:
    assert domxml.read_tag(SOURCE) is None


def test_names_carry_the_run() -> None:
    vol = volume_name("kdb-01-drill-abcdef12", RUN, "disk0")
    assert vol == f"kdb-01-drill-abcdef12--{RUN}--disk0.qcow2"
    assert made_by_run(vol, RUN) and made_by_run(console_name("kdb-01", RUN), RUN)
    assert not made_by_run(vol, "20261201T150000Z-00000000")
    assert not made_by_run("kdb-01-system.qcow2", RUN)
    assert "/" not in volume_name("a", RUN, "../../etc/passwd")


def nic(ip: str | None, prefix: int | None = 24, gateway: str | None = "10.41.100.1") -> NicPlan:
    return NicPlan(
        "drill", "kvm-b-drill", True, IPv4Address(ip) if ip else None, prefix,
        IPv4Address(gateway) if gateway else None, (),
    )  # fmt: skip


def test_identity_from_the_first_nic() -> None:
    assert identity_for([nic("10.41.100.11")], "kdb-01.corp.example.com") == IDENT
    assert identity_for([nic(None, None, None)], "kdb-01") is None
    assert identity_for([], "kdb-01") is None
    with pytest.raises(SiteError, match="refuse"):
        identity_for([nic("10.41.100.11", prefix=30, gateway="10.41.100.9")], "kdb-01")


def test_console_line() -> None:
    report = parse_console_line("SEAWALL-GUEST host=kdb-01 ip=10.41.100.11/24 last_record=70 status=ready")
    assert (
        report is not None and report.ready and report.address == "10.41.100.11" and report.last_record == 70
    )
    assert parse_console_line("SEAWALL-GUEST host=x ip=y status=ready") is None


def test_nic_model_from_the_plan() -> None:
    nics = [domxml.NicTarget("kvm-b-drill", model="e1000e")]
    root = ET.fromstring(domxml.configure_domain_xml(materialized(), tag=TAG, nics=nics))
    assert [m.get("type") for m in root.findall("devices/interface/model")] == ["e1000e"]
    with pytest.raises(domxml.DomainXmlError, match="no QEMU device"):
        domxml.configure_domain_xml(materialized(), tag=TAG, nics=[domxml.NicTarget("x", model="ena")])


class FakeDomain:
    """libvirt's metadata calls on one domain, in memory (the real driver keeps them in its XML)."""

    def __init__(self) -> None:
        self.meta: dict[str, str] = {}

    def metadata(self, _type: int, uri: str, _flags: int) -> str:
        import libvirt

        if uri not in self.meta:
            raise libvirt.libvirtError("no metadata")
        return self.meta[uri]

    def setMetadata(self, _type: int, xml: str | None, _key: str | None, uri: str, _flags: int) -> None:
        if xml is None:
            self.meta.pop(uri, None)
        else:
            self.meta[uri] = xml


def test_failback_keeps_the_home_identity_across_a_retry(tmp_path: Path) -> None:
    from seawall.sites.kvm.homeidentity import forget_home_identity, keep_home_identity, restore_home_identity
    from seawall.sites.kvm.identity import PARTITION_OFFSET, read_identity, write_identity

    disk = tmp_path / "system.raw"
    part = tmp_path / "part.img"
    subprocess.run(["mkfs.fat", "-C", str(part), str(8 * 1024)], check=True, capture_output=True)
    with disk.open("wb") as out:
        out.truncate(10 << 20)
        out.seek(PARTITION_OFFSET)
        out.write(part.read_bytes())
    home = Identity("kdb-01", "10.40.1.11", 24, "10.40.1.1")
    write_identity(disk, home)
    dom = FakeDomain()
    assert keep_home_identity(dom, str(disk)) == home
    write_identity(disk, IDENT)  # the point's bytes: the address the guest had at kvm-b
    # A retried failback reads the disk already overwritten: the remembered identity still wins.
    assert keep_home_identity(dom, str(disk)) == home
    restore_home_identity(dom, str(disk), home)
    assert read_identity(disk) == home
    forget_home_identity(dom)
    assert dom.meta == {}
    # A guest without a seed has no identity to keep (and nothing is written back).
    bare = tmp_path / "bare.raw"
    bare.write_bytes(b"\0" * (4 << 20))
    assert keep_home_identity(FakeDomain(), str(bare)) is None
