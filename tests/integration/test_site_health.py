"""Site health against the lab: a site's own worker is listed as its poller and probes it; a site
without a worker shows none and is not waited on; the CLI and the API say the same.

Each test runs in a namespace of its own: in the lab's shared one, other tests' workers poll the
same site queues (and the server lists a stopped worker for a while)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from seawall.cli import app
from seawall.contract.queues import ORCHESTRATION_QUEUE
from seawall.control.sites import site_health
from seawall.lab import LabInfo
from seawall.model import Inventory
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from seawall.runtime.metrics.sources import queue_pollers
from seawall.runtime.temporal import connect
from tests.integration.isolated_namespace import isolated_namespace
from tests.integration.replication_env import write_inventory
from workers.main import build_workers


async def _polling(client: object, *queues: str, timeout: float = 30.0) -> None:
    """Until the server lists a poller on each queue (a loaded machine takes a while to start)."""
    async with asyncio.timeout(timeout):
        while True:
            seen = [await queue_pollers(client, q) for q in queues]  # type: ignore[arg-type]
            if all(all(kinds.values()) for kinds in seen):
                return
            await asyncio.sleep(0.2)


def _health_env(lab: LabInfo, tmp_path: Path, namespace: str) -> tuple[str, Settings, Inventory]:
    """A fresh orchestration queue, worker settings on the test's namespace, and the lab inventory."""
    queue = f"{ORCHESTRATION_QUEUE}-{uuid.uuid4().hex[:8]}"
    inv_path = write_inventory(tmp_path, Path(lab.state_dir), s3_prefix="health/", lab=lab)
    settings = Settings(
        temporal_address=lab.temporal.address,
        temporal_namespace=namespace,
        inventory=inv_path,
        orchestration_queue=queue,
        graceful_shutdown_s=2,
    )
    return queue, settings, load_inventory(inv_path)


@pytest.fixture
async def namespace(lab: LabInfo) -> AsyncIterator[str]:
    async with isolated_namespace(lab.temporal.address, "seawall-health") as name:
        yield name


async def test_site_health_lists_the_sites_own_workers_and_probes_through_them(
    lab: LabInfo, tmp_path: Path, namespace: str
) -> None:
    queue, settings, inventory = _health_env(lab, tmp_path, namespace)
    client = await connect(settings)
    identity = f"health-{uuid.uuid4().hex[:6]}"
    before = datetime.now(UTC)
    with ThreadPoolExecutor(max_workers=32) as pool:
        workers = build_workers(client, ["primary"], settings, pool, identity=identity)
        run = asyncio.gather(*(w.run() for w in workers))
        try:
            await _polling(client, queue, "seawall-site-primary")
            rows = {
                r.site: r
                for r in await site_health(client, inventory, queue, sites=["primary", "dr"], timeout_s=30)
            }
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers))
            await run
    primary = rows["primary"]
    assert primary.pollers >= 1 and any(
        w.identity == f"{identity}/primary" and w.live for w in primary.workers
    ), primary
    assert primary.reachable is True and primary.kind == "vsphere", primary
    assert primary.probed_at is not None and primary.probed_at >= before
    assert primary.probe_worker and primary.healthy
    dr = rows["dr"]
    assert dr.pollers == 0 and dr.reachable is None and not dr.healthy
    assert "no worker polls seawall-site-dr" in dr.detail


def test_status_sites_cli_says_which_site_has_no_worker(lab: LabInfo, tmp_path: Path, namespace: str) -> None:
    """No orchestration worker on a fresh queue: nothing is probed (no waiting), the workers the
    server lists are shown, and a site without any is unhealthy: exit 1."""
    queue = f"{ORCHESTRATION_QUEUE}-{uuid.uuid4().hex[:8]}"
    inv_path = write_inventory(tmp_path, Path(lab.state_dir), s3_prefix="health/", lab=lab)
    inventory = load_inventory(inv_path)
    env = {
        "SEAWALL_TEMPORAL_ADDRESS": lab.temporal.address,
        "SEAWALL_TEMPORAL_NAMESPACE": namespace,
        "SEAWALL_ORCHESTRATION_QUEUE": queue,
    }
    result = CliRunner().invoke(app, ["status", "--sites", "--json", "-i", str(inv_path)], env=env)
    assert result.exit_code == 1, result.output
    body = {r["site"]: r for r in json.loads(result.stdout)}
    assert set(body) == {s.name for s in inventory.sites}
    assert body["dr"]["healthy"] is False and body["dr"]["pollers"] == 0
    assert all(r["reachable"] is None and r["probed_at"] is None for r in body.values())
    table = CliRunner().invoke(app, ["status", "--sites", "-i", str(inv_path)], env={**env, "COLUMNS": "300"})
    assert table.exit_code == 1 and "no worker polls seawall-site-dr" in table.stdout.replace("\n", "")


