"""The HTTP API under load: ``GET /v1/plans`` from 20 concurrent clients while another samples ``/healthz``.

    python -m benchmarks.api --json
    python -m benchmarks.api --json --baseline-src /tmp/seawall-main   # the same load on another checkout

For each plans folder (2 and 200 plan files by default, copies of ``examples/erp-dr.yaml`` under other
names, over ``examples/inventory.yaml``) the API is started as a real ``seawall api serve`` subprocess on
a free 127.0.0.1 port with a token file of one viewer token. ``SEAWALL_TEMPORAL_ADDRESS`` points at a
closed port: ``/v1/plans`` answers from the plan files alone and never connects to Temporal (no client,
fake or real, is used). Then, from this process (the load generator, a separate process from the
server; on a 2-core machine the two compete for the CPU, and the output says so and reports both
processes' CPU time):

- ``--clients`` (20) workers, each with its own keep-alive connection, ``GET /v1/plans`` back to back
  until ``--requests`` have been sent in all or ``--duration-s`` has passed (whichever first: the load
  is bounded and stops by itself), after ``--warmup`` requests that are not counted;
- one more client, in a process of its own (so that what it measures is the server's answer, not the
  busy generator's delay in noticing it), samples ``GET /healthz`` every ``--health-every-ms`` for as
  long as the load runs.

Reported per plans folder: requests/s, p50/p90/p99/max latency of each, errors, and the issue's targets
as booleans with the figures (>= 500 req/s, p99 < 100 ms, /healthz p99 < 50 ms); the machine's load
average before and after. With ``--baseline-src`` the same load runs first against that source tree
(``PYTHONPATH``), so old and new code are compared in one run under the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOKEN = "swl_benchmark-viewer-token"

TARGET_RPS = 500.0
TARGET_P99_MS = 100.0
TARGET_HEALTH_P99_MS = 50.0


def write_plans(folder: Path, count: int) -> Path:
    """``count`` valid plan files: erp-dr as shipped, then copies of it named erp-dr-0001, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    erp = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    erp["inventory"] = str(EXAMPLES / "inventory.yaml")
    for i in range(count):
        name = "erp-dr" if i == 0 else f"erp-dr-{i:04d}"
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(dict(erp, name=name), sort_keys=False))
    return folder


def write_tokens(path: Path) -> Path:
    from seawall.api.auth import hash_token

    entry = {"name": "bench", "sha256": hash_token(TOKEN), "role": "viewer", "plans": "*"}
    path.write_text(yaml.safe_dump({"tokens": [entry]}))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serve(work: Path, plans: Path, src: Path, extra_env: dict[str, str] | None = None) -> Any:
    """``seawall api serve`` from ``src`` on a free loopback port; stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "SEAWALL_INVENTORY": str(EXAMPLES / "inventory.yaml"),
        "SEAWALL_PLANS_DIR": str(plans),
        "SEAWALL_REPORTS_DIR": str(work / "reports"),
        "SEAWALL_AUDIT_LOG": str(work / "audit.log"),
        # A closed port: nothing here may need Temporal, and a request that tried would fail loudly.
        "SEAWALL_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "SEAWALL_API_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    log = work / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seawall.cli",
                "api",
                "serve",
                "--port",
                str(port),
                "--tokens",
                str(write_tokens(work / "tokens.yaml")),
            ],
            cwd=src,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in ms (nearest rank) of latencies in seconds."""
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.999999) - 1))] * 1000, 2)

    return {"p50_ms": rank(0.50), "p90_ms": rank(0.90), "p99_ms": rank(0.99), "max_ms": rank(1.0)}


