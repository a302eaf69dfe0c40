"""Shared set-up for KVM recovery tests: the example KVM inventory and plan against the running lab, and
recovery points of the lab's real guests.

``seed_point`` makes a point the way the KVM source does in spirit, without its replication workflow: a
push-mode libvirt backup of the running guest (QEMU's point-in-time copy of every disk: the guest keeps
writing), shipped into the replica with the blockstore, its domain XML sealed beside it, verified. The
point's data disk is scanned here, independently of any guest: the record a recovered guest must find.
"""

from __future__ import annotations

import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import libvirt
import yaml

from seawall.blockstore.repository import Repository
from seawall.lab import LabInfo
from seawall.lab.kvm_records import RecordScan, scan_file
from seawall.model.sourceconfig import MachineConfig, SourceConfig
from seawall.sites.directory.source import RawSource
from tests.integration.replication_env import EXAMPLES

PLAN = "kvm-dr"
VMS = ["kdb-01", "kapp-01", "kweb-01"]
DRILL_IPS = {"kdb-01": "10.41.100.11", "kapp-01": "10.41.100.12", "kweb-01": "10.41.100.13"}
FAILOVER_IPS = {"kdb-01": "10.41.1.11", "kapp-01": "10.41.1.12", "kweb-01": "10.41.1.13"}


def write_kvm_files(tmp: Path, lab: LabInfo, replica: Path) -> tuple[Path, Path]:
    """The example KVM inventory (this lab's sockets, a replica directory of the test's own, the lab's
    replica key; ``replica`` is shared by a module's tests) and the example plan next to it, in
    ``tmp/plans``."""
    inv = yaml.safe_load((EXAMPLES / "kvm-inventory.yaml").read_text())
    for site in inv["sites"]:
        site["uri"] = lab.kvm[site["name"]].uri
    inv["replica_stores"][0]["path"] = str(replica)
    for policy in inv["policies"]:
        policy["key_ref"] = f"file:{lab.replica_key_file}"
    folder = tmp / "plans"
    folder.mkdir(parents=True, exist_ok=True)
    inventory = folder / "kvm-inventory.yaml"
    inventory.write_text(yaml.safe_dump(inv, sort_keys=False))
    plan = yaml.safe_load((EXAMPLES / "kvm-dr.yaml").read_text())
    for group in plan["groups"]:
        for vm in group["vms"]:
            for check in vm.get("health_checks", []):
                check["timeout"] = "4m"
    path = folder / "kvm-dr.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return inventory, path


@dataclass
class SeededPoint:
    vm: str
    point_id: str
    created_at: datetime
    data: RecordScan  # the records on the point's data disk, scanned here
    backup_s: float


def _wait_job(dom: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
        if time.monotonic() > deadline:
            dom.abortJob()
            raise AssertionError(f"backup of {dom.name()} did not finish in {timeout}s")
        time.sleep(0.2)
    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if stats.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        raise AssertionError(f"backup of {dom.name()} ended {stats}")


def seed_point(lab: LabInfo, repo: Repository, vm: str, work: Path) -> SeededPoint:
    """A verified point of the running lab guest ``vm`` at ``kvm-a`` (disks ``vda``, ``vdb``)."""
    site = lab.kvm["kvm-a"]
    folder = work / f"backup-{vm}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    conn = libvirt.open(site.uri)
    try:
        dom = conn.lookupByName(vm)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        disks = "".join(
            f"<disk name='{dev}' backup='yes' type='file'><target file='{folder / dev}.qcow2'/>"
            "<driver type='qcow2'/></disk>"
            for dev in ("vda", "vdb")
        )
        began = time.monotonic()
        dom.backupBegin(f"<domainbackup mode='push'><disks>{disks}</disks></domainbackup>", None, 0)
        _wait_job(dom)
        backup_s = time.monotonic() - began
    finally:
        conn.close()
    shipped = []
    for index, dev in enumerate(("vda", "vdb")):
        raw = folder / f"{dev}.raw"
        subprocess.run(
            ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", str(folder / f"{dev}.qcow2"), str(raw)],
            check=True,
        )
        source = RawSource(raw)
        try:
            shipped.append(repo.ship(source, vm, f"disk{index}"))
        finally:
            source.close()
    point_id = f"{datetime.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    data = scan_file(folder / "vdb.raw")
    parent = repo.latest_point(vm, verified_only=False)
    # What the KVM source stores with a point: the domain XML, its disks' devs, the neutral machine.
    root = ET.fromstring(xml)
    config = SourceConfig(
        kind="kvm",
        document={
            "domain_xml": xml,
            "disks": [{"disk": "disk0", "dev": "vda"}, {"disk": "disk1", "dev": "vdb"}],
        },
        machine=MachineConfig(
            cpus=int(root.findtext("vcpu") or 1), memory_mib=int(root.findtext("memory") or 0) // 1024
        ),
    )
    repo.commit_point(
        vm, point_id, shipped, parent=parent, meta={"source": "kvm-a"},
        source_config=("kvm", config.model_dump_json().encode()),
    )  # fmt: skip
    result = repo.verify_point(vm, point_id, mark=True)
    assert result.ok, result
    info = next(p for p in repo.list_points(vm) if p.point_id == point_id)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return SeededPoint(vm, point_id, info.created_at, data, backup_s)


def site_lists(lab: LabInfo, site: str) -> dict[str, list[str]]:
    """Domains, volumes and networks at a KVM site: what cleanup must leave as it found."""
    info = lab.kvm[site]
    conn = libvirt.open(info.uri)
    try:
        pool = conn.storagePoolLookupByName(info.pool)
        pool.refresh(0)
        return {
            "domains": sorted(d.name() for d in conn.listAllDomains(0)),
            "volumes": sorted(v.name() for v in pool.listAllVolumes(0)),
            "networks": sorted(n.name() for n in conn.listAllNetworks(0)),
            "files": sorted(p.name for p in Path(info.pool_dir).iterdir()),
        }
    finally:
        conn.close()


def domain_facts(lab: LabInfo, site: str, name: str) -> dict[str, Any]:
    """What libvirt says of a domain: running, its networks, vcpus, memory, disk files."""
    conn = libvirt.open(lab.kvm[site].uri)
    try:
        dom = conn.lookupByName(name)
        root = ET.fromstring(dom.XMLDesc(0))
        return {
            "active": bool(dom.isActive()),
            "uuid": dom.UUIDString(),
            "networks": [s.get("network") for s in root.findall("devices/interface/source")],
            "vcpus": int(root.findtext("vcpu") or 0),
            "memory_kib": int(root.findtext("memory") or 0),
            "disks": [s.get("file") for s in root.findall("devices/disk/source")],
        }
    finally:
        conn.close()


def purge_new(lab: LabInfo, site: str, before: dict[str, list[str]]) -> None:
    """After a failed test: remove the domains, volumes and files that were not at ``site`` before, so the
    next test starts from the same site (a passing test has already left nothing)."""
    from seawall.sites.kvm.libvirtops import remove_domain

    info = lab.kvm[site]
    conn = libvirt.open(info.uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name() not in before["domains"]:
                remove_domain(dom)
        pool = conn.storagePoolLookupByName(info.pool)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if vol.name() not in before["volumes"]:
                vol.delete(0)
        for path in Path(info.pool_dir).iterdir():
            if path.name not in before["files"]:
                path.unlink()
        pool.refresh(0)
    finally:
        conn.close()
