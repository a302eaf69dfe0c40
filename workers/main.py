"""Worker process: polls the orchestration queue and one task queue per site it serves.

A worker holds credentials only for the sites it was started for; Temporal routes each activity to a
worker of the site it touches (``seawall-site-<name>``). SIGTERM/SIGINT drain in-flight activities for up
to ``graceful_shutdown_s`` before exiting, so a rolling restart never abandons a transfer mid-chunk
(a killed one resumes from its heartbeat anyway).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Interceptor, Worker

from seawall.contract.bandwidth import STICKY_S
from seawall.contract.queues import seed_queue, site_queue
from seawall.runtime import bandwidth
from seawall.runtime.config import Settings
from seawall.runtime.metrics import metrics_runtime, worker_metrics
from seawall.runtime.sandbox import sandbox_runner
from seawall.runtime.temporal import connect
from seawall.security.redaction import install_log_redaction
from seawall.security.secrets import register_configured_files

log = logging.getLogger("seawall.worker")

# What a worker process runs: everything, only workflow tasks (and their local activities), or only
# activity tasks (``build_workers``).
Role = Literal["all", "workflows", "activities"]
ROLES: tuple[Role, ...] = ("all", "workflows", "activities")


def workflow_classes() -> list[type]:
    from workflows.catalog import ALL_WORKFLOWS

    return list(ALL_WORKFLOWS)


def site_workflow_classes() -> list[type]:
    from workflows.catalog import SITE_WORKFLOWS

    return list(SITE_WORKFLOWS)


def site_activities(site: str, settings: Settings) -> list[Callable[..., Any]]:
    from activities.registry import activities_for_site

    return activities_for_site(site, settings)


def orchestration_activities(settings: Settings) -> list[Callable[..., Any]]:
    from activities.registry import orchestration_activities as acts

    return acts(settings)


def build_workers(
    client: Client,
    sites: Sequence[str],
    settings: Settings,
    executor: ThreadPoolExecutor,
    *,
    orchestration: bool = True,
    identity: str | None = None,
    interceptors: Sequence[Interceptor] = (),
    role: Role = "all",
) -> list[Worker]:
    """The process's workers: one on the orchestration queue (when ``orchestration``), one per site.

    ``role`` splits a deployment into processes: ``workflows`` runs the workflow tasks and the local
    activities they call (a cycle's quick steps) and takes no activity task from the queue;
    ``activities`` runs only the queue's activity tasks (transfers, verifies, recoveries). Apart, the
    data path's threads never hold the GIL a workflow task is waiting for: under overload the
    transfers queue on the server while the workflow tasks still finish in time."""
    identity = identity or f"{os.getpid()}@{socket.gethostname()}"
    common: dict[str, Any] = {
        "activity_executor": executor,
        "max_concurrent_activities": settings.max_concurrent_activities,
        "graceful_shutdown_timeout": timedelta(seconds=settings.graceful_shutdown_s),
        "interceptors": list(interceptors),
        "workflow_runner": sandbox_runner(),
        # A dead process's sticky queue is given up after this: its workflows (the bandwidth
        # coordinator's claims among them) go on at another worker within seconds, not the SDK's 10 s.
        "sticky_queue_schedule_to_start_timeout": timedelta(seconds=STICKY_S),
        "no_remote_activities": role == "workflows",
    }
    if settings.max_concurrent_workflow_tasks is not None:
        common["max_concurrent_workflow_tasks"] = settings.max_concurrent_workflow_tasks

    def workflows(classes: list[type]) -> list[type]:
        return [] if role == "activities" else classes

    workers: list[Worker] = []
    if orchestration:
        if role != "activities":
            _install_intent_verifier(settings)
        workers.append(
            Worker(
                client,
                task_queue=settings.orchestration_queue,
                workflows=workflows(workflow_classes()),
                activities=orchestration_activities(settings),
                identity=f"{identity}/orchestration",
                **common,
            )
        )
    for site in sites:
        activities = site_activities(site, settings)
        workers.append(
            Worker(
                client,
                task_queue=site_queue(site),
                workflows=workflows(site_workflow_classes()),
                activities=activities,
                identity=f"{identity}/{site}",
                **common,
            )
        )
        if role != "workflows":
            # The site's seeds, in slots of their own: a burst of protections waits here, not in
            # the slots the protected VMs' cycles and the recoveries take.
            workers.append(
                Worker(
                    client,
                    task_queue=seed_queue(site),
                    activities=activities,
                    identity=f"{identity}/{site}/seeds",
                    **{**common, "max_concurrent_activities": settings.max_concurrent_seeds},
                )
            )
    return workers


def activity_threads(settings: Settings) -> int:
    """Threads for a process's blocking activities: every slot of a site's queue and of its seeds."""
    return settings.max_concurrent_activities + settings.max_concurrent_seeds


async def serve(
    sites: Sequence[str],
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    orchestration: bool = True,
    role: Role = "all",
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when no event is given)."""
    settings = settings or Settings()
    _know_configured_secrets(settings)
    metrics = None
    runtime = metrics_runtime(settings)
    if runtime is not None:
        # Before connecting: the client (and so every worker) reports SDK metrics to its Runtime.
        Runtime.set_default(runtime, error_if_already_set=False)
        from seawall.plans import load_inventory

        inventory = load_inventory(settings.inventory)
        meter = runtime.metric_meter
        metrics = worker_metrics(meter, settings, inventory, sites, orchestration=orchestration)
    client = await connect(settings)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=activity_threads(settings)) as executor:
        workers = build_workers(
            client,
            sites,
            settings,
            executor,
            orchestration=orchestration,
            interceptors=[metrics.interceptor()] if metrics else [],
            role=role,
        )
        queues = [w.task_queue for w in workers]
        keeper = _bandwidth_keeper(client, settings)
        gauges = asyncio.create_task(metrics.run(client, settings.metrics_refresh_s)) if metrics else None
        if metrics is not None:
            log.info("metrics: http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
        log.info(
            "worker started: queues=%s role=%s temporal=%s", ",".join(queues), role, settings.temporal_address
        )
        runs = [asyncio.create_task(w.run()) for w in workers]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *runs], return_when=asyncio.FIRST_COMPLETED)
        log.info("worker stopping: draining in-flight activities (up to %.0fs)", settings.graceful_shutdown_s)
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        # Hand this process's bandwidth shares back to the other workers of its sites at once.
        await asyncio.to_thread(keeper.release)
        bandwidth.install(None)
        stopper.cancel()
        if gauges is not None:
            gauges.cancel()
        for task in runs:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
        log.info("worker stopped")


