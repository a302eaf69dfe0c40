"""What a protected VM was when a point was taken: its configuration, captured by the source adapter.

A ``SourceConfig`` is stored encrypted beside the point's manifest in the replica store (never in a
workflow history) and read back by the target's worker, so the machine that comes up is the machine
that was protected. It has two parts:

- ``document``: the source kind's own description, as captured (vSphere's device layout, a libvirt
  domain's XML...). Only an adapter of the same kind reads it.
- ``machine``: a kind-neutral view every target kind understands (firmware, CPUs, memory, controllers,
  disks, NICs, tags). A kind that can fill it should: an AWS target boots a vSphere EFI guest in UEFI
  mode from it.

Secrets never belong here: ``scrub`` drops any key that names one (a libvirt VNC ``passwd``, a guest
variable called ``password``...) before a configuration is stored or shown.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GuestFamily = Literal["windows", "linux", "other"]
Firmware = Literal["bios", "efi"]

_SECRET_KEY = re.compile(r"(?i)(passw|passwd|secret|token|credential|private[_-]?key|api[_-]?key)")

SCRUBBED = "<scrubbed>"

# vSphere guest ids (and libvirt osinfo short ids) of Linux distributions start with one of these.
_LINUX = tuple(
    [
        "linux",
        "rhel",
        "centos",
        "ubuntu",
        "debian",
        "sles",
        "suse",
        "oracle",
        "fedora",
        "other26x",
        "other3x",
        "other4x",
        "other5x",
        "amazonlinux",
        "coreos",
        "photon",
        "vmwarephoton",
        "rocky",
        "alma",
        "asianux",
        "mandrake",
        "mandriva",
        "turbolinux",
        "opensuse",
    ]
)


def scrub(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with every entry whose key names a secret replaced."""
    if isinstance(value, dict):
        return {
            k: (SCRUBBED if isinstance(k, str) and _SECRET_KEY.search(k) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def guest_family(guest_id: str | None) -> GuestFamily:
    """The OS family from a hypervisor's guest id (vSphere ``windows2019srv_64Guest``, ``rhel8_64Guest``)."""
    g = (guest_id or "").lower()
    if g.startswith("win"):
        return "windows"
    if g.startswith(_LINUX):
        return "linux"
    return "other"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControllerConfig(_Model):
    """A disk controller: its type (``pvscsi``, ``lsilogic``, ``lsilogic-sas``, ``buslogic``, ``nvme``,
    ``sata``, ``ide``) and bus number."""

    type: str
    bus: int = Field(ge=0)
    sharing: str | None = None  # SCSI bus sharing (``noSharing``...), where the kind has it


class DiskConfig(_Model):
    """One disk: the replica's disk name, the controller it hangs off and its unit on that controller."""

    disk: str
    controller: str  # the controller's type
    bus: int = Field(ge=0)
    unit: int = Field(ge=0)
    size: int = Field(ge=0, description="bytes")


class NicConfig(_Model):
    """One NIC, in device order: its model (``vmxnet3``, ``e1000e``, ``e1000``, ``virtio``...) and MAC."""

    model: str
    mac: str | None = None
    network: str | None = None  # what it was attached to at the source (informational)


class MachineConfig(_Model):
    """The kind-neutral description of a VM that every target kind reads."""

    guest_id: str | None = None
    guest_family: GuestFamily = "other"
    firmware: Firmware | None = None
    secure_boot: bool = False
    cpus: int | None = Field(default=None, ge=1)
    cores_per_socket: int | None = Field(default=None, ge=1)
    memory_mib: int | None = Field(default=None, ge=1)
    controllers: list[ControllerConfig] = []
    disks: list[DiskConfig] = []
    nics: list[NicConfig] = []
    annotation: str = ""
    tags: dict[str, str] = Field(default_factory=dict, description="category (or key) -> tag (or value)")


class SourceConfig(_Model):
    """A VM's configuration at snapshot time, as its source adapter described it (see module doc)."""

    format: Literal[1] = 1
    kind: str = Field(description="who described it: the source site's kind (vsphere, libvirt...)")
    document: dict[str, Any] = Field(default_factory=dict)
    machine: MachineConfig | None = None

    def scrubbed(self) -> SourceConfig:
        """This configuration with every secret-named entry of ``document`` replaced (see ``scrub``)."""
        return self.model_copy(update={"document": scrub(self.document)})
