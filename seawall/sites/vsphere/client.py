"""vSphere calls (pyvmomi): VM lookup, snapshots, CBT, power, datastore file URLs, over a ``VSphereSession``.

Everything here is blocking; activities call it from a thread pool. Reads go through the property
collector and fetch only the named properties: besides being cheaper on a large vCenter, this keeps
us clear of properties a server cannot compute (govmomi's vcsim 0.24 panics and drops the connection
when asked for ``guestHeartbeatStatus``, which a whole-object read would include).

Observed on vcsim (govmomi 0.24), which shapes the callers' expectations:

- ``CreateSnapshot_Task`` only adds a ``<vm>-Snapshot<n>.vmsn`` file; the disk backing stays on the
  base ``.vmdk`` (no delta disk), so the bytes live in the base ``-flat.vmdk`` and that file is *not*
  frozen by the snapshot there. On real ESXi the VM moves to a ``-00000N.vmdk`` delta and the base
  stays stable; readers therefore take the backing from the *snapshot's* config, which is right in
  both cases.
- ``QueryChangedDiskAreas`` raises ``vmodl.fault.MethodNotFound`` ("does not implement").
- ``changeTrackingEnabled`` can be set by ReconfigVM, but ``capability.changeTrackingSupported`` is
  False and disk backings carry no ``changeId``.
- Disk capacity is reported in ``capacityInKB`` only (``capacityInBytes`` unset).
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from seawall.blockstore.source import ChangedArea
from seawall.sites.vsphere.diskpaths import (
    DiskInfo,
    build_datastore_url,
    disks_from_devices,
    parse_datastore_path,
)
from seawall.sites.vsphere.session import (
    VSphereError,
    VSphereNotFound,
    VSphereSession,
    VSphereTaskError,
    fault_message,
)

__all__ = ["CbtStatus", "VSphereConnection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CbtStatus:
    enabled: bool
    supported: bool


def _walk_snapshots(trees: Sequence[Any] | None) -> Iterable[Any]:
    for tree in trees or ():
        yield tree
        yield from _walk_snapshots(tree.childSnapshotList)


class VSphereConnection(VSphereSession):
    """One authenticated session to a vCenter or ESXi host, reused for every call.

    Credentials are held only to log in again when the server expires the session; they are never
    logged or shown in ``repr``.
    """

    # -- inventory ---------------------------------------------------------------------------------

    def find_vm(self, name: str) -> Any:
        """The VM named ``name``; VSphereNotFound if none, VSphereError if the name is ambiguous."""
        matches = [
            obj for obj, props in self.list_objects(vim.VirtualMachine, ["name"]) if props.get("name") == name
        ]
        if not matches:
            raise VSphereNotFound(f"no VM named {name!r} on {self.describe()}")
        if len(matches) > 1:
            ids = ", ".join(m._moId for m in matches)
            raise VSphereError(
                f"{len(matches)} VMs are named {name!r} on {self.describe()} ({ids}); use a unique name"
            )
        return matches[0]

    def vm_name(self, vm: Any) -> str:
        return str(self.properties(vm, ["name"]).get("name", vm._moId))

    def vm_disks(self, vm: Any) -> list[DiskInfo]:
        props = self.properties(vm, ["config.hardware.device"])
        return disks_from_devices(props.get("config.hardware.device") or [])

    def power_state(self, vm: Any) -> str:
        return str(self.properties(vm, ["runtime.powerState"]).get("runtime.powerState", "unknown"))

    def datacenter_path(self, obj: Any) -> str:
        """Inventory path of the datacenter holding ``obj`` (``DC0``, or ``folder/DC0`` when nested)."""
        names: list[str] = []
        current = obj
        found_dc = False
        while current is not None:
            props = self.properties(current, ["name", "parent"])
            if isinstance(current, vim.Datacenter):
                found_dc = True
            if found_dc:
                parent = props.get("parent")
                if parent is None:
                    break  # the root folder is not part of the path
                names.append(str(props["name"]))
            current = props.get("parent")
        if not found_dc:
            raise VSphereNotFound(f"{obj} is not inside a datacenter on {self.describe()}")
        return "/".join(reversed(names))

    def datastore_datacenter(self, datastore: str) -> str:
        """dcPath of the datacenter that has a datastore named ``datastore`` (cached)."""
        with self._lock:
            if datastore in self._dc_paths:
                return self._dc_paths[datastore]
        matches = [
            obj for obj, props in self.list_objects(vim.Datastore, ["name"]) if props.get("name") == datastore
        ]
        if not matches:
            raise VSphereNotFound(f"no datastore named {datastore!r} on {self.describe()}")
        paths = sorted({self.datacenter_path(ds) for ds in matches})
        if len(paths) > 1:
            raise VSphereError(
                f"datastore name {datastore!r} exists in several datacenters on {self.describe()} "
                f"({', '.join(paths)}); pass the datacenter explicitly"
            )
        with self._lock:
            self._dc_paths[datastore] = paths[0]
        return paths[0]

    def datastore_url(self, datastore_path: str, datacenter: str | None = None, *, flat: bool = True) -> str:
        """HTTP(S) URL of a disk's data file: ``[ds] dir/f.vmdk`` -> ``.../folder/dir/f-flat.vmdk?...``."""
        ds, _ = parse_datastore_path(datastore_path)
        dc = datacenter if datacenter is not None else self.datastore_datacenter(ds)
        return build_datastore_url(self.base_url, datastore_path, dc, flat=flat)

    # -- CBT ---------------------------------------------------------------------------------------

    def cbt_status(self, vm: Any) -> CbtStatus:
        props = self.properties(vm, ["config.changeTrackingEnabled", "capability.changeTrackingSupported"])
        return CbtStatus(
            enabled=bool(props.get("config.changeTrackingEnabled")),
            supported=bool(props.get("capability.changeTrackingSupported")),
        )

    def enable_cbt(self, vm: Any, *, timeout: float | None = None) -> CbtStatus:
        """Turn on Changed Block Tracking; the status says whether the server claims to support it.

        CBT takes effect at the next snapshot (or power cycle), so enable it before the seed.
        """
        status = self.cbt_status(vm)
        if status.enabled:
            return status
        spec = vim.vm.ConfigSpec(changeTrackingEnabled=True)
        self._run_task(f"enable CBT on {self.vm_name(vm)}", lambda: vm.ReconfigVM_Task(spec=spec), timeout)
        status = self.cbt_status(vm)
        if not status.supported:
            log.info(
                "vSphere %s accepted CBT on %s but reports changeTrackingSupported=False", self.describe(), vm
            )
        return status

    def query_changed_disk_areas(
        self,
        vm: Any,
        snapshot: Any,
        device_key: int,
        start_offset: int,
        change_id: str,
        *,
        disk_size: int | None = None,
    ) -> list[ChangedArea] | None:
        """Every area changed since ``change_id`` from ``start_offset`` to the end of the disk.

        Follows the API's paging (each answer covers ``[startOffset, startOffset+length)``; ask again
        from its end). Returns None when the server cannot answer — it does not implement the call
        (vcsim: MethodNotFound), or the change id is no longer valid (a CBT reset answers with a
        FileFault) — so the caller falls back to comparing hashes.
        """
        if disk_size is None:
            snap_disks = self.snapshot_disks(snapshot)
            match = [d for d in snap_disks if d.key == device_key]
            if not match:
                raise VSphereNotFound(f"snapshot has no disk with device key {device_key}")
            disk_size = match[0].capacity_bytes
        areas: list[ChangedArea] = []
        offset = start_offset
        while offset < disk_size:
            try:
                info = vm.QueryChangedDiskAreas(
                    snapshot=snapshot, deviceKey=device_key, startOffset=offset, changeId=change_id
                )
            except (vmodl.fault.MethodNotFound, vmodl.fault.NotImplemented, vmodl.fault.NotSupported) as exc:
                log.info(
                    "vSphere %s does not implement QueryChangedDiskAreas (%s); using hash comparison",
                    self.describe(),
                    type(exc).__name__,
                )
                return None
            except vim.fault.FileFault as exc:
                log.warning(
                    "QueryChangedDiskAreas on %s rejected change id %r (%s); using hash comparison",
                    self.describe(),
                    change_id,
                    fault_message(exc),
                )
                return None
            except vim.fault.NotAuthenticated:
                self.ensure_session()
                continue
            except (vmodl.MethodFault, OSError, http.client.HTTPException) as exc:
                raise VSphereError(
                    f"QueryChangedDiskAreas on {self.describe()} failed: {fault_message(exc)}"
                ) from exc
            for area in info.changedArea or []:
                areas.append(ChangedArea(int(area.start), int(area.length)))
            end = int(info.startOffset) + int(info.length)
            if end <= offset:
                # A server that answers an empty page would otherwise loop forever.
                break
            offset = end
        return areas

    # -- snapshots ---------------------------------------------------------------------------------

    def _snapshot_trees(self, vm: Any) -> list[Any]:
        props = self.properties(vm, ["snapshot"])
        info = props.get("snapshot")
        return list(_walk_snapshots(info.rootSnapshotList if info is not None else None))

    def snapshot_names(self, vm: Any) -> list[str]:
        """Names of every snapshot of ``vm``, depth first (to check nothing was left behind)."""
        return [str(t.name) for t in self._snapshot_trees(vm)]

    def find_snapshots(self, vm: Any, name: str) -> list[Any]:
        return [t.snapshot for t in self._snapshot_trees(vm) if t.name == name]

    def find_snapshot(self, vm: Any, name: str) -> Any | None:
        """The snapshot named ``name`` (the oldest if a race made several), or None."""
        found = self.find_snapshots(vm, name)
        return found[0] if found else None

    def create_snapshot(
        self,
        vm: Any,
        name: str,
        quiesce: bool = False,
        memory: bool = False,
        *,
        description: str = "Seawall replication snapshot",
        timeout: float | None = None,
    ) -> Any:
        """Create snapshot ``name`` unless one by that name exists: a retried activity must not stack
        snapshots (each one costs the source a delta disk and I/O)."""
        existing = self.find_snapshot(vm, name)
        if existing is not None:
            return existing
        vm_name = self.vm_name(vm)
        return self._run_task(
            f"create snapshot {name!r} of {vm_name}",
            lambda: vm.CreateSnapshot_Task(
                name=name, description=description, memory=memory, quiesce=quiesce
            ),
            timeout,
        )

    def snapshot_disks(self, snapshot: Any) -> list[DiskInfo]:
        """The disks as captured by ``snapshot`` (their backing is the stable, read-only file)."""
        props = self.properties(snapshot, ["config.hardware.device"])
        return disks_from_devices(props.get("config.hardware.device") or [])

    def remove_snapshot(
        self, vm: Any, name: str, *, consolidate: bool = True, timeout: float | None = None
    ) -> int:
        """Remove every snapshot named ``name``; returns how many went. Absent already counts as done."""
        removed = 0
        for snapshot in self.find_snapshots(vm, name):
            try:
                task = snapshot.RemoveSnapshot_Task(removeChildren=False, consolidate=consolidate)
            except vmodl.fault.ManagedObjectNotFound:
                continue
            except vim.fault.NotAuthenticated:
                self.ensure_session()
                task = snapshot.RemoveSnapshot_Task(removeChildren=False, consolidate=consolidate)
            except vmodl.MethodFault as exc:
                raise VSphereError(
                    f"remove snapshot {name!r} on {self.describe()} failed: {fault_message(exc)}"
                ) from exc
            try:
                self.wait_for_task(task, timeout=timeout, what=f"remove snapshot {name!r}")
            except VSphereTaskError:
                # Another remover (a retried activity) may have won the race; gone is success.
                if any(s._moId == snapshot._moId for s in self.find_snapshots(vm, name)):
                    raise
                continue
            removed += 1
        return removed

    # -- power -------------------------------------------------------------------------------------

    def power_on(self, vm: Any, *, timeout: float | None = None) -> None:
        if self.power_state(vm) == "poweredOn":
            return
        self._power(vm, "poweredOn", lambda: vm.PowerOnVM_Task(), timeout)

    def power_off(self, vm: Any, *, timeout: float | None = None) -> None:
        if self.power_state(vm) == "poweredOff":
            return
        self._power(vm, "poweredOff", lambda: vm.PowerOffVM_Task(), timeout)

    def _power(self, vm: Any, target: str, start: Callable[[], Any], timeout: float | None) -> None:
        what = f"power {target.removeprefix('powered').lower()} {self.vm_name(vm)}"
        try:
            self._run_task(what, start, timeout)
        except VSphereError:
            # Someone else (a retry, an operator) may have changed the state meanwhile.
            if self.power_state(vm) != target:
                raise
