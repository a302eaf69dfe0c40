"""One authenticated pyvmomi session to a vCenter or ESXi host: login, property reads, fault mapping, tasks.

``VSphereConnection`` (``seawall.sites.vsphere.client``) builds the inventory, CBT, snapshot and
power calls on this. Everything is blocking; activities call it from a thread pool.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from http.cookies import SimpleCookie
from typing import Any, Self

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

__all__ = [
    "SESSION_COOKIE",
    "VSphereError",
    "VSphereNotFound",
    "VSphereSession",
    "VSphereTaskError",
    "fault_message",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "vmware_soap_session"


class VSphereError(Exception):
    """A vSphere call failed (connection, fault, or an unexpected inventory state)."""


class VSphereNotFound(VSphereError):
    """A named inventory object (VM, snapshot, disk, datastore) does not exist."""


class VSphereTaskError(VSphereError):
    """A vSphere task ended in error or did not finish in time."""


def fault_message(fault: Any) -> str:
    if fault is None:
        return "unknown fault"
    msg = getattr(fault, "localizedMessage", None) or getattr(fault, "msg", None)
    faults = getattr(fault, "faultMessage", None) or []
    details = "; ".join(str(getattr(m, "message", "") or "") for m in faults if getattr(m, "message", None))
    name = type(fault).__name__
    text = f"{name}: {msg}" if msg and str(msg) != name else name
    return f"{text} ({details})" if details else text


class VSphereSession:
    """One authenticated session to a vCenter or ESXi host, reused for every call (logged in on first use).

    Credentials are held only to log in again when the server expires the session; they are never
    logged or shown in ``repr``.
    """

    def __init__(
        self,
        host: str,
        user: str,
        password: str,
        *,
        port: int = 443,
        protocol: str = "https",
        verify_tls: bool | str = True,
        timeout: float = 300.0,
        task_timeout: float = 1800.0,
    ) -> None:
        if protocol not in ("http", "https"):
            raise ValueError(f"protocol must be 'http' or 'https', got {protocol!r}")
        self.host = host
        self.port = port
        self.protocol = protocol
        self.verify_tls = verify_tls
        self.timeout = timeout
        self.task_timeout = task_timeout
        self._user = user
        self._password = password
        self._si: Any = None
        self._content: Any = None
        self._lock = threading.RLock()
        self._dc_paths: dict[str, str] = {}
        if protocol == "https" and verify_tls is False:
            log.warning(
                "TLS certificate verification is DISABLED for vSphere %s:%d (explicit opt-out)", host, port
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.protocol}://{self.host}:{self.port})"

    def describe(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- session ---------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.protocol != "https":
            return None
        if self.verify_tls is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if isinstance(self.verify_tls, str):
            return ssl.create_default_context(cafile=self.verify_tls)
        return ssl.create_default_context()

    def connect(self) -> Any:
        """The ServiceInstance, logging in on first use."""
        with self._lock:
            if self._si is not None:
                return self._si
            try:
                self._si = SmartConnect(
                    protocol=self.protocol,
                    host=self.host,
                    port=self.port,
                    user=self._user,
                    pwd=self._password,
                    sslContext=self._ssl_context(),
                    httpConnectionTimeout=self.timeout,
                )
            except vim.fault.InvalidLogin as exc:
                raise VSphereError(f"vSphere {self.describe()} rejected the user name or password") from exc
            except ssl.SSLError as exc:
                raise VSphereError(
                    f"TLS verification failed for vSphere {self.describe()}: {exc.reason}; trust its CA "
                    "(verify_tls=<ca bundle path>) or explicitly opt out (verify_tls=False)"
                ) from exc
            except (OSError, http.client.HTTPException, vmodl.MethodFault) as exc:
                raise VSphereError(f"cannot connect to vSphere {self.describe()}: {exc}") from exc
            return self._si

    @property
    def si(self) -> Any:
        return self.connect()

    @property
    def content(self) -> Any:
        """The ServiceContent, read once per connection.

        ``si.content`` is a managed property: every access is a SOAP round trip (RetrieveServiceContent)
        for references that never change while the stub lives. Read per call it was 14 % of the CPU of
        a worker recovering 100 VMs (py-spy), and one request to vCenter for each property read.
        """
        with self._lock:
            si = self.connect()
            if self._content is None:
                self._content = si.RetrieveContent()
            return self._content

    def ensure_session(self) -> None:
        """Log in again on the same stub when the server has expired our session.

        Reusing the stub keeps every managed-object reference already handed out valid.
        """
        with self._lock:
            manager = self.content.sessionManager
            try:
                if manager.currentSession is not None:
                    return
            except vim.fault.NotAuthenticated:
                pass
            log.info("vSphere session on %s expired; logging in again", self.describe())
            try:
                manager.Login(self._user, self._password)
            except vim.fault.InvalidLogin as exc:
                raise VSphereError(f"vSphere {self.describe()} rejected the user name or password") from exc

    def session_cookie(self) -> str:
        """The ``vmware_soap_session`` value, which the datastore file service accepts as auth."""
        stub = self.si._stub
        session_id = stub.GetSessionId() if hasattr(stub, "GetSessionId") else None
        if session_id:
            return str(session_id)
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(str(getattr(stub, "cookie", "") or ""))
        morsel = parsed.get(SESSION_COOKIE)
        if morsel is None:
            raise VSphereError(f"no {SESSION_COOKIE} cookie in the session with {self.describe()}")
        return morsel.value

    def disconnect(self) -> None:
        with self._lock:
            if self._si is None:
                return
            try:
                Disconnect(self._si)
            except Exception as exc:
                log.debug("logout from %s failed (session left to expire): %s", self.describe(), exc)
            self._si = None
            self._content = None

    # -- property collector ------------------------------------------------------------------------

    def _collect(self, obj_specs: list[Any], obj_type: Any, paths: Sequence[str]) -> list[Any]:
        pc = self.content.propertyCollector
        prop_spec = vmodl.query.PropertyCollector.PropertySpec(type=obj_type, pathSet=list(paths), all=False)
        filter_spec = vmodl.query.PropertyCollector.FilterSpec(objectSet=obj_specs, propSet=[prop_spec])
        options = vmodl.query.PropertyCollector.RetrieveOptions()
        result = pc.RetrievePropertiesEx(specSet=[filter_spec], options=options)
        objects: list[Any] = []
        while result is not None:
            objects.extend(result.objects or [])
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(token=result.token)
        return objects

    def properties(self, obj: Any, paths: Sequence[str]) -> dict[str, Any]:
        """Read exactly ``paths`` of one managed object (unset properties are absent from the dict)."""
        spec = vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)
        objects = self._call(
            f"read {', '.join(paths)} of {obj}", lambda: self._collect([spec], type(obj), paths)
        )
        if not objects:
            raise VSphereNotFound(f"{obj} no longer exists on {self.describe()}")
        return {p.name: p.val for p in objects[0].propSet or []}

    def list_objects(
        self, obj_type: Any, paths: Sequence[str] = ("name",)
    ) -> list[tuple[Any, dict[str, Any]]]:
        """Every object of ``obj_type`` in the inventory with ``paths`` read, via one container view."""

        def run() -> list[tuple[Any, dict[str, Any]]]:
            view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [obj_type], True)
            try:
                traversal = vmodl.query.PropertyCollector.TraversalSpec(
                    name="view", path="view", skip=False, type=vim.view.ContainerView
                )
                spec = vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])
                found = self._collect([spec], obj_type, paths)
            finally:
                view.DestroyView()
            return [(o.obj, {p.name: p.val for p in o.propSet or []}) for o in found]

        return self._call(f"list {obj_type.__name__}", run)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except vim.fault.NotAuthenticated:
            self.ensure_session()
            return self._wrap(what, fn)
        except vmodl.fault.ManagedObjectNotFound as exc:
            raise VSphereNotFound(f"{what}: object no longer exists on {self.describe()}") from exc
        except (vmodl.MethodFault, OSError, http.client.HTTPException) as exc:
            raise VSphereError(f"{what} on {self.describe()} failed: {fault_message(exc)}") from exc

    def _wrap(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except vmodl.fault.ManagedObjectNotFound as exc:
            raise VSphereNotFound(f"{what}: object no longer exists on {self.describe()}") from exc
        except (vmodl.MethodFault, OSError, http.client.HTTPException) as exc:
            raise VSphereError(f"{what} on {self.describe()} failed: {fault_message(exc)}") from exc

    # -- tasks -------------------------------------------------------------------------------------

    def wait_for_task(self, task: Any, *, timeout: float | None = None, what: str = "task") -> Any:
        """Wait for ``task`` and return its result; VSphereTaskError on error or after ``timeout`` s."""
        limit = self.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.05
        while True:
            info = self.properties(task, ["info.state", "info.error", "info.result"])
            state = str(info.get("info.state"))
            if state == "success":
                return info.get("info.result")
            if state == "error":
                raise VSphereTaskError(
                    f"{what} failed on {self.describe()}: {fault_message(info.get('info.error'))}"
                )
            if time.monotonic() >= deadline:
                raise VSphereTaskError(
                    f"{what} did not finish within {limit:.0f}s on {self.describe()} (task {task._moId} is "
                    f"still {state}; it may yet complete)"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def _run_task(self, what: str, start: Callable[[], Any], timeout: float | None = None) -> Any:
        task = self._call(what, start)
        return self.wait_for_task(task, timeout=timeout, what=what)

    def run_task(self, what: str, start: Callable[[], Any], *, timeout: float | None = None) -> Any:
        """Start a task with ``start()`` (faults mapped like every other call) and wait for its result."""
        return self._run_task(what, start, timeout)
