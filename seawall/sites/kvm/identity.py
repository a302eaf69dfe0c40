"""A guest's network identity, written into its system disk before it boots: offline re-IP.

The contract with the guest is a NoCloud-style seed: cloud-init's NoCloud datasource reads a guest's
identity from files on a small FAT/ISO volume; a Seawall-ready guest reads a ``key=value`` file named
``identity`` from the FAT partition at 1 MiB of its first disk (``hostname``, ``address``, ``prefix``,
``gateway``, first occurrence wins, never sourced) and configures its NIC with it. The lab guest
(``seawall/lab/guest/init.sh``) is such a guest.

The file is written while the domain is shut off, without mounting anything: a raw disk is changed in
place by ``mcopy``; a qcow2 disk (also an overlay, or one under changed-block tracking) has its
partition read out, changed with ``mcopy``, and only the 64 KiB pieces that changed written back with
``qemu-io``, so the disk grows by a few clusters, not by the partition.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
PARTITION_OFFSET = MIB  # the seed partition starts at 1 MiB of the first disk
PARTITION_MIB = 31
IDENTITY_FILE = "identity"
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class IdentityError(ValueError):
    """An identity the guest would refuse (it validates the same way before using a value)."""


class SeedError(RuntimeError):
    """The disk has no identity seed Seawall can write, or a disk tool failed."""


@dataclass(frozen=True)
class Identity:
    """A guest's network identity: what cloud-init's NoCloud seed would hand it."""

    hostname: str
    address: str
    prefix: int
    gateway: str

    def __post_init__(self) -> None:
        if not _HOSTNAME.match(self.hostname):
            raise IdentityError(f"hostname {self.hostname!r} is not a lower-case DNS label")
        try:
            addr = ipaddress.IPv4Address(self.address)
            gateway = ipaddress.IPv4Address(self.gateway)
        except ValueError as exc:
            raise IdentityError(str(exc)) from None
        # QEMU's user-mode network needs two spare addresses besides the guest and the gateway.
        if not 8 <= self.prefix <= 29:
            raise IdentityError(f"prefix /{self.prefix} is outside /8../29")
        net = self.network
        if gateway not in net or addr == gateway:
            raise IdentityError(f"gateway {gateway} must be another address inside {net}")
        if addr in (net.network_address, net.broadcast_address):
            raise IdentityError(f"{addr} is the network or broadcast address of {net}")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/{self.prefix}", strict=False)

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"

    def render(self) -> bytes:
        """The identity file: key=value lines, which the guest parses (never sources)."""
        return (
            f"hostname={self.hostname}\naddress={self.address}\nprefix={self.prefix}\ngateway={self.gateway}\n"
        ).encode()

    @classmethod
    def parse(cls, text: str) -> Identity:
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key not in values:  # the guest also takes the first occurrence
                values[key] = value.strip()
        try:
            return cls(
                hostname=values["hostname"],
                address=values["address"],
                prefix=int(values["prefix"]),
                gateway=values["gateway"],
            )
        except (KeyError, ValueError) as exc:
            raise IdentityError(f"bad identity file: {exc}") from None


def run_tool(argv: list[str], **kwargs: object) -> str:
    """Run a disk tool (mtools, qemu-img, qemu-io); SeedError naming it when it is missing or fails."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise SeedError(f"{argv[0]} is not installed: run scripts/setup.sh") from exc
    except subprocess.CalledProcessError as exc:
        raise SeedError(f"{' '.join(argv)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc
    return str(done.stdout)


def image_format(image: Path) -> str:
    info = json.loads(run_tool(["qemu-img", "info", "-U", "--output=json", str(image)]))
    return str(info["format"])


def write_identity(image: Path, identity: Identity) -> None:
    """Put ``identity`` into a shut-off guest's system disk (raw or qcow2) before it boots.

    SeedError when the disk has no FAT seed partition at 1 MiB (a guest that cannot take an
    identity this way: the caller says so rather than booting it with the source's address).
    """
    with tempfile.TemporaryDirectory(prefix="seawall-identity-") as tmp_name:
        src = Path(tmp_name) / IDENTITY_FILE
        src.write_bytes(identity.render())
        if image_format(image) == "raw":
            run_tool(["mcopy", "-o", "-i", f"{image}@@{PARTITION_OFFSET}", str(src), f"::{IDENTITY_FILE}"])
            return
        part = Path(tmp_name) / "part.img"
        copy_out_partition(image, part)
        before = part.read_bytes()
        run_tool(["mcopy", "-o", "-i", str(part), str(src), f"::{IDENTITY_FILE}"])
        after = part.read_bytes()
        commands: list[str] = []
        piece = 64 * 1024
        for off in range(0, len(after), piece):
            if after[off : off + piece] != before[off : off + piece]:
                chunk = Path(tmp_name) / f"chunk-{off}"
                chunk.write_bytes(after[off : off + piece])
                commands += ["-c", f"write -q -s {chunk} {PARTITION_OFFSET + off} {piece}"]
        if commands:
            run_tool(["qemu-io", "-f", "qcow2", *commands, str(image)])


def copy_out_partition(image: Path, dest: Path, *, shared: bool = False) -> None:
    """The seed partition as a file of its own. ``shared`` (-U) reads an image a running QEMU holds;
    a writer must never take it that way."""
    run_tool(
        [
            "qemu-img", "dd", *(["-U"] if shared else []), "-f", image_format(image), "-O", "raw",
            f"bs={MIB}", f"skip={PARTITION_OFFSET // MIB}", f"count={PARTITION_MIB}", f"if={image}",
            f"of={dest}",
        ]
    )  # fmt: skip


def read_identity(image: Path) -> Identity:
    """The identity file in a system disk (raw or qcow2, also of a running guest)."""
    if image_format(image) == "raw":
        text = run_tool(["mtype", "-i", f"{image}@@{PARTITION_OFFSET}", f"::{IDENTITY_FILE}"])
        return Identity.parse(text)
    with tempfile.TemporaryDirectory(prefix="seawall-identity-") as tmp_name:
        part = Path(tmp_name) / "part.img"
        copy_out_partition(image, part, shared=True)
        return Identity.parse(run_tool(["mtype", "-i", str(part), f"::{IDENTITY_FILE}"]))
