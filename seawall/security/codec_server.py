"""The Temporal codec server protocol, so the Web UI (and ``temporal`` CLI) can show decrypted payloads.

``POST /decode`` and ``POST /encode`` take and return ``{"payloads": [...]}`` in protobuf JSON form
(``metadata`` values and ``data`` base64). The UI calls /decode for every payload it shows and /encode
for the input of a workflow started from its form; without /encode such a start would reach the
worker as plain JSON. The browser calls cross-origin, so the UI's origin must be allowed (CORS, with
the preflight OPTIONS), and the UI sends ``X-Namespace``, which is accepted and logged.

Whoever can reach /decode can read every payload, so: bind to 127.0.0.1 (the default) or behind a
proxy that authenticates, and/or require a bearer token (``SEAWALL_CODEC_TOKEN``, a secret reference).
Payload contents are never logged. Standard library only: the server is small, threaded (the codec is
synchronous AES), and needs nothing the worker image does not already have.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from seawall.security.codec import EncryptionCodec, PayloadDecryptError

log = logging.getLogger("seawall.security.codec_server")

DEFAULT_PORT = 8081
# The dev server's Web UI, under both names a browser may use for it.
DEFAULT_CORS_ORIGINS = ("http://127.0.0.1:8233", "http://localhost:8233")
# A payload may be 2 MB and the UI batches those of one event; far above that is not a UI request.
MAX_BODY_BYTES = 32 * 1024 * 1024
_ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


class CodecServer:
    """A threaded HTTP server around an :class:`EncryptionCodec`; ``port=0`` picks a free port."""

    def __init__(
        self,
        codec: EncryptionCodec,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        cors_origins: Iterable[str] = DEFAULT_CORS_ORIGINS,
        token: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.codec = codec
        self.cors_origins = frozenset(origin.rstrip("/") for origin in cors_origins)
        self.token = token
        self.max_body_bytes = max_body_bytes
        self._httpd = _HTTPServer((host, port), _Handler, self)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> None:
        """Serve from a daemon thread (tests, or an embedding process)."""
        self._thread = threading.Thread(target=self.serve_forever, name="codec-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port; safe whether or not the server was started."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> CodecServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], app: CodecServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "seawall-codec"
    sys_version = ""

    @property
    def app(self) -> CodecServer:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines and statuses only; bodies (the payloads) are never logged.
        log.info("%s %s", self.address_string(), format % args)

    def _origin(self) -> str | None:
        origin = self.headers.get("Origin")
        if origin and origin.rstrip("/") in self.app.cors_origins:
            return origin
        return None

    def _cors_headers(self) -> None:
        origin = self._origin()
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Vary", "Origin")

    def _reply(self, status: HTTPStatus, body: bytes | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self._cors_headers()
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, extra: dict[str, str] | None = None) -> None:
        # An error may leave the request body unread; the connection cannot carry another request.
        self.close_connection = True
        self._reply(status, json.dumps({"error": message}).encode(), extra)

    def _action(self) -> str | None:
        path = self.path.split("?", 1)[0].rstrip("/")
        # A proxy may mount the server under a prefix (``/codec/decode``): the last segment decides.
        for action in ("encode", "decode"):
            if path == f"/{action}" or path.endswith(f"/{action}"):
                return action
        return None

    def do_OPTIONS(self) -> None:
        if self._action() is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path}")
            return
        if self.headers.get("Origin") and self._origin() is None:
            self._error(HTTPStatus.FORBIDDEN, "origin not allowed (see --cors-origin)")
            return
        self._reply(
            HTTPStatus.NO_CONTENT,
            None,
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") == "/health":
            self._reply(HTTPStatus.OK, b'{"status": "ok"}')
            return
        self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path}")

    def _authorized(self) -> bool:
        if self.app.token is None:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.app.token.encode())

    def do_POST(self) -> None:
        action = self._action()
        if action is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path} (use /encode or /decode)")
            return
        if not self._authorized():
            self._error(
                HTTPStatus.UNAUTHORIZED, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        length = int(length_header)
        if length > self.app.max_body_bytes:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {self.app.max_body_bytes} bytes")
            return
        body = self.rfile.read(length)
        payloads = Payloads()
        try:
            json_format.Parse(body, payloads)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f'expected {{"payloads": [...]}} in protobuf JSON: {exc}')
            return
        try:
            if action == "encode":
                result = self.app.codec.encode_sync(payloads.payloads)
            else:
                result = self.app.codec.decode_sync(payloads.payloads)
        except PayloadDecryptError as exc:
            # The message names the key id (never key material): the operator's cue to add a key.
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            return
        log.info(
            "%s %d payload(s) for namespace %s",
            action,
            len(result),
            self.headers.get("X-Namespace") or "(not given)",
        )
        self._reply(HTTPStatus.OK, json_format.MessageToJson(Payloads(payloads=result)).encode())
