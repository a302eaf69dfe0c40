"""Shared set-up for KVM source tests: an inventory protecting a lab guest of kvm-a, and what the test
sees of the domain's backup jobs and checkpoints through its own libvirt and libnbd handles."""

from __future__ import annotations

import contextlib
import hashlib
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import nbd
import yaml

from seawall.lab import LabInfo

ROOT = Path(__file__).resolve().parents[2]


def write_kvm_inventory(tmp: Path, lab: LabInfo, lab_state: Path, vm: str = "kdb-01") -> Path:
    """kvm-a (source) and kvm-b (target) as the lab runs them; ``vm`` protected every 30 s."""
    sites = []
    for name in ("kvm-a", "kvm-b"):
        info = lab.kvm[name]
        sites.append(
            {
                "name": name,
                "kind": "kvm",
                "uri": info.uri,
                "pool": info.pool,
                "shutdown_grace": "5s",
                "networks": [
                    {"name": n.name, "cidr": n.subnet, "isolated": n.isolated} for n in info.networks
                ],
            }
        )
    data = {
        "kind": "Inventory",
        "sites": sites,
        "replica_stores": [{"name": "local", "kind": "directory", "path": str(tmp / "replica")}],
        "policies": [
            {
                "name": "rpo-30s",
                "interval": "30s",
                "retention_count": 20,
                "key_ref": f"file:{lab_state / 'keys' / 'replica.key'}",
            }
        ],
        "protected_vms": [
            {
                "name": vm,
                "source_site": "kvm-a",
                "policy": "rpo-30s",
                "replica_store": "local",
                "target_sites": ["kvm-b"],
            }
        ],
    }
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def domain(lab: LabInfo, vm: str = "kdb-01", site: str = "kvm-a") -> Any:
    conn = libvirt.open(lab.kvm[site].uri)
    return conn.lookupByName(vm)


def backup_job_xml(dom: Any) -> str | None:
    """The domain's running backup job as libvirt describes it, or None."""
    try:
        return str(dom.backupGetXMLDesc())
    except libvirt.libvirtError:
        return None


def checkpoint_names(dom: Any) -> list[str]:
    return sorted(cp.getName() for cp in dom.listAllCheckpoints())


def clear_checkpoints(dom: Any) -> None:
    """End any backup job and drop every checkpoint: each test starts from a domain with no chain."""
    deadline = time.monotonic() + 30
    while backup_job_xml(dom) is not None:  # abortJob returns before the job is gone
        with contextlib.suppress(libvirt.libvirtError):
            dom.abortJob()
        assert time.monotonic() < deadline, "the domain's backup job does not end"
        time.sleep(0.1)
    for cp in dom.listAllCheckpoints():
        with contextlib.suppress(libvirt.libvirtError):
            cp.delete()


@dataclass
class Observed:
    """One backup job as the test read it: per disk the dirty bytes the bitmap reports (None: a full
    export has no bitmap) and the SHA-256 of the whole export."""

    point: str
    dirty: dict[str, int | None] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)


def observe_job(dom: Any) -> Observed:
    """Read the running job's exports with the test's own libnbd: bitmap extents and every byte."""
    root = ET.fromstring(backup_job_xml(dom) or "<none/>")
    server = root.find("server")
    assert server is not None, "no backup job runs"
    socket = server.get("socket")
    newest = max(
        dom.listAllCheckpoints(),
        key=lambda c: int(ET.fromstring(c.getXMLDesc(1)).findtext("creationTime") or 0),
    )
    seen = Observed(point=newest.getName())
    for el in root.findall("./disks/disk"):
        if el.get("backup") != "yes":
            continue
        dev, export, bitmap = el.get("name"), el.get("exportname"), el.get("exportbitmap")
        h = nbd.NBD()
        context = f"qemu:dirty-bitmap:{bitmap}" if bitmap else None
        if context:
            h.add_meta_context(context)
        h.set_export_name(export)
        h.connect_unix(socket)
        size = h.get_size()
        if context:
            dirty = 0
            offset = 0
            while offset < size:
                got: list[tuple[int, int]] = []

                def cb(
                    meta: str,
                    _start: int,
                    entries: list[int],
                    _err: Any,
                    got: Any = got,
                    context: Any = context,
                ) -> int:
                    if meta == context:
                        got.extend(zip(entries[0::2], entries[1::2], strict=False))
                    return 0

                h.block_status(min(1 << 30, size - offset), offset, cb)
                for length, flags in got:
                    length = min(length, size - offset)
                    if flags & 1:
                        dirty += length
                    offset += length
            seen.dirty[str(dev)] = dirty
        else:
            seen.dirty[str(dev)] = None
        digest = hashlib.sha256()
        for off in range(0, size, 8 << 20):
            digest.update(h.pread(min(8 << 20, size - off), off))
        seen.sha256[str(dev)] = digest.hexdigest()
        h.shutdown()
    return seen
