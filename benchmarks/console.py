"""How fast the console's protection page answers and renders with N VMs really protected.

    python -m benchmarks.console --vms 500 --json

Needs the lab's Temporal dev server (``seawall lab up``; its address is read from the lab's lab.json
unless ``--temporal`` is given). Protects N raw-image VMs on a directory site of their own (the fleet of
``benchmarks.schedules``: real seed cycles, points, schedules in Temporal; only the hypervisor is left
out), with a worker in this process. Then, for the first ``--baseline-vms`` of them and for all N, a real
``seawall api serve`` on a free 127.0.0.1 port (inventory listing those VMs, a viewer token):

- data: ``GET /v1/console/protection`` (what the protection page fetches) ``--data-runs`` times back to
  back, each answer checked to hold every VM; ``GET /healthz`` as often, for the server's floor;
- render: headless Debian Chromium (``/usr/bin/chromium`` through Playwright, no browser download), a
  fresh browser context per run with the token in its sessionStorage: the time from starting the
  navigation to ``#/protection`` until the table shows all N VM rows. Then the page is left to load the
  fleet's 24-hour strips (reported, not judged) so the next run does not meet their listing.

The server is measured as it is deployed: its answers come from its last few seconds' read of the
fleet, renewed in the background (their age is reported: ``answer_age_s``). What one read of the
fleet costs is measured too, on a second server that reads on every request
(``SEAWALL_API_STATUS_CACHE_S=0``): ``data_read``.

Reported: p50/p95/max of each, ratios against the baseline fleet and against /healthz measured in the
same run, and the issue's targets (data < 1 s, render < 2 s at 500 VMs) as booleans. Exit code 1 when
a target is missed. Finally every VM is unprotected (a protect still running is terminated first, so
it cannot create a schedule after the cleanup), running cycles are cancelled, the store's GC schedule
is deleted and the worker stops; SIGINT or SIGTERM on the way stops the run and does the same cleanup
(once: a second signal only says the cleanup is under way).

``--fleet-inventory PATH`` measures a fleet another run protected and keeps (that run's inventory): no
protect, no cleanup, no worker here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.async_api import Browser, async_playwright
from temporalio.client import Client

from benchmarks.api import TOKEN, serve
from benchmarks.console_fleet import protect_all, stop_on_signals, teardown
from benchmarks.console_timing import TARGET_DATA_S, TARGET_RENDER_S, ratio, summary, verdict
from benchmarks.fleet import vm_name, write_fleet
from seawall.lab.info import load_lab
from seawall.runtime.config import Settings
from seawall.runtime.temporal import connect
from workers.main import activity_threads, build_workers

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# As tests/integration/console_stack.py: no update, sync or other background traffic off the machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROWS = "#protection tbody tr[data-vm]"
# Once the table holds n VM rows: when (performance.now(), ms since navigation start), and when the
# protection data it drew had arrived (Resource Timing), so the console's own drawing time shows apart.
ALL_ROWS_JS = f"""n => {{
  if (document.querySelectorAll({json.dumps(ROWS)}).length < n) return false;
  const shown = performance.now();
  const ends = performance.getEntriesByType("resource")
    .filter((e) => e.name.endsWith("/v1/console/protection") && e.responseEnd <= shown)
    .map((e) => e.responseEnd);
  return {{ shown, data_end: ends.length ? Math.max(...ends) : null }};
}}"""
STRIPS_DONE_JS = "() => !document.querySelector('#protection td.strip-cellwrap > span.muted')"
EXIT_SIGNALLED = 130


def subset_inventory(inventory: Path, count: int, out: Path) -> Path:
    """The same inventory listing only the first ``count`` protected VMs: the baseline API's view."""
    data = yaml.safe_load(inventory.read_text())
    data["protected_vms"] = data["protected_vms"][:count]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


