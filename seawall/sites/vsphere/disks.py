"""A recovery point's disk streamed onto a vSphere datastore, committed by a marker; found again on retry.

``materialize_disk`` streams a recovery point's disk onto the target datastore over the datastore
file service (``PUT /folder/<dir>/<disk>-flat.vmdk``) plus a monolithic-flat descriptor
(``<disk>.vmdk``), then commits it with a sidecar marker (``<disk>.seawall.json``) naming the source
digest, size and SHA-256 of the bytes sent. Only a matching marker makes a retry skip the upload.

The bytes travel through ``datastorewrite`` (the file service's write side).

Observed on vcsim (govmomi 0.24): ``PUT /folder/...`` copies whatever body arrives and answers 200
even when the body was cut short (``io.Copy`` error ignored): the uploaded size must be checked
(``HEAD``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.datastorewrite import (
    RestoreFn,
    _check_readback,
    _file_session,
    _head_size,
    _put_small,
    _read_marker,
    _stream_upload,
    _url,
)
from seawall.sites.vsphere.session import VSphereError

__all__ = ["UploadedDisk", "descriptor_text", "materialize_disk"]

KIB = 1024
MARKER_VERSION = 1


@dataclass(frozen=True)
class UploadedDisk:
    """A disk on the target datastore, ready to attach."""

    datastore: str
    descriptor: str  # "dir/disk.vmdk", relative to the datastore root
    flat: str  # "dir/disk-flat.vmdk"
    size: int  # bytes in the flat file: the source size rounded up to a KiB (what vSphere can express)
    source_size: int
    sha256: str  # of the flat file's bytes
    source_digest: str  # the recovery point's digest of the disk: what the marker commits to
    uploaded: bool  # False when a committed earlier upload was found and kept

    @property
    def datastore_path(self) -> str:
        return f"[{self.datastore}] {self.descriptor}"

    @property
    def capacity_kb(self) -> int:
        return self.size // KIB


def descriptor_text(flat_name: str, size: int, *, adapter: str = "lsilogic") -> str:
    """A monolithic-flat ``.vmdk`` descriptor for a ``-flat.vmdk`` extent of ``size`` bytes.

    ESXi opens a disk through its descriptor; the extent file alone is not a disk there (vcsim is
    content with the extent, but the descriptor costs nothing and keeps us honest).
    """
    if size % 512:
        raise ValueError(f"a disk extent must be whole 512-byte sectors, got {size} bytes")
    sectors = size // 512
    # The classic BIOS geometry ESXi writes for large disks: 255 heads, 63 sectors per track.
    cylinders = max(1, min(65535, sectors // (255 * 63)))
    cid = hashlib.sha256(f"{flat_name}/{size}".encode()).hexdigest()[:8]
    return (
        "# Disk DescriptorFile\n"
        "version=1\n"
        'encoding="UTF-8"\n'
        f"CID={cid}\n"
        "parentCID=ffffffff\n"
        'createType="vmfs"\n'
        "\n"
        "# Extent description\n"
        f'RW {sectors} VMFS "{flat_name}"\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        f'ddb.adapterType = "{adapter}"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        'ddb.geometry.heads = "255"\n'
        'ddb.geometry.sectors = "63"\n'
        'ddb.virtualHWVersion = "13"\n'
    )


def _committed(
    session: requests.Session,
    marker: dict[str, Any],
    source_digest: str,
    total: int,
    flat_url: str,
    descriptor_url: str,
    timeout: float,
) -> bool:
    """Whether the marker commits to this content and size, and the extent and descriptor are there."""
    return (
        marker.get("state") == "complete"
        and marker.get("source_digest") == source_digest
        and marker.get("size") == total
        and _head_size(session, flat_url, timeout) == total
        and _head_size(session, descriptor_url, timeout) is not None
    )


def materialize_disk(
    conn: VSphereConnection,
    *,
    datastore: str,
    datacenter: str,
    vm_dir: str,
    disk_name: str,
    size: int,
    source_digest: str,
    restore: RestoreFn,
    readback: bool = False,
    replace: bool = False,
    timeout: float = 3600.0,
    on_progress: Callable[[int], None] | None = None,
) -> UploadedDisk:
    """Put a recovery point's disk on ``datastore`` as ``vm_dir/disk_name.vmdk`` (+ ``-flat.vmdk``).

    ``restore(writer)`` writes the disk's bytes in increasing offsets (zero runs may be skipped) and
    raises if a block or the whole-disk digest does not verify; ``source_digest`` (the point's
    digest of this disk) identifies the content. Idempotent: when the committed marker names the
    same digest and size and the extent on the datastore has that size, nothing is uploaded.
    ``readback`` re-reads the whole extent and compares its SHA-256 (costs a second transfer).
    A committed copy of *other* content is not overwritten unless ``replace``: a VM may already run
    on it, and a run never changes its recovery point half-way.
    ``on_progress(bytes_sent)`` is called about every 64 MiB (heartbeat from there).
    """
    if size < 0:
        raise ValueError("size must not be negative")
    total = max(KIB, -(-size // KIB) * KIB)  # vSphere capacities are whole KiB; an empty disk is 1 KiB
    descriptor = f"{vm_dir}/{disk_name}.vmdk"
    flat = f"{vm_dir}/{disk_name}-flat.vmdk"
    marker_path = f"{vm_dir}/{disk_name}.seawall.json"
    flat_url = _url(conn, datastore, datacenter, flat)
    marker_url = _url(conn, datastore, datacenter, marker_path)
    small = min(timeout, 120.0)
    session = _file_session(conn)
    try:
        marker = _read_marker(session, marker_url, small)
        descriptor_url = _url(conn, datastore, datacenter, descriptor)
        if marker is not None and _committed(
            session, marker, source_digest, total, flat_url, descriptor_url, small
        ):
            sha = str(marker["sha256"])
            if readback:
                _check_readback(session, flat_url, sha, timeout)
            return UploadedDisk(datastore, descriptor, flat, total, size, sha, source_digest, uploaded=False)
        has_commit = marker is not None and marker.get("state") == "complete"
        if has_commit and not replace and marker and marker.get("source_digest") != source_digest:
            raise VSphereError(
                f"{flat} on {datastore} already holds another recovery point "
                f"({marker.get('source_digest')}); pass replace=True to overwrite it"
            )
        # Whatever is there is not a committed copy of this content: say so before touching the
        # extent, so a crash mid-upload can never leave a marker that vouches for a torn file.
        _put_small(session, marker_url, json.dumps({"state": "uploading"}).encode(), small)
        sha = _stream_upload(session, flat_url, size, total, restore, timeout, on_progress)
        got = _head_size(session, flat_url, small)
        if got != total:
            raise VSphereError(f"{flat} on {datastore} holds {got} bytes after the upload, expected {total}")
        _put_small(session, descriptor_url, descriptor_text(flat.rsplit("/", 1)[-1], total).encode(), small)
        if readback:
            _check_readback(session, flat_url, sha, timeout)
        committed = {
            "state": "complete",
            "version": MARKER_VERSION,
            "source_digest": source_digest,
            "source_size": size,
            "size": total,
            "sha256": sha,
            "flat": flat,
        }
        _put_small(session, marker_url, json.dumps(committed, sort_keys=True).encode(), small)
        return UploadedDisk(datastore, descriptor, flat, total, size, sha, source_digest, uploaded=True)
    except requests.RequestException as exc:
        raise VSphereError(f"datastore file service of {conn.describe()} failed: {exc}") from exc
    finally:
        session.close()
