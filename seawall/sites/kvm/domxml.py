"""The recovered domain's XML, made from the source domain's captured XML: pure, no libvirt.

What changes (``recovery_domain_xml``) and why:

- ``<name>`` is the recovered VM's, ``<uuid>`` goes (libvirt makes a new one: two domains with one UUID
  would confuse every tool that keys on it), runtime leftovers (``id``, aliases, ``<seclabel>``,
  interface target devices) go;
- ``<memory>``/``<currentMemory>`` and ``<vcpu>`` change only where the plan names a size; the rest of
  the hardware (machine type, CPU model, firmware, controllers) stays the source's, so the guest boots
  on the machine it was installed on;
- the disks (``device='disk'``, in document order) point at the materialized qcow2 volumes, paired by
  position; CD-ROMs and floppies are left empty (their media live at the source site);
- each ``<interface>``, in order, joins the plan's network for that NIC (``type='network'``), with its
  link down when the plan disconnects it (a drill without a test network) and without its ``<mac>``
  when the plan asks for a new one;
- the first serial port writes to a file at the target (the guest's "ready" line is read from it) and
  ``<console>`` elements go (libvirt derives the console from serial port 0);
- a QEMU user-mode ``-netdev user,...`` passed through ``<qemu:commandline>`` (the guest's only way in
  is a TCP forward from 127.0.0.1 to its health port) is re-addressed to the planned identity and
  forwarded from a port free at the target (the source's port is taken on a shared host);
- ``<metadata>`` gets a ``seawall:recovery`` element naming plan, run and source VM: how a retry knows
  a domain of that name is its own and how cleanup finds every domain of a run.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from seawall.sites.kvm.identity import Identity

SEAWALL_NS = "https://seawall.dev/xmlns/kvm-recovery/1"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("seawall", SEAWALL_NS)
_TAG = f"{{{SEAWALL_NS}}}recovery"
_MAX_XML = 1 << 20  # a domain's XML is a few KiB; anything near this is not one


class DomainXmlError(ValueError):
    """The captured XML cannot become the recovered domain (unparsable, or disks/NICs do not pair up)."""


@dataclass(frozen=True)
class RecoveryTag:
    """Written into the recovered domain's ``<metadata>``."""

    plan: str
    run: str
    vm: str
    health_port: int | None = None  # 127.0.0.1:<port> forwards to the guest's health endpoint
    console: str | None = None  # the serial console file at the target

    def element(self) -> ET.Element:
        attrs = {"plan": self.plan, "run": self.run, "vm": self.vm}
        if self.health_port is not None:
            attrs["health_port"] = str(self.health_port)
        if self.console is not None:
            attrs["console"] = self.console
        return ET.Element(_TAG, attrs)

    def same_run(self, other: RecoveryTag | None) -> bool:
        return other is not None and (other.plan, other.run, other.vm) == (self.plan, self.run, self.vm)


@dataclass(frozen=True)
class NicTarget:
    """Where one NIC of the recovered domain goes."""

    network: str  # the libvirt network at the target
    connected: bool = True
    keep_mac: bool = True
    model: str | None = None  # the plan's NIC model; None keeps the source's


# The plan's NIC models as QEMU's devices (libvirt ``<model type=...>``); ENA exists only on AWS.
KVM_NIC_MODELS = {
    "virtio": "virtio",
    "e1000e": "e1000e",
    "e1000": "e1000",
    "vmxnet3": "vmxnet3",
    "pcnet32": "pcnet",
}


def parse(xml: str) -> ET.Element:
    if len(xml) > _MAX_XML:
        raise DomainXmlError(f"domain XML of {len(xml)} characters is not a domain description")
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        # The stdlib parser expands internal entities: a captured domain XML never has any.
        raise DomainXmlError("domain XML with a DOCTYPE or entities is refused")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DomainXmlError(f"domain XML does not parse: {exc}") from None
    if root.tag != "domain":
        raise DomainXmlError(f"XML root is <{root.tag}>, not <domain>")
    return root


def read_tag(xml: str | ET.Element) -> RecoveryTag | None:
    """The Seawall recovery tag of a domain, None for a domain Seawall did not make."""
    root = parse(xml) if isinstance(xml, str) else xml
    found = root.find(f"metadata/{_TAG}")
    if found is None:
        return None
    try:
        port = found.get("health_port")
        return RecoveryTag(
            plan=found.attrib["plan"],
            run=found.attrib["run"],
            vm=found.attrib["vm"],
            health_port=int(port) if port else None,
            console=found.get("console"),
        )
    except (KeyError, ValueError):
        return None


