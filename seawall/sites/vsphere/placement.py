"""Where things go at a vSphere site: datacenter, VM folder, resource pool and host; port groups; files.

``resolve_placement`` chooses where a recovered VM is created; ``ensure_network`` / ``remove_network``
make and remove per-run isolated port groups; ``delete_datastore_path`` removes a run's files (disks
of a VM that was never created).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from seawall.sites.vsphere.client import VSphereConnection
from seawall.sites.vsphere.session import VSphereError, VSphereNotFound, VSphereTaskError

__all__ = [
    "Placement",
    "PlacementCache",
    "PortGroup",
    "delete_datastore_path",
    "ensure_network",
    "find_datacenter",
    "find_network",
    "remove_network",
    "resolve_placement",
]


def delete_datastore_path(
    conn: VSphereConnection, datastore: str, datacenter: str, path: str, *, timeout: float | None = None
) -> bool:
    """Delete a file or directory on the datastore; False when it was already gone."""
    dc = find_datacenter(conn, datacenter)
    file_manager = conn.content.fileManager
    name = f"[{datastore}] {path}"
    try:
        conn.run_task(
            f"delete {name}",
            lambda: file_manager.DeleteDatastoreFile_Task(name=name, datacenter=dc),
            timeout=timeout,
        )
    except VSphereTaskError as exc:
        if "FileNotFound" in str(exc) or "CannotDeleteFile" in str(exc):
            # vcsim reports a missing file as CannotDeleteFile; gone is what we wanted.
            return False
        raise
    return True


@dataclass(frozen=True)
class Placement:
    """Where a new VM goes: datacenter, its VM folder, a resource pool, optionally a host."""

    datacenter: Any
    folder: Any
    pool: Any
    host: Any | None
    datastore: str
    datacenter_name: str


def find_datacenter(conn: VSphereConnection, name: str) -> Any:
    for obj, props in conn.list_objects(vim.Datacenter, ["name"]):
        if props.get("name") == name:
            return obj
    raise VSphereNotFound(f"no datacenter named {name!r} on {conn.describe()}")


def resolve_placement(
    conn: VSphereConnection,
    datacenter: str,
    datastore: str,
    *,
    cluster: str | None = None,
    host: str | None = None,
    pool: str | None = None,
    folder: str | None = None,
) -> Placement:
    """Find the folder, resource pool and host for new VMs (default: the datacenter's first cluster's
    root pool and its VM folder). ``pool`` is a name or a path below the cluster (``prod/erp``);
    ``folder`` a path below the datacenter's VM folder (``dr/erp``)."""
    dc = find_datacenter(conn, datacenter)
    dc_props = conn.properties(dc, ["vmFolder"])
    vm_folder = dc_props["vmFolder"] if folder is None else find_folder(conn, dc_props["vmFolder"], folder)
    clusters = [
        (obj, props)
        for obj, props in conn.list_objects(vim.ClusterComputeResource, ["name", "resourcePool"])
        if conn.datacenter_path(obj) == conn.datacenter_path(dc)
    ]
    if cluster is not None:
        clusters = [(o, p) for o, p in clusters if p.get("name") == cluster]
        if not clusters:
            raise VSphereNotFound(f"no cluster named {cluster!r} in {datacenter} on {conn.describe()}")
    resource_pool = None
    if pool is not None:
        resource_pool = find_pool(conn, pool, [o for o, _ in clusters] if cluster is not None else None)
    elif clusters:
        resource_pool = clusters[0][1]["resourcePool"]
    host_obj = None
    if host is not None:
        hosts = [o for o, p in conn.list_objects(vim.HostSystem, ["name"]) if p.get("name") == host]
        if len(hosts) != 1:
            raise VSphereNotFound(f"no single host named {host!r} on {conn.describe()}")
        host_obj = hosts[0]
        if resource_pool is None:
            parent = conn.properties(host_obj, ["parent"])["parent"]
            resource_pool = conn.properties(parent, ["resourcePool"])["resourcePool"]
    if resource_pool is None:
        raise VSphereNotFound(f"no cluster or resource pool for new VMs in {datacenter} on {conn.describe()}")
    return Placement(dc, vm_folder, resource_pool, host_obj, datastore, datacenter)


