"""One worker process of the bandwidth benchmark (``benchmarks.bandwidth`` starts several).

    python -m benchmarks.bandwidth_proc --address HOST:PORT --inventory FILE --site S --vm VM --bytes N

What a site's worker does when it ships, minus the activity around it: it polls the site's task queue
with the ``BandwidthCoordinator`` workflow (as every site worker does), installs the process's
``ShareKeeper`` on its event loop (as ``workers.main.serve`` does), and ships one disk of ``N`` random
bytes through ``open_repository(..., site=S, vm=VM, seed=True)``, the call ``ship_disks`` makes, so
every write passes the site's token bucket whose rate follows the share the coordinator grants.
Prints ``ready`` once polling, waits for a line on stdin (so every process starts together), then
prints one JSON line: when it started and ended, the bytes its site bucket let through, the seconds
it waited, and the shares it was given over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import threading
import time
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from benchmarks.bandwidth import BytesSource
from seawall.blockstore.bandwidth import shared_bucket
from seawall.contract.queues import site_queue
from seawall.plans import load_inventory
from seawall.runtime import bandwidth
from seawall.sites.replica import open_repository
from workflows.bandwidth import BandwidthCoordinatorWorkflow


def ship(inventory_path: str, site: str, vm: str, data: bytes) -> dict[str, Any]:
    inventory = load_inventory(inventory_path)
    pvm = inventory.protected_vm(vm)
    repo = open_repository(
        inventory, pvm.replica_store, inventory.policy(pvm.policy), site=site, vm=vm, seed=True
    )
    bucket = shared_bucket(f"site:{site}")
    shares: list[tuple[float, float | None]] = []
    done = threading.Event()

    def sample() -> None:
        # The rate this process's site bucket runs at, twice a second: the share it was granted.
        while not done.wait(0.5):
            shares.append((round(time.time() - start, 1), None if bucket.unlimited else round(bucket.rate)))

    start = time.time()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    shipped = repo.ship(BytesSource(data), vm, "disk0", session=f"bench-{vm}.disk0")
    repo.commit_point(vm, f"p-{os.getpid()}", [shipped])
    end = time.time()
    done.set()
    return {
        "pid": os.getpid(),
        "start": start,
        "end": end,
        "bucket_bytes": bucket.taken,
        "bytes_shipped": shipped.bytes_shipped,
        "waited_s": round(float(getattr(repo.store, "waited", 0.0)), 3),
        "shares": shares,
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--vm", required=True)
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument(
        "--no-coordinator", action="store_true", help="each process applies the whole limit (the old way)"
    )
    args = parser.parse_args(argv)
    # The keeper's warnings (a coordinator out of reach, the fallback it takes) go to stderr.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = os.urandom(args.bytes)  # incompressible: every byte goes over the "link"
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    member = f"{os.getpid()}@{socket.gethostname()}"
    keeper = bandwidth.ShareKeeper(
        client, asyncio.get_running_loop(), member, lambda scope: site_queue(scope.partition(":")[2])
    )
    bandwidth.install(None if args.no_coordinator else keeper)
    load_inventory(args.inventory)  # a bad inventory fails here, before "ready"
    worker = Worker(
        client,
        task_queue=site_queue(args.site),
        workflows=[BandwidthCoordinatorWorkflow],
        identity=f"{member}/{args.site}",
    )
    async with worker:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        result = await asyncio.to_thread(ship, args.inventory, args.site, args.vm, data)
        await asyncio.to_thread(keeper.release)
    bandwidth.install(None)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
