"""Workers and clients reach Temporal over mutual TLS when SEAWALL_TEMPORAL_TLS_* are set.

The test makes a throwaway CA, a server certificate (SAN 127.0.0.1 and localhost) and client
certificates, starts a second Temporal dev server of its own, and puts a TLS front end that requires
a client certificate from that CA before it. Then: a client configured through ``Settings`` and
``seawall.runtime.temporal.connect`` -- and a worker on that client -- runs ProbeSite against the lab end to
end, while a client without a certificate, one with a certificate of another CA, and one that does
not trust the server's CA are all refused.

Why a front end: ``temporal server start-dev`` (CLI 1.9.1) has no TLS options (its help lists none,
and the server's TEMPORAL_TLS_* template variables are not read by it: checked, it kept serving
plaintext). A real cluster configures ``global.tls.frontend`` with ``requireClientAuth: true``; what
this test proves is the client side -- the certificate, key, CA and server name Seawall presents and
checks -- against a server that enforces mTLS the way that frontend does (TLS 1.2+, ALPN h2, client
certificate verified against the CA).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.client import Client, TLSConfig

from seawall.contract.messages import ProbeSiteInput, SiteProbe
from seawall.lab import LabInfo
from seawall.lab.temporal import search_attribute_flags, temporal_binary
from seawall.runtime.config import Settings
from seawall.runtime.temporal import TemporalConfigError, connect
from tests.integration.replication_env import write_inventory
from workers.main import build_workers


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    name: str
    cert: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def make_ca(tmp: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name, path, key, cert)


def issue(ca: Authority, tmp: Path, name: str, *, server: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"{name}.seawall.test")]), critical=False
        )
    cert = builder.sign(ca.key, hashes.SHA256())
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return Issued(cert_path, key_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dev_server(state: Path) -> Iterator[int]:
    """A second, throwaway Temporal dev server (own SQLite file), stopped by its pid."""
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    log = (state / "temporal.log").open("wb")
    proc = subprocess.Popen(
        [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--headless",
            "--db-filename",
            str(state / "temporal.db"),
            *search_attribute_flags(),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def wait_until_serving(port: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            await asyncio.wait_for(Client.connect(f"127.0.0.1:{port}"), timeout=3)
            return
        except (RuntimeError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.3)
    raise AssertionError(f"the dev server on port {port} did not answer within {timeout}s: {last}")


class MTLSFrontEnd:
    """Terminates TLS, requiring a client certificate from ``ca``, and relays the bytes (gRPC over h2)."""

    def __init__(self, server: Issued, ca: Authority, backend_port: int) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(server.cert, server.key)
        ctx.load_verify_locations(ca.cert)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["h2"])
        self.ctx = ctx
        self.backend_port = backend_port
        self.clients: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.ctx, ssl_handshake_timeout=10
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        self.clients.append(
            next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "?")
        )
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@dataclass(frozen=True)
class Pki:
    ca: Authority
    server: Issued
    worker: Issued
    stranger_ca: Authority
    stranger: Issued


@pytest.fixture()
def pki(tmp_path: Path) -> Pki:
    certs = tmp_path / "pki"
    certs.mkdir()
    ca = make_ca(certs, "seawall-test-ca")
    other = make_ca(certs, "some-other-ca")
    return Pki(
        ca=ca,
        server=issue(ca, certs, "temporal-frontend", server=True),
        worker=issue(ca, certs, "seawall-worker", server=False),
        stranger_ca=other,
        stranger=issue(other, certs, "stranger", server=False),
    )


@contextlib.asynccontextmanager
async def mtls_temporal(pki: Pki, state: Path) -> AsyncIterator[int]:
    """The TLS port of a dev server that only clients with a certificate of ``pki.ca`` get through."""
    with dev_server(state) as backend:
        await wait_until_serving(backend)
        front = MTLSFrontEnd(pki.server, pki.ca, backend)
        port = await front.start()
        try:
            yield port
            assert "seawall-worker" in front.clients
            assert "stranger" not in front.clients
        finally:
            await front.close()


async def refused(attempt: Awaitable[Client]) -> str:
    """The error of a connection attempt that must fail (the Rust client reports TLS failures so)."""
    try:
        await asyncio.wait_for(attempt, timeout=30)
    except RuntimeError as exc:
        return str(exc)
    raise AssertionError("a client got through the mTLS front end without a certificate of its CA")


def assert_refused_by_peer(message: str) -> None:
    """The server ends the connection after a rejected client certificate; depending on when the
    client notices, the SDK reports a transport error or a cancelled call on a closed connection."""
    assert "transport error" in message or "connection closed" in message, message


async def test_mtls_worker_and_client_run_a_workflow_and_others_are_refused(
    lab: LabInfo,
    lab_state_dir: Path,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inventory = write_inventory(tmp_path, lab_state_dir, s3_prefix="mtls/", lab=lab)
    async with mtls_temporal(pki, tmp_path / "temporal") as port:
        # Configured exactly as a deployment would: the environment, through Settings.
        monkeypatch.setenv("SEAWALL_TEMPORAL_ADDRESS", f"127.0.0.1:{port}")
        monkeypatch.setenv("SEAWALL_TEMPORAL_TLS_CA", str(pki.ca.cert))
        monkeypatch.setenv("SEAWALL_TEMPORAL_TLS_CERT", str(pki.worker.cert))
        monkeypatch.setenv("SEAWALL_TEMPORAL_TLS_KEY", str(pki.worker.key))
        monkeypatch.setenv("SEAWALL_TEMPORAL_TLS_SERVER_NAME", "localhost")
        monkeypatch.setenv("SEAWALL_INVENTORY", str(inventory))
        monkeypatch.setenv("SEAWALL_ORCHESTRATION_QUEUE", f"seawall-orchestration-{uuid.uuid4().hex[:8]}")
        monkeypatch.delenv("SEAWALL_PAYLOAD_KEYS", raising=False)
        settings = Settings(graceful_shutdown_s=2)
        assert settings.temporal_tls_cert == pki.worker.cert

        client = await connect(settings)
        with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
            workers = build_workers(client, ["primary"], settings, pool, identity="mtls-test")
            runs = asyncio.gather(*(w.run() for w in workers))
            try:
                probe = await client.execute_workflow(
                    "ProbeSite",
                    ProbeSiteInput(site="primary"),
                    id=f"probe-{uuid.uuid4().hex[:8]}",
                    task_queue=settings.orchestration_queue,
                    result_type=SiteProbe,
                )
            finally:
                await asyncio.gather(*(w.shutdown() for w in workers))
                await runs
        assert probe.reachable and probe.kind == "vsphere", probe.detail
        # The run really went through this server (not the lab's): it is listed here.
        listed = [wf.workflow_type async for wf in client.list_workflows()]
        assert listed == ["ProbeSite"]

        # The server's IP is in its certificate too, so the name override is optional.
        by_ip = await connect(settings.model_copy(update={"temporal_tls_server_name": None}))
        assert [wf.workflow_type async for wf in by_ip.list_workflows()] == ["ProbeSite"]

        without_cert = settings.model_copy(update={"temporal_tls_cert": None, "temporal_tls_key": None})
        # Seawall will not even try half an mTLS configuration...
        with pytest.raises(TemporalConfigError, match="needs both"):
            await connect(without_cert)
        # ...and a client that offers no certificate at all (plain server-auth TLS) is refused by the
        # server after the handshake, as is one whose certificate another CA signed.
        no_cert = TLSConfig(server_root_ca_cert=pki.ca.cert.read_bytes(), domain="localhost")
        assert_refused_by_peer(await refused(Client.connect(f"127.0.0.1:{port}", tls=no_cert)))
        stranger = settings.model_copy(
            update={"temporal_tls_cert": pki.stranger.cert, "temporal_tls_key": pki.stranger.key}
        )
        assert_refused_by_peer(await refused(connect(stranger)))
        # The client checks the server too: one that trusts another CA will not talk to this server.
        distrustful = settings.model_copy(update={"temporal_tls_ca": pki.stranger_ca.cert})
        assert "UnknownIssuer" in await refused(connect(distrustful))
        # And plaintext to the TLS port gets nowhere.
        plaintext = settings.model_copy(
            update={"temporal_tls_ca": None, "temporal_tls_cert": None, "temporal_tls_key": None}
        )
        await refused(connect(plaintext))