def find_folder(conn: VSphereConnection, root: Any, path: str) -> Any:
    """The VM folder at ``path`` (``a/b``) below ``root``."""
    here = root
    for part in path.strip("/").split("/"):
        children = conn.properties(here, ["childEntity"]).get("childEntity") or []
        found = [
            c for c in children if isinstance(c, vim.Folder) and conn.properties(c, ["name"])["name"] == part
        ]
        if not found:
            raise VSphereNotFound(f"no VM folder {path!r} (missing {part!r}) on {conn.describe()}")
        here = found[0]
    return here


def _pool_path(conn: VSphereConnection, pool: Any) -> list[str]:
    """Names from below the cluster's root pool down to ``pool``."""
    names: list[str] = []
    obj = pool
    while isinstance(obj, vim.ResourcePool):
        props = conn.properties(obj, ["name", "parent"])
        parent = props.get("parent")
        if not isinstance(parent, vim.ResourcePool):
            break  # the root pool ("Resources") is the cluster's, not part of a path
        names.insert(0, str(props["name"]))
        obj = parent
    return names


def find_pool(conn: VSphereConnection, pool: str, clusters: list[Any] | None = None) -> Any:
    """The resource pool named ``pool``, or at path ``a/b`` below a cluster (within ``clusters``)."""
    parts = pool.strip("/").split("/")
    found = []
    for obj, props in conn.list_objects(vim.ResourcePool, ["name", "owner"]):
        if props.get("name") != parts[-1]:
            continue
        if clusters is not None and props.get("owner") not in clusters:
            continue
        if len(parts) > 1 and _pool_path(conn, obj) != parts:
            continue
        found.append(obj)
    if len(found) != 1:
        raise VSphereNotFound(f"{len(found)} resource pools match {pool!r} on {conn.describe()}")
    return found[0]


@dataclass(frozen=True)
class PortGroup:
    name: str
    key: str | None  # distributed port group key; None for a standard network
    switch_uuid: str | None
    obj: Any


def find_network(conn: VSphereConnection, name: str) -> PortGroup:
    dv = [
        (obj, props)
        for obj, props in conn.list_objects(
            vim.dvs.DistributedVirtualPortgroup, ["name", "key", "config.distributedVirtualSwitch"]
        )
        if props.get("name") == name
    ]
    if len(dv) > 1:
        raise VSphereError(f"{len(dv)} port groups are named {name!r} on {conn.describe()}")
    if dv:
        obj, props = dv[0]
        switch = props["config.distributedVirtualSwitch"]
        uuid = conn.properties(switch, ["uuid"])["uuid"]
        return PortGroup(name, str(props["key"]), str(uuid), obj)
    std = [o for o, p in conn.list_objects(vim.Network, ["name"]) if p.get("name") == name]
    if not std:
        raise VSphereNotFound(f"no network or port group named {name!r} on {conn.describe()}")
    return PortGroup(name, None, None, std[0])


def _find_switch(conn: VSphereConnection, switch: str | None) -> Any:
    switches = conn.list_objects(vim.DistributedVirtualSwitch, ["name"])
    if switch is not None:
        switches = [(o, p) for o, p in switches if p.get("name") == switch]
    if len(switches) != 1:
        what = f"named {switch!r}" if switch is not None else "(give its name)"
        raise VSphereNotFound(f"{len(switches)} distributed switches {what} on {conn.describe()}")
    return switches[0][0]


def ensure_network(conn: VSphereConnection, name: str, *, switch: str | None = None, ports: int = 64) -> str:
    """A distributed port group ``name`` on ``switch`` (e.g. a per-run isolated bubble); its key.

    Idempotent: an existing port group of that name is returned. Isolation is the switch's
    business (no uplinks / a VLAN with no route); this only makes the attachment point.
    """
    try:
        found = find_network(conn, name)
        if found.key is not None:
            return found.key
        raise VSphereError(f"{name!r} exists on {conn.describe()} as a standard network, not a port group")
    except VSphereNotFound:
        pass
    dvs = _find_switch(conn, switch)
    spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(name=name, type="earlyBinding", numPorts=ports)
    try:
        conn.run_task(f"add port group {name}", lambda: dvs.AddDVPortgroup_Task([spec]))
    except VSphereTaskError as exc:
        if "DuplicateName" not in str(exc):
            raise
    key = find_network(conn, name).key
    assert key is not None
    return key


