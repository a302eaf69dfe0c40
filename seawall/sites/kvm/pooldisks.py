"""The point's disks on their way into a KVM target: the captured domain XML, disk order, qcow2 files.

``materialize`` in ``target.py`` uses these: the source domain's XML sealed with the point, which
materialized volume is which of the domain's disks, and writing one restored disk into the pool as
qcow2 (a sparse raw ``.raw.part``, ``qemu-img convert`` to ``.part``, renamed into place when whole).
Separate from the libvirt verbs because none of it talks to libvirt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from seawall.blockstore.readback import Writeback
from seawall.sites.base import PointReader, SiteError
from seawall.sites.kvm import domxml
from seawall.sites.kvm.identity import SeedError, run_tool


def captured_domain_xml(reader: PointReader) -> tuple[str, dict[str, str]]:
    """The source domain's XML stored with the point, and its disks' target devs -> replica disk names.

    The KVM source captures it with every point (``SourceConfig.document["domain_xml"]``, sealed in the
    replica store); a point from another kind has none, and a KVM target does not invent a machine.
    """
    config = reader.source_config()
    xml = config.document.get("domain_xml") if config is not None and config.kind == "kvm" else None
    if not isinstance(xml, str) or not xml:
        kind = config.kind if config is not None else "no"
        raise SiteError(
            f"point {reader.point_id} has {kind} source configuration, no captured libvirt domain: a KVM "
            "target re-creates the source's machine from the domain XML a KVM source stores with each point",
            "PlanInvalid",
        )
    devs = {
        str(d["dev"]): str(d["disk"])
        for d in config.document.get("disks", [])  # type: ignore[union-attr]
        if isinstance(d, dict) and "dev" in d and "disk" in d
    }
    return xml, devs


def ordered_disks(xml: str, devs: dict[str, str], made: dict[str, str]) -> list[str]:
    """The materialized volume of each of the domain's disks, in the XML's order.

    ``made``: replica disk name -> volume path. Disks pair by target dev where the point recorded it,
    else by position (``disk0`` is the first disk), as the KVM source names them.
    """
    out = []
    for index, (dev, _source) in enumerate(domxml.disk_sources(xml)):
        name = devs.get(dev, f"disk{index}")
        if name not in made:
            raise SiteError(
                f"the domain's disk {dev} ({name}) is not in the point (it has {sorted(made)})", "PlanInvalid"
            )
        out.append(made[name])
    return out


def write_disk(
    path: Path,
    size: int,
    restore: Callable[[Callable[[int, bytes], None]], object],
    progress: Callable[[int], None],
) -> None:
    """Restore a disk into ``path`` as qcow2: a sparse raw ``.raw.part`` then ``qemu-img convert``."""
    raw = path.with_name(path.name + ".raw.part")
    part = path.with_name(path.name + ".part")
    with open(raw, "wb") as out:
        out.truncate(size)
        fd = out.fileno()
        last = [0.0]
        behind = Writeback(fd)  # the disk writes as the restore goes: the fsync waits for the tail

        def write(offset: int, data: bytes) -> None:
            if offset < 0 or offset + len(data) > size:
                raise SiteError(f"restore wrote outside {size} bytes (at {offset})")
            os.pwrite(fd, data, offset)
            behind.wrote(offset, len(data))
            now = time.monotonic()
            if now - last[0] > 2:
                last[0] = now
                progress(offset + len(data))

        try:
            restore(write)
        finally:
            behind.close()  # no advice may outlive the fd
        out.flush()
        os.fsync(fd)
    try:
        run_tool(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(part)])
    except SeedError as exc:
        raise SiteError(f"{path.name}: {exc}", retryable=True) from None
    finally:
        raw.unlink(missing_ok=True)
    os.replace(part, path)