def sample_health(url: str, every_s: float, stop: Any, out: Any) -> None:
    """In its own process: GET /healthz every ``every_s`` until ``stop`` is set; puts the latencies
    (seconds) and error counts on ``out``. Apart from the generator, so its figures are the server's
    answer time, not the time the busy generator took to notice the answer."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=30.0) as probe:
        probe.get("/healthz")  # connect first
        out.put("ready")
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                response = probe.get("/healthz")
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    key = f"healthz {response.status_code}"
                    errors[key] = errors.get(key, 0) + 1
            except httpx.HTTPError as exc:
                key = f"healthz {type(exc).__name__}"
                errors[key] = errors.get(key, 0) + 1
            stop.wait(every_s)
    out.put((latencies, errors))


async def load(
    url: str, *, clients: int, requests: int, duration_s: float, warmup: int, health_every_s: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = httpx.Timeout(30.0)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    pool = [
        httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits)
        for _ in range(clients)
    ]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    statuses: dict[int, int] = {}
    sent = 0
    body_bytes = 0
    spawn = multiprocessing.get_context("spawn")
    stop, results = spawn.Event(), spawn.Queue()
    prober = spawn.Process(target=sample_health, args=(url, health_every_s, stop, results), daemon=True)
    prober.start()
    try:
        # Warm-up: open every connection and let the server build its catalogue; not counted.
        for i in range(max(warmup, clients)):
            await pool[i % clients].get("/v1/plans")
        await asyncio.to_thread(results.get, True, 60)  # the prober is connected
        deadline = time.monotonic() + duration_s

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal sent, body_bytes
            while sent < requests and time.monotonic() < deadline:
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = await client.get("/v1/plans")
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                body_bytes = len(response.content)

        cpu0 = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in pool))
        elapsed = time.perf_counter() - started
        generator_cpu = time.process_time() - cpu0
        stop.set()
        health, health_errors = await asyncio.to_thread(results.get, True, 60)
        errors.update(health_errors)
    finally:
        stop.set()
        prober.join(10)
        if prober.is_alive():
            prober.kill()
        for c in pool:
            await c.aclose()
    ok = statuses.get(200, 0)
    return {
        "elapsed_s": round(elapsed, 3),
        "requests": len(latencies),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "requests_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "body_bytes": body_bytes,
        "latency": percentiles(latencies),
        "healthz": {"samples": len(health), **percentiles(health)},
        "generator_cpu_s": round(generator_cpu, 3),
    }


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    p99 = result["latency"]["p99_ms"]
    hp99 = result["healthz"]["p99_ms"]
    return {
        "requests_per_s": result["requests_per_s"],
        "rps_at_least_500": result["requests_per_s"] >= TARGET_RPS,
        "p99_ms": p99,
        "p99_under_100ms": p99 is not None and p99 < TARGET_P99_MS,
        "healthz_p99_ms": hp99,
        "healthz_p99_under_50ms": hp99 is not None and hp99 < TARGET_HEALTH_P99_MS,
    }


def run_one(src: Path, plan_count: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="seawall-bench-api-") as tmp:
        work = Path(tmp)
        plans = write_plans(work / "plans", plan_count)
        with serve(work, plans, src) as server:
            cpu0 = server.cpu_s()
            load_before = os.getloadavg()
            result = asyncio.run(
                load(
                    server.url,
                    clients=args.clients,
                    requests=args.requests,
                    duration_s=args.duration_s,
                    warmup=args.warmup,
                    health_every_s=args.health_every_ms / 1000,
                )
            )
            cpu1 = server.cpu_s()
            load_after = os.getloadavg()
        server_cpu = round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None
        return {
            "plans": plan_count,
            "source": str(src),
            **result,
            "server_cpu_s": server_cpu,
            # Load-independent figures: CPU per answered request, and how busy each side was. A server
            # far from busy while the rate is low means the machine (or the generator) was the limit.
            "server_cpu_ms_per_request": round(server_cpu * 1000 / result["requests"], 3)
            if server_cpu is not None and result["requests"]
            else None,
            "generator_cpu_ms_per_request": round(result["generator_cpu_s"] * 1000 / result["requests"], 3)
            if result["requests"]
            else None,
            "server_busy_fraction": round(server_cpu / result["elapsed_s"], 3)
            if server_cpu is not None and result["elapsed_s"]
            else None,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "targets": verdict(result),
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=int, nargs="+", default=[2, 200], help="plan files per run")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=6000, help="stop after this many (all clients)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="or after this long")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--health-every-ms", type=float, default=20.0)
    parser.add_argument("--src", type=Path, default=ROOT, help="the source tree the server runs from")
    parser.add_argument("--baseline-src", type=Path, help="also run this source tree first, to compare")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)

    runs: dict[str, list[dict[str, Any]]] = {}
    for label, src in (("baseline", args.baseline_src), ("current", args.src)):
        if src is None:
            continue
        runs[label] = [run_one(src.resolve(), count, args) for count in args.plans]
    out: dict[str, Any] = {
        "endpoint": "GET /v1/plans (viewer token, every plan in scope); /healthz sampled alongside",
        "server": (
            "seawall api serve subprocess on 127.0.0.1; no Temporal client is used (/v1/plans needs none)"
        ),
        "generator": (
            f"{args.clients} httpx clients (one keep-alive connection each) in this process, separate from "
            f"the server, and a /healthz prober in a third; on this {os.cpu_count()}-CPU machine they "
            "compete for the CPU with the server"
        ),
        "bounds": {"requests": args.requests, "duration_s": args.duration_s, "warmup": args.warmup},
        "cpus": os.cpu_count(),
        "targets": {
            "requests_per_s": TARGET_RPS,
            "p99_ms": TARGET_P99_MS,
            "healthz_p99_ms": TARGET_HEALTH_P99_MS,
        },
        "runs": runs,
        "generator_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for label, results in runs.items():
            for r in results:
                t = r["targets"]
                print(
                    f"{label:8} {r['plans']:4} plans: {t['requests_per_s']:7.1f} req/s  p50 "
                    f"{r['latency']['p50_ms']} ms  p99 {t['p99_ms']} ms  "
                    f"/healthz p99 {t['healthz_p99_ms']} ms  "
                    f"load {r['loadavg_before'][0]} -> {r['loadavg_after'][0]}  "
                    f"cpu server {r['server_cpu_s']} s generator {r['generator_cpu_s']} s"
                )
    return out


if __name__ == "__main__":
    main()
