"""The source verbs of a KVM site over an open libvirt connection (``KvmAdapter`` wires them).

- ``take_point``: the point's backup job + checkpoint (``backup.begin``), found again on a retry; a
  stale job of ours (a cycle that never released) is ended first, another tool's is refused.
- ``open_exports``: the job's disks as ``NbdSource``s; a job that is gone cannot be re-made at the same
  instant, so the cycle fails and the next one starts over.
- ``release``: end the job (always: the workflow calls it in a ``finally``) and clear its files.
- ``settle``: keep the checkpoint chain to one: once a point is kept (committed and verified) every
  older checkpoint of ours goes; a point that was not kept loses its own (libvirt merges its bitmap
  into the parent's, so the kept parent still counts every change since it).
- ``describe``: the domain XML as of the point (stored in its checkpoint) as a ``SourceConfig``.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt

from seawall.blockstore.source import DiskSource
from seawall.contract.messages import DiskRef, SnapshotTaken
from seawall.model import KvmSite
from seawall.model.sourceconfig import DiskConfig, MachineConfig, NicConfig, SourceConfig, guest_family
from seawall.sites.base import SiteError
from seawall.sites.kvm import backup, offline
from seawall.sites.kvm.backup import BackupJob, Checkpoint, DomainDisk
from seawall.sites.kvm.nbdsource import NbdSource


def _chosen(dom: Any, only: list[str] | None) -> list[DomainDisk]:
    disks = backup.domain_disks(dom.XMLDesc())
    if only is None:
        return disks
    known = {d.dev for d in disks} | {d.replica_name for d in disks}
    missing = [name for name in only if name not in known]
    if missing:
        raise SiteError(
            f"domain {dom.name()!r} has no disk {', '.join(missing)} "
            f"(it has {', '.join(d.dev for d in disks)})",
            "PlanInvalid",
        )
    return [d for d in disks if d.dev in only or d.replica_name in only]


def _ours(job: BackupJob | None, directory: Any) -> bool:
    return job is not None and job.socket.startswith(str(directory) + "/")


def take_point(site: KvmSite, conn: Any, dom: Any, name: str, only: list[str] | None) -> SnapshotTaken:
    directory = backup.backup_dir(site, conn)
    disks = _chosen(dom, only)
    if not dom.isActive():
        # Shut off (a planned failover's final cycle): its images, served read-only.
        offline.begin(dom, name, disks, directory)
        return _taken(dom, name, disks)
    mine = backup.socket_path(directory, dom.UUIDString(), name)
    job = backup.running_job(dom)
    if job is not None and job.socket != mine:
        if not _ours(job, directory):
            raise SiteError(
                f"domain {dom.name()!r} runs another backup job (not Seawall's); try again when it ends",
                "SnapshotFailed",
                retryable=True,
            )
        backup.end_job(dom)  # a cycle that never released its job (its workflow was terminated)
        job = None
    if job is None:
        cps = backup.checkpoints(dom)
        if any(cp.name == name for cp in cps):
            # An earlier attempt began this point and its job ended since: that instant is gone.
            backup.delete_checkpoint(dom, name)
            cps = [cp for cp in cps if cp.name != name]
        ours = [cp for cp in cps if cp.ours]
        backup.begin(dom, name, disks, directory, ours[-1] if ours else None)
    return _taken(dom, name, disks)


def _taken(dom: Any, name: str, disks: list[DomainDisk]) -> SnapshotTaken:
    sizes = {d.dev: int(dom.blockInfo(d.dev)[0]) for d in disks}
    return SnapshotTaken(
        snapshot=name,
        disks=[
            DiskRef(key=d.dev, label=f"{d.dev} ({d.bus}, {d.fmt})", size=sizes[d.dev], name=d.replica_name)
            for d in disks
        ],
        cbt=any(d.bitmaps for d in disks),
    )


def open_exports(site: KvmSite, conn: Any, dom: Any, name: str) -> Callable[[DiskRef], DiskSource]:
    directory = backup.backup_dir(site, conn)
    state = offline.read_state(directory, backup.job_key(dom.UUIDString(), name))
    if state is not None:
        return _open_offline(dom, name, state)
    mine = backup.socket_path(directory, dom.UUIDString(), name)
    job = backup.running_job(dom)
    if job is None or job.socket != mine:
        raise SiteError(
            f"the backup job of {name} on {dom.name()!r} is gone (domain or libvirtd restarted?): "
            "its instant cannot be read again; the next cycle takes a new point",
            "SnapshotLost",
        )
    cps = {cp.name: cp for cp in backup.checkpoints(dom)}
    point = cps.get(name)
    if point is None:
        raise SiteError(f"checkpoint {name} of {dom.name()!r} is gone", "SnapshotLost")
    base: Checkpoint | None = cps.get(job.incremental) if job.incremental else None

    def open_disk(disk: DiskRef) -> DiskSource:
        export = job.exports.get(disk.key)
        if export is None:
            raise SiteError(f"the backup of {name} has no disk {disk.key}", "SnapshotLost")
        export_name, bitmap = export
        return NbdSource(
            job.socket,
            export_name,
            change_id=point.change_id if disk.key in point.disks else None,
            bitmap=bitmap,
            since=base.change_id if base is not None and bitmap else None,
            label=f"{dom.name()}/{disk.key}@{name}",
        )

    return open_disk


def _open_offline(dom: Any, name: str, state: dict[str, Any]) -> Callable[[DiskRef], DiskSource]:
    if not offline.serving(state):
        raise SiteError(
            f"the read-only export of {name} of {dom.name()!r} is gone: the next cycle takes a new point",
            "SnapshotLost",
        )

    def open_disk(disk: DiskRef) -> DiskSource:
        served = state["disks"].get(disk.key)
        if served is None:
            raise SiteError(f"point {name} has no disk {disk.key}", "SnapshotLost")
        return NbdSource(
            served["socket"],
            disk.key,
            # No checkpoint marks this instant: an id no job's base can equal, so the next cycle
            # hash-compares (None would make the data path skip this cycle's bitmap too).
            change_id=f"{name}@shut-off",
            bitmap=served["bitmap"],
            since=state["base"] if served["bitmap"] else None,
            label=f"{dom.name()}/{disk.key}@{name} (shut off)",
        )

    return open_disk


def release(site: KvmSite, conn: Any, dom: Any, name: str) -> int:
    """End point ``name``'s job if it still runs; 1 when there was one to end."""
    directory = backup.backup_dir(site, conn)
    mine = backup.socket_path(directory, dom.UUIDString(), name)
    job = backup.running_job(dom)
    ended = 0
    if job is not None and job.socket == mine:
        backup.end_job(dom)
        ended = 1
    key = backup.job_key(dom.UUIDString(), name)
    ended |= offline.stop(directory, key)
    backup.remove_leftovers(directory, key)
    return ended