def disk_sources(xml: str | ET.Element) -> list[tuple[str, str | None]]:
    """(target dev, source file or volume) of each ``device='disk'`` disk, in order."""
    root = parse(xml) if isinstance(xml, str) else xml
    out: list[tuple[str, str | None]] = []
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        target = disk.find("target")
        source = disk.find("source")
        path = None
        if source is not None:
            path = source.get("file") or source.get("dev") or source.get("volume")
        out.append((target.get("dev", "") if target is not None else "", path))
    return out


def spare_addresses(identity: Identity) -> tuple[str, str]:
    """Two addresses of the guest's subnet for QEMU user-mode's DHCP pool and DNS, never the guest's
    own or its gateway (left to its defaults, .15 and .3, they could be)."""
    taken = {identity.address, identity.gateway}
    hosts = [str(h) for h in reversed(list(identity.network.hosts())[-8:])]
    spare = [h for h in hosts if h not in taken]
    return spare[0], spare[1]


def rewrite_user_netdev(value: str, identity: Identity | None, health_port: int | None) -> str:
    """A ``user,...`` netdev re-addressed to ``identity`` with its first TCP forward from ``health_port``.

    Only a forward from 127.0.0.1 is kept (the first one): the host must never open a guest port on
    another address, and a second forward's port would collide like the first.
    """
    parts = value.split(",")
    if not parts or parts[0] != "user":
        return value
    out: list[str] = []
    forward_done = False
    replaced = {"net", "host", "dhcpstart", "dns"} if identity is not None else set()
    for part in parts:
        key, _, val = part.partition("=")
        if key in replaced:
            continue
        if key == "hostfwd":
            proto, _, rest = val.partition(":")
            host_side, _, guest_side = rest.partition("-")
            host_addr, _, host_port = host_side.rpartition(":")
            guest_addr, _, guest_port = guest_side.rpartition(":")
            if forward_done or proto != "tcp" or host_addr != "127.0.0.1":
                continue
            port = str(health_port) if health_port is not None else host_port
            addr = identity.address if identity is not None else guest_addr
            out.append(f"hostfwd=tcp:127.0.0.1:{port}-{addr}:{guest_port}")
            forward_done = True
            continue
        out.append(part)
    if identity is not None:
        dhcp, dns = spare_addresses(identity)
        ids = [p for p in out[1:] if p.startswith("id=")]
        others = [p for p in out[1:] if not p.startswith("id=")]
        extra = [f"net={identity.network}", f"host={identity.gateway}", f"dhcpstart={dhcp}", f"dns={dns}"]
        out = [out[0], *ids, *extra, *others]
    return ",".join(out)


def user_netdev_forward(xml: str | ET.Element) -> tuple[str, int] | None:
    """(guest address, host port) of the 127.0.0.1 forward of a user-mode netdev, if the domain has one."""
    root = parse(xml) if isinstance(xml, str) else xml
    for value in _netdev_values(root):
        for part in value.split(","):
            key, _, val = part.partition("=")
            if key == "hostfwd" and val.startswith("tcp:127.0.0.1:"):
                host_side, _, guest_side = val.removeprefix("tcp:127.0.0.1:").partition("-")
                return guest_side.rpartition(":")[0], int(host_side)
    return None


