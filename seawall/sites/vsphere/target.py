"""Recover a VM into a vSphere site: upload its disks, create it, re-address it, power it on, find it again.

Everything is blocking pyvmomi/HTTP, called from activity threads, and every create is idempotent
by a deterministic name chosen by the caller (a retried activity finds what it made):

- ``materialize_disk`` streams a recovery point's disk onto the target datastore over the
  datastore file service (``PUT /folder/<dir>/<disk>-flat.vmdk``) plus a monolithic-flat descriptor
  (``<disk>.vmdk``), then commits it with a sidecar marker (``<disk>.seawall.json``) naming the
  source digest, size and SHA-256 of the bytes sent. Only a matching marker makes a retry skip
  the upload.
- ``create_vm`` creates the VM over those files (``CreateVM_Task``, disks attached as existing
  files, NICs on port groups found by name) and tags it in ``config.annotation`` and
  ``config.extraConfig``; a VM that already has the name is returned only when its tag names the
  same run, otherwise it is someone else's and the call fails.
- ``customize_ip`` (``CustomizeVM_Task``, Linux prep, fixed IP or DHCP per NIC), ``power_on``,
  ``wait_guest_ip`` (``guest.ipAddress``/``guest.net``/``guest.hostName`` only).
- ``destroy_vm``, ``find_run_vms``, ``delete_datastore_path`` for cleanup; ``ensure_network`` /
  ``remove_network`` for per-run isolated port groups.

Why the disk upload streams instead of restoring into a local temp file first: a DR worker would
need scratch space as large as the largest disk (terabytes), and restoring then uploading doubles
the wall time; streamed, decrypt/decompress/verify overlap the upload and memory stays bounded (a
small queue). The catch is that the repository checks the whole-disk digest only after the last
block, so the pipe holds the last piece back until ``restore`` has returned cleanly: a failed
verification leaves a short file (the request carries a ``Content-Length``, so the server and our
size check both see it short) and no committed marker. The datastore service has no ranged or
append PUT, so an interrupted upload restarts from offset 0.

Observed on vcsim (govmomi 0.24):

- ``PUT /folder/...`` copies whatever body arrives and answers 200 even when the body was cut
  short (``io.Copy`` error ignored): the uploaded size must be checked (``HEAD``).
- ``CreateVM_Task`` with a disk whose ``fileOperation`` is unset attaches an existing
  ``<disk>-flat.vmdk`` (``FileNotFound`` otherwise); a ``vmPathName`` ending in ``.vmx`` reuses an
  existing directory, while a bare directory name would be renamed ``<dir> (0)``. A leftover
  ``.vmx`` (a create that died half-way) makes the next create fail with ``FileAlreadyExists``.
- ``CustomizeVM_Task`` needs one NIC setting per NIC, refuses a powered-on VM and a pending
  customization; the addresses show in ``guest.net``/``guest.ipAddress`` after power-on.
- ``Destroy_Task`` deletes the VM's directory, uploaded disks included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from pyVmomi import vim

from seawall.model.ipplan import NicPlan
from seawall.sites.vsphere.client import (
    SESSION_COOKIE,
    VSphereConnection,
    VSphereError,
    VSphereNotFound,
    VSphereTaskError,
    build_datastore_url,
)
from seawall.sites.vsphere.source import parse_content_range

__all__ = [
    "GuestInfo",
    "NicSpec",
    "Placement",
    "RunTag",
    "UploadedDisk",
    "Writer",
    "create_vm",
    "customize_ip",
    "delete_datastore_path",
    "descriptor_text",
    "destroy_vm",
    "ensure_network",
    "find_run_vms",
    "find_vm_or_none",
    "materialize_disk",
    "power_on",
    "read_guest",
    "remove_network",
    "resolve_placement",
    "wait_guest_ip",
]

log = logging.getLogger(__name__)

Writer = Callable[[int, bytes], None]
RestoreFn = Callable[[Writer], object]
"""Given a writer, write the disk through it in increasing offsets (``Repository.restore_disk``)."""

MiB = 1024 * 1024
KIB = 1024
_ZERO_CHUNK = bytes(MiB)
MARKER_VERSION = 1
ANNOTATION_HEADER = "Recovered by Seawall"


# ---- disks ------------------------------------------------------------------------------------


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


class _UploadAborted(Exception):
    """The upload side stopped reading; the restore side must stop writing."""


class _Pipe:
    """A bounded hand-off from the restore thread (``write``) to the HTTP body (``__iter__``).

    Gaps between writes (zero blocks a sparse restore skipped) and the tail after the last write
    become zeros without being allocated. The last data piece is held back until ``finish``, i.e.
    until the restore has verified the whole disk, so an unverified disk never reaches full length.
    """

    _END = object()

    def __init__(self, size: int, total: int, depth: int = 8) -> None:
        self.size = size  # bytes the restore writes at most
        self.total = total  # bytes the body carries (size padded to whole KiB)
        self._q: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._next = 0
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.sent = 0
        self.sha = hashlib.sha256()

    def __len__(self) -> int:
        # requests sends a Content-Length (not chunked) for a body with a length.
        return self.total

    def _put(self, item: object) -> None:
        while True:
            if self._stop.is_set():
                raise _UploadAborted("the upload stopped reading")
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def write(self, offset: int, data: bytes) -> None:
        if offset < self._next:
            raise ValueError(f"restore wrote offset {offset} after {self._next}: writes must move forward")
        if offset + len(data) > self.size:
            raise ValueError(f"restore wrote past the disk's end ({offset + len(data)} > {self.size})")
        if offset > self._next:
            self._put(offset - self._next)
        self._put(bytes(data))
        self._next = offset + len(data)

    def finish(self, error: BaseException | None) -> None:
        if error is not None:
            self.error = error
        self._put(error if error is not None else self._END)

    def abort(self) -> None:
        self._stop.set()

    def _emit(self, piece: bytes | int) -> Iterator[bytes]:
        if isinstance(piece, int):
            left = piece
            while left:
                chunk = _ZERO_CHUNK[: min(left, len(_ZERO_CHUNK))]
                left -= len(chunk)
                yield from self._emit(chunk)
            return
        self.sha.update(piece)
        self.sent += len(piece)
        yield piece

    def __iter__(self) -> Iterator[bytes]:
        held: bytes | int | None = None
        while True:
            item = self._q.get()
            if item is self._END:
                break
            if isinstance(item, BaseException):
                raise item
            if held is not None:
                yield from self._emit(held)
            held = item  # type: ignore[assignment]
        if held is not None:
            yield from self._emit(held)
        if self.total > self.sent:
            yield from self._emit(self.total - self.sent)


def _file_session(conn: VSphereConnection) -> requests.Session:
    session = requests.Session()
    session.verify = conn.verify_tls
    # Quoted, as pyVmomi sends it; vCenter expects the quotes.
    session.headers["Cookie"] = f'{SESSION_COOKIE}="{conn.session_cookie()}"'
    session.headers["Accept-Encoding"] = "identity"
    return session


def _url(conn: VSphereConnection, datastore: str, datacenter: str, path: str) -> str:
    return build_datastore_url(conn.base_url, f"[{datastore}] {path}", datacenter, flat=False)


def _head_size(session: requests.Session, url: str, timeout: float) -> int | None:
    """The size of a datastore file, None when it does not exist."""
    response = session.head(url, timeout=timeout, allow_redirects=False)
    if response.status_code == 404:
        return None
    length = response.headers.get("Content-Length")
    if response.status_code == 200 and length is not None:
        return int(length)
    # A file service that does not answer HEAD (or without a length): ask for one byte instead.
    with session.get(url, headers={"Range": "bytes=0-0"}, timeout=timeout, stream=True) as ranged:
        if ranged.status_code == 404:
            return None
        if ranged.status_code == 416:
            return 0
        if ranged.status_code == 206:
            _, _, total = parse_content_range(ranged.headers.get("Content-Range"))
            if total is not None:
                return total
        if ranged.status_code == 200 and ranged.headers.get("Content-Length") is not None:
            return int(ranged.headers["Content-Length"])
    raise VSphereError(f"cannot learn the size of {url.split('?')[0]} (HTTP {response.status_code})")


def _put_small(session: requests.Session, url: str, body: bytes, timeout: float) -> None:
    response = session.put(
        url, data=body, timeout=timeout, headers={"Content-Type": "application/octet-stream"}
    )
    if response.status_code not in (200, 201, 204):
        raise VSphereError(f"PUT {url.split('?')[0]} answered {response.status_code}: {response.text[:200]}")


def _read_marker(session: requests.Session, url: str, timeout: float) -> dict[str, Any] | None:
    response = session.get(url, timeout=timeout)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise VSphereError(f"GET {url.split('?')[0]} answered {response.status_code}")
    try:
        marker = json.loads(response.content)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) else None


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
        if (
            marker is not None
            and marker.get("state") == "complete"
            and marker.get("source_digest") == source_digest
            and marker.get("size") == total
            and _head_size(session, flat_url, small) == total
            and _head_size(session, _url(conn, datastore, datacenter, descriptor), small) is not None
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
        _put_small(
            session,
            _url(conn, datastore, datacenter, descriptor),
            descriptor_text(flat.rsplit("/", 1)[-1], total).encode(),
            small,
        )
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


def _stream_upload(
    session: requests.Session,
    url: str,
    size: int,
    total: int,
    restore: RestoreFn,
    timeout: float,
    on_progress: Callable[[int], None] | None,
) -> str:
    pipe = _Pipe(size, total)
    next_report = 64 * MiB

    def writer(offset: int, data: bytes) -> None:
        nonlocal next_report
        pipe.write(offset, data)
        if on_progress is not None and offset + len(data) >= next_report:
            on_progress(offset + len(data))
            next_report += 64 * MiB

    def run() -> None:
        error: BaseException | None = None
        try:
            restore(writer)
        except _UploadAborted:
            return
        except BaseException as exc:
            error = exc
        with contextlib.suppress(_UploadAborted):
            pipe.finish(error)

    thread = threading.Thread(target=run, name="seawall-restore-upload", daemon=True)
    thread.start()
    try:
        response = session.put(
            url,
            data=pipe,
            timeout=(30.0, timeout),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)},
        )
    except requests.RequestException:
        if pipe.error is not None:
            raise pipe.error from None
        raise
    except BaseException:
        if pipe.error is not None:
            raise pipe.error from None
        raise
    finally:
        pipe.abort()
        thread.join(timeout=60.0)
    if pipe.error is not None:
        raise pipe.error
    if response.status_code not in (200, 201, 204):
        raise VSphereError(f"PUT {url.split('?')[0]} answered {response.status_code}: {response.text[:200]}")
    if pipe.sent != total:
        raise VSphereError(f"upload of {url.split('?')[0]} sent {pipe.sent} bytes, expected {total}")
    if on_progress is not None:
        on_progress(total)
    return pipe.sha.hexdigest()


def _check_readback(session: requests.Session, url: str, sha256: str, timeout: float) -> None:
    digest = hashlib.sha256()
    with session.get(url, stream=True, timeout=(30.0, timeout)) as response:
        if response.status_code != 200:
            raise VSphereError(f"GET {url.split('?')[0]} answered {response.status_code}")
        for chunk in response.iter_content(MiB):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise VSphereError(f"{url.split('?')[0]} reads back different bytes than were uploaded")


def delete_datastore_path(
    conn: VSphereConnection, datastore: str, datacenter: str, path: str, *, timeout: float | None = None
) -> bool:
    """Delete a file or directory on the datastore; False when it was already gone."""
    dc = _datacenter(conn, datacenter)
    file_manager = conn.content.fileManager
    name = f"[{datastore}] {path}"
    try:
        conn.run_task(
            f"delete {name}",
            lambda: file_manager.DeleteDatastoreFile_Task(name=name, datacenter=dc),
            timeout=timeout,
        )
    except VSphereTaskError as exc:
        if "FileNotFound" in str(exc) or "CannotDeleteFile" in str(exc):
            # vcsim reports a missing file as CannotDeleteFile; gone is what we wanted.
            return False
        raise
    return True


# ---- placement and networks -------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a new VM goes: datacenter, its VM folder, a resource pool, optionally a host."""

    datacenter: Any
    folder: Any
    pool: Any
    host: Any | None
    datastore: str
    datacenter_name: str


