"""Receivers a test starts to catch notifications: a webhook endpoint and an SMTP server (a small
asyncio one: aiosmtpd is not in the environment), both on 127.0.0.1.

Each keeps every delivery it got (``raw``) and, like a real receiver should, the first of each event
key only (``events``): a retried delivery of one event is recognised and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


@dataclass
class Webhook:
    key: bytes | None = None
    port: int = 0
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_signatures: int = 0
    fail_next: int = 0  # answer 503 to this many deliveries first (a receiver restarting)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.raw.append((headers, body))
            status = "200 OK"
            if self.fail_next > 0:
                self.fail_next -= 1
                status = "503 Service Unavailable"
            elif self.key is not None:
                want = "sha256=" + hmac.new(self.key, body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, headers.get("x-seawall-signature", "")):
                    self.bad_signatures += 1
                    status = "401 Unauthorized"
            if status.startswith("200"):
                self.events.setdefault(headers.get("x-seawall-event", ""), json.loads(body))
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        writer.close()


@dataclass
class Mailbox:
    port: int = 0
    raw: list[EmailMessage] = field(default_factory=list)
    events: dict[str, EmailMessage] = field(default_factory=dict)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say("220 test-smtp ready")
        sender, rcpts = "", []
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                line = (await reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    say("250 test-smtp")
                elif verb == "MAIL":
                    sender, rcpts = line.partition(":")[2].strip(), []
                    say("250 ok")
                elif verb == "RCPT":
                    rcpts.append(line.partition(":")[2].strip())
                    say("250 ok")
                elif verb == "DATA":
                    say("354 end with <CRLF>.<CRLF>")
                    await writer.drain()
                    data = (await reader.readuntil(b"\r\n.\r\n"))[:-5].replace(b"\r\n..", b"\r\n.")
                    msg = email.message_from_bytes(data, policy=email.policy.default)
                    assert isinstance(msg, EmailMessage)
                    self.raw.append(msg)
                    self.envelopes.append((sender, rcpts))
                    self.events.setdefault(str(msg["Message-ID"]), msg)
                    say("250 queued")
                elif verb == "QUIT":
                    say("221 bye")
                    await writer.drain()
                    break
                else:  # RSET, NOOP
                    say("250 ok")
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def receivers(key: bytes | None = None) -> AsyncIterator[tuple[Webhook, Mailbox]]:
    hook, mail = Webhook(key=key), Mailbox()
    web_server = await asyncio.start_server(hook._serve, "127.0.0.1", 0)
    mail_server = await asyncio.start_server(mail._serve, "127.0.0.1", 0)
    hook.port = web_server.sockets[0].getsockname()[1]
    mail.port = mail_server.sockets[0].getsockname()[1]
    async with web_server, mail_server:
        yield hook, mail
