"""Recover VMs into a KVM site: volumes in its pool, a domain from the source's captured XML, its health.

``KvmTargetMixin`` gives ``KvmAdapter`` the target verbs; it needs the adapter's ``connect()`` (a
libvirt connection with the site's credentials) and ``site``.

Everything a run makes carries the run in its name or its metadata, so a retry finds it and cleanup
finds exactly it:

- volumes in the site's pool: ``<name>--<run>--<disk>.qcow2`` (and ``...qcow2.part`` while one is
  written; the serial console file ``<name>--<run>--console.log`` sits there too);
- the domain: named ``name`` (``<vm>-drill-<run8>`` in a drill, the VM's own name in a failover), with
  a ``seawall:recovery`` metadata element naming plan, run and source VM (``domxml.RecoveryTag``).

The steps:

- ``materialize``: each disk of the point is restored (verified on the way) into a sparse raw file in
  the pool and converted to qcow2 (qcow2 so the recovered VM can be protected back with checkpoints and
  dirty bitmaps when it is reprotected), renamed into place when whole: a killed attempt leaves a
  ``.part`` that the next attempt replaces and cleanup removes. A drill gets a full copy, not an
  overlay over a cached base: a base would have to stay in the target pool between runs (cleanup
  could then not leave the site as it was), and made per run it saves nothing. Then the domain is
  *defined* (not started) from the point's captured XML with the new name and disks, so the XML
  goes from the replica store straight into libvirt and never through workflow history.
- ``create_vm``: the defined domain gets the plan's size, NIC networks and MAC policy, a free
  127.0.0.1 port for a user-mode health forward if it has one; the plan's identity for NIC 0 is
  written into the system disk's identity seed (``identity.py``) while the domain is shut off; then
  it starts. A domain that already runs for this run is returned as it is (a retry).
- ``guest_ips``: the address the guest itself reports on its serial console, once it says "ready";
  the existing ``guest-ip`` health check waits for the planned address this way.
- ``cleanup_run``: destroy and undefine (checkpoint and snapshot metadata, NVRAM) every domain tagged
  with the run, delete every volume named with it; nothing else.

The worker must run on the libvirt host (the pool is a local ``dir`` pool): disks are written as files
and the console is read as a file; a pool of another type or elsewhere is refused with a clear error.

Helpers live beside it: ``runnames`` (what a run's files are called), ``pooldisks`` (the point's disks
into the pool), ``libvirtops`` (define, networks, removal) and ``homeidentity`` (failback).
"""

from __future__ import annotations

import contextlib
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from seawall.contract.messages import Resource, TargetVM
from seawall.model.ipplan import NicPlan
from seawall.runtime import failpoints
from seawall.sites.base import Heartbeat, PointReader, RunLabels, SiteError, VMShape
from seawall.sites.kvm import domxml
from seawall.sites.kvm.console import ConsoleReport, last_console_report
from seawall.sites.kvm.identity import Identity, IdentityError, SeedError, write_identity
from seawall.sites.kvm.libvirtops import (
    define,
    delete_volume,
    libvirt_message,
    remove_domain,
    require_network,
    tagged_run,
)
from seawall.sites.kvm.pooldisks import captured_domain_xml, ordered_disks, write_disk
from seawall.sites.kvm.runnames import SAFE, console_name, made_by_run, volume_name

if TYPE_CHECKING:
    from seawall.model import KvmSite

PORT_TRIES = 3


def identity_for(nics: list[NicPlan], hostname: str) -> Identity | None:
    """The guest's identity from the plan's first NIC; None when it keeps its own (DHCP / no rule)."""
    if not nics or nics[0].ip is None or nics[0].prefix is None or nics[0].gateway is None:
        return None
    label = hostname.split(".", 1)[0].lower()
    try:
        return Identity(label, str(nics[0].ip), nics[0].prefix, str(nics[0].gateway))
    except IdentityError as exc:
        raise SiteError(
            f"NIC 0 of {hostname}: the guest would refuse this identity: {exc}", "PlanInvalid"
        ) from None


