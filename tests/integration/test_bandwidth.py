"""Bandwidth limits on the real data path into the lab's moto S3, measured loosely.

Two ships at once through one process-wide bucket share the limit (their total rate is the limit,
not twice it); the same ships without a limit run much faster, so the measurement can fail.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.blockstore.bandwidth import ThrottledStore, TokenBucket, shared_bucket
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.repository import Repository
from seawall.blockstore.stores.backend import ObjectStore
from seawall.blockstore.stores.s3 import S3Store
from seawall.lab import LabInfo
from seawall.plans import load_inventory
from seawall.sites.replica import open_repository
from tests.datapath_scenario import BytesSource

pytestmark = pytest.mark.lab

MiB = 1024 * 1024
KEY = KeyMaterial(key_id="bw-test", key=bytes(range(32)))
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3(lab: LabInfo) -> Iterator[S3Store]:
    store = S3Store(
        lab.s3.bucket,
        f"test-bandwidth/{uuid.uuid4().hex[:12]}",
        endpoint_url=lab.s3.endpoint_url,
        region=lab.s3.region,
        access_key_id=lab.s3.access_key_id,
        secret_access_key=lab.s3.secret_access_key,
    )
    yield store
    for k in list(store.list()):
        store.delete(k)


def _two_ships(stores: list[ObjectStore], size: int, tag: str) -> float:
    """Ship a fresh disk of ``size`` random bytes into each store concurrently; seconds taken."""
    errors: list[BaseException] = []

    def ship(store: ObjectStore, vm: str) -> None:
        try:
            repo = Repository(store, KEY, pack_target=512 * 1024)
            shipped = repo.ship(BytesSource(os.urandom(size)), vm, "disk0")
            repo.commit_point(vm, "p0", [shipped])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=ship, args=(s, f"vm-{tag}-{i}")) for i, s in enumerate(stores)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return time.monotonic() - start


def test_two_ships_share_one_limit(s3: S3Store) -> None:
    size = 3 * MiB
    unlimited = _two_ships([s3, s3], size, "free")
    # A limit well under what this machine ships unlimited right now (a busy moto ships 1 MiB/s), so
    # the limited run's length is the limiter's doing whatever the load.
    limit = min(1 * MiB, max(128 * 1024, int(2 * size / unlimited / 4)))
    bucket = TokenBucket(limit)
    elapsed = _two_ships([ThrottledStore(s3, bucket), ThrottledStore(s3, bucket)], size, "limited")
    shipped = bucket.taken
    assert shipped >= 2 * size  # random data does not compress: everything went through the bucket
    # At most the limit (after the one-second burst), with a generous margin for scheduling...
    assert (shipped - limit) / elapsed <= 1.15 * limit, (shipped, elapsed)
    # ...and not absurdly below it (the limiter does not over-throttle).
    assert shipped / elapsed >= 0.5 * limit, (shipped, elapsed)
    # Without the limit the same work is much faster, so the bound above is the limiter's doing.
    assert unlimited < elapsed / 2, (unlimited, elapsed)
    assert bucket.waited > 0


def test_inventory_limits_reach_the_data_path(lab: LabInfo, tmp_path: Path) -> None:
    text = (REPO_ROOT / "tests/data/plans/good/inventory.yaml").read_text()
    text = text.replace(
        "    datastore: ds-primary\n", "    datastore: ds-primary\n    bandwidth_limit: 2000000\n", 1
    )
    text = text.replace("    path: replica\n", "    path: replica\n    bandwidth_limit: 5000000\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "replica.key").write_bytes(os.urandom(32))
    (tmp_path / "inventory.yaml").write_text(text)
    inv = load_inventory(tmp_path / "inventory.yaml")
    repo = open_repository(inv, "local", inv.policy("rpo-5m"), site="primary")
    assert isinstance(repo.store, ThrottledStore)
    assert [b.rate for b in repo.store.buckets] == [2_000_000, 5_000_000]
    # The same scope in the same process is the same bucket: all ships of the worker share it.
    assert repo.store.buckets[0] is shared_bucket("site:primary", 2_000_000)
    again = open_repository(inv, "local", inv.policy("rpo-5m"), site="primary")
    assert isinstance(again.store, ThrottledStore) and again.store.buckets[0] is repo.store.buckets[0]
    # A restore (no site) is not throttled by the site.
    assert [b.rate for b in open_repository(inv, "local", inv.policy("rpo-5m")).store.buckets] == [5_000_000]  # type: ignore[attr-defined]
