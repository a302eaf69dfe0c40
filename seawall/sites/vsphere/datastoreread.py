"""Range reads of one datastore file over HTTP: the session and its cookie, retries, and odd servers.

``DatastoreReadMixin`` gives ``VSphereDiskSource`` (``source.py``) its HTTP side: a pooled
keep-alive session authenticated with the API session's ``vmware_soap_session`` cookie, ``GET`` with
``Range``, retries with backoff on transient failures, one session renewal on 401/403, a server that
ignores ``Range`` (200: skip to the offset), 416 past the end of a short file, and thin files that
read as zeros past their end. Kept apart so ``source.py`` reads as the DiskSource (what to read,
read-ahead and prefetch) and this module as the wire.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable

import requests
import requests.adapters
from urllib3.util.retry import Retry

from seawall.blockstore.source import SourceError
from seawall.blockstore.stores.retrying import RetryPolicy, call_with_retries
from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.ranges import MiB, parse_content_range
from seawall.sites.vsphere.session import SESSION_COOKIE, VSphereError

__all__ = ["DatastoreReadMixin", "TransientSourceError"]

# The logger name these reads had when they lived in source.py, so log configuration need not change.
log = logging.getLogger("seawall.sites.vsphere.source")


class TransientSourceError(SourceError):
    """A read failed in a way a retry may fix (connection drop, timeout, 5xx, expired session)."""


class DatastoreReadMixin:
    """The HTTP range reads of ``VSphereDiskSource``; it sets these attributes and ``describe()``."""

    _conn: VSphereConnection
    _session: requests.Session
    _cookie_lock: threading.Lock
    _retry: RetryPolicy
    _timeout: tuple[float, float]
    _sleep: Callable[[float], None]
    _rng: random.Random
    _warned_no_range: bool
    _size: int
    url: str
    describe: Callable[[], str]

    def _new_session(self, pool_size: int) -> requests.Session:
        session = requests.Session()
        # Retries are ours (with backoff and session renewal); urllib3 must not retry underneath.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=Retry(total=0, redirect=False)
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self._conn.verify_tls
        session.headers["Accept-Encoding"] = "identity"
        return session

    def _set_cookie(self) -> None:
        with self._cookie_lock:
            try:
                value = self._conn.session_cookie()
            except VSphereError as exc:
                raise SourceError(f"no vSphere session to read {self.describe()}: {exc}") from exc
            # Quoted, as pyVmomi itself sends it; vCenter expects the quotes.
            self._session.headers["Cookie"] = f'{SESSION_COOKIE}="{value}"'

    # -- HTTP --------------------------------------------------------------------------------------

    def _fetch(self, start: int, end: int) -> bytes:
        renewed = False

        def once() -> bytes:
            nonlocal renewed
            try:
                return self._fetch_once(start, end)
            except _SessionRejected as exc:
                if renewed:
                    raise SourceError(
                        f"{self.describe()}: the datastore service refused access ({exc.status}) even "
                        "with a fresh session: the user lacks Datastore.Browse / file access"
                    ) from exc
                renewed = True
                try:
                    self._conn.ensure_session()
                except VSphereError as vexc:
                    raise SourceError(
                        f"{self.describe()}: cannot renew the vSphere session: {vexc}"
                    ) from vexc
                self._set_cookie()
                raise TransientSourceError(
                    f"{self.describe()}: session rejected ({exc.status}); renewed"
                ) from exc

        def give_up(exc: BaseException, attempts: int) -> BaseException:
            return SourceError(
                f"read [{start}, {end}) of {self.describe()}: {exc} (gave up after {attempts} attempts)"
            )

        return call_with_retries(
            once,
            policy=self._retry,
            is_transient=lambda e: isinstance(e, TransientSourceError),
            give_up=give_up,
            what=f"read [{start}, {end}) of {self.describe()}",
            sleep=self._sleep,
            rng=self._rng,
        )

    def _fetch_once(self, start: int, end: int) -> bytes:
        want = end - start
        try:
            resp = self._session.get(
                self.url, headers={"Range": f"bytes={start}-{end - 1}"}, stream=True, timeout=self._timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientSourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        with resp:
            status = resp.status_code
            if status == 206:
                first, _last, total = parse_content_range(resp.headers.get("Content-Range"))
                if first is not None and first != start:
                    raise SourceError(
                        f"{self.describe()}: asked for bytes from {start}, server sent from {first}"
                    )
                data = self._body(resp, want)
                return self._complete(data, start, want, total)
            if status == 200:
                if not self._warned_no_range:
                    self._warned_no_range = True
                    log.warning("%s ignores HTTP Range; skipping through the whole file instead", self.url)
                data = self._skip_and_read(resp, start, want)
                return self._complete(data, start, want, start + len(data) if len(data) < want else None)
            # Drain small error bodies so the keep-alive connection survives.
            self._drain(resp)
            if status == 416:
                _, _, total = parse_content_range(resp.headers.get("Content-Range"))
                if total is not None and total <= start:
                    return self._complete(b"", start, want, total)
                raise SourceError(f"{self.describe()}: server refused range [{start}, {end}) (416)")
            if status in (401, 403):
                raise _SessionRejected(status)
            if status == 404:
                raise SourceError(
                    f"{self.describe()}: disk file not found at the datastore service (404) — was the "
                    "snapshot removed or the VM moved?"
                )
            if status in (408, 429) or status >= 500:
                raise TransientSourceError(f"{self.describe()}: server answered {status} {resp.reason}")
            raise SourceError(f"{self.describe()}: unexpected HTTP {status} {resp.reason} for a range read")

    def _body(self, resp: requests.Response, limit: int) -> bytes:
        # Reading the body to its end (not stopping at ``limit``) hands the connection back to the pool.
        try:
            data = resp.content
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"{self.describe()}: connection broke mid-read: {exc}") from exc
        return data[:limit]

    @staticmethod
    def _drain(resp: requests.Response) -> None:
        with contextlib.suppress(requests.RequestException):
            _ = resp.content

    def _skip_and_read(self, resp: requests.Response, skip: int, limit: int) -> bytes:
        chunks: list[bytes] = []
        got = 0
        pos = 0
        try:
            for chunk in resp.iter_content(chunk_size=1 * MiB):
                if pos + len(chunk) <= skip:
                    pos += len(chunk)
                    continue
                piece = chunk[max(0, skip - pos) :]
                pos += len(chunk)
                chunks.append(piece)
                got += len(piece)
                if got >= limit:
                    break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"{self.describe()}: connection broke mid-read: {exc}") from exc
        return b"".join(chunks)[:limit]

    def _complete(self, data: bytes, start: int, want: int, file_size: int | None) -> bytes:
        if len(data) == want:
            return data
        # A flat file shorter than the disk's capacity (a thin file on vcsim) reads as zeros past its end.
        if file_size is not None and start + len(data) >= file_size and file_size < self._size:
            return data + bytes(want - len(data))
        raise TransientSourceError(
            f"{self.describe()}: short read at {start}: got {len(data)} of {want} bytes"
        )


class _SessionRejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
