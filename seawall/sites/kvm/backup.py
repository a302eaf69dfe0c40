"""libvirt checkpoints and pull-mode backup jobs: one job (and one checkpoint) per recovery point.

The job *is* the point in time: ``backupBegin`` creates the point's checkpoint and QEMU's export of
every disk as it was at that instant in one step, and the export stays exactly that (QEMU copies a
cluster to the scratch file before the guest overwrites it) until the job ends. So the job lives from
``create_snapshot`` to ``release_snapshot``: a ship retried after its worker died reads the same
instant again and resumes; it never mixes two instants in one point.

Ours are recognised by place, never by guessing: a job whose NBD socket is in the site's backup
directory under the name derived from its checkpoint, and checkpoints whose description carries
``MARK``. Jobs and checkpoints of other tools are left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from seawall.model import KvmSite
from seawall.sites.base import SiteError
from seawall.sites.kvm.connection import describe

MARK = "seawall recovery point"
_MAX_SOCKET = 107  # sun_path


@dataclass(frozen=True)
class DomainDisk:
    """A disk of a domain, in the domain's order: its position names it in the replica (``disk<N>``)."""

    position: int
    dev: str  # target dev: vda, sdb...
    bus: str
    fmt: str  # driver type: qcow2, raw
    path: str  # source file or device ('' for network disks)

    @property
    def replica_name(self) -> str:
        return f"disk{self.position}"

    @property
    def bitmaps(self) -> bool:
        return self.fmt == "qcow2"  # persistent dirty bitmaps live in qcow2 images only


@dataclass(frozen=True)
class BackupJob:
    """A running pull-mode backup: where it listens, and per disk its export, bitmap and base."""

    socket: str
    incremental: str | None
    exports: dict[str, tuple[str, str | None]]  # dev -> (export name, bitmap name or None)


def domain_disks(xml: str) -> list[DomainDisk]:
    disks: list[DomainDisk] = []
    for el in ET.fromstring(xml).findall("./devices/disk"):
        if el.get("device", "disk") != "disk":
            continue  # cdroms and floppies hold no data of the VM's own
        target = el.find("target")
        if target is None or not target.get("dev"):
            continue
        driver = el.find("driver")
        source = el.find("source")
        path = ""
        if source is not None:
            path = source.get("file") or source.get("dev") or ""
        disks.append(
            DomainDisk(
                position=len(disks),
                dev=str(target.get("dev")),
                bus=target.get("bus", ""),
                fmt=(driver.get("type", "raw") if driver is not None else "raw"),
                path=path,
            )
        )
    return disks


def backup_dir(site: KvmSite, conn: Any) -> Path:
    """Where sockets and scratch files go: the site's ``backup_dir``, else beside the pool's directory."""
    if site.backup_dir:
        return Path(site.backup_dir)
    from seawall.sites.kvm.connection import find_pool

    target = ET.fromstring(find_pool(conn, site).XMLDesc()).findtext("./target/path")
    if not target:
        raise SiteError(
            f"site {site.name!r}: pool {site.pool!r} has no directory; set backup_dir", "PlanInvalid"
        )
    return Path(target).resolve().parent / "seawall-backup"


def job_key(uuid: str, checkpoint: str) -> str:
    """Short (a unix socket path holds 107 bytes) and unique per domain and point."""
    return "sw-" + hashlib.sha256(f"{uuid}/{checkpoint}".encode()).hexdigest()[:16]


def socket_path(directory: Path, uuid: str, checkpoint: str) -> str:
    path = str(directory / f"{job_key(uuid, checkpoint)}.sock")
    if len(path.encode()) > _MAX_SOCKET:
        raise SiteError(
            f"backup_dir {directory} is too deep for a unix socket path; choose a shorter one", "PlanInvalid"
        )
    return path


def running_job(dom: Any) -> BackupJob | None:
    """The domain's backup job, if one runs (ours or another tool's)."""
    try:
        xml = dom.backupGetXMLDesc()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN_BACKUP, libvirt.VIR_ERR_OPERATION_INVALID):
            return None
        raise
    root = ET.fromstring(xml)
    server = root.find("server")
    exports: dict[str, tuple[str, str | None]] = {}
    for el in root.findall("./disks/disk"):
        if el.get("backup", "yes") != "yes":
            continue
        name = str(el.get("name"))
        exports[name] = (el.get("exportname") or name, el.get("exportbitmap"))
    return BackupJob(
        socket=(server.get("socket", "") if server is not None else ""),
        incremental=root.findtext("incremental"),
        exports=exports,
    )


