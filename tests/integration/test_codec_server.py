"""The codec server speaks the Temporal UI's protocol: /encode, /decode, CORS preflight, bearer token."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from seawall.blockstore.keys import KeyMaterial
from seawall.contract.messages import ProtectInput
from seawall.runtime.config import Settings
from seawall.runtime.temporal import data_converter
from seawall.security.codec import ENCODING, KEY_ID_METADATA, EncryptionCodec, PayloadKeyRing
from seawall.security.codec_server import CodecServer

ROOT = Path(__file__).resolve().parents[2]
UI = "http://127.0.0.1:8233"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ui_payload(value: object) -> dict[str, object]:
    """A payload as the Web UI's start form sends it: JSON, protobuf-JSON (base64) encoded."""
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(value).encode())}


def to_payloads(body: Mapping[str, object]) -> list[Payload]:
    message = Payloads()
    json_format.ParseDict(dict(body), message)
    return list(message.payloads)


def to_json(payloads: list[Payload]) -> dict[str, object]:
    return json.loads(json_format.MessageToJson(Payloads(payloads=payloads)))


@pytest.fixture()
def codec() -> EncryptionCodec:
    return EncryptionCodec(PayloadKeyRing([KeyMaterial.generate("ui-2026"), KeyMaterial.generate("ui-2025")]))


@pytest.fixture()
def server(codec: EncryptionCodec) -> Iterator[CodecServer]:
    with CodecServer(codec, port=0) as srv:
        yield srv


def test_encode_over_http_decodes_in_python(server: CodecServer, codec: EncryptionCodec) -> None:
    body = {"payloads": [ui_payload({"vm": "db-01"}), ui_payload({"site": "primary"})]}
    resp = requests.post(
        f"{server.url}/encode", json=body, headers={"X-Namespace": "default", "Origin": UI}, timeout=5
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == UI
    encoded = to_payloads(resp.json())
    assert len(encoded) == 2
    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID_METADATA] == b"ui-2026"
        assert b"db-01" not in payload.data
    assert codec.decode_sync(encoded) == to_payloads(body)


async def test_python_encoded_payloads_decode_over_http(tmp_path: Path) -> None:
    # The exact converter workers use: pydantic JSON inside, AES-GCM outside.
    key = tmp_path / "payload.key"
    key.write_text(os.urandom(32).hex())
    converter = data_converter(Settings(payload_keys=f"file:{key}#ops"))
    assert isinstance(converter.payload_codec, EncryptionCodec)
    sealed = await converter.encode([ProtectInput(vm="web-01", policy="rpo-5m")])
    with CodecServer(converter.payload_codec, port=0) as srv:
        resp = requests.post(f"{srv.url}/decode", json=to_json(sealed), timeout=5)
    assert resp.status_code == 200, resp.text
    (plain,) = to_payloads(resp.json())
    assert plain.metadata["encoding"] == b"json/plain"
    assert json.loads(plain.data) == ProtectInput(vm="web-01", policy="rpo-5m").model_dump(mode="json")


def test_preflight_allows_the_ui_origin_and_its_headers(server: CodecServer) -> None:
    for path in ("/decode", "/encode"):
        resp = requests.options(
            server.url + path,
            headers={
                "Origin": UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            },
            timeout=5,
        )
        assert resp.status_code == 204
        assert resp.headers["Access-Control-Allow-Origin"] == UI
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"content-type", "x-namespace", "authorization"} <= allowed


def test_other_origins_get_no_cors_grant(server: CodecServer) -> None:
    evil = "http://evil.example:8233"
    pre = requests.options(
        f"{server.url}/decode", headers={"Origin": evil, "Access-Control-Request-Method": "POST"}, timeout=5
    )
    assert pre.status_code == 403
    assert "Access-Control-Allow-Origin" not in pre.headers
    post = requests.post(f"{server.url}/decode", json={"payloads": []}, headers={"Origin": evil}, timeout=5)
    # The browser withholds the answer from that page, because no origin is granted.
    assert "Access-Control-Allow-Origin" not in post.headers


