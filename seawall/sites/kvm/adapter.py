"""A KVM site: libvirt domains as the source of replicated VMs (the target verbs live beside them).

Every verb opens its own libvirt connection (``sites.kvm.connection``) with the site's credentials and
closes it on the way out. Source verbs (``sites.kvm.source``): a point is a libvirt pull-mode backup
job and its checkpoint, begun by ``create_snapshot`` and ended by ``release_snapshot``; the disks ship
over NBD with the job's dirty bitmap as changed-block tracking (``sites.kvm.nbdsource``).

Public API: ``KvmAdapter.connect()`` (context manager: a libvirt connection), ``probe``,
``site_problems``, and the ``SourceAdapter`` verbs including ``settle_snapshot`` and ``describe_vm``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import libvirt

from seawall.contract.messages import ChosenPoint, SnapshotTaken, TargetVM
from seawall.model import KvmSite
from seawall.model.sourceconfig import SourceConfig
from seawall.sites.base import BaseAdapter, Heartbeat, OpenDisk, PointReader, SiteError
from seawall.sites.kvm import backup, connection, homeidentity, restore, source
from seawall.sites.kvm.target import KvmTargetMixin


@contextlib.contextmanager
def _libvirt_errors(adapter: KvmAdapter, what: str) -> Iterator[None]:
    """A libvirt failure inside a verb: one line naming the site and what was being done; retryable."""
    try:
        yield
    except connection.KVM_ERRORS as exc:
        message = f"site {adapter.site.name!r}: {what}: {connection.describe(exc)}"
        raise SiteError(adapter.redact(message), retryable=True) from None


class KvmAdapter(KvmTargetMixin, BaseAdapter):
    kind: ClassVar[str] = "kvm"
    site: KvmSite

    def _credentials(self) -> dict[str, Any] | None:
        if self.site.credentials == "none":
            return None
        return self.credentials(("password",))

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A libvirt connection with the site's own credentials, closed when the block ends."""
        with connection.connect(self.site, self._credentials()) as conn:
            yield conn

    def probe(self) -> str:
        with self.connect() as conn, _libvirt_errors(self, "probe"):
            host = connection.describe_host(conn)
            connection.find_pool(conn, self.site)
            return f"{host}, pool {self.site.pool}"

    def site_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What the inventory names (pool, networks) that the reachable site lacks."""
        return connection.site_problems(self.site, self._credentials())

    # ---- source ----------------------------------------------------------------------------------

    def enable_cbt(self, vm: str) -> bool:
        # Dirty bitmaps need no switching on: each point's checkpoint starts one. They need qcow2.
        with self.connect() as conn, _libvirt_errors(self, f"disks of {vm!r}"):
            dom = connection.find_domain(conn, self.site, vm)
            return all(d.bitmaps for d in backup.domain_disks(dom.XMLDesc()))

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool, only: list[str] | None) -> SnapshotTaken:
        # ``quiesce`` would need qemu-guest-agent's fsfreeze; without it the point is crash-consistent.
        with self.connect() as conn, _libvirt_errors(self, f"point {name} of {vm!r}"):
            dom = connection.find_domain(conn, self.site, vm)
            return source.take_point(self.site, conn, dom, name, only)

    @contextlib.contextmanager
    def open_disks(self, vm: str, snapshot: str) -> Iterator[OpenDisk]:
        with self.connect() as conn, _libvirt_errors(self, f"exports of {snapshot} of {vm!r}"):
            dom = connection.find_domain(conn, self.site, vm)
            opener = source.open_exports(self.site, conn, dom, snapshot)
        yield opener  # NBD needs no libvirt connection while the disks ship

    def _domain_or_none(self, conn: Any, vm: str) -> Any | None:
        """The domain, or None when it is gone: releasing what a gone VM held is already done."""
        try:
            return connection.find_domain(conn, self.site, vm)
        except SiteError as exc:
            if exc.type == "VMGone":
                return None
            raise

    def release_snapshot(self, vm: str, name: str) -> int:
        with self.connect() as conn, _libvirt_errors(self, f"ending the backup of {name} of {vm!r}"):
            dom = self._domain_or_none(conn, vm)
            return 0 if dom is None else source.release(self.site, conn, dom, name)

    def release_orphan_snapshots(self, vm: str) -> list[str]:
        with self.connect() as conn, _libvirt_errors(self, f"backup jobs of {vm!r}"):
            dom = self._domain_or_none(conn, vm)
            return [] if dom is None else source.release_all(self.site, conn, dom)

    def settle_snapshot(self, vm: str, name: str, kept: bool) -> list[str]:
        with self.connect() as conn, _libvirt_errors(self, f"checkpoints of {vm!r}"):
            dom = self._domain_or_none(conn, vm)
            return [] if dom is None else source.settle(dom, name, kept)

    def describe_vm(self, vm: str, snapshot: str) -> SourceConfig | None:
        with self.connect() as conn, _libvirt_errors(self, f"definition of {vm!r}"):
            return source.describe(connection.find_domain(conn, self.site, vm), snapshot)

    def fence(self, vm: str) -> str:
        with self.connect() as conn, _libvirt_errors(self, f"fencing {vm!r}"):
            try:
                dom = connection.find_domain(conn, self.site, vm)
            except SiteError as exc:
                if exc.type == "VMGone":
                    return f"{vm}: not defined at {self.site.name} (nothing runs)"
                raise
            done = restore.shut_off(dom, self.site.shutdown_grace.total_seconds())
            return f"{vm}: {done} at {self.site.name}"

    def restore_in_place(
        self, vm: str, point: ChosenPoint, reader: PointReader, heartbeat: Heartbeat
    ) -> TargetVM:
        by_name = {d.disk: d for d in reader.disks()}
        with self.connect() as conn, _libvirt_errors(self, f"failback of {vm!r}"):
            try:
                dom = connection.find_domain(conn, self.site, vm)
            except SiteError:
                raise SiteError(
                    f"{vm}: the original domain is gone from {self.site.name}", "PlanInvalid"
                ) from None
            disks = backup.domain_disks(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if len(disks) != len(by_name):
                raise SiteError(
                    f"{vm}: the original has {len(disks)} disks, the point {len(by_name)}", "PlanInvalid"
                )
            missing = [d.replica_name for d in disks if d.replica_name not in by_name]
            if missing:
                raise SiteError(f"{vm}: point {point.point_id} has no {', '.join(missing)}", "PlanInvalid")
            restore.shut_off(dom, self.site.shutdown_grace.total_seconds())
            # Written behind QEMU's back, the disks no longer match any checkpoint's bitmap: the chain
            # goes, so the next cycle after a reprotect hash-compares instead of trusting it.
            source.forget_checkpoints(dom)
            # The point's seed holds the recovery site's address: the original keeps its own.
            home = homeidentity.keep_home_identity(dom, disks[0].path) if disks and disks[0].path else None
            for disk in disks:
                dm = by_name[disk.replica_name]
                heartbeat({"disk": dm.disk, "offset": 0})
                restore.write_disk(disk, dm.size, reader.restorer(dm.disk), reader.progress(dm.disk))
            if disks and disks[0].path:
                homeidentity.restore_home_identity(dom, disks[0].path, home)
            dom.create()
            homeidentity.forget_home_identity(dom)
        # Home, the guest configures its own identity again: the address its health check waits for.
        ips = [home.address] if home is not None else list(point.source_ips)
        return TargetVM(name=vm, ips=ips, resources=[])