def end_job(dom: Any, timeout: float = 30.0) -> None:
    """End the domain's backup job and wait until libvirt lists it no more; one already ended is fine."""
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
            raise
    # abortJob returns while QEMU still tears the export down: the next job (or a check) must not
    # find this one.
    deadline = time.monotonic() + timeout
    while running_job(dom) is not None:
        if time.monotonic() > deadline:
            raise SiteError(
                f"the backup job of {dom.name()!r} did not end within {timeout:g}s", retryable=True
            )
        time.sleep(0.05)


def remove_leftovers(directory: Path, key: str) -> None:
    """libvirt removes a job's socket and scratch files when it ends it; a crashed daemon may not."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(key + ".") or entry.name.startswith(key + "-"):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


@dataclass(frozen=True)
class Checkpoint:
    name: str
    created: int
    ours: bool
    disks: frozenset[str]  # the disks it tracks with a bitmap

    @property
    def change_id(self) -> str:
        return f"{self.name}@{self.created}"


def checkpoints(dom: Any) -> list[Checkpoint]:
    """The domain's checkpoints, oldest first."""
    found = []
    for cp in dom.listAllCheckpoints():
        root = ET.fromstring(cp.getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN))
        found.append(
            Checkpoint(
                name=cp.getName(),
                created=int(root.findtext("creationTime") or 0),
                ours=(root.findtext("description") or "") == MARK,
                disks=frozenset(
                    str(d.get("name"))
                    for d in root.findall("./disks/disk")
                    if d.get("checkpoint") == "bitmap"
                ),
            )
        )
    return sorted(found, key=lambda c: (c.created, c.name))


def delete_checkpoint(dom: Any, name: str) -> bool:
    """Delete one checkpoint (libvirt merges its bitmap into its parent's); one already gone is fine."""
    try:
        dom.checkpointLookupByName(name).delete()
        return True
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
            return False
        raise


def begin(
    dom: Any, name: str, disks: list[DomainDisk], directory: Path, base: Checkpoint | None
) -> BackupJob:
    """Start the pull-mode job of point ``name`` and its checkpoint; incremental from ``base`` per disk
    that ``base`` tracks, a full export for the others."""
    uuid = dom.UUIDString()
    key = job_key(uuid, name)
    socket = socket_path(directory, uuid, name)
    directory.mkdir(parents=True, exist_ok=True)
    remove_leftovers(directory, key)
    backup = ET.Element("domainbackup", mode="pull")
    if base is not None:
        ET.SubElement(backup, "incremental").text = base.name
    ET.SubElement(backup, "server", transport="unix", socket=socket)
    bdisks = ET.SubElement(backup, "disks")
    cp = ET.Element("domaincheckpoint")
    ET.SubElement(cp, "name").text = name
    ET.SubElement(cp, "description").text = MARK
    cdisks = ET.SubElement(cp, "disks")
    chosen = {d.dev for d in disks}
    for disk in disks:
        attrs = {"name": disk.dev, "backup": "yes", "type": "file", "exportname": disk.dev}
        if base is not None and disk.dev in base.disks:
            attrs.update(backupmode="incremental", incremental=base.name, exportbitmap=f"{key}-{disk.dev}")
        elif base is not None:
            attrs["backupmode"] = "full"
        el = ET.SubElement(bdisks, "disk", attrs)
        ET.SubElement(el, "scratch", file=str(directory / f"{key}-{disk.dev}.scratch"))
        ET.SubElement(cdisks, "disk", name=disk.dev, checkpoint="bitmap" if disk.bitmaps else "no")
    for dev in _all_devs(dom):
        if dev not in chosen:
            ET.SubElement(bdisks, "disk", name=dev, backup="no")
            ET.SubElement(cdisks, "disk", name=dev, checkpoint="no")
    try:
        dom.backupBegin(ET.tostring(backup, encoding="unicode"), ET.tostring(cp, encoding="unicode"))
    except libvirt.libvirtError as exc:
        raise SiteError(
            f"backup of {dom.name()!r} for {name}: {describe(exc)}", "SnapshotFailed", retryable=True
        ) from None
    job = running_job(dom)
    if job is None:
        raise SiteError(
            f"backup of {dom.name()!r} for {name} ended as it began", "SnapshotFailed", retryable=True
        )
    return job


def _all_devs(dom: Any) -> list[str]:
    return [d.dev for d in domain_disks(dom.XMLDesc())]