def release_all(site: KvmSite, conn: Any, dom: Any) -> list[str]:
    """End the domain's Seawall backup job and stop its offline exports, whichever points they were
    for (their names are hashed into the socket's); what was ended. Checkpoints stay: they carry the
    change tracking a later protection's first incremental may use."""
    directory = backup.backup_dir(site, conn)
    ended = []
    job = backup.running_job(dom)
    if _ours(job, directory):
        backup.end_job(dom)
        ended.append(f"backup job {Path(job.socket).name}" if job else "backup job")
    if offline.stop_stale(directory, dom.UUIDString(), keep=""):
        ended.append("offline exports")
    return ended


def settle(dom: Any, name: str, kept: bool) -> list[str]:
    """Shorten the chain after point ``name``'s cycle; returns the checkpoints deleted.

    A shut-off domain keeps its chain (libvirt 9 deletes checkpoints of running domains only; its
    point made none): the first cycle after it runs again settles.
    """
    if not dom.isActive():
        return []
    cps = backup.checkpoints(dom)
    if kept:
        doomed = [cp.name for cp in cps if cp.ours and cp.name != name]
    else:
        doomed = [cp.name for cp in cps if cp.name == name]
    return [n for n in doomed if backup.delete_checkpoint(dom, n)]


def forget_checkpoints(dom: Any) -> list[str]:
    """Delete every checkpoint of ours (the disks are about to change outside any backup job).

    libvirt 9 deletes checkpoints of running domains only: for a shut-off one its metadata goes and
    the bitmaps are removed from the images with ``qemu-img bitmap --remove``.
    """
    gone = []
    disks = backup.domain_disks(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for cp in backup.checkpoints(dom):
        if not cp.ours:
            continue
        if dom.isActive():
            backup.delete_checkpoint(dom, cp.name)
        else:
            dom.checkpointLookupByName(cp.name).delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
            for disk in disks:
                if disk.dev in cp.disks and disk.path:
                    # A bitmap already gone is fine: the image then has nothing to forget.
                    subprocess.run(
                        ["qemu-img", "bitmap", "--remove", disk.path, cp.name],
                        capture_output=True,
                        check=False,
                    )
        gone.append(cp.name)
    return gone


def _scrub_xml(domain: ET.Element) -> None:
    # libvirt leaves passwords out unless asked for the secure XML; a hand-edited definition may not.
    for el in domain.iter():
        for attr in list(el.attrib):
            if "passw" in attr.lower():
                el.attrib[attr] = "<scrubbed>"


def _machine(domain: ET.Element, disks: list[DomainDisk], sizes: dict[str, int]) -> MachineConfig:
    memory_kib = int(domain.findtext("memory") or 0)
    os_el = domain.find("os")
    firmware = None
    if os_el is not None:
        efi = os_el.get("firmware") == "efi" or "OVMF" in (os_el.findtext("loader") or "")
        firmware = "efi" if efi else "bios"
    nics = []
    for iface in domain.findall("./devices/interface"):
        model = iface.find("model")
        mac = iface.find("mac")
        source = iface.find("source")
        nics.append(
            NicConfig(
                model=(model.get("type", "virtio") if model is not None else "rtl8139"),
                mac=mac.get("address") if mac is not None else None,
                network=(source.get("network") or source.get("bridge")) if source is not None else None,
            )
        )
    return MachineConfig(
        guest_id=None,
        guest_family=guest_family(None),
        firmware=firmware,  # type: ignore[arg-type]
        cpus=int(domain.findtext("vcpu") or 1),
        memory_mib=max(1, memory_kib // 1024),
        disks=[
            DiskConfig(
                disk=d.replica_name,
                controller=d.bus or "virtio",
                bus=0,
                unit=d.position,
                size=sizes.get(d.dev, 0),
            )
            for d in disks
        ],
        nics=nics,
        annotation=domain.findtext("description") or "",
    )


def describe(dom: Any, name: str) -> SourceConfig:
    """The domain as it was when point ``name`` began: the checkpoint holds its definition."""
    try:
        xml = dom.checkpointLookupByName(name).getXMLDesc(0)
        domain = ET.fromstring(xml).find("domain")
    except libvirt.libvirtError:
        domain = None
    if domain is None:  # a checkpoint made without the definition: the domain's own, now
        domain = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    _scrub_xml(domain)
    text = ET.tostring(domain, encoding="unicode")
    disks = backup.domain_disks(text)
    sizes: dict[str, int] = {}
    for d in disks:
        try:
            sizes[d.dev] = int(dom.blockInfo(d.dev)[0])
        except libvirt.libvirtError:
            sizes[d.dev] = 0
    return SourceConfig(
        kind="kvm",
        document={
            "domain_xml": text,
            "checkpoint": name,
            "disks": [{"disk": d.replica_name, "dev": d.dev, "bus": d.bus, "format": d.fmt} for d in disks],
        },
        machine=_machine(domain, disks, sizes),
    )
