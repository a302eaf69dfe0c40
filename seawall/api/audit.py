"""The audit log: one JSON line per allowed mutating call, with who, what and how it ended."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from temporalio.service import RPCError

from seawall.api.auth import Principal
from seawall.api.problems import ApiProblem, control_problem, rpc_status
from seawall.control.errors import ControlError


class AuditLog:
    """One JSON line per allowed mutating call, appended with O_APPEND so lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

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
            self.write(record)
