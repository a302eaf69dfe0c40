"""The lab's own vSphere API helpers (pyvmomi against vcsim): connect, wait for a task, read properties.

Shared by building a site (``vsphere_build.py``), reading it back (``vsphere.py``) and the lab tests.
vcsim 0.24 panics when ``guestHeartbeatStatus`` is read, so properties are read only by name
through the property collector (``collect``), never as whole managed objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from seawall.lab import config as c


@contextmanager
def connect(port: int, host: str = c.HOST, timeout: float = 10.0) -> Iterator[vim.ServiceInstance]:
    # SmartConnect's API-version probe has no timeout, so a frozen vcsim would hang it for good: the
    # same document is fetched here first, with one.
    requests.get(f"http://{host}:{port}/sdk/vimServiceVersions.xml", timeout=timeout).raise_for_status()
    si = SmartConnect(
        host=host,
        port=port,
        user=c.VSPHERE_USER,
        pwd=c.VSPHERE_PASSWORD,
        protocol="http",
        httpConnectionTimeout=int(timeout),
    )
    try:
        yield si
    finally:
        Disconnect(si)


def wait_task(task: vim.Task, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == vim.TaskInfo.State.success:
            return info.result
        if info.state == vim.TaskInfo.State.error:
            fault: Any = info.error
            detail = fault.msg or type(fault).__name__
            if getattr(fault, "invalidProperty", None):
                detail += f" ({fault.invalidProperty})"
            raise RuntimeError(f"vSphere task {info.descriptionId or info.key} failed: {detail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"vSphere task {info.key} still {info.state} after {timeout}s")
        time.sleep(0.02)


def collect(si: vim.ServiceInstance, obj_type: type, props: list[str]) -> list[dict[str, Any]]:
    """Named properties of every object of a type: one round trip, and never a property vcsim chokes on."""
    content = si.RetrieveContent()
    view_manager: Any = content.viewManager
    view = view_manager.CreateContainerView(content.rootFolder, [obj_type], True)
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[
                vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        vmodl.query.PropertyCollector.TraversalSpec(
                            name="view", path="view", skip=False, type=vim.view.ContainerView
                        )
                    ],
                )
            ],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=obj_type, pathSet=props)],
        )
        result = content.propertyCollector.RetrieveContents([spec])
    finally:
        view.Destroy()
    rows = []
    for item in result or []:
        row: dict[str, Any] = {"obj": item.obj}
        row.update({p.name: p.val for p in item.propSet})
        rows.append(row)
    return rows


def find_datacenter(si: vim.ServiceInstance, name: str) -> vim.Datacenter | None:
    for row in collect(si, vim.Datacenter, ["name"]):
        if row["name"] == name:
            dc: vim.Datacenter = row["obj"]
            return dc
    return None
