"""A disk of a libvirt pull-mode backup, read over NBD (libnbd), with the job's dirty bitmap as CBT.

QEMU exports each disk of the backup job as a point-in-time image; for an incremental backup the
export also carries ``qemu:dirty-bitmap:<name>``, whose extents with flag bit 0 set are the clusters
written since the checkpoint the backup is incremental from. ``changed_areas`` answers from that
bitmap only when asked about exactly that checkpoint (name and creation time: a checkpoint deleted and
made again under the same name is another one); for anything else it returns None and the data path
hash-compares the whole disk.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from seawall.blockstore.source import ChangedArea, SourceError

# NBD servers refuse requests over 32 MiB; QEMU's limit. Block status is asked in pieces too.
MAX_REQUEST = 32 * 1024 * 1024
STATUS_SPAN = 1 << 30
DIRTY = 1  # qemu:dirty-bitmap extents: bit 0 = dirty

BlockStatus = Callable[[int, int], list[tuple[int, int]]]
"""(offset, length) -> the extents the server describes from ``offset``: [(length, flags), ...]."""


def dirty_extents(status: BlockStatus, size: int, span: int = STATUS_SPAN) -> list[ChangedArea]:
    """Every dirty range of a disk of ``size`` bytes, adjacent ones merged, asked ``span`` at a time.

    A server may describe less than asked (the loop continues where it stopped) or more (clipped to the
    request); an answer that makes no progress is an error, not an endless loop.
    """
    areas: list[ChangedArea] = []
    offset = 0
    while offset < size:
        want = min(span, size - offset)
        entries = status(offset, want)
        pos = offset
        for length, flags in entries:
            if length <= 0 or pos >= offset + want:
                break
            length = min(length, offset + want - pos)
            if flags & DIRTY:
                if areas and areas[-1].offset + areas[-1].length == pos:
                    last = areas.pop()
                    areas.append(ChangedArea(last.offset, last.length + length))
                else:
                    areas.append(ChangedArea(pos, length))
            pos += length
        if pos <= offset:
            raise SourceError(f"the NBD server described no extent at offset {offset}")
        offset = pos
    return areas


def _nbd() -> Any:
    try:
        import nbd
    except ImportError as exc:  # Debian's python3-libnbd, reached from the venv by a .pth file
        raise SourceError(f"libnbd's Python bindings are not importable here: {exc}") from None
    return nbd


class NbdSource:
    """One exported disk of a running backup job: a ``DiskSource`` (see blockstore.source)."""

    # Dirty runs are read as they are, never merged across clean gaps: a request to QEMU's export on
    # a local socket costs next to nothing, and a cycle reads what the bitmap reports, no more.
    cbt_gap_blocks = 0

    def __init__(
        self,
        socket: str,
        export: str,
        *,
        change_id: str | None,
        bitmap: str | None = None,
        since: str | None = None,
        label: str = "",
    ) -> None:
        """``bitmap``: the export's dirty-bitmap context, valid for changes since checkpoint ``since``."""
        nbd = _nbd()
        self._socket, self._export = socket, export
        self._bitmap = f"qemu:dirty-bitmap:{bitmap}" if bitmap else None
        self._since = since
        self._change_id = change_id
        self._label = label or export
        self._lock = threading.Lock()  # one request at a time per handle: the ship reads on one thread
        self._closed = False
        self.bytes_read = 0
        self.dirty_bytes: int | None = None  # what the bitmap reported, once asked
        h = nbd.NBD()
        try:
            if self._bitmap:
                h.add_meta_context(self._bitmap)
            h.set_export_name(export)
            h.connect_unix(socket)
            self._size = int(h.get_size())
            if self._bitmap and not h.can_meta_context(self._bitmap):
                self._bitmap = None  # the export has no bitmap (full backup of this disk)
        except nbd.Error as exc:
            raise SourceError(f"{self._label}: NBD export {export!r} at {socket}: {exc}") from None
        self._h = h

    @property
    def size(self) -> int:
        return self._size

    @property
    def change_id(self) -> str | None:
        return self._change_id

    def read(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise SourceError(f"{self._label} is closed")
        if offset < 0 or length < 0:
            raise ValueError(f"bad range offset={offset} length={length}")
        length = max(0, min(length, self._size - offset))
        parts = list(self._read(offset, length))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read(self, offset: int, length: int) -> Iterator[bytes]:
        nbd = _nbd()
        end = offset + length
        while offset < end:
            n = min(MAX_REQUEST, end - offset)
            try:
                with self._lock:
                    data = self._h.pread(n, offset)
            except nbd.Error as exc:
                raise SourceError(f"{self._label}: NBD read at {offset}: {exc}") from None
            self.bytes_read += len(data)
            yield data
            offset += n
        if length == 0:
            yield b""

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        if self._bitmap is None or since_change_id != self._since:
            return None  # the parent's checkpoint is not the one this job's bitmap counts from
        nbd = _nbd()
        context = self._bitmap

        def status(offset: int, length: int) -> list[tuple[int, int]]:
            got: list[tuple[int, int]] = []

            def seen(meta: str, start: int, entries: list[int], _err: Any) -> int:
                if meta == context:
                    got.extend(zip(entries[0::2], entries[1::2], strict=False))
                return 0

            try:
                with self._lock:
                    self._h.block_status(length, offset, seen)
            except nbd.Error as exc:
                raise SourceError(f"{self._label}: NBD block status at {offset}: {exc}") from None
            return got

        areas = dirty_extents(status, self._size)
        self.dirty_bytes = sum(a.length for a in areas)
        return areas

    def describe(self) -> str:
        return f"nbd:{self._label}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        nbd = _nbd()
        # The server may have gone first (job ended): nothing left to close politely.
        with contextlib.suppress(nbd.Error):
            self._h.shutdown()
        self._h = None  # libnbd closes the handle when it is collected
