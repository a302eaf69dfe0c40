"""`seawall codec serve | keygen`: the codec server for the Temporal Web UI, and payload keys."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from seawall.cli.common import Exit, console, err_console

if TYPE_CHECKING:
    from seawall.security.codec import EncryptionCodec

app = typer.Typer(
    help="Payload encryption: the codec server for the Temporal Web UI, and key generation.",
    no_args_is_help=True,
)


def _fail(message: str, code: Exit = Exit.BAD_INPUT) -> typer.Exit:
    err_console.print(message, markup=False, highlight=False)
    return typer.Exit(code)


def _codec_and_token(keys: str | None, token_ref: str | None) -> tuple[EncryptionCodec, str | None]:
    """The codec from the key references, and the bearer token callers must present (None: none)."""
    from seawall.runtime.config import Settings
    from seawall.security.codec import EncryptionCodec, PayloadKeyError
    from seawall.security.secrets import SecretError, resolve_text

    settings = Settings()
    refs = keys if keys is not None else settings.payload_keys
    if not refs:
        raise _fail("no payload keys: set SEAWALL_PAYLOAD_KEYS or pass --keys file:/path/to/key")
    try:
        codec = EncryptionCodec.from_refs(refs)
    except PayloadKeyError as exc:
        raise _fail(str(exc)) from None
    token: str | None = None
    ref = token_ref if token_ref is not None else settings.codec_token
    if ref:
        try:
            token = resolve_text(ref)
        except SecretError as exc:
            raise _fail(f"--token-ref: {exc}") from None
    return codec, token


@app.command("serve")
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; anyone who reaches it can decode."
    ),
    port: int = typer.Option(8081, "--port", help="TCP port (0 picks a free one)."),
    cors_origin: list[str] = typer.Option(
        [],
        "--cors-origin",
        help="Origin of the Web UI allowed to call from a browser (repeatable). "
        "Default: the dev server's UI, http://127.0.0.1:8233 and http://localhost:8233.",
    ),
    keys: str | None = typer.Option(
        None,
        "--keys",
        help="Payload key references, newest first (default: $SEAWALL_PAYLOAD_KEYS).",
        show_default=False,
    ),
    token_ref: str | None = typer.Option(
        None,
        "--token-ref",
        help="Require this bearer token: a secret reference, env:NAME or file:PATH "
        "(default: $SEAWALL_CODEC_TOKEN; unset: no token).",
        show_default=False,
    ),
) -> None:
    """Serve POST /encode and /decode so the Web UI shows (and can start with) encrypted payloads.

    Point the UI at it: Settings -> Codec Server -> http://127.0.0.1:8081, or start the dev server
    with --ui-codec-endpoint http://127.0.0.1:8081.
    """
    from seawall.security.codec_server import DEFAULT_CORS_ORIGINS, CodecServer

    # The access log (requests, statuses, payload counts; never contents) is how operators audit it.
    logging.basicConfig(
        level=os.environ.get("SEAWALL_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    codec, token = _codec_and_token(keys, token_ref)
    try:
        server = CodecServer(
            codec, host=host, port=port, cors_origins=cors_origin or DEFAULT_CORS_ORIGINS, token=token
        )
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror}", Exit.UNAVAILABLE) from None

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if token is None and not ipaddress.ip_address(server.host).is_loopback:
        err_console.print(
            f"warning: {server.url} decrypts for anyone who can reach it and no token is required; "
            "set SEAWALL_CODEC_TOKEN or put an authenticating proxy in front",
            markup=False,
            highlight=False,
        )
    server.start()
    console.print(
        f"codec server listening on {server.url} (encrypting with key {codec.ring.active_key_id}; "
        f"decrypting {', '.join(codec.ring.key_ids)}; token {'required' if token else 'not required'})",
        markup=False,
        highlight=False,
    )
    try:
        stop.wait()
    finally:
        server.close()
        console.print("codec server stopped", markup=False, highlight=False)


@app.command("keygen")
def keygen(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the key here (mode 0600, never overwritten); else print it."
    ),
    key_id: str | None = typer.Option(
        None, "--key-id", help="Name the key (e.g. payload-2026); default: a fingerprint of the key."
    ),
) -> None:
    """Make a random 256-bit payload key (hex) and print the reference to put in SEAWALL_PAYLOAD_KEYS."""
    from seawall.blockstore.keys import KeyMaterial, KeyRefError

    try:
        key = KeyMaterial.generate(key_id)
    except KeyRefError as exc:
        raise _fail(f"--key-id: {exc}") from None
    text = key.key.hex() + "\n"
    suffix = f"#{key_id}" if key_id else ""
    if out is None:
        # The key itself on stdout, for a pipe into a secret manager; the hint goes to stderr.
        typer.echo(text, nl=False)
        err_console.print(
            f"key id {key.key_id}; store it and reference it as file:/path{suffix} or env:NAME{suffix}",
            markup=False,
            highlight=False,
        )
        return
    path = out.resolve()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _fail(f"{path} exists: a key is never overwritten (old payloads need it)") from None
    except OSError as exc:
        raise _fail(f"cannot create {path}: {exc.strerror}", Exit.FAILED) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    typer.echo(f"file:{path}{suffix}")
    err_console.print(
        f"key id {key.key_id} written to {path}; put the reference above FIRST in SEAWALL_PAYLOAD_KEYS "
        "and keep the older keys after it until no open workflow needs them",
        markup=False,
        highlight=False,
    )