def _netdev_values(root: ET.Element) -> list[str]:
    args = [a.get("value", "") for a in root.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")]
    pairs = itertools.pairwise(args)
    return [value for flag, value in pairs if flag == "-netdev" and value.startswith("user,")]


def _drop(parent: ET.Element, path: str) -> None:
    for child in parent.findall(path):
        parent.remove(child)


def recovery_domain_xml(
    source_xml: str, *, name: str, tag: RecoveryTag, disks: Sequence[str], console_path: str
) -> str:
    """The domain as materialize defines it: the source's machine with the new name, no UUID, the
    materialized disks and the console file; its NICs still as the source had them (``configure``)."""
    root = parse(source_xml)
    root.attrib.pop("id", None)
    _set_text(root, "name", name)
    for path in ("uuid", "genid", "seclabel", "description", "title"):
        _drop(root, path)
    devices = root.find("devices")
    if devices is None:
        raise DomainXmlError("domain XML has no <devices>")
    _disks(devices, disks)
    _serial(devices, console_path)
    for element in root.iter():
        _drop(element, "alias")
    _set_tag(root, tag)
    return ET.tostring(root, encoding="unicode")


def configure_domain_xml(
    defined_xml: str,
    *,
    tag: RecoveryTag,
    nics: Sequence[NicTarget],
    cpus: int | None = None,
    memory_mib: int | None = None,
    identity: Identity | None = None,
) -> str:
    """The defined domain as it starts: the plan's size (only what it names), NICs, MAC policy, and a
    user-mode health forward re-addressed to ``identity`` from ``tag.health_port``. Idempotent."""
    root = parse(defined_xml)
    if memory_mib is not None:
        kib = str(memory_mib * 1024)
        _drop(root, "maxMemory")
        for path in ("memory", "currentMemory"):
            element = _set_text(root, path, kib)
            element.attrib.clear()
            element.set("unit", "KiB")
    if cpus is not None:
        vcpu = _set_text(root, "vcpu", str(cpus))
        vcpu.attrib.pop("current", None)
        _drop(root, "vcpus")
        cpu = root.find("cpu")
        if cpu is not None:
            _drop(cpu, "topology")  # a socket/core/thread split of the old count would not add up
    devices = root.find("devices")
    if devices is None:
        raise DomainXmlError("domain XML has no <devices>")
    _nics(devices, nics)
    for arg in root.iter(f"{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        if value.startswith("user,"):
            arg.set("value", rewrite_user_netdev(value, identity, tag.health_port))
    _set_tag(root, tag)
    return ET.tostring(root, encoding="unicode")


def _set_tag(root: ET.Element, tag: RecoveryTag) -> None:
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.Element("metadata")
        root.insert(_after(root, ("name", "uuid", "genid", "title", "description")), metadata)
    _drop(metadata, _TAG)
    metadata.append(tag.element())


def _after(root: ET.Element, tags: tuple[str, ...]) -> int:
    index = 0
    for i, child in enumerate(root):
        if child.tag in tags:
            index = i + 1
    return index


def _set_text(root: ET.Element, tag: str, text: str) -> ET.Element:
    found = root.find(tag)
    if found is None:
        found = ET.SubElement(root, tag)
    found.text = text
    return found


def _disks(devices: ET.Element, paths: Sequence[str]) -> None:
    disks = devices.findall("disk")
    hard = [d for d in disks if d.get("device", "disk") == "disk"]
    if len(hard) != len(paths):
        raise DomainXmlError(f"the domain has {len(hard)} disks, the recovery point {len(paths)}")
    for disk, path in zip(hard, paths, strict=True):
        disk.set("type", "file")
        _drop(disk, "source")
        _drop(disk, "backingStore")
        _drop(disk, "mirror")
        driver = disk.find("driver")
        if driver is None:
            driver = ET.Element("driver", {"name": "qemu"})
            disk.insert(0, driver)
        driver.set("type", "qcow2")
        disk.insert(list(disk).index(driver) + 1, ET.Element("source", {"file": path}))
    for disk in disks:
        if disk.get("device") in ("cdrom", "floppy"):
            disk.set("type", "file")
            _drop(disk, "source")
            _drop(disk, "backingStore")


def _nics(devices: ET.Element, nics: Sequence[NicTarget]) -> None:
    interfaces = devices.findall("interface")
    if len(interfaces) != len(nics):
        raise DomainXmlError(f"the domain has {len(interfaces)} NICs, the plan maps {len(nics)}")
    for interface, nic in zip(interfaces, nics, strict=True):
        interface.set("type", "network")
        for path in ("source", "target", "virtualport", "link", "ip", "route", "backend"):
            _drop(interface, path)
        if not nic.keep_mac:
            _drop(interface, "mac")
        mac = interface.find("mac")
        at = list(interface).index(mac) + 1 if mac is not None else 0
        interface.insert(at, ET.Element("source", {"network": nic.network}))
        if nic.model is not None:
            if nic.model not in KVM_NIC_MODELS:
                raise DomainXmlError(
                    f"NIC model {nic.model!r} has no QEMU device (KVM has {sorted(KVM_NIC_MODELS)})"
                )
            _drop(interface, "model")
            _drop(interface, "driver")  # a virtio driver's options would not fit another model
            ET.SubElement(interface, "model", {"type": KVM_NIC_MODELS[nic.model]})
        if not nic.connected:
            ET.SubElement(interface, "link", {"state": "down"})


def _serial(devices: ET.Element, console_path: str) -> None:
    _drop(devices, "console")
    serials = devices.findall("serial")
    first = next((s for s in serials if _serial_port(s) == "0"), None)
    if first is None:
        first = ET.SubElement(devices, "serial")
        ET.SubElement(first, "target", {"port": "0"})
    first.set("type", "file")
    _drop(first, "source")
    _drop(first, "log")
    first.insert(0, ET.Element("source", {"path": console_path}))


def _serial_port(serial: ET.Element) -> str:
    target = serial.find("target")
    return target.get("port", "0") if target is not None else "0"


def serial_file(root: ET.Element) -> str | None:
    """The file serial port 0 of a domain writes to, if it writes to a file."""
    for serial in root.findall("devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and _serial_port(serial) == "0" and source is not None:
            return source.get("path")
    return None
