"""A recovery point's disk streamed onto a vSphere datastore, committed by a marker; found again on retry.

``materialize_disk`` streams a recovery point's disk onto the target datastore over the datastore
file service (``PUT /folder/<dir>/<disk>-flat.vmdk``) plus a monolithic-flat descriptor
(``<disk>.vmdk``), then commits it with a sidecar marker (``<disk>.seawall.json``) naming the source
digest, size and SHA-256 of the bytes sent. Only a matching marker makes a retry skip the upload.

Why the disk upload streams instead of restoring into a local temp file first: a DR worker would
need scratch space as large as the largest disk (terabytes), and restoring then uploading doubles
the wall time; streamed, decrypt/decompress/verify overlap the upload and memory stays bounded (a
small queue). The catch is that the repository checks the whole-disk digest only after the last
block, so the pipe holds the last piece back until ``restore`` has returned cleanly: a failed
verification leaves a short file (the request carries a ``Content-Length``, so the server and our
size check both see it short) and no committed marker. The datastore service has no ranged or
append PUT, so an interrupted upload restarts from offset 0.

Observed on vcsim (govmomi 0.24): ``PUT /folder/...`` copies whatever body arrives and answers 200
even when the body was cut short (``io.Copy`` error ignored): the uploaded size must be checked
(``HEAD``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from seawall.sites.vsphere.client import VSphereConnection, build_datastore_url
from seawall.sites.vsphere.ranges import parse_content_range
from seawall.sites.vsphere.session import SESSION_COOKIE, VSphereError

__all__ = ["RestoreFn", "UploadedDisk", "Writer", "descriptor_text", "materialize_disk"]

Writer = Callable[[int, bytes], None]
RestoreFn = Callable[[Writer], object]
"""Given a writer, write the disk through it in increasing offsets (``Repository.restore_disk``)."""

MiB = 1024 * 1024
KIB = 1024
_ZERO_CHUNK = bytes(MiB)
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
