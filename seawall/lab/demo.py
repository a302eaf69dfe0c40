"""The demo on top of the lab: a worker, every primary VM protected at a 30 s RPO, a guest writer.

Processes are detached and tracked by pid files under ``<lab state>/demo/``; ``stop`` ends only those
(checking each pid still runs our command line before signalling it).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

from seawall import reports
from seawall.contract.messages import ProtectResult
from seawall.contract.names import Query, Workflow
from seawall.contract.search import SA_VM
from seawall.control import recovery, replication
from seawall.control.errors import NoReport
from seawall.lab import LabInfo, load_lab
from seawall.lab.disks import write_blocks

REPO = Path(__file__).resolve().parents[2]  # the checkout (seawall/lab/demo.py is two below it)
INVENTORY = REPO / "examples" / "inventory.yaml"
# The demo's runs write their reports where `seawall report` and the API look by default (Settings'
# reports_dir, from the checkout), not in the lab's state dir where neither finds them.
REPORTS_DIR = REPO / ".seawall" / "reports"
DEMO_POLICY = "rpo-30s"


def demo_dir(lab: LabInfo) -> Path:
    return Path(lab.state_dir) / "demo"


def _pid_alive(pid_file: Path, marker: str) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def _spawn(lab: LabInfo, name: str, argv: list[str], env: dict[str, str]) -> int:
    folder = demo_dir(lab)
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / f"{name}.pid"
    running = _pid_alive(pid_file, argv[-1])
    if running:
        return running
    log = (Path(lab.state_dir) / "logs" / f"demo-{name}.log").open("ab")
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


# The lab's VMs are simulated: nothing answers on their application ports. The demo runs stand-ins on
# loopback (at this offset) and points the worker's TCP/HTTP health checks at them.
STANDIN_OFFSET = 17000
STANDIN_PORTS = {5432: "tcp", 443: "https", 8080: "http"}


def demo_tls(lab: LabInfo) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1, so the web tier's HTTPS check is real TLS."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = demo_dir(lab) / "tls"
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "standin.pem", folder / "standin.key"
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Seawall demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def start(lab: LabInfo) -> dict[str, int]:
    ca, _, _ = demo_tls(lab)
    env = {**os.environ, **lab.env(), "SEAWALL_INVENTORY": str(INVENTORY)}
    env["SEAWALL_HEALTH_CHECK_CA"] = str(ca)
    env["SEAWALL_TEMPORAL_ADDRESS"] = lab.temporal.address
    env["SEAWALL_PLANS_DIR"] = str(INVENTORY.parent)
    env["SEAWALL_REPORTS_DIR"] = str(REPORTS_DIR)
    env["SEAWALL_HEALTH_CHECK_REDIRECT"] = "127.0.0.1"
    env["SEAWALL_HEALTH_CHECK_PORT_OFFSET"] = str(STANDIN_OFFSET)
    standins = _spawn(lab, "standins", [sys.executable, "-m", "seawall.lab.demo", "standins"], env)
    worker = _spawn(
        lab,
        "worker",
        [sys.executable, "-m", "seawall.cli", "worker", "--site", "primary", "--site", "dr", "--site", "aws"],
        env,
    )
    time.sleep(2)  # let it poll before the first workflow task arrives
    asyncio.run(_protect_all(lab))
    writer = _spawn(lab, "writer", [sys.executable, "-m", "seawall.lab.demo", "writer"], env)
    return {"worker": worker, "writer": writer, "standins": standins}


def drill(lab: LabInfo, plan: str = "erp-dr") -> tuple[str, str]:
    """A test failover of the example plan: approve its gate as "demo", let it come up, clean it up.

    Returns the report's HTML path and the run's Temporal UI link.
    """
    return asyncio.run(_drill(lab, plan))


async def _drill(lab: LabInfo, plan: str) -> tuple[str, str]:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy

    from seawall.contract.messages import ApproveInput, FailoverInput
    from seawall.runtime.config import Settings
    from seawall.runtime.temporal import connect

    settings = Settings(temporal_address=lab.temporal.address, inventory=INVENTORY)
    client = await connect(settings)
    # Attach to a drill that is already going (a demo run again) rather than refuse.
    handle = await recovery.start_failover(
        client,
        settings.orchestration_queue,
        FailoverInput(plan=plan, mode="test", ttl_s=3600),
        conflict=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    while True:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        progress = await handle.query(Query.PROGRESS)
        if progress.get("pending_gate"):
            print(f"  gate {progress['pending_gate']!r} reached: approving it as 'demo'")
            await recovery.approve(client, plan, ApproveInput(gate=progress["pending_gate"], by="demo"))
        if str(progress.get("phase", "")).startswith("drill running"):
            break
        await asyncio.sleep(1)
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        print("  every VM is up on the drill network at the dr site; cleaning the drill up")
        await recovery.cleanup(client, plan)
    reports_dir = REPORTS_DIR
    try:
        report = await handle.result()
    except WorkflowFailureError as exc:
        # A failed run has written its report too; name it with the reason.
        print(f"  the drill failed: {exc.cause}")
        try:
            html = str(reports.find(reports_dir, plan).with_suffix(".html"))
        except NoReport:
            html = "-"
        return html, f"{lab.temporal.ui_url}/namespaces/default/workflows/{handle.id}"
    _, html_path = reports.paths(reports_dir, plan, report.run)
    link = f"{lab.temporal.ui_url}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}"
    return str(html_path), link


async def _protect_all(lab: LabInfo) -> list[ProtectResult]:
    from seawall.runtime.config import Settings
    from seawall.runtime.temporal import connect

    settings = Settings(temporal_address=lab.temporal.address, inventory=INVENTORY)
    client = await connect(settings)
    vms = [vm.name for vm in lab.vsphere["primary"].vms]
    queue = settings.orchestration_queue
    handles = [await replication.start_protect(client, queue, vm, DEMO_POLICY) for vm in vms]
    return list(await asyncio.gather(*(replication.protect_result(h) for h in handles)))


def stop(lab: LabInfo) -> list[str]:
    stopped = []
    processes = (
        ("writer", "writer"),
        ("worker", "worker"),
        ("worker-kvm", "kvm-b"),
        ("standins", "standins"),
    )
    for name, marker in processes:
        pid_file = demo_dir(lab) / f"{name}.pid"
        pid = _pid_alive(pid_file, marker)
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if _pid_alive(pid_file, marker) is None:
                    break
                time.sleep(0.1)
            stopped.append(name)
        pid_file.unlink(missing_ok=True)
    return stopped


async def _writer(lab: LabInfo, period_s: float = 10.0) -> None:
    """Guest-like writes into each primary VM's disk, never while one of its cycles runs.

    vcsim's snapshots do not freeze the base disk file (a real ESXi's do), so writing during a cycle
    would show a point that is no instant of the disk; writing between cycles keeps the demo honest.
    """
    from seawall.runtime.config import Settings
    from seawall.runtime.temporal import connect

    client = await connect(Settings(temporal_address=lab.temporal.address, inventory=INVENTORY))
    rng = random.Random()
    while True:
        for vm in lab.vsphere["primary"].vms:
            query = (
                f'WorkflowType = "{Workflow.REPLICATION_CYCLE}" AND {SA_VM.name} = "{vm.name}" '
                'AND ExecutionStatus = "Running"'
            )
            if [wf async for wf in client.list_workflows(query, limit=1)]:
                continue
            for index, disk in enumerate(vm.disks):
                for _ in range(rng.randint(1, 8)):
                    offset = rng.randrange(disk.capacity_bytes // 4096) * 4096
                    write_blocks(lab, "primary", vm.name, offset, rng.randbytes(4096), index)
        await asyncio.sleep(period_s)


def _standins() -> None:
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Accept(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            pass

    servers: list[socketserver.BaseServer] = []
    for port, kind in STANDIN_PORTS.items():
        address = ("127.0.0.1", port + STANDIN_OFFSET)
        if kind == "http":
            servers.append(ThreadingHTTPServer(address, Ok))
        elif kind == "https":
            server = ThreadingHTTPServer(address, Ok)
            _, cert, key = demo_tls(load_lab())
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            servers.append(server)
        else:
            servers.append(socketserver.ThreadingTCPServer(address, Accept))
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    if sys.argv[1:] == ["writer"]:
        asyncio.run(_writer(load_lab()))
    elif sys.argv[1:] == ["standins"]:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        _standins()
