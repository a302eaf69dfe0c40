"""The vSphere datastore file service's write side over HTTP: a session carrying the API session's
cookie, a file's size (``HEAD``, or a one-byte range), small ``PUT``s, a disk streamed as one ``PUT``
body straight from a restore, and a whole-file read-back. ``disks.py`` builds a committed disk on it.

Why the disk upload streams instead of restoring into a local temp file first: a DR worker would
need scratch space as large as the largest disk (terabytes), and restoring then uploading doubles
the wall time; streamed, decrypt/decompress/verify overlap the upload and memory stays bounded (a
small queue). The catch is that the repository checks the whole-disk digest only after the last
block, so the pipe holds the last piece back until ``restore`` has returned cleanly: a failed
verification leaves a short file (the request carries a ``Content-Length``, so the server and our
size check both see it short) and no committed marker. The datastore service has no ranged or
append PUT, so an interrupted upload restarts from offset 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests

from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.diskpaths import build_datastore_url
from seawall.sites.vsphere.ranges import parse_content_range
from seawall.sites.vsphere.session import SESSION_COOKIE, VSphereError

__all__ = ["RestoreFn", "Writer"]

Writer = Callable[[int, bytes], None]
RestoreFn = Callable[[Writer], object]
"""Given a writer, write the disk through it in increasing offsets (``Repository.restore_disk``)."""

MiB = 1024 * 1024
_ZERO_CHUNK = bytes(MiB)


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
