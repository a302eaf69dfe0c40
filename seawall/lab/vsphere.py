"""Read each vcsim site of the lab back (``describe``) and check its health (``check``, ``ping``).

What a site contains is ``vsphere_spec.py``, building it ``vsphere_build.py``, the API helpers
``vsphere_api.py``. vcsim 0.24 panics when ``guestHeartbeatStatus`` is read, so this module reads only
named properties through the property collector, never whole managed objects.
"""

from __future__ import annotations

from pyVmomi import vim

from seawall.lab import config as c
from seawall.lab.info import LabDisk, LabVM, VSphereSiteInfo
from seawall.lab.vsphere_api import collect, connect, find_datacenter
from seawall.lab.vsphere_spec import SiteSpec, disk_names


def describe(spec: SiteSpec) -> VSphereSiteInfo:
    """Read the site back from vcsim (not from the spec): the LabInfo shows what really exists."""
    with connect(spec.port) as si:
        host_rows = collect(si, vim.HostSystem, ["name"])
        host_names = {row["obj"]._moId: row["name"] for row in host_rows}
        nets = [row["name"] for row in collect(si, vim.dvs.DistributedVirtualPortgroup, ["name"])]
        vm_rows = collect(
            si, vim.VirtualMachine, ["name", "config.hardware.device", "runtime.host", "network"]
        )
        net_names = {row["obj"]._moId: row["name"] for row in collect(si, vim.Network, ["name"])}
    # Only the lab's own VMs: other tests create VMs at both sites (recoveries, drills) and LabInfo
    # describes what the lab built, not what happens to be there.
    ours = sorted((r for r in vm_rows if r["name"] in spec.vms), key=lambda r: spec.vms.index(r["name"]))
    vms: list[LabVM] = []
    for row in ours:
        devices = [
            d for d in row.get("config.hardware.device", []) if isinstance(d, vim.vm.device.VirtualDisk)
        ]
        devices.sort(key=lambda d: (d.controllerKey, d.unitNumber))
        disks = []
        for index, dev in enumerate(devices[: spec.disk_count(row["name"])]):
            # The base disk's names, not the current backing's: while a snapshot exists the backing
            # is its delta file, and LabInfo must keep pointing at the disk the lab made and filled.
            descriptor, flat = disk_names(row["name"], index)
            disks.append(
                LabDisk(
                    label=dev.deviceInfo.label if dev.deviceInfo else f"disk {dev.unitNumber}",
                    unit=dev.unitNumber,
                    datastore_path=f"[{spec.datastore}] {descriptor}",
                    flat_name=flat,
                    file=spec.datastore_dir / flat,
                    capacity_bytes=dev.capacityInBytes or dev.capacityInKB * 1024,
                )
            )
        networks = [net_names.get(n._moId, n._moId) for n in row.get("network", [])]
        vms.append(
            LabVM(
                name=row["name"],
                network=networks[0] if networks else "",
                host=host_names.get(row["runtime.host"]._moId, ""),
                disks=disks,
            )
        )
    return VSphereSiteInfo(
        site=spec.site,
        host=c.HOST,
        port=spec.port,
        user=c.VSPHERE_USER,
        password=c.VSPHERE_PASSWORD,
        credentials_file=spec.credentials_file,
        datacenter=spec.datacenter,
        cluster=spec.cluster,
        hosts=sorted(host_names.values()),
        datastore=spec.datastore,
        datastore_dir=spec.datastore_dir,
        switch=spec.switch,
        networks=[n for n in spec.all_networks() if n in nets],
        isolated_networks=[n for n in spec.isolated_networks if n in nets],
        vms=vms,
    )


def check(spec: SiteSpec) -> str:
    """Health: the API answers and the site's inventory is there. Raises with the reason when not."""
    with connect(spec.port, timeout=5) as si:
        about = si.RetrieveContent().about.fullName
        if find_datacenter(si, spec.datacenter) is None:
            raise RuntimeError(f"{about} answers but has no datacenter {spec.datacenter}")
        names = {row["name"] for row in collect(si, vim.VirtualMachine, ["name"])}
    missing = [vm for vm in spec.vms if vm not in names]
    if missing:
        raise RuntimeError(f"{spec.datacenter} lacks VMs {', '.join(missing)}")
    return f"{spec.datacenter}, {len(names)} VMs"


def ping(port: int) -> str:
    """Readiness of a fresh vcsim: the API answers (no inventory yet)."""
    with connect(port, timeout=2) as si:
        about: str = si.RetrieveContent().about.fullName
    return about
