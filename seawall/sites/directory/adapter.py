"""A directory of raw disk images (``<site>/<vm>/*.img``) as a replication source.

Snapshots are point-in-time copies of the images (reflink, else a sparse copy) under the VM's
folder; shipping reads those copies. A directory runs no VMs: it cannot be fenced, nor recovered to.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from seawall.blockstore.source import SourceError
from seawall.contract.messages import DiskRef, SnapshotTaken
from seawall.contract.names import SNAPSHOT_PREFIX
from seawall.model import DirectorySite
from seawall.sites.base import BaseAdapter, OpenDisk, SiteError
from seawall.sites.directory import imagesnap
from seawall.sites.directory.source import RawSource


class DirectoryAdapter(BaseAdapter):
    kind: ClassVar[str] = "directory"
    site: DirectorySite

    @property
    def root(self) -> Path:
        return Path(self.site.path)

    def probe(self) -> str:
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-") as f:
            f.write(b"seawall")
            f.flush()
            os.fsync(f.fileno())
        return f"{root} is writable"

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool, only: list[str] | None) -> SnapshotTaken:
        # ``quiesce`` needs a guest agent; a raw image has none, so the copy is crash-consistent.
        try:
            names = imagesnap.list_disks(self.root, vm, only)
            snap, _ = imagesnap.create_snapshot(self.root, vm, name, names)
        except SourceError as exc:
            raise SiteError(str(exc), "VMGone") from None
        return SnapshotTaken(
            snapshot=name,
            disks=[DiskRef(key=n, label=n, size=(snap / n).stat().st_size, name=n) for n in names],
            cbt=False,
        )

    @contextlib.contextmanager
    def open_disks(self, vm: str, snapshot: str) -> Iterator[OpenDisk]:
        snap = imagesnap.snapshot_path(self.root, vm, snapshot)
        yield lambda disk: RawSource(snap / disk.key)

    def release_snapshot(self, vm: str, name: str) -> int:
        return int(imagesnap.remove_snapshot(self.root, vm, name))

    def release_orphan_snapshots(self, vm: str) -> list[str]:
        names = [n for n in imagesnap.list_snapshots(self.root, vm) if n.startswith(SNAPSHOT_PREFIX)]
        return [n for n in names if imagesnap.remove_snapshot(self.root, vm, n)]
