"""Test failovers of the example ERP plan to the DR vCenter: boot order, gate, drill network, cleanup, TTL."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from seawall.contract.messages import (
    ApproveInput,
    FailoverInput,
    ProtectInput,
    ProtectResult,
    RunReport,
    UnprotectInput,
)
from seawall.lab import LabInfo
from seawall.sites.vsphere.client import VSphereConnection
from tests.integration.replication_env import EXAMPLES, ReplicationEnv, replication_env

PLAN = "erp-dr"
VMS = ["db-01", "app-01", "app-02", "web-01", "web-02"]
CHECK_PORTS = (5432, 443, 8080)


def free_offset() -> int:
    """A port offset at which every check port is free on loopback (tests may run side by side)."""
    rng = random.Random()
    for _ in range(50):
        # Below the kernel's ephemeral range (32768+), where outgoing connections would take ports.
        offset = rng.randrange(10000, 24000, 10)
        try:
            for port in CHECK_PORTS:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port offset for the health-check stand-ins")


# For callers that need one offset for a whole module (worker processes configured once).
PORT_OFFSET = free_offset()


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path in ("/healthz", "/") else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def stand_ins(offset: int) -> Iterator[None]:
    """What the simulated VMs cannot be: listeners for the plan's checks, on loopback + offset."""
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 5432 + offset))  # the database: a TCP check
    tcp.listen(16)
    # The web (443) and app (8080) tiers: TCP and HTTP checks, so HTTP servers.
    servers = [ThreadingHTTPServer(("127.0.0.1", port + offset), _Healthz) for port in (443, 8080)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        tcp.close()


@contextlib.contextmanager
def stand_ins_anywhere() -> Iterator[int]:
    """``stand_ins`` at an offset free now, bound at once; yields the offset. An offset chosen long
    before its listeners start (a fixture's setup takes minutes) may be taken by then."""
    for _ in range(20):
        offset = free_offset()
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(stand_ins(offset))
            except OSError:
                continue  # taken between the probe and the bind
            yield offset
            return
    raise RuntimeError("no free port offset for the health-check stand-ins")


def write_plan(tmp: Path, inventory: Path) -> Path:
    """The example plan against the test's inventory, with scaled-down waits and the web tier's HTTPS
    check as HTTP (the stand-in speaks no TLS). The web tier's subnet translation stays: the lab's
    primary VMs report their production addresses (web-01 10.1.1.21 -> 10.2.1.21)."""
    plan = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    plan["inventory"] = str(inventory)
    for group in plan["groups"]:
        # The plan's boot delays (tens of seconds) scaled down: order is asserted, not the waiting.
        if group.get("boot_delay"):
            group["boot_delay"] = "2s"
        for vm in group["vms"]:
            if vm.get("boot_delay"):
                vm["boot_delay"] = "1s"
            for check in vm.get("health_checks", []):
                if check.get("scheme") == "https":
                    check["scheme"] = "http"
                check["timeout"] = "1m"  # a broken stand-in fails the test in a minute, not the plan's 15
    folder = tmp / "plans"
    folder.mkdir(exist_ok=True)
    path = folder / f"{PLAN}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def dr_vms(lab: LabInfo) -> dict[str, dict[str, Any]]:
    site = lab.vsphere["dr"]
    out: dict[str, dict[str, Any]] = {}
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        from pyVmomi import vim

        for vm, props in conn.list_objects(vim.VirtualMachine, ["name", "runtime.powerState", "network"]):
            guest = conn.properties(vm, ["guest.net"]).get("guest.net") or []
            out[props["name"]] = {
                "power": str(props.get("runtime.powerState")),
                "networks": sorted(conn.properties(n, ["name"])["name"] for n in props.get("network") or []),
                "ips": sorted(ip for nic in guest for ip in (nic.ipAddress or []) if ":" not in ip),
            }
    return out


def primary_power(lab: LabInfo) -> dict[str, str]:
    site = lab.vsphere["primary"]
    with VSphereConnection(site.host, site.user, site.password, port=site.port, protocol="http") as conn:
        return {name: conn.power_state(conn.find_vm(name)) for name in VMS}


async def wait_progress(
    handle: WorkflowHandle[Any, Any], predicate: Any, timeout: float = 180
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    last: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        last = await handle.query("progress")
        if predicate(last):
            return last
        desc = await handle.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            raise AssertionError(f"run ended {desc.status.name} while waiting; last progress {last}")
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting; last progress {last}")


@contextlib.asynccontextmanager
async def protected_erp(lab: LabInfo, tmp: Path, lab_state: Path) -> Any:
    overrides = {
        "plans_dir": tmp / "plans",
        "reports_dir": tmp / "reports",
        "health_check_redirect": "127.0.0.1",
        "health_check_port_offset": free_offset(),
    }
    async with replication_env(
        lab, tmp, lab_state, sites=("primary", "dr"), settings_overrides=overrides
    ) as env:
        write_plan(tmp, env.settings.inventory)
        queue = env.settings.orchestration_queue
        await asyncio.gather(
            *(
                env.client.execute_workflow(
                    "ProtectVM",
                    ProtectInput(vm=vm),
                    id=f"protect/{vm}",
                    task_queue=queue,
                    result_type=ProtectResult,
                )
                for vm in VMS
            )
        )
        try:
            yield env
        finally:
            for vm in VMS:
                await env.client.execute_workflow(
                    "UnprotectVM",
                    UnprotectInput(vm=vm),
                    id=f"unprotect/{vm}",
                    task_queue=queue,
                    result_type=int,
                )


async def start_drill(env: ReplicationEnv, ttl_s: float) -> WorkflowHandle[Any, RunReport]:
    return await env.client.start_workflow(
        "RecoveryPlan",
        FailoverInput(plan=PLAN, mode="test", ttl_s=ttl_s),
        id=f"recover/{PLAN}",
        task_queue=env.settings.orchestration_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        result_type=RunReport,
    )


async def test_drill_boots_in_order_on_the_drill_network_and_cleans_up(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    before = set(dr_vms(lab))
    async with protected_erp(lab, tmp_path, lab_state_dir) as env:
        with stand_ins(env.settings.health_check_port_offset):
            handle = await start_drill(env, ttl_s=3600)
            progress = await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead")
            # db and app tiers are up before the gate; the web tier has not started.
            assert {progress["vms"][v] for v in ("db-01", "app-01", "app-02")} == {"healthy"}
            assert "web-01" not in progress["vms"] or progress["vms"]["web-01"] == "waiting"
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update("approve", ApproveInput(gate="db", by="mallory"))
            # One failover per plan: a second start is refused while this one runs.
            with pytest.raises(WorkflowAlreadyStartedError):
                await start_drill(env, ttl_s=3600)
            await handle.execute_update(
                "approve", ApproveInput(gate="web-go-ahead", by="alice", comment="batch ok")
            )
            await wait_progress(handle, lambda p: str(p["phase"]).startswith("drill running"))

            running = {name: info for name, info in dr_vms(lab).items() if name not in before}
            assert len(running) == 5, running
            expected_ips = {"db-01": "10.2.3.10", "app-01": "10.2.2.11", "app-02": "10.2.2.12"}
            expected_ips |= {"web-01": "10.2.1.21", "web-02": "10.2.1.22"}
            for vm, ip in expected_ips.items():
                [(name, info)] = [(n, i) for n, i in running.items() if n.startswith(f"{vm}-drill-")]
                assert info["power"] == "poweredOn", (name, info)
                assert info["networks"] == ["drill"], (name, info)
                assert ip in info["ips"], (name, info)
            # Production untouched: the sources still run.
            assert set(primary_power(lab).values()) == {"poweredOn"}

            await handle.execute_update("cleanup")
            report = await handle.result()

    assert report.status == "completed" and report.mode == "test"
    assert [v.vm for v in report.vms] == VMS
    assert report.approvals[0].by == "alice" and report.approvals[0].approved
    assert all(v.dns == [] for v in report.vms), "a drill must not touch production DNS"
    assert report.cleanup is not None
    assert sorted(r.id for r in report.cleanup.removed if r.kind == "vm") == sorted(running)
    assert set(dr_vms(lab)) == before, "the drill left VMs behind"
    # Boot order: every VM became healthy after each VM it depends on.
    healthy = {v.vm: v.healthy_at for v in report.vms}
    started = {v.vm: v.started_at for v in report.vms}
    assert healthy["db-01"] <= started["app-01"] and healthy["db-01"] <= started["app-02"]
    assert max(healthy["app-01"], healthy["app-02"]) <= min(started["web-01"], started["web-02"])
    html = (tmp_path / "reports" / PLAN / f"{report.run}.html").read_text()
    assert "erp-dr" in html and "<svg" in html and "alice" in html


async def test_a_forgotten_drill_is_cleaned_up_by_its_own_timer(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    """Nobody answers the gate: the drill's time to live, counted from its start, still ends it."""
    before = set(dr_vms(lab))
    async with protected_erp(lab, tmp_path, lab_state_dir) as env:
        with stand_ins(env.settings.health_check_port_offset):
            # Long enough to reach the gate (db and app tiers: about 15 s here), short enough to wait.
            handle = await start_drill(env, ttl_s=60)
            await wait_progress(handle, lambda p: p["pending_gate"] == "web-go-ahead")
            report = await asyncio.wait_for(handle.result(), timeout=300)
    assert report.status == "aborted"
    assert [(a.gate, a.by, a.approved) for a in report.approvals] == [("web-go-ahead", "time to live", False)]
    assert [v.vm for v in report.vms] == ["db-01", "app-01", "app-02"]
    assert report.cleanup is not None and len([r for r in report.cleanup.removed if r.kind == "vm"]) == 3
    assert set(dr_vms(lab)) == before