def _datacenter(conn: VSphereConnection, name: str) -> Any:
    for obj, props in conn.list_objects(vim.Datacenter, ["name"]):
        if props.get("name") == name:
            return obj
    raise VSphereNotFound(f"no datacenter named {name!r} on {conn.describe()}")


def resolve_placement(
    conn: VSphereConnection,
    datacenter: str,
    datastore: str,
    *,
    cluster: str | None = None,
    host: str | None = None,
    pool: str | None = None,
) -> Placement:
    """Find the folder, resource pool and host for new VMs (default: the datacenter's first cluster)."""
    dc = _datacenter(conn, datacenter)
    dc_props = conn.properties(dc, ["vmFolder"])
    clusters = [
        (obj, props)
        for obj, props in conn.list_objects(vim.ClusterComputeResource, ["name", "resourcePool"])
        if conn.datacenter_path(obj) == conn.datacenter_path(dc)
    ]
    if cluster is not None:
        clusters = [(o, p) for o, p in clusters if p.get("name") == cluster]
        if not clusters:
            raise VSphereNotFound(f"no cluster named {cluster!r} in {datacenter} on {conn.describe()}")
    resource_pool = None
    if pool is not None:
        pools = [o for o, p in conn.list_objects(vim.ResourcePool, ["name"]) if p.get("name") == pool]
        if len(pools) != 1:
            raise VSphereNotFound(f"{len(pools)} resource pools named {pool!r} on {conn.describe()}")
        resource_pool = pools[0]
    elif clusters:
        resource_pool = clusters[0][1]["resourcePool"]
    host_obj = None
    if host is not None:
        hosts = [o for o, p in conn.list_objects(vim.HostSystem, ["name"]) if p.get("name") == host]
        if len(hosts) != 1:
            raise VSphereNotFound(f"no single host named {host!r} on {conn.describe()}")
        host_obj = hosts[0]
        if resource_pool is None:
            parent = conn.properties(host_obj, ["parent"])["parent"]
            resource_pool = conn.properties(parent, ["resourcePool"])["resourcePool"]
    if resource_pool is None:
        raise VSphereNotFound(f"no cluster or resource pool for new VMs in {datacenter} on {conn.describe()}")
    return Placement(dc, dc_props["vmFolder"], resource_pool, host_obj, datastore, datacenter)


