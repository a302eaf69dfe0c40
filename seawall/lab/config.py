"""Where the lab lives and what it is made of: state directory, ports, the protected VMs, disk size."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

ENV_STATE_DIR = "SEAWALL_LAB_DIR"
ENV_PORT_OFFSET = "SEAWALL_LAB_PORT_OFFSET"
ENV_GUESTS = "SEAWALL_LAB_GUESTS"
GuestState = Literal["running", "paused"]

HOST = "127.0.0.1"
VSPHERE_USER = "user"
VSPHERE_PASSWORD = "pass"  # vcsim accepts any non-empty pair; these are lab-only, never a real secret
AWS_REGION = "us-east-1"
AWS_KEY_ID = "testing"
AWS_SECRET = "testing"
REPLICA_BUCKET = "seawall-replica"
REPLICA_CONTAINER = "seawall-replica"
HOSTED_ZONE = "corp.example.com."
# The lab's BIND serves the same zone as Route53; dynamic updates need this TSIG key (made per lab).
DNS_ZONE = HOSTED_ZONE
TSIG_KEY_NAME = "seawall-lab."
TSIG_ALGORITHM = "hmac-sha256"
VPC_NAME = "seawall-lab"
VPC_CIDR = "10.3.0.0/16"
# aws-drill is where test failovers into AWS land (the inventory marks it isolated).
SUBNETS = {
    "aws-web": "10.3.1.0/24",
    "aws-app": "10.3.2.0/24",
    "aws-db": "10.3.3.0/24",
    "aws-drill": "10.3.100.0/22",
}
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every Azurite); it protects nothing.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# The lab's real guests at kvm-a (booted under libvirt/QEMU; see seawall.lab.kvm).
KVM_GUESTS = ("kdb-01", "kapp-01", "kweb-01")
DEFAULT_VMS = ("web-01", "web-02", "app-01", "app-02", "db-01")
SECOND_DISK_VM = "db-01"
MIB = 1024 * 1024


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), or None for a plain install."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "deploy" / "lab").is_dir() and (root / "pyproject.toml").is_file() else None


def state_dir(explicit: Path | str | None = None) -> Path:
    """``--state-dir``, else ``$SEAWALL_LAB_DIR``, else ``.seawall/lab`` of the checkout (or of the cwd).

    Anchored at the checkout so that `seawall lab status` from a subdirectory finds the same lab.
    """
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    base = repo_root() or Path.cwd()
    return (base / ".seawall" / "lab").resolve()


def default_vm_names(count: int) -> list[str]:
    """The five contract names first; past five, ``vm-06``, ``vm-07``, ... for scale and chaos tests."""
    if count < 1:
        raise ValueError("the lab needs at least one protected VM")
    names = list(DEFAULT_VMS[:count])
    names += [f"vm-{i:02d}" for i in range(len(DEFAULT_VMS) + 1, count + 1)]
    return names


class LabConfig(BaseModel):
    """What `seawall lab up` builds. Saved in the state dir so later commands see the same lab."""

    port_offset: int = Field(default=0, ge=0, le=50000)
    vms: list[str] = Field(default_factory=lambda: list(DEFAULT_VMS))
    disk_size: int = Field(default=4 * MIB, ge=64 * 1024)
    # Real databases have a data disk beside the system disk; the lab gives db-01 one too.
    second_disk_vm: str | None = SECOND_DISK_VM
    hosts_per_cluster: int = Field(default=2, ge=1, le=16)
    # A lab whose KVM guests no test or demo will use keeps them paused: under TCG (no /dev/kvm) a
    # booting guest costs a core for most of a minute and a booted one 4-8 % of a core for ever.
    guests: GuestState = "running"

    @field_validator("disk_size")
    @classmethod
    def _whole_sectors(cls, value: int) -> int:
        # vSphere sizes disks in KiB and readers work in 512-byte sectors and larger blocks.
        if value % (64 * 1024):
            raise ValueError("disk_size must be a multiple of 64 KiB")
        return value

    @field_validator("vms")
    @classmethod
    def _unique_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("the lab needs at least one protected VM")
        if len(set(value)) != len(value):
            raise ValueError("VM names must be unique")
        return value

    # Ports: the documented defaults plus one offset, so a second lab can run beside the first.
    @property
    def temporal_port(self) -> int:
        return 7233 + self.port_offset

    @property
    def temporal_ui_port(self) -> int:
        return 8233 + self.port_offset

    @property
    def vcsim_primary_port(self) -> int:
        return 8989 + self.port_offset

    @property
    def vcsim_dr_port(self) -> int:
        return 8990 + self.port_offset

    @property
    def moto_port(self) -> int:
        return 5000 + self.port_offset

    @property
    def azurite_port(self) -> int:
        return 10000 + self.port_offset

    @property
    def dns_port(self) -> int:
        # Not 53: that needs privileges and is the machine's own resolver's; 8053 is a usual alternative.
        return 8053 + self.port_offset

    @property
    def kvm_health_port_base(self) -> int:
        # kvm-a's guests forward base+1.., kvm-b's (recovered) guests base+21..base+40.
        return 9100 + self.port_offset


def config_path(state: Path) -> Path:
    return state / "config.json"


class LabConfigInvalid(ValueError):
    """The state dir's config.json is no LabConfig (edited by hand, or cut short)."""


def load_config(state: Path) -> LabConfig | None:
    path = config_path(state)
    if not path.is_file():
        return None
    try:
        return LabConfig.model_validate_json(path.read_text())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'the file'}: {err['msg']}"
            for err in exc.errors()
        )
        raise LabConfigInvalid(f"{path}: {problems} (fix it, or `seawall lab down --purge`)") from None


def resolve_config(
    state: Path,
    *,
    vms: int | None = None,
    vm_names: list[str] | None = None,
    disk_size: int | None = None,
    port_offset: int | None = None,
    guests: GuestState | None = None,
) -> LabConfig:
    """The saved config of this state dir, with what the caller asked for now laid over it."""
    cfg = load_config(state) or LabConfig()
    data = cfg.model_dump()
    env_offset = os.environ.get(ENV_PORT_OFFSET)
    if port_offset is not None:
        data["port_offset"] = port_offset
    elif env_offset:
        data["port_offset"] = int(env_offset)
    if vm_names:
        data["vms"] = vm_names
    elif vms is not None:
        data["vms"] = default_vm_names(vms)
    if disk_size is not None:
        data["disk_size"] = disk_size
    if guests is not None:
        data["guests"] = guests
    data["second_disk_vm"] = SECOND_DISK_VM if SECOND_DISK_VM in data["vms"] else None
    return LabConfig.model_validate(data)


def save_config(state: Path, cfg: LabConfig) -> None:
    write_json_atomic(config_path(state), cfg.model_dump(mode="json"))


def write_json_atomic(path: Path, data: object, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.chmod(mode)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
