"""A raw image file or a block device as a DiskSource.

Reads are ``os.pread`` (no shared file position, so the data path may read from several threads).
A raw file has no change tracking: ``changed_areas`` returns None and the data path hash-compares
every block against the previous recovery point's manifest.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct

from seawall.blockstore.source import ChangedArea, SourceError

# linux/fs.h: _IOR(0x12, 114, size_t)
BLKGETSIZE64 = 0x80081272


def _device_size(fd: int) -> int:
    try:
        buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("Q", buf)[0])
    except OSError:
        # Not Linux, or an ioctl the driver refuses: seeking to the end works on block devices too.
        return os.lseek(fd, 0, os.SEEK_END)


class RawSource:
    """A DiskSource over a path: a regular file (disk image) or a block device (``/dev/...``)."""

    def __init__(self, path: str | os.PathLike[str], change_id: str | None = None) -> None:
        self.path = os.fspath(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            st = os.fstat(self._fd)
            if stat.S_ISBLK(st.st_mode):
                self._size = _device_size(self._fd)
            elif stat.S_ISREG(st.st_mode):
                self._size = st.st_size
            else:
                raise SourceError(f"{self.path} is neither a regular file nor a block device")
        except BaseException:
            os.close(self._fd)
            raise
        self._change_id = change_id
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def change_id(self) -> str | None:
        return self._change_id

    def read(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise SourceError(f"{self.path} is closed")
        if offset < 0 or length < 0:
            raise ValueError(f"bad range offset={offset} length={length}")
        length = max(0, min(length, self._size - offset))
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                data = os.pread(self._fd, length - got, offset + got)
                if not data:
                    # The file shrank under us: a snapshot's base disk must not do that.
                    raise SourceError(
                        f"{self.path}: unexpected end of data at {offset + got} (size {self._size})"
                    )
                chunks.append(data)
                got += len(data)
        except OSError as exc:
            raise SourceError(f"{self.path}: read at {offset + got} failed: {exc.strerror}") from exc
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        """Read into ``buf`` (no allocation); returns the bytes read, fewer only at the end of the disk."""
        if self._closed:
            raise SourceError(f"{self.path} is closed")
        view = memoryview(buf).cast("B")
        total = 0
        try:
            while total < len(view):
                n = os.preadv(self._fd, [view[total:]], offset + total)
                if n == 0:
                    break
                total += n
        except OSError as exc:
            raise SourceError(f"{self.path}: read at {offset + total} failed: {exc.strerror}") from exc
        return total

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        return None

    def describe(self) -> str:
        return f"raw:{self.path}"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> RawSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