@dataclass(frozen=True)
class _PortGroup:
    name: str
    key: str | None  # distributed port group key; None for a standard network
    switch_uuid: str | None
    obj: Any


def _find_network(conn: VSphereConnection, name: str) -> _PortGroup:
    dv = [
        (obj, props)
        for obj, props in conn.list_objects(
            vim.dvs.DistributedVirtualPortgroup, ["name", "key", "config.distributedVirtualSwitch"]
        )
        if props.get("name") == name
    ]
    if len(dv) > 1:
        raise VSphereError(f"{len(dv)} port groups are named {name!r} on {conn.describe()}")
    if dv:
        obj, props = dv[0]
        switch = props["config.distributedVirtualSwitch"]
        uuid = conn.properties(switch, ["uuid"])["uuid"]
        return _PortGroup(name, str(props["key"]), str(uuid), obj)
    std = [o for o, p in conn.list_objects(vim.Network, ["name"]) if p.get("name") == name]
    if not std:
        raise VSphereNotFound(f"no network or port group named {name!r} on {conn.describe()}")
    return _PortGroup(name, None, None, std[0])


def _find_switch(conn: VSphereConnection, switch: str | None) -> Any:
    switches = conn.list_objects(vim.DistributedVirtualSwitch, ["name"])
    if switch is not None:
        switches = [(o, p) for o, p in switches if p.get("name") == switch]
    if len(switches) != 1:
        what = f"named {switch!r}" if switch is not None else "(give its name)"
        raise VSphereNotFound(f"{len(switches)} distributed switches {what} on {conn.describe()}")
    return switches[0][0]


