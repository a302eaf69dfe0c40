"""One worker process of the bandwidth benchmark (``benchmarks.bandwidth`` starts several).

    python -m benchmarks.bandwidth_proc --address HOST:PORT --inventory FILE --site S --vm VM --bytes N

A site worker (``workers.main.build_workers`` for site S: its workflows, ``BandwidthCoordinator``
among them, and its activities, polling the site's task queue) with the worker's own ``ShareKeeper``
(``workers.main._bandwidth_keeper``, as ``serve`` installs it), that ships one disk of ``N`` random
bytes through ``open_repository(..., site=S, vm=VM, seed=True)``, the call ``ship_disks`` makes, so
every write passes the site's token bucket whose rate follows the share the coordinator grants.
Prints ``ready`` once polling, waits for a line on stdin (so every process starts together), then
prints one JSON line (when it started and ended, the bytes its site bucket let through, the seconds
it waited, the shares it was given over time) and keeps running until the next line on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from benchmarks.bandwidth import BytesSource
from seawall.blockstore.bandwidth import shared_bucket
from seawall.contract.bandwidth import BandwidthClaim
from seawall.contract.queues import site_queue
from seawall.plans import load_inventory
from seawall.runtime import bandwidth
from seawall.runtime.bandwidth import claim_share
from seawall.runtime.config import Settings
from seawall.sites.replica import open_repository
from workers.main import _bandwidth_keeper, activity_threads, build_workers


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
    load_inventory(args.inventory)  # a bad inventory fails here, before "ready"
    settings = Settings(
        temporal_address=args.address, inventory=Path(args.inventory), plans_dir=Path(args.inventory).parent
    )
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    # The site's worker, built as `seawall worker <site>` builds it (its workflows, the coordinator
    # among them, and its activities on the site's queue), and the worker's own ShareKeeper.
    keeper = _bandwidth_keeper(client, settings)
    if args.no_coordinator:
        bandwidth.install(None)
    with ThreadPoolExecutor(max_workers=activity_threads(settings)) as pool:
        workers = build_workers(client, [args.site], settings, pool, orchestration=False)
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            if not args.no_coordinator:
                # A long-running site's coordinator is already up when a ship starts: start it now
                # (a claim that does not ship), so its first workflow task is not timed as shipping.
                warm = BandwidthClaim(member=keeper.member, shipping=False)
                await claim_share(client, f"site:{args.site}", site_queue(args.site), warm)
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            result = await asyncio.to_thread(ship, args.inventory, args.site, args.vm, data)
            await asyncio.to_thread(keeper.release)
            # Like a worker that stays up after a ship, this one keeps polling (and hosting the
            # coordinator, if it does) until every process is done: the parent says "stop".
            print(json.dumps(result), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
            await asyncio.gather(*runs, return_exceptions=True)
    bandwidth.install(None)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
