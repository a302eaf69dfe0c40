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

This module is the DiskSource (what to read, read-ahead, prefetch, CBT); the HTTP side is
``datastoreread.py`` and the range arithmetic ``ranges.py``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from seawall.blockstore.source import ChangedArea, SourceError
from seawall.blockstore.stores.retrying import RetryPolicy
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.datastoreread import DatastoreReadMixin
from seawall.sites.vsphere.diskpaths import DiskInfo
from seawall.sites.vsphere.ranges import MiB, coalesce_ranges
from seawall.sites.vsphere.session import VSphereError

__all__ = ["VSphereDiskSource"]


class _Window(threading.local):
    offset: int = 0
    data: bytes = b""


class VSphereDiskSource(DatastoreReadMixin):
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
