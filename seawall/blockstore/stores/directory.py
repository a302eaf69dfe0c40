"""The local-directory replica store: one file per object, crash-safe by temp file + fsync + rename."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from seawall.blockstore.stores.backend import ObjectNotFound, StoreError, TransientStoreError

_TMP_SUFFIX = ".seawall-tmp"


class DirectoryStore:
    """An ObjectStore over a local (or NFS-mounted) directory.

    A key ``a/b/c`` is the file ``<root>/a/b/c``. Writes go to a unique temp file in the same
    directory, are fsynced, renamed into place and the directory is fsynced, so after ``put``
    returns the object survives a power cut and a reader never sees half an object. Temp files
    left by a crash are never listed (their suffix is not a valid key) and ``sweep_temp`` removes
    them.
    """

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or key.endswith("/") or key.endswith(_TMP_SUFFIX):
            raise StoreError(f"invalid object key {key!r}")
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def _fsync_dir(self, d: Path) -> None:
        if not self._fsync:
            return
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, path: Path, data: bytes, exclusive: bool) -> bool:
        parent = path.parent
        try:
            if not parent.is_dir():
                parent.mkdir(parents=True, exist_ok=True)
                self._fsync_dir(parent.parent)
            tmp = parent / f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                if exclusive:
                    # link() fails if the target exists, making "write once" atomic between racing
                    # writers; rename() would silently replace.
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        return False
                    except OSError as exc:
                        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                            raise
                        # No hard links here (some network or FAT mounts): rename, which may
                        # replace a racing writer's object -- harmless for content-addressed keys.
                        if path.exists():
                            return False
                        os.replace(tmp, path)
                else:
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            self._fsync_dir(parent)
            return True
        except OSError as exc:
            raise self._os_error(exc, path) from exc

    def _os_error(self, exc: OSError, path: Path) -> StoreError:
        if exc.errno in (errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.EIO, errno.ENOSPC):
            return TransientStoreError(f"{self.describe()}: {path.name}: {exc.strerror}")
        return StoreError(f"{self.describe()}: {path}: {exc.strerror}")

    def put(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        return self._write(path, data, exclusive=True)

    def put_overwrite(self, key: str, data: bytes) -> None:
        self._write(self._path(key), data, exclusive=False)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFound(key, self.describe()) from None
        except IsADirectoryError:
            raise ObjectNotFound(key, self.describe()) from None
        except OSError as exc:
            raise self._os_error(exc, path) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise self._os_error(exc, path) from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the directory the prefix points into, not the whole tree.
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")
            ]
            for name in filenames:
                if name.endswith(_TMP_SUFFIX):
                    continue
                key = rel_dir + name
                if key.startswith(prefix):
                    yield key

    def sweep_temp(self) -> int:
        """Remove temp files a crashed writer left behind; returns how many."""
        n = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if name.endswith(_TMP_SUFFIX):
                    Path(dirpath, name).unlink(missing_ok=True)
                    n += 1
        return n

    def describe(self) -> str:
        return f"dir://{self.root}"
