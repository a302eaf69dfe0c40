"""Points of a shut-off domain: its images served read-only by ``qemu-nbd``, one server per disk.

libvirt's backup API needs a running QEMU, but a planned failover's final cycle reads a source it has
just shut down. Its disks do not change while it is off, and a read-only ``qemu-nbd`` holds the image
lock, so the domain cannot start under the point either. The servers play the backup job's part: begun
by ``create_snapshot``, found again by a retried ship (they outlive a killed worker: ``--fork``), ended
by ``release_snapshot``. CBT still works when the newest checkpoint of ours is the newest checkpoint
of the disk: its persistent bitmap (named like the checkpoint) then counts every write since, and
``qemu-nbd --bitmap`` exports it. A point taken this way makes no checkpoint (libvirt 9 creates none
for a shut-off domain): the next cycle after it hash-compares.

State beside the sockets: ``<key>.offline.json`` names the domain, the base checkpoint and, per disk,
its socket, pid file and bitmap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from seawall.sites.base import SiteError
from seawall.sites.kvm.backup import Checkpoint, DomainDisk, checkpoints, job_key, remove_leftovers


def state_path(directory: Path, key: str) -> Path:
    return directory / f"{key}.offline.json"


def read_state(directory: Path, key: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(state_path(directory, key).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid_file: str) -> int | None:
    """The pid of a live qemu-nbd from ``pid_file``; None when it is gone (or the pid is reused)."""
    try:
        pid = int(Path(pid_file).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"qemu-nbd" in cmdline else None


def serving(state: dict[str, Any]) -> bool:
    return all(_alive(d["pid"]) and os.path.exists(d["socket"]) for d in state["disks"].values())


def _serve(disk: DomainDisk, sock: str, pid: str, bitmap: str | None) -> None:
    binary = shutil.which("qemu-nbd")
    if binary is None:
        raise SiteError("qemu-nbd is not installed on this worker (Debian: qemu-utils)", "SnapshotFailed")
    argv = [binary, "--fork", "-r", "-t", "-e", "8", "-f", disk.fmt, "-x", disk.dev, "-k", sock]
    argv += [f"--pid-file={pid}"] + ([f"--bitmap={bitmap}"] if bitmap else []) + [disk.path]
    # --fork returns once the server listens; it lives on in its own session, past this worker.
    done = subprocess.run(argv, capture_output=True, text=True, start_new_session=True, timeout=60)
    if done.returncode != 0:
        raise SiteError(
            f"qemu-nbd could not serve {disk.path}: {done.stderr.strip()}", "SnapshotFailed", retryable=True
        )


def stop(directory: Path, key: str) -> int:
    """Stop the servers of point ``key`` and remove its files; 1 when there were servers to stop."""
    stopped = 0
    # By pid file, not by state: an attempt that died between two disks wrote no state yet.
    for pid_file in directory.glob(f"{key}-*.pid") if directory.is_dir() else []:
        pid = _alive(str(pid_file))
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(str(pid_file)) and time.monotonic() < deadline:
                time.sleep(0.05)
            stopped = 1
    remove_leftovers(directory, key)
    return stopped


def stop_stale(directory: Path, uuid: str, keep: str) -> int:
    """Stop the servers of other points of this domain (cycles that never released); how many points
    had servers to stop."""
    if not directory.is_dir():
        return 0
    stopped = 0
    for entry in directory.glob("*.offline.json"):
        key = entry.name.removesuffix(".offline.json")
        state = read_state(directory, key)
        if key != keep and state is not None and state.get("uuid") == uuid:
            stopped += stop(directory, key)
    return stopped


def _leaf_for(cps: list[Checkpoint], base: Checkpoint, dev: str) -> bool:
    """Whether ``base``'s bitmap of ``dev`` still records: no later checkpoint tracks the disk."""
    return dev in base.disks and not any(cp.created > base.created and dev in cp.disks for cp in cps)


def begin(dom: Any, name: str, disks: list[DomainDisk], directory: Path) -> dict[str, Any]:
    """Serve the shut-off domain's disks for point ``name`` (or find them served); its state."""
    uuid = dom.UUIDString()
    key = job_key(uuid, name)
    state = read_state(directory, key)
    if state is not None and serving(state):
        return state
    stop(directory, key)
    stop_stale(directory, uuid, key)
    directory.mkdir(parents=True, exist_ok=True)
    cps = checkpoints(dom)
    ours = [cp for cp in cps if cp.ours]
    base = ours[-1] if ours else None
    state = {"uuid": uuid, "point": name, "base": base.change_id if base else None, "disks": {}}
    for disk in disks:
        if not disk.path:
            raise SiteError(f"disk {disk.dev} of {dom.name()!r} has no file to read", "SnapshotFailed")
        sock = str(directory / f"{key}-{disk.dev}.sock")
        pid = str(directory / f"{key}-{disk.dev}.pid")
        bitmap = base.name if base is not None and disk.bitmaps and _leaf_for(cps, base, disk.dev) else None
        try:
            _serve(disk, sock, pid, bitmap)
        except SiteError:
            if bitmap is None:
                raise
            bitmap = None  # an inconsistent bitmap (QEMU was killed): read the disk whole instead
            _serve(disk, sock, pid, None)
        state["disks"][disk.dev] = {"socket": sock, "pid": pid, "bitmap": bitmap}
    tmp = state_path(directory, key).with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_path(directory, key))
    return state
