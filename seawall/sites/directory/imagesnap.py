"""Point-in-time copies of raw disk images, so a cycle never reads a file the guest is writing.

A "VM" on a directory site is a folder of raw images (``<site>/<vm>/*.img`` — a KVM guest's disks, a
physical server's exported volumes). Its snapshot is ``<site>/<vm>/.seawall-snapshots/<name>/``:

- a reflink (``FICLONE``) on filesystems that share extents (XFS, Btrfs): instant, no extra space;
- else a sparse copy, which costs one read of the image — correct, but plan the RPO accordingly.

The guest must flush (or the hypervisor pause) for the copy to be crash-consistent, exactly as with a
storage snapshot; Seawall takes the copy as fast as the filesystem allows. A ``.complete`` marker is
written after every disk is copied, so a retried snapshot after a crash redoes a half-made copy.
Block devices need a storage-level snapshot (LVM, the SAN's) and are refused with that explanation.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from pathlib import Path

from seawall.blockstore.source import SourceError

SNAPSHOT_DIR = ".seawall-snapshots"
FICLONE = 0x40049409  # linux/fs.h _IOW(0x94, 9, int)
COPY_CHUNK = 4 * 1024 * 1024
HOLE = 64 * 1024  # zero runs this long become holes in the copy
_ZERO = bytes(HOLE)


def vm_dir(site_root: Path, vm: str) -> Path:
    return site_root / vm


def list_disks(site_root: Path, vm: str, only: list[str] | None = None) -> list[str]:
    """The VM's disk image names, sorted; ``only`` restricts them (the inventory's ``disks``)."""
    folder = vm_dir(site_root, vm)
    if not folder.is_dir():
        raise SourceError(f"no VM folder {folder} on this directory site")
    names = sorted(
        p.name
        for p in folder.iterdir()
        if not p.name.startswith(".") and (p.is_file() or p.is_block_device())
    )
    if only is not None:
        missing = sorted(set(only) - set(names))
        if missing:
            raise SourceError(f"VM folder {folder} has no disk(s) {', '.join(missing)} (found: {names})")
        names = [n for n in names if n in only]
    if not names:
        raise SourceError(f"VM folder {folder} holds no disk images")
    return names


def snapshot_path(site_root: Path, vm: str, name: str) -> Path:
    return vm_dir(site_root, vm) / SNAPSHOT_DIR / name


def _clone_or_copy(src: Path, dst: Path) -> str:
    with src.open("rb") as fin, dst.open("wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            return "reflink"
        except OSError:
            pass
        # Sparse copy: zero chunks become holes, so a mostly empty image costs no disk space.
        size = os.fstat(fin.fileno()).st_size
        offset = 0
        while offset < size:
            chunk = os.pread(fin.fileno(), min(COPY_CHUNK, size - offset), offset)
            if not chunk:
                break
            view = memoryview(chunk)
            for at in range(0, len(chunk), HOLE):
                piece = view[at : at + HOLE]
                if piece != _ZERO[: len(piece)]:
                    os.pwrite(fout.fileno(), piece, offset + at)
            offset += len(chunk)
        fout.truncate(size)
        os.fsync(fout.fileno())
        return "copy"


def create_snapshot(site_root: Path, vm: str, name: str, disks: list[str]) -> tuple[Path, str]:
    """Make (or find, when complete) snapshot ``name``; returns its folder and how it was made."""
    snap = snapshot_path(site_root, vm, name)
    marker = snap / ".complete"
    if marker.exists():
        return snap, marker.read_text().strip() or "copy"
    if snap.exists():
        shutil.rmtree(snap)  # a copy a crash interrupted: its files may be partial
    snap.mkdir(parents=True)
    methods = set()
    for disk in disks:
        src = vm_dir(site_root, vm) / disk
        if stat.S_ISBLK(src.stat().st_mode):
            raise SourceError(
                f"{src} is a block device: take a storage snapshot (LVM, SAN) and protect that instead"
            )
        methods.add(_clone_or_copy(src, snap / disk))
    method = "reflink" if methods == {"reflink"} else "copy"
    marker.write_text(method + "\n")
    return snap, method


def remove_snapshot(site_root: Path, vm: str, name: str) -> bool:
    """Remove snapshot ``name``; one already gone is success. Returns whether it existed."""
    snap = snapshot_path(site_root, vm, name)
    if not snap.exists():
        return False
    shutil.rmtree(snap)
    with contextlib.suppress(OSError):
        snap.parent.rmdir()  # only when no other snapshot remains
    return True


def list_snapshots(site_root: Path, vm: str) -> list[str]:
    folder = vm_dir(site_root, vm) / SNAPSHOT_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