def _bandwidth_keeper(client: Client, settings: Settings) -> bandwidth.ShareKeeper:
    """This process's claims on its sites' (and stores') total bandwidth limits, made on this loop."""
    site_prefix = "site:"

    def queue_for(scope: str) -> str:
        # A site's coordinator runs on the site's own queue (its workers are there whenever it ships);
        # a store's, shared by several sites, on the orchestration queue.
        if scope.startswith(site_prefix):
            return site_queue(scope.removeprefix(site_prefix))
        return settings.orchestration_queue

    keeper = bandwidth.ShareKeeper(
        client, asyncio.get_running_loop(), f"{os.getpid()}@{socket.gethostname()}", queue_for
    )
    bandwidth.install(keeper)
    return keeper


def _install_intent_verifier(settings: Settings) -> None:
    """The keys the approve/abort validators of this worker's workflows verify signatures with."""
    from seawall.security.intents import install_verifier, keys_from_settings

    keys = keys_from_settings(settings.intent_keys)
    install_verifier(settings.orchestration_queue, keys)
    if keys is None:
        log.warning(
            "SEAWALL_INTENT_KEYS is not set: anyone who reaches the Temporal frontend or UI can start a "
            "real failover and approve its gates (docs/OPERATIONS.md, 'Locking the Temporal UI')"
        )


# Client libraries that log every HTTP request at INFO (Azure's SDK wrote 7.5 MB in 20 minutes).
_CHATTY = ("azure", "urllib3", "botocore", "boto3", "s3transfer", "httpx", "httpcore")


def _know_configured_secrets(settings: Settings) -> None:
    """Teach the process's redactor every secret the inventory and the plans reference, before the
    first line that could show one: a fresh worker masks a site's password it has not used yet."""
    register_configured_files([Path(settings.inventory), *sorted(Path(settings.plans_dir).glob("*.y*ml"))])


def run_worker(
    sites: Sequence[str],
    *,
    orchestration: bool = True,
    role: Role = "all",
    metrics_port: int | None = None,
) -> None:
    """The ``seawall worker`` process; ``metrics_port`` replaces ``SEAWALL_METRICS_PORT`` (the two
    role processes of one host share its settings file but not a port)."""
    settings = Settings()
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    logging.basicConfig(
        level=os.environ.get("SEAWALL_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    third_party = os.environ.get("SEAWALL_THIRD_PARTY_LOG_LEVEL", "WARNING").upper()
    for name in _CHATTY:
        logging.getLogger(name).setLevel(third_party)
    # Every line masks configured secrets and URL credentials, and stays one line.
    install_log_redaction()
    asyncio.run(serve(sites, settings, orchestration=orchestration, role=role))
    logging.shutdown()


if __name__ == "__main__":
    import sys

    run_worker(sys.argv[1:])