async def time_get(
    url: str, path: str, runs: int, expect_rows: int | None
) -> tuple[list[float], dict[str, Any]]:
    """``runs`` sequential GETs on one keep-alive connection; latencies of the good answers, and what
    went wrong otherwise (a status, an exception, or an answer missing VMs)."""
    latencies: list[float] = []
    ages: list[float] = []
    problems: Counter[str] = Counter()
    states: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        await http.get("/healthz")  # connect first: the connection is not what is measured
        for _ in range(runs):
            t0 = time.perf_counter()
            try:
                response = await http.get(path)
            except httpx.HTTPError as exc:
                problems[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - t0
            if response.status_code != 200:
                problems[f"status {response.status_code}"] += 1
                continue
            if expect_rows is not None:
                rows = response.json()
                if len(rows) != expect_rows:
                    problems[f"{len(rows)} rows, not {expect_rows}"] += 1
                    continue
                states = Counter(r["state"] for r in rows)
            latencies.append(elapsed)
            if "Age" in response.headers:
                ages.append(float(response.headers["Age"]))
    info: dict[str, Any] = {"errors": dict(problems), "states": dict(states)}
    if ages:
        info["answer_age_s"] = summary(ages)
    return latencies, info


async def time_render(
    browser: Browser, url: str, rows: int, runs: int, strips_timeout_s: float
) -> tuple[list[float], dict[str, Any]]:
    """Navigation to all ``rows`` VM rows shown, ``runs`` times, each in a fresh context (cold cache)."""
    walls: list[float] = []
    in_page: list[float] = []
    drawing: list[float] = []
    strips: list[float] = []
    errors: list[str] = []
    for _ in range(runs):
        context = await browser.new_context(viewport={"width": 1440, "height": 960})
        try:
            # Signed in as the console does it (sessionStorage, this tab only) before its scripts run.
            await context.add_init_script(f"sessionStorage.setItem('seawall.token', {json.dumps(TOKEN)})")
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            t0 = time.perf_counter()
            await page.goto(f"{url}/console#/protection", wait_until="commit")
            shown = await page.wait_for_function(ALL_ROWS_JS, arg=rows, timeout=120_000)
            walls.append(time.perf_counter() - t0)
            marks = await shown.json_value()
            in_page.append(marks["shown"] / 1000)
            if marks["data_end"] is not None:
                drawing.append((marks["shown"] - marks["data_end"]) / 1000)
            t1 = time.perf_counter()
            try:
                await page.wait_for_function(STRIPS_DONE_JS, timeout=strips_timeout_s * 1000, polling=250)
                strips.append(time.perf_counter() - t1)
            except Exception:  # a strip load past the bound is reported as missing
                errors.append(f"strips not loaded within {strips_timeout_s} s")
        finally:
            await context.close()
    return walls, {
        "in_page_s": summary(in_page),
        "rows_drawn_after_data_s": summary(drawing),
        "strips_after_rows_s": summary(strips),
        "page_errors": errors,
    }


async def measure(
    browser: Browser, work: Path, inventory: Path, vms: int, settings: Settings, args: argparse.Namespace
) -> dict[str, Any]:
    """One API server over ``inventory`` (``vms`` protected VMs): /healthz, the data, the render."""
    plans = work / "plans"
    plans.mkdir(exist_ok=True)
    env = {
        "SEAWALL_INVENTORY": str(inventory),
        "SEAWALL_TEMPORAL_ADDRESS": settings.temporal_address,
        "SEAWALL_ORCHESTRATION_QUEUE": settings.orchestration_queue,
    }
    # serve() polls with blocking calls: entered and left in a thread so this loop's worker keeps going.
    server_cm = serve(work, plans, ROOT, env)
    server = await asyncio.to_thread(server_cm.__enter__)
    try:
        health, health_info = await time_get(server.url, "/healthz", args.data_runs, None)
        data, data_info = await time_get(server.url, "/v1/console/protection", args.data_runs, vms)
        render, render_info = await time_render(
            browser, server.url, vms, args.render_runs, args.strips_timeout_s
        )
    finally:
        await asyncio.to_thread(server_cm.__exit__, None, None, None)
    # What one read of the fleet costs: a server that keeps nothing.
    (read_dir := work / "read").mkdir(exist_ok=True)
    reader_cm = serve(read_dir, plans, ROOT, {**env, "SEAWALL_API_STATUS_CACHE_S": "0"})
    reader = await asyncio.to_thread(reader_cm.__enter__)
    try:
        read, read_info = await time_get(reader.url, "/v1/console/protection", args.read_runs, vms)
    finally:
        await asyncio.to_thread(reader_cm.__exit__, None, None, None)
    return {
        "vms": vms,
        "healthz": {**summary(health), "errors": health_info["errors"]},
        "data": {**summary(data), **data_info},
        "data_read": {**summary(read), **read_info},
        "render": {**summary(render), **render_info},
    }


async def measure_both(
    client: Client, work: Path, inventory: Path, vms: int, baseline_vms: int, settings: Settings, args: Any
) -> list[dict[str, Any]]:
    baseline_inventory = subset_inventory(inventory, baseline_vms, work / "inventory-baseline.yaml")
    fleet_inventory = subset_inventory(inventory, vms, work / "inventory-measured.yaml")
    results: list[dict[str, Any]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for label, inv, count in (
                ("baseline", baseline_inventory, baseline_vms),
                ("fleet", fleet_inventory, vms),
            ):
                (api_dir := work / f"api-{label}").mkdir(exist_ok=True)
                results.append(await measure(browser, api_dir, inv, count, settings, args))
        finally:
            await browser.close()
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    with stop_on_signals(task) as signals:
        return await _run(args, signals)


async def _run(args: argparse.Namespace, signals: list[str]) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="seawall-bench-console-"))
    baseline_vms = min(args.baseline_vms, args.vms)
    protect_s: float | None = None
    left: list[str] = []
    if args.fleet_inventory:  # a fleet protected and kept by another run: measured only
        inventory = Path(args.fleet_inventory)
        listed = yaml.safe_load(inventory.read_text())["protected_vms"]
        if len(listed) < args.vms:
            raise SystemExit(f"--fleet-inventory: {inventory} lists {len(listed)} VMs, not --vms {args.vms}")
        settings = Settings(temporal_address=args.temporal, inventory=inventory)
        client = await connect(settings)
        results = await measure_both(client, work, inventory, args.vms, baseline_vms, settings, args)
    else:
        site = f"bench-{uuid.uuid4().hex[:8]}"  # its own task queue: no other worker takes its tasks
        inventory = write_fleet(
            work / "fleet",
            args.vms,
            disk_bytes=args.disk_kib * 1024,
            interval_s=args.interval_s,
            site=site,
            prefix=site,
        )
        vms = [vm_name(i, site) for i in range(args.vms)]
        settings = Settings(
            temporal_address=args.temporal,
            inventory=inventory,
            orchestration_queue=f"bench-orchestration-{uuid.uuid4().hex[:8]}",
            max_concurrent_activities=args.slots,
            graceful_shutdown_s=5,
        )
        client = await connect(settings)
        queue = settings.orchestration_queue
        sys.stderr.write(f"fleet {site}: {args.vms} VMs, work dir {work}\n")
        with ThreadPoolExecutor(max_workers=activity_threads(settings)) as pool:
            workers = build_workers(client, [site], settings, pool, identity="bench-console")
            running = asyncio.gather(*(w.run() for w in workers))
            try:
                t0 = time.perf_counter()
                await protect_all(client, queue, vms, args.concurrency)
                protect_s = time.perf_counter() - t0
                results = await measure_both(client, work, inventory, args.vms, baseline_vms, settings, args)
            finally:
                # Shielded: a signal during the cleanup must not cut it short.
                left = await asyncio.shield(teardown(client, queue, site, vms, args.concurrency))
                for w in workers:
                    await w.shutdown()
                await running
                if not args.workdir:  # the fleet's images, store and key are of no use after the run
                    shutil.rmtree(work, ignore_errors=True)
                if signals:
                    sys.stderr.write(f"cleaned up after {signals[0]}; not cleaned: {left or 'nothing'}\n")
    baseline, fleet = results
    return {
        "benchmark": "console protection page: GET /v1/console/protection and its render in Chromium",
        "vms": args.vms,
        "baseline_vms": baseline_vms,
        "interval_s": args.interval_s,
        "disk_bytes": args.disk_kib * 1024,
        "fleet_source": args.fleet_inventory or "protected by this run",
        "protect_all_s": round(protect_s, 3) if protect_s is not None else None,
        "server": "seawall api serve subprocess on 127.0.0.1 (viewer token), the lab's Temporal",
        "browser": f"{CHROMIUM} headless via Playwright, fresh context per render run",
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "targets": {"data_s": TARGET_DATA_S, "render_s": TARGET_RENDER_S},
        "baseline": baseline,
        "fleet": fleet,
        "ratios": {
            "data_p50_vs_baseline": ratio(fleet["data"]["p50_s"], baseline["data"]["p50_s"]),
            "render_p50_vs_baseline": ratio(fleet["render"]["p50_s"], baseline["render"]["p50_s"]),
            "data_p50_vs_healthz": ratio(fleet["data"]["p50_s"], fleet["healthz"]["p50_s"]),
            "data_read_p50_vs_baseline": ratio(fleet["data_read"]["p50_s"], baseline["data_read"]["p50_s"]),
        },
        "verdict": verdict(fleet["data"], fleet["render"]),
        "teardown_left": left,
    }


