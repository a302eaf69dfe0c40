"""Shared set-up for replication tests: an isolated inventory, a worker, cycle bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client
from temporalio.service import RPCError

from seawall.control.status import cycle_history
from seawall.lab import LabInfo
from seawall.plans import load_inventory
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect
from seawall.sites.replica import open_repository
from workers.main import build_workers

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _absolute_refs(node: Any, base: Path) -> Any:
    if isinstance(node, dict):
        return {k: _absolute_refs(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute_refs(v, base) for v in node]
    if isinstance(node, str) and node.startswith("file:") and not node[5:].startswith("/"):
        return "file:" + str((base / node[5:]).resolve())
    return node


def write_inventory(tmp: Path, lab_state: Path, *, s3_prefix: str, lab: LabInfo | None = None) -> Path:
    """The example inventory, with its own replica directory and S3 prefix, lab secrets by absolute path,
    and the endpoints of the lab actually running (a second lab runs with a port offset)."""
    data = yaml.safe_load((EXAMPLES / "inventory.yaml").read_text())
    data = _absolute_refs(data, EXAMPLES)
    text = yaml.safe_dump(data).replace(str((ROOT / ".seawall" / "lab").resolve()), str(lab_state))
    data = yaml.safe_load(text)
    if lab is not None:
        for site in data["sites"]:
            if site["kind"] == "vsphere" and site["name"] in lab.vsphere:
                site["port"] = lab.vsphere[site["name"]].port
            if site["kind"] == "aws":
                site["endpoint_url"] = lab.s3.endpoint_url
        for store in data["replica_stores"]:
            if store["kind"] == "s3":
                store["endpoint_url"] = lab.s3.endpoint_url
            if store["kind"] == "azure":
                store["account_url"] = lab.azure.blob_endpoint
    for store in data["replica_stores"]:
        if store["kind"] == "directory":
            store["path"] = str(tmp / "replica")
        if store["kind"] in ("s3", "azure"):
            store["prefix"] = s3_prefix  # each test its own corner of the shared bucket/container
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class ReplicationEnv:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.inventory = load_inventory(settings.inventory)

    def repository(self, vm: str) -> Any:
        pvm = self.inventory.protected_vm(vm)
        return open_repository(self.inventory, pvm.replica_store, self.inventory.policy(pvm.policy))

    async def wait_cycle_after(self, vm: str, after: datetime, timeout: float = 120.0) -> str:
        """The point id of the first cycle of ``vm`` that started after ``after`` and completed.

        A cycle that started earlier may have snapshotted the disk before (or during) the caller's
        writes, so it never counts; fail at once on a failed cycle.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            runs = [r for r in await cycle_history(self.client, vm, limit=50) if r.started_at > after]
            for run in sorted(runs, key=lambda r: r.started_at):
                if run.status in ("FAILED", "TERMINATED", "TIMED_OUT", "CANCELED"):
                    raise AssertionError(f"cycle {run.workflow_id} of {vm} ended {run.status}")
                if run.result is not None:
                    return run.result.point_id
            await asyncio.sleep(0.5)
        raise AssertionError(f"no cycle of {vm} started after {after} and completed within {timeout}s")

    async def _running_cycles(self, vm: str) -> set[str]:
        """The run-id tails (a point's and its snapshot's suffix) of ``vm``'s cycles still running."""
        runs = await cycle_history(self.client, vm, limit=50)
        return {r.run_id.replace("-", "")[-12:] for r in runs if r.status == "RUNNING"}

    async def snapshots_left(
        self, vm: str, names: Callable[[], list[str]], timeout: float = 120.0
    ) -> list[str]:
        """The snapshots of ``vm`` (``names()`` lists them at its site) that no running cycle holds.

        A scheduled cycle may be mid-flight when a test looks: its snapshot is in use, not left behind.
        Such cycles are waited for and the site listed again; the running cycles are listed before and
        after the site, so one that starts or ends meanwhile is still seen.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            before = await self._running_cycles(vm)
            listed = names()
            running = before | await self._running_cycles(vm)
            held = [n for n in listed if n.rsplit("-", 1)[-1] in running]
            if not held or asyncio.get_running_loop().time() > deadline:
                return listed
            await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def replication_env(
    lab: LabInfo,
    tmp: Path,
    lab_state: Path,
    *,
    heartbeat_timeout_s: float = 10.0,
    checkpoint_mib: int | None = None,
    worker: bool = True,
    inventory: Path | None = None,
    sites: tuple[str, ...] = ("primary",),
    settings_overrides: Mapping[str, Any] | None = None,
) -> AsyncIterator[ReplicationEnv]:
    """``settings_overrides`` replace fields of the Settings the client and worker use (payload keys,
    namespace)."""
    tmp.mkdir(parents=True, exist_ok=True)
    if inventory is None:
        inventory = write_inventory(tmp, lab_state, s3_prefix=f"test-{uuid.uuid4().hex[:8]}/", lab=lab)
    settings = Settings(
        temporal_address=lab.temporal.address,
        inventory=inventory,
        orchestration_queue=f"seawall-orchestration-{uuid.uuid4().hex[:8]}",
        heartbeat_timeout_s=heartbeat_timeout_s,
        checkpoint_mib=checkpoint_mib,
        graceful_shutdown_s=2,
        max_concurrent_activities=8,
    )
    if settings_overrides:
        settings = settings.model_copy(update=dict(settings_overrides))
    client = await connect(settings)
    env = ReplicationEnv(client, settings)
    if not worker:
        try:
            yield env
        finally:
            await leave_nothing_behind(env)
        return
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
        workers = build_workers(client, list(sites), settings, pool, identity="replication-test")
        runs = asyncio.gather(*(w.run() for w in workers))
        try:
            yield env
        finally:
            # While this env's worker still runs, so cancelled cycles release their snapshots.
            await leave_nothing_behind(env)
            await asyncio.gather(*(w.shutdown() for w in workers))
            await runs


async def leave_nothing_behind(env: ReplicationEnv) -> None:
    """A failed test must not leave schedules or runs that a later test's worker would pick up."""
    client = env.client
    for pvm in env.inventory.protected_vms:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(f"replicate/{pvm.name}").delete()
    for store in env.inventory.replica_stores:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(f"gc/{store.name}").delete()
    vms = {p.name for p in env.inventory.protected_vms}
    query = f'ExecutionStatus = "Running" AND TaskQueue = "{env.settings.orchestration_queue}"'
    running = [(wf.id, wf.run_id) async for wf in client.list_workflows(query)]
    for vm in vms:
        cycles = f'ExecutionStatus = "Running" AND WorkflowType = "ReplicationCycle" AND SeawallVM = "{vm}"'
        running += [(wf.id, wf.run_id) async for wf in client.list_workflows(cycles)]
    for wf_id, run_id in running:
        handle = client.get_workflow_handle(wf_id, run_id=run_id)
        with contextlib.suppress(RPCError):
            await handle.cancel()
    for wf_id, run_id in running:
        handle = client.get_workflow_handle(wf_id, run_id=run_id)
        try:
            await asyncio.wait_for(handle.result(), timeout=20)
        except TimeoutError:
            with contextlib.suppress(RPCError):
                await handle.terminate("test cleanup: cancellation did not finish")
        except Exception:  # cancelled or failed: either way it has ended
            pass
