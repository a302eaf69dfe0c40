"""What a site adapter does, as small protocols, and the refusals a kind gives for verbs it lacks.

One adapter class per site kind (``seawall.sites.registry``) owns that kind's credentials, resolved at
the worker through ``seawall.security.secrets``, and its verbs:

- ``Probe``: can this worker reach the site with its own credentials?
- ``SourceAdapter``: the VMs replicated *from* the site: CBT, snapshots, the disks to ship, the VM's
  configuration at snapshot time (stored with the point), fencing, and failback's restore onto the
  original VM.
- ``TargetAdapter``: the VMs recovered *at* the site: materialize a point's disks, create and start the
  VM or instance, read its guest addresses, remove everything tagged with a run.

Every adapter has every verb: ``BaseAdapter`` answers those a kind lacks with the refusal an operator
sees (a non-retryable ``SiteError``), so callers never branch on a site's kind. Adapters import no
Temporal: the activities map ``SiteError`` to an ``ApplicationError`` of the same type, and pass
``heartbeat`` callbacks in.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from seawall.blockstore.manifest import DiskManifest
from seawall.blockstore.source import DiskSource
from seawall.contract.messages import ChosenPoint, DiskRef, Resource, SnapshotTaken, TargetVM
from seawall.model import AnySite
from seawall.model.guest import WindowsCustomization
from seawall.model.ipplan import NicPlan
from seawall.model.placement import Placement
from seawall.model.sourceconfig import SourceConfig
from seawall.security.secrets import ResolvedSecret, SecretError, redact, resolve, resolve_credentials

Heartbeat = Callable[[Any], None]
"""Called with small JSON-able details while a long verb works (the activity's heartbeat)."""

Restore = Callable[[Callable[[int, bytes], None]], object]
"""Streams one disk of a point into a writer ``(offset, data)``, verified on the way."""


class SiteError(Exception):
    """A site refused or failed a verb.

    ``type`` names the failure for callers (the activities' ``ApplicationError`` type; ``None`` for a
    plain failure); ``retryable`` says whether trying again can help.
    """

    def __init__(self, message: str, type: str | None = None, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.type = type
        self.retryable = retryable


@dataclass(frozen=True)
class RunLabels:
    """Who a recovered resource belongs to: it is tagged with these so a retry and cleanup find it."""

    plan: str
    run: str
    vm: str
    # Where the site pair's placement mapping puts the VM (None: the target site's defaults).
    placement: Placement | None = None


@dataclass(frozen=True)
class VMShape:
    """The recovered VM's size and identity: the plan's where it names them, else the source's.

    ``source`` is the VM's configuration captured with the point (None for a point taken before
    configurations were captured, or from a kind that captures none): a target re-creates what it
    describes (firmware, controllers, NIC models...) and the plan overrides only what it names.
    ``cores_per_socket`` is None when the plan resized the CPUs (the source's topology may not divide
    the new count). ``notes`` say what fell back to a default, for the run report.
    """

    cpus: int
    memory_mib: int
    instance_type: str | None  # AWS: the plan's instance type, else chosen from cpus and memory
    hostname: str
    source: SourceConfig | None = None
    cores_per_socket: int | None = None
    notes: tuple[str, ...] = ()
    drill: bool = False  # a drill runs beside the live source: no source MACs
    windows: WindowsCustomization | None = None  # the plan's Windows identity (secrets by reference)


class PointReader(Protocol):
    """One recovery point of one VM, read from its replica at the worker."""

    @property
    def point_id(self) -> str: ...

    def disks(self) -> list[DiskManifest]:
        """The point's disks as its manifest lists them (read on first use)."""
        ...

    def restorer(self, disk: str) -> Restore: ...

    def source_config(self) -> SourceConfig | None:
        """The VM's configuration captured with the point; None for a point that has none."""
        ...

    def progress(self, disk: str) -> Callable[[int], None]:
        """Called with the offset reached while ``disk`` streams."""
        ...


OpenDisk = Callable[[DiskRef], DiskSource]


@runtime_checkable
class Probe(Protocol):
    def probe(self) -> str:
        """A line saying what answered; raises when the site cannot be reached."""
        ...


@runtime_checkable
class SourceAdapter(Protocol):
    def enable_cbt(self, vm: str) -> bool: ...

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool, only: list[str] | None) -> SnapshotTaken:
        """Snapshot ``vm`` as ``name`` (found by name if it exists); ``only`` limits the disks."""
        ...

    def open_disks(self, vm: str, snapshot: str) -> contextlib.AbstractContextManager[OpenDisk]:
        """While open, a function from a snapshot's disk to a ``DiskSource`` to ship it from."""
        ...

    def release_snapshot(self, vm: str, name: str) -> int:
        """Remove the snapshot; one already gone (or its VM gone) is success (0)."""
        ...

    def release_orphan_snapshots(self, vm: str) -> list[str]:
        """Remove every Seawall snapshot (``SNAPSHOT_PREFIX``) the VM holds; what was removed. Only
        when no cycle of the VM runs (unprotect, after its cycles closed): each one is then an orphan."""
        ...

    def settle_snapshot(self, vm: str, name: str, kept: bool) -> list[str]:
        """After the cycle of snapshot ``name`` (released): ``kept`` says its point was committed and
        verified. A kind whose change tracking chains from point to point (KVM checkpoints) keeps the
        chain short here; returns what it removed."""
        ...

    def describe_vm(self, vm: str, snapshot: str) -> SourceConfig | None:
        """The VM's configuration as of ``snapshot`` (secrets left out), stored with the point.

        Called while the snapshot still exists, just before the point is committed. None: this kind
        records nothing, and a target re-creates the VM from the plan and its defaults.
        """
        ...

    def fence(self, vm: str) -> str:
        """Make sure the original cannot keep running beside its replica; says what was done."""
        ...

    def start_source(self, vm: str) -> str:
        """Undo ``fence`` after an approved rollback: start the original again; says what was done."""
        ...

    def restore_in_place(
        self, vm: str, point: ChosenPoint, reader: PointReader, heartbeat: Heartbeat
    ) -> TargetVM:
        """Failback: write the point onto the original VM's own disks (paired by position), start it."""
        ...


@runtime_checkable
class TargetAdapter(Protocol):
    def materialize(
        self, name: str, labels: RunLabels, reader: PointReader, heartbeat: Heartbeat
    ) -> tuple[list[dict[str, Any]], list[Resource]]:
        """Write a point's disks at the site for a VM called ``name``: what was made, and its resources."""
        ...

    def create_vm(
        self, name: str, labels: RunLabels, shape: VMShape, nics: list[NicPlan], disks: list[str]
    ) -> TargetVM:
        """Create and start the VM from ``materialize``'s output (``disks``, JSON), found by name on retry."""
        ...

    def guest_ips(self, name: str) -> list[str]:
        """The addresses the recovered VM's guest reports now."""
        ...

    def guest_report(self, name: str) -> str | None:
        """What the guest itself last said about its state (for the report), if the kind can read it."""
        ...

    def placement_problems(self, placement: Placement) -> list[tuple[str, str]]:
        """(field, message) for each name of a placement mapping this site does not have."""
        ...

    def cleanup_run(
        self, run: str, folders: Callable[[], list[str]], heartbeat: Heartbeat, previous: list[str]
    ) -> list[Resource]:
        """Remove everything tagged with ``run``; ``previous``: what a killed attempt found."""
        ...

    def ensure_run_network(self, name: str) -> str:
        """Make (or find) a drill's own isolated network ``name``; says what was done."""
        ...

    def remove_run_network(self, name: str) -> bool:
        """Remove a drill's own network; False when it did not exist (or the kind makes none)."""
        ...


class SiteAdapter(Probe, SourceAdapter, TargetAdapter, Protocol):
    """Everything a site's worker can ask of its site."""

    kind: ClassVar[str]
    site: AnySite

    def redact(self, text: str) -> str: ...

    def site_problems(self) -> list[tuple[tuple[str | int, ...], str]]: ...


class BaseAdapter(abc.ABC):
    """Credentials, redaction and the refusals of verbs a kind does not have."""

    kind: ClassVar[str]

    def __init__(self, site: AnySite) -> None:
        if site.kind != self.kind:
            raise TypeError(
                f"{type(self).__name__} serves {self.kind} sites, not {site.name!r} ({site.kind})"
            )
        self.site: AnySite = site
        self._secrets: list[ResolvedSecret] = []

    def credentials(self, required: tuple[str, ...]) -> dict[str, Any]:
        """The site's credentials, resolved here at the worker; they never travel through Temporal."""
        try:
            creds = resolve_credentials(self.site.credentials, required=required)
            secret = resolve(self.site.credentials)
        except SecretError as exc:
            # A missing or malformed credential does not fix itself between retries.
            raise SiteError(f"site {self.site.name!r}: {exc}", "CredentialsError") from None
        if secret is not None:
            self._secrets.append(secret)
        return creds

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    @abc.abstractmethod
    def probe(self) -> str:
        """Every kind can say whether this worker reaches it: the probe is how a site is set up."""

    def site_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What the inventory names that the site lacks, as ``(field path, message)``; asked by
        ``plan check`` of kinds in ``registry.CHECKED_LIVE``. Raises ``SiteError`` when unreachable."""
        return []

    # ---- refusals ---------------------------------------------------------------------------------

    def _no_source(self, vm: str) -> SiteError:
        return SiteError(
            f"VM {vm!r}: source site {self.site.name!r} is {self.site.kind}, "
            "which has no VMs to snapshot (sources are vsphere, kvm or directory sites)",
            "UnsupportedSource",
        )

    def _no_target(self) -> SiteError:
        return SiteError(f"site {self.site.name} ({self.site.kind}) cannot run recovered VMs", "PlanInvalid")

    def enable_cbt(self, vm: str) -> bool:
        raise self._no_source(vm)

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool, only: list[str] | None) -> SnapshotTaken:
        raise self._no_source(vm)

    @contextlib.contextmanager
    def open_disks(self, vm: str, snapshot: str) -> Iterator[OpenDisk]:
        raise self._no_source(vm)
        yield  # pragma: no cover - makes this a generator, as the protocol's context manager

    def release_snapshot(self, vm: str, name: str) -> int:
        raise self._no_source(vm)

    def release_orphan_snapshots(self, vm: str) -> list[str]:
        raise self._no_source(vm)

    def settle_snapshot(self, vm: str, name: str, kept: bool) -> list[str]:
        # A snapshot that is released leaves nothing behind: nothing to settle.
        return []

    def describe_vm(self, vm: str, snapshot: str) -> SourceConfig | None:
        # A kind without a configuration to capture (raw images) stores none: targets use the plan.
        return None

    def fence(self, vm: str) -> str:
        raise SiteError(
            f"{vm}: site {self.site.name} ({self.site.kind}) cannot power VMs off; confirm by hand",
            "FenceUnsupported",
        )

    def start_source(self, vm: str) -> str:
        raise SiteError(
            f"{vm}: site {self.site.name} ({self.site.kind}) cannot power VMs on; start it by hand",
            "StartUnsupported",
        )

    def restore_in_place(
        self, vm: str, point: ChosenPoint, reader: PointReader, heartbeat: Heartbeat
    ) -> TargetVM:
        raise SiteError(f"failback in place needs a vSphere or KVM site, not {self.site.kind}", "PlanInvalid")

    def materialize(
        self, name: str, labels: RunLabels, reader: PointReader, heartbeat: Heartbeat
    ) -> tuple[list[dict[str, Any]], list[Resource]]:
        raise self._no_target()

    def create_vm(
        self, name: str, labels: RunLabels, shape: VMShape, nics: list[NicPlan], disks: list[str]
    ) -> TargetVM:
        raise self._no_target()

    def guest_ips(self, name: str) -> list[str]:
        raise self._no_target()

    def guest_report(self, name: str) -> str | None:
        # Most kinds know a guest only through its hypervisor's view (guest_ips): nothing to add.
        return None

    def placement_problems(self, placement: Placement) -> list[tuple[str, str]]:
        # Nothing a kind without placement names could check (plan check refuses the fields).
        return []

    def cleanup_run(
        self, run: str, folders: Callable[[], list[str]], heartbeat: Heartbeat, previous: list[str]
    ) -> list[Resource]:
        # A kind that cannot run recovered VMs has nothing a run could have made.
        return []

    def ensure_run_network(self, name: str) -> str:
        raise SiteError(
            f"site {self.site.name} ({self.site.kind}) cannot make a drill its own network: give each NIC "
            "a fixed isolated test_network, or set the plan's drill_network to disconnected",
            "PlanInvalid",
        )

    def remove_run_network(self, name: str) -> bool:
        return False  # a kind that makes no networks has none to remove