def remove_network(conn: VSphereConnection, name: str) -> bool:
    """Remove the distributed port group ``name``; False when it did not exist."""
    try:
        found = find_network(conn, name)
    except VSphereNotFound:
        return False
    if found.key is None:
        raise VSphereError(f"{name!r} on {conn.describe()} is a standard network; not removing it")
    try:
        conn.run_task(f"remove port group {name}", lambda: found.obj.Destroy_Task())
    except VSphereNotFound:
        return False
    return True


def placement_problems(
    conn: VSphereConnection,
    datacenter: str,
    datastore: str,
    cluster: str | None,
    pool: str | None,
    folder: str | None,
) -> list[tuple[str, str]]:
    """(field, message) for each placement name the site does not have (``seawall plan check``)."""
    problems: list[tuple[str, str]] = []
    try:
        dc = find_datacenter(conn, datacenter)
    except VSphereNotFound:
        known = sorted(str(p.get("name")) for _, p in conn.list_objects(vim.Datacenter, ["name"]))
        return [("datacenter", f"no datacenter {datacenter!r} at the site (it has: {', '.join(known)})")]
    stores = {str(p.get("name")) for _, p in conn.list_objects(vim.Datastore, ["name"])}
    if datastore not in stores:
        problems.append(
            ("datastore", f"no datastore {datastore!r} at the site (it has: {', '.join(sorted(stores))})")
        )
    clusters = [
        (o, p)
        for o, p in conn.list_objects(vim.ClusterComputeResource, ["name"])
        if conn.datacenter_path(o) == conn.datacenter_path(dc)
    ]
    if cluster is not None and cluster not in {str(p.get("name")) for _, p in clusters}:
        names = ", ".join(sorted(str(p.get("name")) for _, p in clusters)) or "none"
        problems.append(("cluster", f"no cluster {cluster!r} in {datacenter} (it has: {names})"))
    elif pool is not None:
        scope = [o for o, p in clusters if p.get("name") == cluster] if cluster is not None else None
        try:
            find_pool(conn, pool, scope)
        except VSphereNotFound as exc:
            problems.append(("resource_pool", str(exc)))
    if folder is not None:
        try:
            find_folder(conn, conn.properties(dc, ["vmFolder"])["vmFolder"], folder)
        except VSphereNotFound as exc:
            problems.append(("folder", str(exc)))
    return problems


class PlacementCache:
    """Placements found per API session: the folder, pool and host of a site pair are a dozen
    inventory reads (a third of a create at the lab), found once per session, not per recovered VM.
    A create that fails forgets its placement, so the retry looks it up again (a folder or pool
    removed or moved since)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The session itself is kept beside its placements, so the key's id() cannot be reused.
        self._found: dict[tuple[Any, ...], tuple[VSphereConnection, Placement]] = {}

    @staticmethod
    def _key(conn: VSphereConnection, datacenter: str, datastore: str, where: Any) -> tuple[Any, ...]:
        scope = (where.cluster, where.resource_pool, where.folder) if where is not None else (None,) * 3
        return (id(conn), datacenter, datastore, *scope)

    def resolve(self, conn: VSphereConnection, datacenter: str, datastore: str, where: Any) -> Placement:
        """``resolve_placement`` for ``where`` (a site pair's placement, or None), once per session."""
        key = self._key(conn, datacenter, datastore, where)
        with self._lock:
            found = self._found.get(key)
        if found is not None and found[0] is conn:
            return found[1]
        placement = resolve_placement(
            conn,
            datacenter,
            datastore,
            cluster=where.cluster if where else None,
            pool=where.resource_pool if where else None,
            folder=where.folder if where else None,
        )
        with self._lock:
            # Placements of sessions no longer in use are dropped with them.
            self._found = {k: v for k, v in self._found.items() if v[0] is conn}
            self._found[key] = (conn, placement)
        return placement

    def forget(self, conn: VSphereConnection, datacenter: str, datastore: str, where: Any) -> None:
        with self._lock:
            self._found.pop(self._key(conn, datacenter, datastore, where), None)
