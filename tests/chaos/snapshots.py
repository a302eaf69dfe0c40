"""Seawall's snapshots on the lab's source VMs, read from vcsim."""

from __future__ import annotations

from collections.abc import Iterable

from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection


def seawall_snapshots(lab: LabInfo, vms: Iterable[str] | None = None) -> dict[str, list[str]]:
    """The VMs of the lab's primary vSphere site (or ``vms``) that hold Seawall snapshots
    (``seawall-*``), with their names."""
    site = lab.vsphere["primary"]
    out: dict[str, list[str]] = {}
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        for vm in vms if vms is not None else [v.name for v in site.vms]:
            snap = conn.properties(conn.find_vm(vm), ["snapshot"]).get("snapshot")
            names: list[str] = []
            stack = list(snap.rootSnapshotList or []) if snap is not None else []
            while stack:
                tree = stack.pop()
                names.append(tree.name)
                stack.extend(tree.childSnapshotList or [])
            found = [n for n in names if n.startswith("seawall-")]
            if found:
                out[vm] = sorted(found)
    return out