def test_bearer_token_guards_decode_but_not_the_preflight(codec: EncryptionCodec) -> None:
    sealed = to_json(codec.encode_sync(to_payloads({"payloads": [ui_payload({"vm": "db-01"})]})))
    with CodecServer(codec, port=0, token="s3cr3t-codec-token") as srv:
        url = f"{srv.url}/decode"
        missing = requests.post(url, json=sealed, timeout=5)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = requests.post(url, json=sealed, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        assert "db-01" not in wrong.text
        pre = requests.options(
            url, headers={"Origin": UI, "Access-Control-Request-Method": "POST"}, timeout=5
        )
        assert pre.status_code == 204
        ok = requests.post(
            url, json=sealed, headers={"Authorization": "Bearer s3cr3t-codec-token"}, timeout=5
        )
        assert ok.status_code == 200
        assert json.loads(to_payloads(ok.json())[0].data) == {"vm": "db-01"}


def test_bad_requests_get_json_errors(server: CodecServer) -> None:
    bad_json = requests.post(
        f"{server.url}/decode", data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert bad_json.status_code == 400 and "payloads" in bad_json.json()["error"]
    wrong_shape = requests.post(f"{server.url}/decode", json={"payloads": "x"}, timeout=5)
    assert wrong_shape.status_code == 400
    nowhere = requests.post(f"{server.url}/nowhere", json={"payloads": []}, timeout=5)
    assert nowhere.status_code == 404
    assert requests.get(f"{server.url}/health", timeout=5).json() == {"status": "ok"}


def test_unknown_key_is_named_in_the_error(server: CodecServer) -> None:
    stranger = EncryptionCodec(PayloadKeyRing([KeyMaterial.generate("other-dept")]))
    sealed = stranger.encode_sync(to_payloads({"payloads": [ui_payload({"vm": "db-01"})]}))
    resp = requests.post(f"{server.url}/decode", json=to_json(sealed), timeout=5)
    assert resp.status_code == 422
    assert "'other-dept'" in resp.json()["error"]


def test_oversize_body_is_refused_before_reading(codec: EncryptionCodec) -> None:
    with CodecServer(codec, port=0, max_body_bytes=1024) as srv:
        resp = requests.post(f"{srv.url}/encode", json={"payloads": [ui_payload("x" * 4096)]}, timeout=5)
    assert resp.status_code == 413


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    key = tmp_path / "payload.key"
    key.write_text(os.urandom(32).hex())
    token = tmp_path / "token"
    token.write_text("cli-token-0123456789\n")
    port = free_port()
    env = {
        **os.environ,
        "SEAWALL_PAYLOAD_KEYS": f"file:{key}#cli",
        "SEAWALL_CODEC_TOKEN": f"file:{token}",
        "COLUMNS": "200",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall.cli", "codec", "serve", "--port", str(port), "--cors-origin", UI],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in line, line
        assert "token required" in line
        codec = EncryptionCodec.from_refs(f"file:{key}#cli")
        sealed = codec.encode_sync(to_payloads({"payloads": [ui_payload({"vm": "app-01"})]}))
        resp = requests.post(
            f"http://127.0.0.1:{port}/decode",
            json=to_json(sealed),
            headers={"Authorization": "Bearer cli-token-0123456789", "Origin": UI},
            timeout=5,
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["Access-Control-Allow-Origin"] == UI
        assert json.loads(to_payloads(resp.json())[0].data) == {"vm": "app-01"}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert "codec server stopped" in out
        # The access log shows each request, never payload contents.
        assert "POST /decode" in out and "decode 1 payload(s) for namespace" in out
        assert "app-01" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_to_start_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEAWALL_PAYLOAD_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "seawall.cli", "codec", "serve", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "SEAWALL_PAYLOAD_KEYS" in done.stderr
