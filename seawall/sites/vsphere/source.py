"""A vSphere VM disk, as captured by a snapshot, read over the datastore file service with HTTP ranges.

The reader takes the disk backing from the *snapshot's* configuration: on ESXi the running VM writes
to a delta disk after the snapshot and the base ``-flat.vmdk`` named there is stable. (vcsim makes
no delta; its base file stays live, so a lab that writes into it during a read sees the new bytes.)

Reads are ``GET`` with ``Range`` on a pooled keep-alive session, authenticated with the API
session's ``vmware_soap_session`` cookie — the datastore service accepts it, so no password is
needed here (vcsim checks no credentials at all on ``/folder``). Small sequential reads are served
from a per-thread read-ahead window, large sequential reads have the next ranges already in flight
(``prefetch``), and :meth:`VSphereDiskSource.read_ranges` merges adjacent ranges into few
requests. Transient failures (connection drops, timeouts, 5xx) are retried with backoff; an expired
session is renewed once per read.

Observed on vcsim 0.24: ``Range`` is honoured (206 with Content-Range, Go's http.FileServer); a
range past the end of the file answers 416 with ``Content-Range: bytes */<size>``. Its disk files
start empty although the disk has a capacity: bytes past the end of the file read as zeros, as they
would on a thin disk. A server that ignores ``Range`` and answers 200 with the whole file is handled
by skipping to the offset in the stream.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
from urllib3.util.retry import Retry

from seawall.blockstore.source import ChangedArea, SourceError
from seawall.blockstore.stores.retrying import RetryPolicy, call_with_retries
from seawall.sites.vsphere.client import DiskInfo, VSphereConnection
from seawall.sites.vsphere.session import SESSION_COOKIE, VSphereError

__all__ = ["ReadPlan", "TransientSourceError", "VSphereDiskSource", "coalesce_ranges", "parse_content_range"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


class TransientSourceError(SourceError):
    """A read failed in a way a retry may fix (connection drop, timeout, 5xx, expired session)."""


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes 10-19/1024`` -> (10, 19, 1024); ``bytes */1024`` -> (None, None, 1024); junk -> Nones."""
    if not value:
        return None, None, None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None, None, None
    first = int(m.group(1)) if m.group(1) is not None else None
    last = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) not in (None, "*") else None
    return first, last, total


@dataclass(frozen=True)
class ReadPlan:
    """One HTTP range request covering ``parts`` (each an (offset, length) the caller asked for)."""

    offset: int
    length: int
    parts: tuple[tuple[int, int], ...]


def coalesce_ranges(
    ranges: Iterable[tuple[int, int]], *, max_gap: int = 0, max_request: int = 16 * MiB
) -> list[ReadPlan]:
    """Sort ranges and merge those that touch, overlap, or lie within ``max_gap`` bytes of each other,
    without growing a request past ``max_request`` (a single larger range stays one request)."""
    items = sorted((o, n) for o, n in ranges if n > 0)
    plans: list[ReadPlan] = []
    cur_start = cur_end = -1
    parts: list[tuple[int, int]] = []
    for offset, length in items:
        end = offset + length
        if parts and offset <= cur_end + max_gap and max(cur_end, end) - cur_start <= max_request:
            cur_end = max(cur_end, end)
            parts.append((offset, length))
            continue
        if parts:
            plans.append(ReadPlan(cur_start, cur_end - cur_start, tuple(parts)))
        cur_start, cur_end, parts = offset, end, [(offset, length)]
    if parts:
        plans.append(ReadPlan(cur_start, cur_end - cur_start, tuple(parts)))
    return plans


class _Window(threading.local):
    offset: int = 0
    data: bytes = b""


