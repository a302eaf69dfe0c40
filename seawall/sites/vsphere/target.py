"""Recover a VM into a vSphere site: create it over materialized disks, re-address it, power it on, find it.

Everything is blocking pyvmomi, called from activity threads, and every create is idempotent by a
deterministic name chosen by the caller (a retried activity finds what it made). The disks come from
``seawall.sites.vsphere.disks``.

- ``create_vm`` creates the VM over those files (``CreateVM_Task``, disks attached as existing
  files, NICs on port groups found by name) and tags it in ``config.annotation`` and
  ``config.extraConfig``; a VM that already has the name is returned only when its tag names the
  same run, otherwise it is someone else's and the call fails.
- ``customize_ip`` (``CustomizeVM_Task``, Linux prep, fixed IP or DHCP per NIC), ``power_on``,
  ``wait_guest_ip`` (``guest.ipAddress``/``guest.net``/``guest.hostName`` only).
- ``destroy_vm``, ``find_run_vms``, ``delete_datastore_path`` for cleanup; ``ensure_network`` /
  ``remove_network`` for per-run isolated port groups.

Observed on vcsim (govmomi 0.24):

- ``CreateVM_Task`` with a disk whose ``fileOperation`` is unset attaches an existing
  ``<disk>-flat.vmdk`` (``FileNotFound`` otherwise); a ``vmPathName`` ending in ``.vmx`` reuses an
  existing directory, while a bare directory name would be renamed ``<dir> (0)``. A leftover
  ``.vmx`` (a create that died half-way) makes the next create fail with ``FileAlreadyExists``.
- ``CustomizeVM_Task`` needs one NIC setting per NIC, refuses a powered-on VM and a pending
  customization; the addresses show in ``guest.net``/``guest.ipAddress`` after power-on.
- ``Destroy_Task`` deletes the VM's directory, uploaded disks included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from seawall.model.ipplan import NicPlan
from seawall.model.sourceconfig import MachineConfig
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.devices import device_changes, nic_backing
from seawall.sites.vsphere.disks import UploadedDisk
from seawall.sites.vsphere.placement import Placement, delete_datastore_path, find_network
from seawall.sites.vsphere.session import VSphereError, VSphereNotFound, VSphereTaskError

__all__ = [
    "GuestInfo",
    "NicSpec",
    "RunTag",
    "create_vm",
    "customize_ip",
    "destroy_vm",
    "find_run_vms",
    "find_vm_or_none",
    "power_on",
    "read_guest",
    "wait_guest_ip",
]

log = logging.getLogger(__name__)

ANNOTATION_HEADER = "Recovered by Seawall"


# ---- VMs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTag:
    """Which run made a VM: written into the VM so cleanup finds every VM of a run."""

    plan: str
    run: str
    source_vm: str
    extra: dict[str, str] = field(default_factory=dict)

    def annotation(self) -> str:
        lines = [ANNOTATION_HEADER, f"seawall.plan={self.plan}", f"seawall.run={self.run}"]
        lines.append(f"seawall.vm={self.source_vm}")
        lines += [f"seawall.{k}={v}" for k, v in sorted(self.extra.items())]
        return "\n".join(lines)

    def extra_config(self) -> list[Any]:
        pairs = {"plan": self.plan, "run": self.run, "vm": self.source_vm, **self.extra}
        return [vim.option.OptionValue(key=f"seawall.{k}", value=v) for k, v in sorted(pairs.items())]

    @staticmethod
    def parse(annotation: str | None) -> RunTag | None:
        if not annotation or not annotation.startswith(ANNOTATION_HEADER):
            return None
        values: dict[str, str] = {}
        for line in annotation.splitlines()[1:]:
            key, sep, value = line.partition("=")
            if sep and key.startswith("seawall."):
                values[key.removeprefix("seawall.")] = value
        try:
            plan, run, vm = values.pop("plan"), values.pop("run"), values.pop("vm")
        except KeyError:
            return None
        return RunTag(plan, run, vm, values)


@dataclass(frozen=True)
class NicSpec:
    """A NIC of a new VM: the network (port group) name and whether it starts connected."""

    network: str
    connected: bool = True

    @classmethod
    def of(cls, nic: str | NicSpec | NicPlan) -> NicSpec:
        if isinstance(nic, NicSpec):
            return nic
        if isinstance(nic, NicPlan):
            return cls(nic.backing, nic.connected)
        return cls(nic)


def find_vm_or_none(conn: VSphereConnection, name: str) -> Any | None:
    try:
        return conn.find_vm(name)
    except VSphereNotFound:
        return None


def _vm_tag(conn: VSphereConnection, vm: Any) -> RunTag | None:
    props = conn.properties(vm, ["config.annotation", "config.extraConfig"])
    return RunTag.parse(props.get("config.annotation")) or _tag_from_extra_config(
        props.get("config.extraConfig")
    )


def _nic_inputs(
    conn: VSphereConnection, nics: Sequence[str | NicSpec | NicPlan]
) -> list[tuple[NicPlan | None, Any, bool]]:
    out: list[tuple[NicPlan | None, Any, bool]] = []
    for nic in nics:
        spec = NicSpec.of(nic)
        out.append(
            (
                nic if isinstance(nic, NicPlan) else None,
                nic_backing(find_network(conn, spec.network)),
                spec.connected,
            )
        )
    return out


def create_vm(
    conn: VSphereConnection,
    name: str,
    *,
    placement: Placement,
    cpus: int,
    memory_mib: int,
    disks: Sequence[UploadedDisk],
    nics: Sequence[str | NicSpec | NicPlan],
    tag: RunTag,
    guest_id: str = "otherLinux64Guest",
    vm_dir: str | None = None,
    timeout: float | None = None,
    machine: MachineConfig | None = None,
    cores_per_socket: int | None = None,
    keep_macs: bool = False,
    notes: list[str] | None = None,
) -> Any:
    """Create VM ``name`` over already materialized disks, NICs on the named networks; the VM.

    ``machine`` (the configuration captured with the point) gives the guest OS, firmware, secure
    boot, controllers, disk slots, NIC models and MACs (``keep_macs``), annotation; ``cpus`` and
    ``memory_mib`` are already the plan's or the source's. What could not be re-created goes to
    ``notes``. A VM already named ``name`` is returned when its tag names the same run (a retry); one
    made by anything else is never adopted (VSphereError). ``vm_dir`` is where its .vmx goes, by
    default the directory of the first disk, so destroying the VM removes its disks too.
    """
    existing = find_vm_or_none(conn, name)
    if existing is not None:
        found = _vm_tag(conn, existing)
        if found is None or (found.plan, found.run, found.source_vm) != (tag.plan, tag.run, tag.source_vm):
            raise VSphereError(
                f"a VM named {name!r} already exists on {conn.describe()} and was not made by run {tag.run} "
                "for this VM; not touching it"
            )
        return existing
    directory = vm_dir or (disks[0].descriptor.rsplit("/", 1)[0] if disks else name)
    devices = device_changes(disks, _nic_inputs(conn, nics), machine, keep_macs=keep_macs)
    if notes is not None:
        notes += devices.notes
    config = vim.vm.ConfigSpec(
        name=name,
        guestId=(machine.guest_id if machine and machine.guest_id else guest_id),
        numCPUs=cpus,
        memoryMB=memory_mib,
        # The source's own note when it had one: the run's tag is in extraConfig either way.
        annotation=(machine.annotation if machine and machine.annotation else tag.annotation()),
        extraConfig=tag.extra_config(),
        files=vim.vm.FileInfo(vmPathName=f"[{placement.datastore}] {directory}/{name}.vmx"),
        deviceChange=devices.changes,
    )
    if cores_per_socket:
        config.numCoresPerSocket = cores_per_socket
    if machine is not None and machine.firmware is not None:
        config.firmware = machine.firmware
        if machine.firmware == "efi":
            config.bootOptions = vim.vm.BootOptions(efiSecureBootEnabled=machine.secure_boot)
    what = f"create VM {name}"

    def start() -> Any:
        return placement.folder.CreateVM_Task(config=config, pool=placement.pool, host=placement.host)

    try:
        return conn.run_task(what, start, timeout=timeout)
    except VSphereTaskError as exc:
        # Two ways a retry lands here: another attempt created the VM meanwhile, or one died after
        # writing the .vmx but before registering the VM. Adopt the first, clear the second once.
        raced = find_vm_or_none(conn, name)
        if raced is not None and _vm_tag(conn, raced) == tag:
            return raced
        if "FileAlreadyExists" not in str(exc) or raced is not None:
            raise
    log.warning("removing %s/%s.vmx left by an earlier create that did not finish", directory, name)
    for leftover in (f"{name}.vmx", f"{name}.nvram", "vmware.log"):
        delete_datastore_path(conn, placement.datastore, placement.datacenter_name, f"{directory}/{leftover}")
    return conn.run_task(what, start, timeout=timeout)


def customize_ip(
    conn: VSphereConnection,
    vm: Any,
    nics: Sequence[NicPlan],
    hostname: str,
    *,
    domain: str = "",
    timeout: float | None = None,
) -> bool:
    """Queue guest customization (Linux prep): hostname, and per NIC a fixed IP or DHCP; True if queued.

    Takes effect at the next power-on. Returns False, doing nothing, when the VM is already powered
    on (customized and booted by an earlier attempt) or a customization is already pending (an
    earlier attempt queued this same spec: CustomizeVM_Task refuses both cases).
    """
    if not hostname:
        raise ValueError("a hostname is required")
    label, _, rest = hostname.partition(".")
    domain = domain or rest
    props = conn.properties(vm, ["runtime.powerState", "config.tools.pendingCustomization"])
    if props.get("runtime.powerState") == "poweredOn" or props.get("config.tools.pendingCustomization"):
        return False
    settings = []
    dns_all: list[str] = []
    for nic in nics:
        adapter = vim.vm.customization.IPSettings()
        if nic.ip is None:
            adapter.ip = vim.vm.customization.DhcpIpGenerator()
        else:
            adapter.ip = vim.vm.customization.FixedIp(ipAddress=str(nic.ip))
            adapter.subnetMask = str(nic.netmask)
            if nic.gateway is not None:
                adapter.gateway = [str(nic.gateway)]
        if nic.dns_servers:
            adapter.dnsServerList = [str(s) for s in nic.dns_servers]
            dns_all += [str(s) for s in nic.dns_servers if str(s) not in dns_all]
        if domain:
            adapter.dnsDomain = domain
        settings.append(vim.vm.customization.AdapterMapping(adapter=adapter))
    spec = vim.vm.customization.Specification(
        identity=vim.vm.customization.LinuxPrep(
            hostName=vim.vm.customization.FixedName(name=label), domain=domain or "localdomain"
        ),
        globalIPSettings=vim.vm.customization.GlobalIPSettings(
            dnsServerList=dns_all or None, dnsSuffixList=[domain] if domain else None
        ),
        nicSettingMap=settings,
    )
    what = f"customize {conn.vm_name(vm)}"
    conn.run_task(what, lambda: vm.CustomizeVM_Task(spec=spec), timeout=timeout)
    return True


def power_on(conn: VSphereConnection, vm: Any, *, timeout: float | None = None) -> None:
    conn.power_on(vm, timeout=timeout)


@dataclass(frozen=True)
class GuestInfo:
    ip_address: str | None
    ips: tuple[str, ...]  # every address of every NIC (guest.net)
    host_name: str | None


def read_guest(conn: VSphereConnection, vm: Any) -> GuestInfo:
    """What the guest reports. Only these three properties: vcsim 0.24 dies on guestHeartbeatStatus."""
    props = conn.properties(vm, ["guest.ipAddress", "guest.net", "guest.hostName"])
    ips: list[str] = []
    for nic in props.get("guest.net") or []:
        for ip in nic.ipAddress or []:
            if ip not in ips:
                ips.append(str(ip))
    ip = props.get("guest.ipAddress")
    return GuestInfo(str(ip) if ip else None, tuple(ips), props.get("guest.hostName") or None)


def wait_guest_ip(
    conn: VSphereConnection,
    vm: Any,
    expected_ip: str,
    *,
    timeout: float = 600.0,
    interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> GuestInfo:
    """Poll until the guest reports ``expected_ip`` (in guest.net or guest.ipAddress); VSphereError
    after ``timeout`` seconds, naming what it did report."""
    deadline = time.monotonic() + timeout
    while True:
        info = read_guest(conn, vm)
        if expected_ip in info.ips or info.ip_address == expected_ip:
            return info
        if time.monotonic() >= deadline:
            raise VSphereError(
                f"guest of {conn.vm_name(vm)} did not report {expected_ip} within {timeout:.0f}s "
                f"(reports {', '.join(info.ips) or 'no address'})"
            )
        sleep(min(interval, max(0.0, deadline - time.monotonic())))


def find_run_vms(conn: VSphereConnection, run_id: str) -> list[tuple[Any, str, RunTag]]:
    """Every VM whose Seawall tag names ``run_id``: (vm, name, tag).

    The annotation is what people see and may edit; ``config.extraConfig`` carries the same keys
    out of sight, so a VM whose note an operator rewrote is still found.
    """
    out = []
    paths = ["name", "config.annotation", "config.extraConfig"]
    for obj, props in conn.list_objects(vim.VirtualMachine, paths):
        tag = RunTag.parse(props.get("config.annotation")) or _tag_from_extra_config(
            props.get("config.extraConfig")
        )
        if tag is not None and tag.run == run_id:
            out.append((obj, str(props.get("name")), tag))
    return out


def _tag_from_extra_config(options: Any) -> RunTag | None:
    values = {
        str(o.key).removeprefix("seawall."): str(o.value)
        for o in options or []
        if str(getattr(o, "key", "")).startswith("seawall.")
    }
    try:
        plan, run, vm = values.pop("plan"), values.pop("run"), values.pop("vm")
    except KeyError:
        return None
    return RunTag(plan, run, vm, values)


def destroy_vm(
    conn: VSphereConnection, name: str, *, run_id: str | None = None, timeout: float | None = None
) -> bool:
    """Power off and destroy VM ``name``; False when there was none (gone is success).

    With ``run_id`` the VM must carry that run's tag: cleanup must never destroy a VM it did not
    make, whatever its name.
    """
    vm = find_vm_or_none(conn, name)
    if vm is None:
        return False
    if run_id is not None:
        tag = _vm_tag(conn, vm)
        if tag is None or tag.run != run_id:
            raise VSphereError(
                f"VM {name!r} on {conn.describe()} was not made by run {run_id}; not destroying it"
            )
    try:
        conn.power_off(vm, timeout=timeout)
        conn.run_task(f"destroy VM {name}", lambda: vm.Destroy_Task(), timeout=timeout)
    except VSphereNotFound:
        return False
    except VSphereTaskError:
        if find_vm_or_none(conn, name) is not None:
            raise
        return False
    return True