def ensure_network(conn: VSphereConnection, name: str, *, switch: str | None = None, ports: int = 64) -> str:
    """A distributed port group ``name`` on ``switch`` (e.g. a per-run isolated bubble); its key.

    Idempotent: an existing port group of that name is returned. Isolation is the switch's
    business (no uplinks / a VLAN with no route); this only makes the attachment point.
    """
    try:
        found = _find_network(conn, name)
        if found.key is not None:
            return found.key
        raise VSphereError(f"{name!r} exists on {conn.describe()} as a standard network, not a port group")
    except VSphereNotFound:
        pass
    dvs = _find_switch(conn, switch)
    spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(name=name, type="earlyBinding", numPorts=ports)
    try:
        conn.run_task(f"add port group {name}", lambda: dvs.AddDVPortgroup_Task([spec]))
    except VSphereTaskError as exc:
        if "DuplicateName" not in str(exc):
            raise
    key = _find_network(conn, name).key
    assert key is not None
    return key


def remove_network(conn: VSphereConnection, name: str) -> bool:
    """Remove the distributed port group ``name``; False when it did not exist."""
    try:
        found = _find_network(conn, name)
    except VSphereNotFound:
        return False
    if found.key is None:
        raise VSphereError(f"{name!r} on {conn.describe()} is a standard network; not removing it")
    try:
        conn.run_task(f"remove port group {name}", lambda: found.obj.Destroy_Task())
    except VSphereNotFound:
        return False
    return True


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
) -> Any:
    """Create VM ``name`` over already materialized disks, NICs on the named networks; the VM.

    A VM already named ``name`` is returned when its tag names the same run (a retry); one made by
    anything else is never adopted (VSphereError). ``vm_dir`` is where its .vmx goes, by default
    the directory of the first disk, so destroying the VM removes its disks too.
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
    changes: list[Any] = []
    controller = vim.vm.device.ParaVirtualSCSIController(
        key=-100, busNumber=0, sharedBus=vim.vm.device.VirtualSCSIController.Sharing.noSharing
    )
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=controller))
    if len(disks) > 15:
        raise ValueError("one SCSI controller holds 15 disks; more are not supported here")
    for index, disk in enumerate(disks):
        unit = index if index < 7 else index + 1  # unit 7 is the controller's own
        device = vim.vm.device.VirtualDisk(
            key=-(200 + index),
            controllerKey=controller.key,
            unitNumber=unit,
            capacityInKB=disk.capacity_kb,
            capacityInBytes=disk.size,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=disk.datastore_path, diskMode="persistent", thinProvisioned=True
            ),
        )
        # No fileOperation: attach the existing file, never create (or replace) it.
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=device))
    for index, nic in enumerate(NicSpec.of(n) for n in nics):
        pg = _find_network(conn, nic.network)
        backing: Any
        if pg.key is not None:
            backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(switchUuid=pg.switch_uuid, portgroupKey=pg.key)
            )
        else:
            backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=pg.name, network=pg.obj)
        card = vim.vm.device.VirtualVmxnet3(
            key=-(300 + index),
            backing=backing,
            connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                startConnected=nic.connected, connected=nic.connected, allowGuestControl=True
            ),
        )
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=card))
    config = vim.vm.ConfigSpec(
        name=name,
        guestId=guest_id,
        numCPUs=cpus,
        memoryMB=memory_mib,
        annotation=tag.annotation(),
        extraConfig=tag.extra_config(),
        files=vim.vm.FileInfo(vmPathName=f"[{placement.datastore}] {directory}/{name}.vmx"),
        deviceChange=changes,
    )
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
