"""The one API session a vSphere adapter shares between its verbs, on whichever worker thread.

pyvmomi's stub is thread-safe, with a pool of HTTP connections. A login per verb cost 0.17 s at the
lab under load, three or four times per recovered VM, and a vCenter caps its sessions. New credentials
(a rotated password) log in anew; a session the server expired or a connection that broke is dropped,
so the retry logs in again; idle for a while it is checked before use. A killed worker leaves its one
session to expire on the server.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Callable, Iterator

from seawall.sites.vsphere.client import VSphereConnection

__all__ = ["IDLE_CHECK_S", "SharedSession"]

# A session unused for longer than this is checked (one cheap call) before it is used again.
IDLE_CHECK_S = 60.0


class SharedSession:
    """The session for the newest credentials, made by ``make(user, password)`` on first use."""

    def __init__(self, make: Callable[[str, str], VSphereConnection]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._shared: tuple[tuple[str, str], VSphereConnection] | None = None
        self._used = 0.0

    @contextlib.contextmanager
    def use(self, user: str, password: str) -> Iterator[VSphereConnection]:
        key = (user, password)
        now = time.monotonic()
        with self._lock:
            shared = self._shared
            stale = shared is not None and now - self._used > IDLE_CHECK_S
            if shared is None or shared[0] != key:
                self._shared = shared = (key, self._make(user, password))
                stale = False
            self._used = now
        conn = shared[1]
        if stale and not _alive(conn):
            # Idle for a while: the server may have expired the session or restarted meanwhile.
            self._drop(conn)
            with self.use(user, password) as fresh:
                yield fresh
            return
        try:
            yield conn
        except Exception as exc:
            if _session_lost(exc):
                self._drop(conn)
            raise

    def _drop(self, conn: VSphereConnection) -> None:
        """Forget ``conn`` (the next verb logs in anew); other threads may still be using it, so it is
        not logged out: the server expires it."""
        with self._lock:
            if self._shared is not None and self._shared[1] is conn:
                self._shared = None


def _alive(conn: VSphereConnection) -> bool:
    """The session still answers (logging in again on the same stub when the server expired it)."""
    try:
        conn.ensure_session()
    except Exception:
        return False
    return True


def _session_lost(exc: BaseException) -> bool:
    """The session or its connection is gone (expired, logged out, the server restarted, a broken
    socket): it must not be used again. Faults about objects (not found, a task's error) leave it."""
    from pyVmomi import vim

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, vim.fault.NotAuthenticated | OSError | http.client.HTTPException):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
