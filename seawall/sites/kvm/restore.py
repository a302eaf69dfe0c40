"""Failback onto a KVM domain's own disks, and fencing: the verbs that change the source domain.

Writing a point into a qcow2 image needs QEMU's format driver: the image is served writable by
``qemu-nbd`` on a private unix socket (the domain is shut off, so nothing else has it open) and
written through libnbd — the whole disk zeroed first (cheap in qcow2: metadata only), because a
restore may skip the point's zero runs.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt

from seawall.sites.base import SiteError
from seawall.sites.kvm.backup import DomainDisk
from seawall.sites.kvm.nbdsource import MAX_REQUEST, _nbd


def shut_off(dom: Any, grace_s: float, sleep: Callable[[float], None] = time.sleep) -> str:
    """Graceful shutdown (ACPI) with a bounded wait, then destroy; a domain already off is success."""
    if not dom.isActive():
        return "already shut off"
    # No ACPI, or it went off meanwhile: the wait and destroy below settle it.
    with contextlib.suppress(libvirt.libvirtError):
        dom.shutdown()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not dom.isActive():
            return "shut down by the guest"
        sleep(0.5)
    try:
        dom.destroy()
    except libvirt.libvirtError:
        if dom.isActive():
            raise
    return f"destroyed (no shutdown within {grace_s:g}s)"


@contextlib.contextmanager
def writable_export(path: str, fmt: str) -> Iterator[Any]:
    """A libnbd handle onto the image at ``path``, served by a private qemu-nbd for this block."""
    binary = shutil.which("qemu-nbd")
    if binary is None:
        raise SiteError("qemu-nbd is not installed on this worker (Debian: qemu-utils)", "PlanInvalid")
    nbd = _nbd()
    with tempfile.TemporaryDirectory(prefix="sw-nbd-") as tmp:
        sock = str(Path(tmp) / "s")
        proc = subprocess.Popen(
            [binary, "-f", fmt, "-k", sock, "-x", "disk", "--cache=writeback", "--discard=unmap", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while not Path(sock).exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    raise SiteError(f"qemu-nbd could not serve {path}: {err or 'timed out'}", retryable=True)
                time.sleep(0.05)
            h = nbd.NBD()
            h.set_export_name("disk")
            h.connect_unix(sock)
            try:
                yield h
                h.flush()
            finally:
                with contextlib.suppress(nbd.Error):
                    h.shutdown()
                del h  # libnbd closes the handle when it is collected
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def write_disk(
    disk: DomainDisk,
    size: int,
    restore: Callable[[Callable[[int, bytes], None]], object],
    progress: Callable[[int], None],
) -> None:
    """The point's disk onto ``disk``'s image, which must be at least ``size`` bytes."""
    if not disk.path:
        raise SiteError(f"disk {disk.dev} has no file or device to write", "PlanInvalid")
    with writable_export(disk.path, disk.fmt) as h:
        have = int(h.get_size())
        if have < size:
            raise SiteError(
                f"disk {disk.dev} holds {have} bytes, the point's {size}: grow it first", "PlanInvalid"
            )
        offset = 0
        while offset < have:  # zero runs of the point may be skipped by the restore
            n = min(1 << 30, have - offset)
            h.zero(n, offset)
            offset += n

        def write(at: int, data: bytes) -> None:
            view = memoryview(data)
            for start in range(0, len(view), MAX_REQUEST):
                h.pwrite(view[start : start + MAX_REQUEST], at + start)
            progress(at + len(data))

        restore(write)
