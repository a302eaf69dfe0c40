"""Worker roles against a real Temporal server and a real directory site: a ``workflows`` worker and an
``activities`` worker on the same queues protect a VM together, each doing only its own part."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from benchmarks.fleet import vm_name, write_fleet
from seawall.contract.names import protect_id, seed_cycle_id
from seawall.control import replication
from seawall.runtime.config import Settings
from workers.main import build_workers


async def _identities(client: Client, workflow_id: str) -> tuple[set[str], dict[str, set[str]]]:
    """Who completed the run's workflow tasks, and who ran each of its regular activities."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, str] = {}
    tasks: set[str] = set()
    activities: dict[str, set[str]] = {}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks.add(e.workflow_task_completed_event_attributes.identity)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = e.activity_task_started_event_attributes
            activities.setdefault(scheduled[attrs.scheduled_event_id], set()).add(attrs.identity)
    return tasks, activities


async def test_a_workflows_worker_and_an_activities_worker_protect_a_vm_together(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    site = f"roles-{uuid.uuid4().hex[:8]}"
    inventory = write_fleet(tmp_path, 1, disk_bytes=256 * 1024, interval_s=3600, site=site, prefix=site)
    vm = vm_name(0, site)
    settings = Settings(
        inventory=inventory, orchestration_queue=f"roles-orchestration-{site}", max_concurrent_activities=4
    )
    client = env.client
    with ThreadPoolExecutor(4) as wf_pool, ThreadPoolExecutor(4) as act_pool:
        workers = [
            *build_workers(client, [site], settings, wf_pool, identity="wf", role="workflows"),
            *build_workers(client, [site], settings, act_pool, identity="act", role="activities"),
        ]
        # Each role polls only its kind of task: the workflows worker runs no activity task, the
        # activities worker no workflow.
        for w in workers:
            config = w.config()
            if config["identity"].startswith("wf/"):
                assert config["no_remote_activities"] and config["workflows"], config["identity"]
            else:
                assert not config["workflows"] and config["activities"], config["identity"]
        # The seed slots are the activities worker's alone, and as many as the setting says.
        seed_workers = [w.config() for w in workers if w.config()["identity"].endswith("/seeds")]
        assert [(c["identity"], c["task_queue"]) for c in seed_workers] == [
            (f"act/{site}/seeds", f"seawall-seeds-{site}")
        ]
        assert seed_workers[0]["max_concurrent_activities"] == settings.max_concurrent_seeds
        async with contextlib.AsyncExitStack() as stack:
            for w in workers:
                await stack.enter_async_context(w)
            result = await replication.protect(client, settings.orchestration_queue, vm)
            assert result.first_point
            try:
                protect = await client.get_workflow_handle(protect_id(vm)).describe()
                tasks, activities = await _identities(client, seed_cycle_id(vm, protect.run_id))
                protect_tasks, protect_activities = await _identities(client, protect_id(vm))
            finally:
                await replication.unprotect(client, settings.orchestration_queue, vm)
    # Every workflow task at the workflows worker (the cycle's quick steps are local activities there)...
    assert tasks == {f"wf/{site}"} and protect_tasks == {"wf/orchestration"}
    # ...and every activity task at the activities worker: the seed's transfer and verify in its seed
    # slots (the site's seed queue), the rest on the site's queue.
    assert {"ship_disks", "verify_point"} <= activities.keys(), activities
    seeds = {name: ids for name, ids in activities.items() if name in ("ship_disks", "verify_point")}
    assert all(ids == {f"act/{site}/seeds"} for ids in seeds.values()), activities
    assert all(ids == {f"act/{site}"} for name, ids in activities.items() if name not in seeds), activities
    assert protect_activities, "the protect ran no regular activity (its schedule is made by one)"
    assert all(ids <= {f"act/{site}", "act/orchestration"} for ids in protect_activities.values())