class VSphereDiskSource:
    """DiskSource over one disk of a VM snapshot, read through the datastore HTTP(S) endpoint."""

    def __init__(
        self,
        conn: VSphereConnection,
        vm: Any,
        snapshot_name: str,
        disk_key: int,
        *,
        retry: RetryPolicy | None = None,
        readahead: int = 1 * MiB,
        prefetch: int = 0,
        pool_size: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self._conn = conn
        self._vm = vm
        self.snapshot_name = snapshot_name
        self.disk_key = disk_key
        self._retry = retry or RetryPolicy(attempts=5, base_delay=0.2, max_delay=5.0)
        self._readahead = max(0, readahead)
        self._prefetch = max(0, prefetch)
        self._ahead: dict[tuple[int, int], Future[bytes]] = {}
        self._ahead_lock = threading.Lock()
        self._prefetcher: ThreadPoolExecutor | None = None
        self._last_end = -1
        self._timeout = (connect_timeout, read_timeout)
        self._sleep = sleep
        self._rng = random.Random()
        self._window = _Window()
        self._closed = False
        self._warned_no_range = False
        self._cookie_lock = threading.Lock()
        try:
            self._vm_name = conn.vm_name(vm)
            snapshot = conn.find_snapshot(vm, snapshot_name)
            if snapshot is None:
                raise SourceError(
                    f"VM {self._vm_name!r} has no snapshot named {snapshot_name!r} on {conn.describe()}"
                )
            self._snapshot = snapshot
            self.disk = self._pick_disk(conn.snapshot_disks(snapshot))
            self.url = conn.datastore_url(self.disk.file_name)
            self._cbt_enabled = conn.cbt_status(vm).enabled
        except VSphereError as exc:
            raise SourceError(f"cannot open disk {disk_key} of snapshot {snapshot_name!r}: {exc}") from exc
        self._size = self.disk.capacity_bytes
        self._own_session = session is None
        self._session = session or self._new_session(pool_size)
        self._set_cookie()

    def _pick_disk(self, disks: list[DiskInfo]) -> DiskInfo:
        for disk in disks:
            if disk.key == self.disk_key:
                break
        else:
            have = ", ".join(f"{d.key} ({d.label})" for d in disks) or "none"
            raise SourceError(
                f"snapshot {self.snapshot_name!r} of {self._vm_name!r} has no disk with device key "
                f"{self.disk_key} (disks: {have})"
            )
        if disk.is_delta:
            raise SourceError(
                f"disk {disk.label} of {self._vm_name!r} was already a delta disk when snapshot "
                f"{self.snapshot_name!r} was taken (another snapshot exists): its -flat file would not hold "
                "the whole disk; remove or consolidate the VM's other snapshots"
            )
        if "FlatVer2" not in disk.backing_type:
            raise SourceError(
                f"disk {disk.label} of {self._vm_name!r} has a {disk.backing_type} backing; only flat "
                "(thin, thick or eager-zeroed) VMDKs can be read over the datastore file service"
            )
        if disk.capacity_bytes <= 0:
            raise SourceError(f"disk {disk.label} of {self._vm_name!r} reports no capacity")
        return disk

    def _new_session(self, pool_size: int) -> requests.Session:
        session = requests.Session()
        # Retries are ours (with backoff and session renewal); urllib3 must not retry underneath.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=Retry(total=0, redirect=False)
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self._conn.verify_tls
        session.headers["Accept-Encoding"] = "identity"
        return session

    def _set_cookie(self) -> None:
        with self._cookie_lock:
            try:
                value = self._conn.session_cookie()
            except VSphereError as exc:
                raise SourceError(f"no vSphere session to read {self.describe()}: {exc}") from exc
            # Quoted, as pyVmomi itself sends it; vCenter expects the quotes.
            self._session.headers["Cookie"] = f'{SESSION_COOKIE}="{value}"'

    # -- DiskSource --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def change_id(self) -> str | None:
        return self.disk.change_id

    def describe(self) -> str:
        return (
            f"vsphere:{self._conn.describe()}/{self._vm_name}@{self.snapshot_name}/"
            f"{self.disk.label} ({self.disk.file_name})"
        )

    def read(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise SourceError(f"{self.describe()} is closed")
        if offset < 0 or length < 0:
            raise ValueError(f"bad range offset={offset} length={length}")
        end = min(self._size, offset + length)
        if end <= offset:
            return b""
        win = self._window
        if win.offset <= offset and end <= win.offset + len(win.data):
            return win.data[offset - win.offset : end - win.offset]
        if end - offset >= self._readahead:
            return self._read_large(offset, end)
        fetch_end = min(self._size, offset + self._readahead)
        data = self._fetch(offset, fetch_end)
        win.offset, win.data = offset, data
        return data[: end - offset]

    def _read_large(self, offset: int, end: int) -> bytes:
        """Large reads: while the caller hashes and ships one range, the next ones are already in
        flight (``prefetch`` of them), so a sequential scan is not a chain of round trips."""
        if self._prefetch == 0:
            return self._fetch(offset, end)
        with self._ahead_lock:
            hit = self._ahead.pop((offset, end), None)
            sequential = hit is not None or offset == self._last_end
            if hit is None:
                # Not the continuation we guessed: what was fetched ahead will not be asked for.
                for fut in self._ahead.values():
                    fut.cancel()
                self._ahead.clear()
            self._last_end = end
            # Only a second read in a row starts fetching ahead; random access pays nothing extra.
            if sequential:
                self._schedule(end, end - offset)
        return hit.result() if hit is not None else self._fetch(offset, end)

    def _schedule(self, start: int, length: int) -> None:
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(self._prefetch, thread_name_prefix="seawall-vsphere-read")
        pos = start
        for _ in range(self._prefetch):
            if pos >= self._size:
                break
            key = (pos, min(self._size, pos + length))
            if key not in self._ahead:
                self._ahead[key] = self._prefetcher.submit(self._fetch, *key)
            pos = key[1]

    def read_ranges(
        self, ranges: Iterable[tuple[int, int]], *, max_gap: int = 0, max_request: int = 16 * MiB
    ) -> Iterator[tuple[int, bytes]]:
        """Read many (offset, length) ranges with few requests; yields (offset, data) in offset order."""
        clipped = [(o, min(n, self._size - o)) for o, n in ranges if 0 <= o < self._size and n > 0]
        for plan in coalesce_ranges(clipped, max_gap=max_gap, max_request=max_request):
            data = self._fetch(plan.offset, plan.offset + plan.length)
            for offset, length in plan.parts:
                yield offset, data[offset - plan.offset : offset - plan.offset + length]

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        if not self._cbt_enabled or not since_change_id:
            return None
        try:
            return self._conn.query_changed_disk_areas(
                self._vm, self._snapshot, self.disk_key, 0, since_change_id, disk_size=self._size
            )
        except VSphereError as exc:
            raise SourceError(f"changed areas of {self.describe()}: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._window.data = b""
        with self._ahead_lock:
            for fut in self._ahead.values():
                fut.cancel()
            self._ahead.clear()
            if self._prefetcher is not None:
                self._prefetcher.shutdown(wait=True, cancel_futures=True)
                self._prefetcher = None
        if self._own_session:
            self._session.close()

    def __enter__(self) -> VSphereDiskSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------------

    def _fetch(self, start: int, end: int) -> bytes:
        renewed = False

        def once() -> bytes:
            nonlocal renewed
            try:
                return self._fetch_once(start, end)
            except _SessionRejected as exc:
                if renewed:
                    raise SourceError(
                        f"{self.describe()}: the datastore service refused access ({exc.status}) even "
                        "with a fresh session: the user lacks Datastore.Browse / file access"
                    ) from exc
                renewed = True
                try:
                    self._conn.ensure_session()
                except VSphereError as vexc:
                    raise SourceError(
                        f"{self.describe()}: cannot renew the vSphere session: {vexc}"
                    ) from vexc
                self._set_cookie()
                raise TransientSourceError(
                    f"{self.describe()}: session rejected ({exc.status}); renewed"
                ) from exc

        def give_up(exc: BaseException, attempts: int) -> BaseException:
            return SourceError(
                f"read [{start}, {end}) of {self.describe()}: {exc} (gave up after {attempts} attempts)"
            )

        return call_with_retries(
            once,
            policy=self._retry,
            is_transient=lambda e: isinstance(e, TransientSourceError),
            give_up=give_up,
            what=f"read [{start}, {end}) of {self.describe()}",
            sleep=self._sleep,
            rng=self._rng,
        )

    def _fetch_once(self, start: int, end: int) -> bytes:
        want = end - start
        try:
            resp = self._session.get(
                self.url, headers={"Range": f"bytes={start}-{end - 1}"}, stream=True, timeout=self._timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientSourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        with resp:
            status = resp.status_code
            if status == 206:
                first, _last, total = parse_content_range(resp.headers.get("Content-Range"))
                if first is not None and first != start:
                    raise SourceError(
                        f"{self.describe()}: asked for bytes from {start}, server sent from {first}"
                    )
                data = self._body(resp, want)
                return self._complete(data, start, want, total)
            if status == 200:
                if not self._warned_no_range:
                    self._warned_no_range = True
                    log.warning("%s ignores HTTP Range; skipping through the whole file instead", self.url)
                data = self._skip_and_read(resp, start, want)
                return self._complete(data, start, want, start + len(data) if len(data) < want else None)
            # Drain small error bodies so the keep-alive connection survives.
            self._drain(resp)
            if status == 416:
                _, _, total = parse_content_range(resp.headers.get("Content-Range"))
                if total is not None and total <= start:
                    return self._complete(b"", start, want, total)
                raise SourceError(f"{self.describe()}: server refused range [{start}, {end}) (416)")
            if status in (401, 403):
                raise _SessionRejected(status)
            if status == 404:
                raise SourceError(
                    f"{self.describe()}: disk file not found at the datastore service (404) — was the "
                    "snapshot removed or the VM moved?"
                )
            if status in (408, 429) or status >= 500:
                raise TransientSourceError(f"{self.describe()}: server answered {status} {resp.reason}")
            raise SourceError(f"{self.describe()}: unexpected HTTP {status} {resp.reason} for a range read")

    def _body(self, resp: requests.Response, limit: int) -> bytes:
        # Reading the body to its end (not stopping at ``limit``) hands the connection back to the pool.
        try:
            data = resp.content
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"{self.describe()}: connection broke mid-read: {exc}") from exc
        return data[:limit]

    @staticmethod
    def _drain(resp: requests.Response) -> None:
        with contextlib.suppress(requests.RequestException):
            _ = resp.content

    def _skip_and_read(self, resp: requests.Response, skip: int, limit: int) -> bytes:
        chunks: list[bytes] = []
        got = 0
        pos = 0
        try:
            for chunk in resp.iter_content(chunk_size=1 * MiB):
                if pos + len(chunk) <= skip:
                    pos += len(chunk)
                    continue
                piece = chunk[max(0, skip - pos) :]
                pos += len(chunk)
                chunks.append(piece)
                got += len(piece)
                if got >= limit:
                    break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"{self.describe()}: connection broke mid-read: {exc}") from exc
        return b"".join(chunks)[:limit]

    def _complete(self, data: bytes, start: int, want: int, file_size: int | None) -> bytes:
        if len(data) == want:
            return data
        # A flat file shorter than the disk's capacity (a thin file on vcsim) reads as zeros past its end.
        if file_size is not None and start + len(data) >= file_size and file_size < self._size:
            return data + bytes(want - len(data))
        raise TransientSourceError(
            f"{self.describe()}: short read at {start}: got {len(data)} of {want} bytes"
        )


class _SessionRejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