async def test_sites_api_lists_workers_and_probes_on_request(
    lab: LabInfo, tmp_path: Path, namespace: str
) -> None:
    import httpx

    from seawall.api.app import create_app
    from seawall.api.auth import parse_tokens
    from tests.unit.test_api_endpoints import VIEWER, auth, make_settings, token_file

    queue = f"{ORCHESTRATION_QUEUE}-{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path).model_copy(
        update={
            "temporal_address": lab.temporal.address,
            "orchestration_queue": queue,
            "inventory": write_inventory(tmp_path, Path(lab.state_dir), s3_prefix="health/", lab=lab),
        }
    )
    client = await connect(Settings(temporal_address=lab.temporal.address, temporal_namespace=namespace))
    wsettings = Settings(
        temporal_address=lab.temporal.address,
        temporal_namespace=namespace,
        inventory=settings.inventory,
        orchestration_queue=queue,
        graceful_shutdown_s=2,
    )

    async def factory() -> object:
        return client

    app = create_app(settings, parse_tokens(token_file()), factory)  # type: ignore[arg-type]
    identity = f"api-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(max_workers=32) as pool:
        workers = build_workers(client, ["primary"], wsettings, pool, identity=identity)
        run = asyncio.gather(*(w.run() for w in workers))
        try:
            await _polling(client, queue, "seawall-site-primary")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=60) as http:
                listed = await http.get("/v1/sites", headers=auth(VIEWER))
                probed = await http.get("/v1/sites?probe=true", headers=auth(VIEWER))
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers))
            await run
    assert listed.status_code == 200, listed.text
    rows = {r["site"]: r for r in listed.json()}
    assert rows["primary"]["pollers"] >= 1 and rows["primary"]["reachable"] is None
    assert any(w["identity"] == f"{identity}/primary" for w in rows["primary"]["workers"])
    assert rows["dr"]["pollers"] == 0
    probed_rows = {r["site"]: r for r in probed.json()}
    assert probed_rows["primary"]["reachable"] is True and probed_rows["primary"]["probed_at"]


async def test_half_a_split_pair_is_named_and_its_probe_fails_the_whole_pair_answers(
    lab: LabInfo, tmp_path: Path, namespace: str
) -> None:
    """A site served by `--role workflows` alone takes its workflow tasks and runs none of its
    activities: status names the kind nobody polls, and the probe (an activity on the site's queue)
    fails, so the site is unhealthy. With `--role activities` beside it, the probe goes through."""
    queue, settings, inventory = _health_env(lab, tmp_path, namespace)
    client = await connect(settings)
    identity = f"pair-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(max_workers=32) as pool:
        half = build_workers(client, ["primary"], settings, pool, identity=f"{identity}-w", role="workflows")
        runs = [asyncio.gather(*(w.run() for w in half))]
        other: list[Any] = []
        try:
            async with asyncio.timeout(30):
                while not (await queue_pollers(client, queue)).get("workflow") or not (
                    await queue_pollers(client, "seawall-site-primary")
                ).get("workflow"):
                    await asyncio.sleep(0.2)
            [alone] = await site_health(client, inventory, queue, sites=["primary"], timeout_s=5)
            other = build_workers(
                client, ["primary"], settings, pool, identity=f"{identity}-a", role="activities"
            )
            runs.append(asyncio.gather(*(w.run() for w in other)))
            await _polling(client, queue, "seawall-site-primary")
            [pair] = await site_health(client, inventory, queue, sites=["primary"], timeout_s=30)
        finally:
            await asyncio.gather(*(w.shutdown() for w in [*half, *other]))
            await asyncio.gather(*runs)
    assert alone.pollers == 1 and alone.reachable is False and not alone.healthy, alone
    assert alone.detail.startswith("no worker polled the activity tasks of seawall-site-primary"), alone
    assert "--role activities" in alone.detail and "probe failed" in alone.detail
    [listed] = [w for w in alone.workers if w.identity == f"{identity}-w/primary"]
    assert listed.live and listed.tasks == ["workflow"]
    assert pair.pollers == 2 and pair.healthy and pair.reachable is True, pair
    assert "no worker polled" not in pair.detail
    tasks = {w.identity: w.tasks for w in pair.workers if w.live}
    assert tasks == {f"{identity}-w/primary": ["workflow"], f"{identity}-a/primary": ["activity"]}
