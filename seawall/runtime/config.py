"""Process configuration (workers, CLI, API) from the environment: never from workflow inputs.

Every setting reads ``SEAWALL_<NAME>``; e.g. ``SEAWALL_TEMPORAL_ADDRESS=temporal.dr.corp:7233``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from seawall.contract.queues import ORCHESTRATION_QUEUE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEAWALL_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # mTLS to the Temporal frontend: all three paths or none; server name when it differs from the host.
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None
    # Payload encryption (seawall.security.codec): key references (file:/env:, optional #key-id),
    # comma-separated, newest first -- the first encrypts, every one decrypts. Unset: payloads are
    # stored as plain JSON.
    payload_keys: str | None = None
    # The codec server's bearer token, as a secret reference (env:NAME or file:PATH). Unset: no token is
    # asked for, so bind it where only the allowed can reach it.
    codec_token: str | None = None
    # Require payloads to arrive encrypted (with payload_keys set): a plain workflow input or update
    # from a codec-less client (the Temporal UI, a script at the frontend) is refused, not run.
    payload_require_encryption: bool = False

    # Signed intents (seawall.security.intents): HMAC key references, newest first, the format of
    # payload_keys. Set on orchestration workers and every door (API, CLI). With it set, a worker runs
    # a real failover, commit, reprotect, abort or approval only with a door's valid signature.
    intent_keys: str | None = None
    # Drills may be started (and their gates approved) without an intent (e.g. from the Temporal UI).
    intent_unsigned_drills: bool = True
    # A real run started without an intent waits this long for an admin's signed approval of the
    # ``authorise-start`` gate, then fails having fenced nothing (0: refused at once).
    intent_confirm_wait_s: float = Field(default=3600.0, ge=0, le=7 * 24 * 3600)
    # How long an intent a door signs stays valid.
    intent_ttl_s: float = Field(default=300.0, gt=0, le=3600)

    inventory: Path = Field(default=Path("examples/inventory.yaml"))
    orchestration_queue: str = ORCHESTRATION_QUEUE
    # Blocking clients (pyvmomi, boto3, azure) run in threads; the pool is sized to the slot count so no
    # activity waits for a thread after the worker has accepted it.
    max_concurrent_activities: int = 32
    # Seeds (a newly protected VM's first full copy: its ship and its verify) run on the site's seed
    # queue in slots of their own, this many at once per process, beside the activity slots: a burst
    # of protections never starves the cycles of VMs already protected, or a recovery.
    max_concurrent_seeds: int = Field(default=8, ge=1)
    # Workflow tasks a worker process takes at once (None: the SDK's default). Fewer than the process
    # can finish within the task timeout under load: the rest wait on the server, where no clock runs.
    max_concurrent_workflow_tasks: int | None = Field(default=None, ge=2)
    graceful_shutdown_s: float = 30.0
    # A transfer that has not heartbeated for this long is presumed dead and resumed elsewhere (from its
    # last checkpoint). Transfers heartbeat every 5 s between checkpoints, so tens of seconds suffice:
    # a killed worker costs a cycle this long, not minutes.
    heartbeat_timeout_s: float = 20.0
    # Each cycle's verify also reads every point of its VM in full (a scrub) once per this interval;
    # 0 turns the periodic scrub off (``seawall verify`` still runs one).
    scrub_interval_s: float = 86400.0
    # Scan (and ship) this much between durable checkpoints; None keeps the data path's 1 GiB default.
    checkpoint_mib: int | None = None
    # Garbage collection lists the whole store, so it runs on its own schedule per store, not per cycle.
    gc_interval_s: float = 3600.0

    # Recovery: where plan files and run reports live.
    plans_dir: Path = Field(default=Path("examples"))
    reports_dir: Path = Field(default=Path(".seawall/reports"))
    # Lab only: send TCP/HTTP health checks to this host (port + offset) instead of the recovered VM's
    # address, where a test runs a stand-in. Simulated VMs have no real address to connect to.
    health_check_redirect: str | None = None
    health_check_port_offset: int = 0
    # A CA bundle HTTPS health checks trust (an internal CA); default: the system's.
    health_check_ca: Path | None = None

    # Prometheus: the worker serves /metrics (Temporal SDK metrics and seawall.runtime.metrics) on this
    # port when set. Loopback by default so nothing is exposed by accident; containers set 0.0.0.0.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # How often each worker re-reads its VMs' newest verified points from Temporal for the RPO gauges.
    metrics_refresh_s: float = Field(default=60.0, gt=0)
