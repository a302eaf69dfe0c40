"""The demo's KVM part: the lab's three real guests protected at kvm-a, then a drill of the example KVM plan
in which they boot at kvm-b on its isolated drill network and say so themselves.

It runs beside the vSphere demo with a worker of its own (sites kvm-a and kvm-b, its own orchestration
queue, the example KVM inventory pointed at this lab's libvirt sockets), tracked by a pid file like the
other demo processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from seawall import reports
from seawall.contract.names import Query
from seawall.control import recovery, replication
from seawall.lab import LabInfo
from seawall.lab.demo import REPO, REPORTS_DIR, _spawn, demo_dir

PLAN = "kvm-dr"
QUEUE = "seawall-orchestration-kvm"
MARKER = "kvm-a --site kvm-b"


def files(lab: LabInfo) -> tuple[Path, Path]:
    """The example KVM inventory and plan, written for this lab (its sockets, its replica key)."""
    folder = demo_dir(lab) / "kvm"
    folder.mkdir(parents=True, exist_ok=True)
    inv = yaml.safe_load((REPO / "examples" / "kvm-inventory.yaml").read_text())
    for site in inv["sites"]:
        site["uri"] = lab.kvm[site["name"]].uri
    inv["replica_stores"][0]["path"] = str(Path(lab.state_dir) / "replica-kvm")
    for policy in inv["policies"]:
        policy["key_ref"] = f"file:{lab.replica_key_file}"
    inventory = folder / "kvm-inventory.yaml"
    inventory.write_text(yaml.safe_dump(inv, sort_keys=False))
    (folder / "kvm-dr.yaml").write_text((REPO / "examples" / "kvm-dr.yaml").read_text())
    return inventory, folder


def _settings(lab: LabInfo) -> Any:
    from seawall.runtime.config import Settings

    inventory, _ = files(lab)
    return Settings(temporal_address=lab.temporal.address, inventory=inventory, orchestration_queue=QUEUE)


def start(lab: LabInfo) -> int:
    """The KVM worker (kvm-a, kvm-b), and the three guests protected (their first points seeded)."""
    inventory, folder = files(lab)
    env = {**os.environ, **lab.env(), "SEAWALL_INVENTORY": str(inventory)}
    env["SEAWALL_ORCHESTRATION_QUEUE"] = QUEUE
    env["SEAWALL_PLANS_DIR"] = str(folder)
    env["SEAWALL_REPORTS_DIR"] = str(REPORTS_DIR)
    argv = [sys.executable, "-m", "seawall.cli", "worker", "--site", "kvm-a", "--site", "kvm-b"]
    pid = _spawn(lab, "worker-kvm", argv, env)
    time.sleep(2)
    asyncio.run(_protect(lab))
    return pid


async def _protect(lab: LabInfo) -> None:
    from seawall.runtime.temporal import connect

    client = await connect(_settings(lab))
    vms = [g.name for g in lab.kvm["kvm-a"].guests]
    handles = [await replication.start_protect(client, QUEUE, vm) for vm in vms]
    await asyncio.gather(*(replication.protect_result(h) for h in handles))


def drill(lab: LabInfo) -> tuple[str, list[str]]:
    """A drill of the KVM plan: the guests boot at kvm-b, then it is cleaned up. Returns the report's
    HTML path and each guest's own ready line as the report recorded it."""
    return asyncio.run(_drill(lab))


async def _drill(lab: LabInfo) -> tuple[str, list[str]]:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy

    from seawall.contract.messages import FailoverInput
    from seawall.runtime.temporal import connect

    client = await connect(_settings(lab))
    handle = await recovery.start_failover(
        client,
        QUEUE,
        FailoverInput(plan=PLAN, mode="test", ttl_s=3600),
        conflict=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        progress = await handle.query(Query.PROGRESS)
        if str(progress.get("phase", "")).startswith("drill running"):
            print("  kdb-01, kapp-01 and kweb-01 run at kvm-b on its drill network; cleaning the drill up")
            await recovery.cleanup(client, PLAN)
            break
        await asyncio.sleep(2)
    try:
        report = await handle.result()
    except WorkflowFailureError as exc:
        print(f"  the KVM drill failed: {exc.cause}")
        return "-", []
    lines = [
        f"{v.vm} (point {v.point_id}): {line.split('guest says: ', 1)[1]}"
        for v in report.vms
        for line in v.health.checks
        if "guest says: " in line
    ]
    _, html = reports.paths(REPORTS_DIR, PLAN, report.run)
    return str(html), lines