def default_temporal() -> str:
    with contextlib.suppress(Exception):
        return load_lab().temporal.address
    return "127.0.0.1:7233"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--baseline-vms", type=int, default=50, help="the baseline fleet (first of the N)")
    parser.add_argument("--data-runs", type=int, default=20)
    parser.add_argument("--render-runs", type=int, default=5)
    parser.add_argument("--read-runs", type=int, default=5, help="reads of the fleet with no server cache")
    parser.add_argument("--strips-timeout-s", type=float, default=90.0)
    # An hour: shorter, the schedules of VMs already protected fire while the rest are still seeding and,
    # on 2 cores, slow the setup of 500 VMs to a crawl (a 600 s run managed 350 in 17 min).
    parser.add_argument("--interval-s", type=int, default=3600, help="RPO interval of the fleet (>= 30 s)")
    parser.add_argument("--disk-kib", type=int, default=64)
    parser.add_argument("--slots", type=int, default=32, help="worker max_concurrent_activities")
    parser.add_argument("--concurrency", type=int, default=50, help="VMs protected/unprotected at once")
    parser.add_argument("--temporal", default=None, help="host:port (default: the lab's)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--fleet-inventory", default=None, help="measure the fleet of this inventory (kept by another run)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.vms < 1 or args.baseline_vms < 1:
        parser.error("--vms and --baseline-vms: at least 1")
    if args.data_runs < 1 or args.render_runs < 1:
        parser.error("--data-runs and --render-runs: at least 1")
    if args.interval_s < 30:
        parser.error("--interval-s: policies allow 30 s at the least")
    if not args.temporal:
        args.temporal = default_temporal()
    if not args.temporal.startswith("127.0.0.1:"):
        parser.error("--temporal: this benchmark talks only to 127.0.0.1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.stderr.write(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium\n")
        return 2
    # Temporal's core logs to file descriptor 1: with --json, stdout carries only the JSON.
    out = os.fdopen(os.dup(1), "w") if args.json else sys.stdout
    if args.json:
        sys.stdout.flush()
        os.dup2(2, 1)
    try:
        result = asyncio.run(run(args))
    except asyncio.CancelledError:  # stopped by SIGINT/SIGTERM, after its cleanup
        return EXIT_SIGNALLED
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
        out.flush()
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    v = result["verdict"]
    return 0 if v["data_under_1s"] and v["render_under_2s"] and not result["teardown_left"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
