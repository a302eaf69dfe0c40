"""`seawall api serve | new-token`: the HTTP API for runbook tools, chat-ops and incident systems."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from seawall.cli.common import Exit, console, err_console
from seawall.security.redaction import install_log_redaction
from seawall.security.secrets import register_configured_files

app = typer.Typer(
    help="The HTTP API: failovers, approvals and replication over bearer tokens.", no_args_is_help=True
)


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (put TLS in front of it)."),
    port: int = typer.Option(8088, "--port", help="TCP port."),
    tokens: Path = typer.Option(
        ..., "--tokens", help="The token file (YAML: name, sha256, role, plans per token)."
    ),
    audit_log: Path | None = typer.Option(
        None, "--audit-log", help="Append-only audit log (default: $SEAWALL_AUDIT_LOG or .seawall/audit.log)."
    ),
) -> None:
    """Serve the API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from seawall.api.app import create_app
    from seawall.api.auth import TokenFileError, load_tokens
    from seawall.api.deps import ApiSettings
    from seawall.runtime.temporal import connect

    try:
        loaded = load_tokens(tokens)
    except TokenFileError as exc:
        for line in exc.errors:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(Exit.BAD_INPUT) from None
    if not len(loaded):
        err_console.print(f"{tokens}: no tokens: nobody could call the API")
        raise typer.Exit(Exit.BAD_INPUT)
    settings = ApiSettings()
    if audit_log is not None:
        settings = settings.model_copy(update={"audit_log": audit_log})

    async def client_factory():  # type: ignore[no-untyped-def]
        return await connect(settings)

    from seawall.security.intents import IntentKeyError

    try:
        api = create_app(settings, loaded, client_factory)
    except IntentKeyError as exc:
        err_console.print(f"configuration: {exc}", markup=False, highlight=False)
        raise typer.Exit(Exit.BAD_INPUT) from None
    console.print(
        f"Seawall API on http://{host}:{port} ({len(loaded)} tokens; audit log {settings.audit_log})"
    )
    level = os.environ.get("SEAWALL_API_LOG_LEVEL", "info")
    logging.basicConfig(level=level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    # Slow or idle clients: an idle keep-alive connection is closed after api_keep_alive_s, and a request
    # head larger than api_max_header_bytes is refused. (Bodies: the request gate's api_body_timeout_s.)
    config = uvicorn.Config(  # configures uvicorn's loggers
        api,
        host=host,
        port=port,
        log_level=level,
        timeout_keep_alive=settings.api_keep_alive_s,
        http="h11",  # the setting below is h11's (httptools, when installed, would ignore it)
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
    )
    # Every secret the inventory and the plans reference is masked from the first log line on.
    register_configured_files([Path(settings.inventory), *sorted(Path(settings.plans_dir).glob("*.y*ml"))])
    # Every handler, uvicorn's included: a request path with a newline in it stays one escaped line.
    install_log_redaction()
    uvicorn.Server(config).run()


@app.command("new-token")
def new_token_cmd(
    name: str = typer.Option(..., "--name", help="Who holds it (shown in the audit log and approvals)."),
    role: str = typer.Option("viewer", "--role", help="viewer | operator | admin"),
    plans: list[str] = typer.Option(
        [], "--plan", help="Limit the token to this plan (repeatable; default: every plan)."
    ),
) -> None:
    """Make a random token: print it once, and the token-file entry that stores only its hash."""
    import yaml

    from seawall.api.auth import TokenFileError, hash_token, new_token, parse_tokens

    token = new_token()
    entry = {"name": name, "sha256": hash_token(token), "role": role, "plans": plans or "*"}
    text = yaml.safe_dump({"tokens": [entry]}, sort_keys=False)
    try:
        parse_tokens(text, "--name/--role/--plan")
    except TokenFileError as exc:
        for line in exc.errors:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(Exit.BAD_INPUT) from None
    err_console.print("token (shown once; give it to its holder):", highlight=False)
    console.print(token, markup=False, highlight=False)
    err_console.print("entry for the token file:", highlight=False)
    console.print(text.split("\n", 1)[1].rstrip(), markup=False, highlight=False)
