"""The audit log: one JSON line per allowed mutating call, with who, what and how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from temporalio.service import RPCError

from seawall.api.auth import Principal
from seawall.api.problems import ApiProblem, control_problem, rpc_status
from seawall.control.errors import ControlError


class AuditLog:
    """One JSON line per allowed mutating call, appended with O_APPEND so lines never interleave.

    Written off the event loop, by one thread: lines land in the order the calls ended, and each is
    fsynced before the call that made it answers (an answered change is on disk in the log).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seawall-audit")

    def write(self, record: dict[str, Any]) -> None:
        """Blocking: append ``record`` and fsync it."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    async def append(self, record: dict[str, Any]) -> None:
        """``write`` on the audit thread. The line is queued at once, so it is written even when the
        request is cancelled while waiting (a client that hangs up still leaves its line)."""
        future = asyncio.get_running_loop().run_in_executor(self._writer, self.write, record)
        await asyncio.shield(future)

    @contextlib.asynccontextmanager
    async def audited(
        self, request: Request, who: Principal, ok: int, **what: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Record the call in the block, ending with the status it answers (``ok`` if it succeeds);
        the block adds what it learns (the run id) to the record it is given."""
        record: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "who": who.name,
            "role": who.role.name,
            "method": request.method,
            "path": request.url.path,
            "client": request.client.host if request.client else None,
            **what,
        }
        status = 500
        try:
            yield record
            status = ok
        except ApiProblem as exc:
            status = exc.status
            raise
        except ControlError as exc:
            status = control_problem(exc).status
            raise
        except RPCError as exc:
            status = rpc_status(exc)
            raise
        finally:
            record["status"] = status
            await self.append(record)