def free_port() -> int:
    """A 127.0.0.1 port free now (QEMU binds it at start; a lost race fails the start, which retries)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class KvmTargetMixin:
    """The target verbs of ``KvmAdapter``."""

    site: KvmSite
    connect: Callable[[], contextlib.AbstractContextManager[Any]]

    # ---- lookups ----------------------------------------------------------------------------------

    def _pool(self, conn: Any) -> tuple[Any, Path]:
        try:
            pool = conn.storagePoolLookupByName(self.site.pool)
        except libvirt.libvirtError as exc:
            raise SiteError(
                f"site {self.site.name!r}: storage pool {self.site.pool!r}: {libvirt_message(exc)}",
                "PlanInvalid",
            ) from None
        root = ET.fromstring(pool.XMLDesc(0))
        path = root.findtext("target/path")
        if root.get("type") != "dir" or not path or not Path(path).is_dir():
            raise SiteError(
                f"site {self.site.name!r}: pool {self.site.pool!r} must be a dir pool on this worker's host "
                f"(it is {root.get('type')!r} at {path!r}): recovered disks are written as files",
                "PlanInvalid",
            )
        if not pool.isActive():
            pool.create(0)
        return pool, Path(path)

    def _domain(self, conn: Any, name: str) -> Any | None:
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise SiteError(
                f"site {self.site.name!r}: domain {name!r}: {libvirt_message(exc)}", retryable=True
            ) from None

    def _own_domain(self, conn: Any, name: str, labels: RunLabels) -> tuple[Any, ET.Element] | None:
        """The domain ``name`` if this run made it; SiteError if someone else's has that name."""
        dom = self._domain(conn, name)
        if dom is None:
            return None
        root = domxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        tag = domxml.read_tag(root)
        if not domxml.RecoveryTag(labels.plan, labels.run, labels.vm).same_run(tag):
            raise SiteError(
                f"a domain named {name!r} already exists at site {self.site.name!r} and was not made by "
                f"run {labels.run} for {labels.vm}; not touching it",
                "PlanInvalid",
            )
        return dom, root

    # ---- materialize ------------------------------------------------------------------------------

    def materialize(
        self, name: str, labels: RunLabels, reader: PointReader, heartbeat: Heartbeat
    ) -> tuple[list[dict[str, Any]], list[Resource]]:
        site = self.site
        source_xml, devs = captured_domain_xml(reader)
        with self.connect() as conn:
            pool, pool_dir = self._pool(conn)
            made: list[dict[str, Any]] = []
            resources: list[Resource] = []
            for dm in reader.disks():
                vol = volume_name(name, labels.run, dm.disk)
                path = pool_dir / vol
                started = time.monotonic()
                if not path.exists():
                    write_disk(path, dm.size, reader.restorer(dm.disk), reader.progress(dm.disk))
                made.append({"disk": dm.disk, "volume": vol, "path": str(path), "size": dm.size})
                resources.append(Resource(kind="volume", id=vol, site=site.name, detail=site.pool))
                heartbeat({"disk": dm.disk, "done": True, "seconds": round(time.monotonic() - started, 3)})
                failpoints.hit("materialize.disk_done", {"vm": labels.vm, "disk": dm.disk})
            pool.refresh(0)
            console = pool_dir / console_name(name, labels.run)
            if self._own_domain(conn, name, labels) is None:
                tag = domxml.RecoveryTag(labels.plan, labels.run, labels.vm, console=str(console))
                paths = ordered_disks(source_xml, devs, {m["disk"]: m["path"] for m in made})
                xml = domxml.recovery_domain_xml(
                    source_xml, name=name, tag=tag, disks=paths, console_path=str(console)
                )
                define(conn, xml, name)
            resources.append(Resource(kind="vm", id=name, site=site.name, detail="defined"))
        return made, resources

    # ---- create -----------------------------------------------------------------------------------

    def create_vm(
        self, name: str, labels: RunLabels, shape: VMShape, nics: list[NicPlan], disks: list[str]
    ) -> TargetVM:
        site = self.site
        identity = identity_for(nics, shape.hostname)
        ips = [str(n.ip) for n in nics if n.ip is not None]
        with self.connect() as conn:
            found = self._own_domain(conn, name, labels)
            if found is None:
                raise SiteError(
                    f"{name}: no domain defined at {site.name}; materialize it first", retryable=True
                )
            dom, root = found
            resources = [Resource(kind="vm", id=name, site=site.name)]
            if dom.isActive():
                return TargetVM(name=name, ips=ips, resources=resources)
            targets = [
                domxml.NicTarget(
                    network=nic.backing, connected=nic.connected, keep_mac=nic.keep_mac, model=nic.model
                )
                for nic in nics
            ]
            for network in {t.network for t in targets}:
                require_network(conn, site, network)
            system = next((path for _dev, path in domxml.disk_sources(root) if path), None)
            if identity is not None and system is not None:
                try:
                    write_identity(Path(system), identity)
                except SeedError as exc:
                    raise SiteError(
                        f"{name}: cannot give the guest its planned address {identity.cidr} before boot: "
                        f"its first disk has no identity seed ({exc})",
                        "PlanInvalid",
                    ) from None
            has_forward = domxml.user_netdev_forward(root) is not None
            for attempt in range(PORT_TRIES):
                tag = domxml.read_tag(root) or domxml.RecoveryTag(labels.plan, labels.run, labels.vm)
                port = free_port() if has_forward else None
                xml = domxml.configure_domain_xml(
                    ET.tostring(root, encoding="unicode"),
                    tag=domxml.RecoveryTag(tag.plan, tag.run, tag.vm, health_port=port, console=tag.console),
                    nics=targets,
                    # The shape is the plan's where it names a size, else the source's (from this same
                    # XML): only a real change is written, so an unchanged CPU topology stays.
                    cpus=shape.cpus if shape.cpus != int(root.findtext("vcpu") or 0) else None,
                    memory_mib=shape.memory_mib if shape.memory_mib * 1024 != _memory_kib(root) else None,
                    identity=identity,
                )
                dom = define(conn, xml, name)
                try:
                    dom.create()
                    break
                except libvirt.libvirtError as exc:
                    if dom.isActive():
                        break
                    # A port taken between choosing and binding: choose again; anything else is final.
                    if not has_forward or attempt == PORT_TRIES - 1 or "hostfwd" not in libvirt_message(exc):
                        raise SiteError(
                            f"{name}: start at {site.name}: {libvirt_message(exc)}", retryable=True
                        ) from None
            failpoints.hit("create_target_vm.started", {"vm": labels.vm, "name": name})
        return TargetVM(name=name, ips=ips, resources=resources)

    # ---- health -----------------------------------------------------------------------------------

    def guest_console(self, name: str) -> ConsoleReport | None:
        """The newest "SEAWALL-GUEST ..." line the recovered guest printed, None before it printed."""
        with self.connect() as conn:
            dom = self._domain(conn, name)
            if dom is None:
                return None
            root = domxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        # A recovered domain names its console in its tag; an original (after failback) in its serial port.
        tag = domxml.read_tag(root)
        console = tag.console if tag is not None and tag.console else domxml.serial_file(root)
        if not console:
            return None
        try:
            return last_console_report(Path(console).read_text(errors="replace"))
        except FileNotFoundError:
            return None

    def guest_ips(self, name: str) -> list[str]:
        report = self.guest_console(name)
        return [report.address] if report is not None and report.ready else []

    def guest_report(self, name: str) -> str | None:
        report = self.guest_console(name)
        return report.line if report is not None else None

    # ---- cleanup ----------------------------------------------------------------------------------

    def cleanup_run(
        self, run: str, folders: Callable[[], list[str]], heartbeat: Heartbeat, previous: list[str]
    ) -> list[Resource]:
        site = self.site
        removed: list[Resource] = []
        with self.connect() as conn:
            doms = [d for d in conn.listAllDomains(0) if tagged_run(d) == run]
            found = sorted(set(previous) | {d.name() for d in doms})
            heartbeat({"found": found})
            for dom in doms:
                name = dom.name()
                remove_domain(dom)
                heartbeat({"found": found, "destroyed": name})
                failpoints.hit("cleanup_run.destroyed", {"vm": name})
            left = [d.name() for d in conn.listAllDomains(0) if tagged_run(d) == run]
            if left:
                raise SiteError(f"cleanup of run {run}: still defined after undefine: {left}", retryable=True)
            removed += [Resource(kind="vm", id=name, site=site.name) for name in found]
            pool, pool_dir = self._pool(conn)
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                if made_by_run(vol.name(), run):
                    delete_volume(vol, pool_dir)
                    removed.append(Resource(kind="volume", id=vol.name(), site=site.name, detail=site.pool))
            # A .part written after the refresh above (a killed attempt's writer is dead: none is).
            for path in pool_dir.glob(f"*--{SAFE.sub('_', run)}--*"):
                path.unlink(missing_ok=True)
            pool.refresh(0)
        return removed


def _memory_kib(root: ET.Element) -> int:
    memory = root.find("memory")
    if memory is None or not (memory.text or "").strip():
        return 0
    scale = {
        "b": 1 / 1024,
        "bytes": 1 / 1024,
        "k": 1,
        "kib": 1,
        "m": 1024,
        "mib": 1024,
        "g": 1 << 20,
        "gib": 1 << 20,
    }
    return int(int(memory.text or 0) * scale.get(memory.get("unit", "KiB").lower(), 1))
