"""Domain XML of a lab guest, its start, and whether /dev/kvm really runs guests here.

The guest has two NICs: ``eth0`` (PCI slot 0x10) is QEMU user-mode networking, passed through
``<qemu:commandline>`` because libvirt 9.0 has no restrict=on user interface; its only way in is a TCP
forward from 127.0.0.1 to the guest's port 80 (the health endpoint), and ``restrict=on`` keeps the guest
from reaching anything. ``eth1`` (slot 0x11) sits on the site's libvirt network (a bridge with no host
address), the NIC a recovery maps to the drill network. Explicit slots keep the pass-through device
from colliding with the ones libvirt places itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from seawall.lab.kvm_records import CONSOLE_TAG, Identity

MGMT_SLOT = 0x10
NIC_SLOT = 0x11
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


@dataclass(frozen=True)
class GuestSpec:
    """Everything a lab guest's domain is made of."""

    name: str
    domain_type: str  # "kvm" or "qemu" (TCG)
    system_disk: Path  # qcow2
    data_disk: Path  # qcow2
    console_log: Path
    identity: Identity
    health_port: int  # 127.0.0.1:<port> -> guest:80
    network: str | None = None  # libvirt network of eth1; None: no such NIC
    memory_mib: int = 256
    vcpus: int = 1
    mac: str | None = None  # eth1's MAC; None lets libvirt choose


def spare_addresses(identity: Identity) -> tuple[str, str]:
    """Two addresses of the guest's subnet that slirp may use for its DHCP pool and DNS.

    slirp puts both inside ``net=``; left to its defaults (.15 and .3) they could be the guest's own.
    """
    taken = {identity.address, identity.gateway}
    hosts = [str(h) for h in reversed(list(identity.network.hosts())[-8:])]
    spare = [h for h in hosts if h not in taken]
    return spare[0], spare[1]


def user_netdev(identity: Identity, health_port: int) -> str:
    dhcp, dns = spare_addresses(identity)
    return ",".join(
        [
            "user",
            "id=swmgmt",
            "restrict=on",
            f"net={identity.network}",
            f"host={identity.gateway}",
            f"dhcpstart={dhcp}",
            f"dns={dns}",
            f"hostfwd=tcp:127.0.0.1:{health_port}-{identity.address}:80",
        ]
    )


def tap_name(health_port: int) -> str:
    """The guest NIC's tap device. Each lab's libvirtd names its taps vnet0, vnet1... itself, and two
    labs starting guests at once on one host raced for the same name ("Unable to create tap device
    vnet7: Device or resource busy"). A guest's health port is unique on the host, so this name is
    too. Recovered domains get a name from their own daemon (``domxml`` drops the source's target)."""
    return f"swtap{health_port}"


def domain_xml(spec: GuestSpec) -> str:
    """The lab guest's domain. It has ACPI: without it (libvirt then passes -no-acpi) the kernel keeps a
    periodic tick, and under TCG a guest writing a record every 2 s cost 8.8 % of a core, 2.0 % with it.
    Recovered domains keep their source's hardware, so the drill guests have it too."""
    if spec.domain_type not in ("kvm", "qemu"):
        raise ValueError(f"domain type {spec.domain_type!r}: want kvm or qemu")
    ipaddress.IPv4Address(spec.identity.address)  # already validated; a guard against a hand-made spec
    nic = ""
    if spec.network:
        mac = f"<mac address={quoteattr(spec.mac)}/>" if spec.mac else ""
        nic = f"""
    <interface type='network'>
      {mac}<source network={quoteattr(spec.network)}/>
      <target dev={quoteattr(tap_name(spec.health_port))}/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='{NIC_SLOT:#04x}' function='0x0'/>
    </interface>"""
    args = [
        "-netdev",
        user_netdev(spec.identity, spec.health_port),
        "-device",
        f"virtio-net-pci,netdev=swmgmt,addr={MGMT_SLOT:#04x}",
    ]
    qemu_args = "".join(f"\n    <qemu:arg value={quoteattr(a)}/>" for a in args)
    return f"""<domain type={quoteattr(spec.domain_type)} xmlns:qemu='{QEMU_NS}'>
  <name>{spec.name}</name>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>{spec.vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
    <bios rebootTimeout='0'/>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(spec.system_disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(spec.data_disk))}/>
      <target dev='vdb' bus='virtio'/>
    </disk>{nic}
    <serial type='file'>
      <source path={quoteattr(str(spec.console_log))}/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>{qemu_args}
  </qemu:commandline>
</domain>
"""


def define_and_start(conn: Any, xml: str, *, paused: bool = False) -> Any:
    """Define a persistent domain from XML (replacing a shut-off one of that name) and start it:
    paused, its QEMU process is there but its CPU never runs."""
    import libvirt

    dom = conn.defineXML(xml)
    if not dom.isActive():
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
    assert isinstance(dom, libvirt.virDomain)
    return dom


def remove_domain(dom: Any) -> None:
    """Destroy and undefine a domain with its checkpoint and snapshot metadata (the disks stay)."""
    import libvirt

    if dom.isActive():
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    )
    dom.undefineFlags(flags)


def probe_kvm(
    conn: Any, base_image: Path, console_log: Path, banner: float = 4.0, boot: float = 20.0
) -> tuple[bool, str]:
    """Does a ``type='kvm'`` guest really run here? Boots the lab guest's base image read-only.

    /dev/kvm can be present and accepted by libvirt yet unusable (kvm-pvm: a guest hangs in SeaBIOS
    at 0 % CPU and prints nothing), so the device node proves nothing. With KVM, syslinux's banner is
    on the serial console within ``banner`` seconds; then the guest's init must print its line (the
    same image as vda and vdb: no identity, no records, so it says "bad-identity") within ``boot``.
    """
    import libvirt

    if "type='kvm'" not in conn.getCapabilities():
        return False, "libvirt lists no kvm domain type"
    console_log.parent.mkdir(parents=True, exist_ok=True)
    console_log.unlink(missing_ok=True)
    disks = "".join(
        f"""<disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file={quoteattr(str(base_image))}/><target dev='{dev}' bus='virtio'/><readonly/></disk>"""
        for dev in ("vda", "vdb")
    )
    xml = f"""<domain type='kvm'>
  <name>seawall-kvm-probe-{os.getpid()}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>{disks}
    <serial type='file'><source path={quoteattr(str(console_log))}/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""
    began = time.monotonic()
    try:
        dom = conn.createXML(xml, 0)
    except libvirt.libvirtError as exc:
        return False, f"a kvm guest does not start: {exc.get_error_message()}"
    try:
        while time.monotonic() - began < banner:
            if console_log.exists() and console_log.stat().st_size > 0:
                break
            time.sleep(0.1)
        else:
            return False, f"a kvm guest printed nothing in {banner:.0f}s (it hangs in the BIOS, e.g. kvm-pvm)"
        while time.monotonic() - began < banner + boot:
            if CONSOLE_TAG in console_log.read_text(errors="replace"):
                return True, f"a kvm guest booted to its init in {time.monotonic() - began:.1f}s"
            time.sleep(0.1)
        return False, f"a kvm guest started but did not reach its init in {banner + boot:.0f}s"
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        console_log.unlink(missing_ok=True)
