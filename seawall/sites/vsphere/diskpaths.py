"""vSphere disks as a replication reader sees them, and datastore paths and their file-service URLs.

Pure: no session, no calls; ``client.py`` reads the devices and snapshots these describe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from pyVmomi import vim


@dataclass(frozen=True)
class DiskInfo:
    """One virtual disk as a replication reader needs it."""

    key: int
    label: str
    capacity_bytes: int
    file_name: str  # "[ds] dir/name.vmdk", the descriptor vSphere names as the backing
    datastore: str
    change_id: str | None
    # A delta (child) disk has a parent; reading its -flat file would not give the disk's content.
    is_delta: bool
    backing_type: str


def parse_datastore_path(datastore_path: str) -> tuple[str, str]:
    """``"[ds] dir/file.vmdk"`` -> ``("ds", "dir/file.vmdk")``."""
    text = datastore_path.strip()
    if not text.startswith("["):
        raise ValueError(f"not a datastore path (expected '[datastore] path'): {datastore_path!r}")
    end = text.find("]")
    if end <= 1:
        raise ValueError(f"not a datastore path (empty or unclosed datastore name): {datastore_path!r}")
    return text[1:end], text[end + 1 :].strip().lstrip("/")


def flat_extent_path(descriptor_path: str) -> str:
    """The data extent of a monolithic-flat disk: ``dir/vm.vmdk`` -> ``dir/vm-flat.vmdk``."""
    if descriptor_path.endswith("-flat.vmdk"):
        return descriptor_path
    if not descriptor_path.endswith(".vmdk"):
        raise ValueError(f"not a .vmdk path: {descriptor_path!r}")
    return descriptor_path[: -len(".vmdk")] + "-flat.vmdk"


def build_datastore_url(
    base_url: str, datastore_path: str, datacenter_path: str, *, flat: bool = True
) -> str:
    """URL of a datastore file on vCenter's (or ESXi's) ``/folder`` file service.

    ``base_url`` is ``http(s)://host:port``; ``datacenter_path`` the datacenter's inventory path
    (``DC0`` or ``folder/DC0``).
    """
    datastore, path = parse_datastore_path(datastore_path)
    if flat:
        path = flat_extent_path(path)
    query = urlencode({"dcPath": datacenter_path, "dsName": datastore})
    return f"{base_url.rstrip('/')}/folder/{quote(path, safe='/')}?{query}"


def _disk_from_device(device: Any) -> DiskInfo:
    backing = device.backing
    file_name = str(getattr(backing, "fileName", "") or "")
    capacity = getattr(device, "capacityInBytes", None)
    if not capacity:
        # Older servers (and vcsim) fill in only the KiB figure.
        capacity = int(getattr(device, "capacityInKB", 0) or 0) * 1024
    label = str(getattr(getattr(device, "deviceInfo", None), "label", "") or f"disk-{device.key}")
    datastore = ""
    if file_name.startswith("["):
        datastore = parse_datastore_path(file_name)[0]
    return DiskInfo(
        key=int(device.key),
        label=label,
        capacity_bytes=int(capacity),
        file_name=file_name,
        datastore=datastore,
        change_id=getattr(backing, "changeId", None) or None,
        is_delta=getattr(backing, "parent", None) is not None,
        backing_type=type(backing).__name__,
    )


def disks_from_devices(devices: Iterable[Any]) -> list[DiskInfo]:
    return [_disk_from_device(d) for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
