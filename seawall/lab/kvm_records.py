"""What the lab guest writes and says, as pure functions: its identity file, its records, its console line.

The guest's init (``seawall/lab/guest/init.sh``) and this module describe the same formats; the tests
and later recovery code use this side to check a guest independently of what it claims.

A record is one 512-byte sector; record ``n`` (from 1) sits at byte ``(n - 1) * 512`` of the data disk::

    SWREC <n, 10 digits> <md5 of bytes 50..511, 32 hex> <body: "n=<n> host=.. ip=.. up=..", padded>\\n

The body repeats the number, so the checksum binds the number too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

RECORD_SIZE = 512
MAGIC = b"SWREC "
_BODY_START = 50
_BODY_WIDTH = RECORD_SIZE - _BODY_START - 1  # the body is padded to this, then "\n"
IDENTITY_FILE = "identity"  # on the guest's FAT boot partition
CONSOLE_TAG = "SEAWALL-GUEST"
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class IdentityError(ValueError):
    """An identity the guest would refuse (it validates the same way before using a value)."""


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


def make_record(n: int, host: str = "lab", ip: str = "-", up: str = "0") -> bytes:
    """Record ``n`` exactly as the guest writes it (for tests and for seeding a data disk)."""
    body = f"n={n} host={host} ip={ip} up={up}".ljust(_BODY_WIDTH).encode() + b"\n"
    if len(body) != RECORD_SIZE - _BODY_START:
        raise ValueError("record body too long")
    digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    return b"%s%010d %s " % (MAGIC, n, digest.encode()) + body


def check_record(sector: bytes) -> int | None:
    """The number of a valid record, None for anything else (zeros, torn, garbled, wrong checksum)."""
    if len(sector) != RECORD_SIZE or not sector.startswith(MAGIC) or sector[-1:] != b"\n":
        return None
    try:
        n = int(sector[6:16])
    except ValueError:
        return None
    body = sector[_BODY_START:]
    if sector[16:17] != b" " or sector[49:50] != b" ":
        return None
    if hashlib.md5(body, usedforsecurity=False).hexdigest().encode() != sector[17:49]:
        return None
    return n if body.startswith(b"n=%d " % n) else None


@dataclass
class RecordScan:
    """What a data disk holds: ``last`` is the end of the contiguous run 1..last."""

    last: int = 0
    torn: bool = False  # the sector after ``last`` is written but not a valid record ``last + 1``
    gaps: list[int] = field(default_factory=list)  # positions after ``last`` holding a record again

    @property
    def contiguous(self) -> bool:
        """Records 1..last and then nothing but at most one torn record: what the guest accepts."""
        return not self.gaps


def iter_sectors(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut a byte stream (NBD reads, file reads of any size) into 512-byte sectors."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        whole = len(pending) - len(pending) % RECORD_SIZE
        for off in range(0, whole, RECORD_SIZE):
            yield pending[off : off + RECORD_SIZE]
        pending = pending[whole:]


def scan_records(sectors: Iterable[bytes], lookahead: int = 64) -> RecordScan:
    """Check records like the guest does at boot, but verifying every checksum.

    The scan stops ``lookahead`` sectors after the contiguous run ends, long enough to see records
    that follow a hole (corruption) without reading a whole mostly empty disk.
    """
    scan = RecordScan()
    position = 0
    after_end = 0
    for sector in sectors:
        position += 1
        n = check_record(sector)
        if not scan.gaps and not scan.torn and after_end == 0 and n == position:
            scan.last = n
            continue
        after_end += 1
        if after_end == 1 and any(sector):
            scan.torn = n is None
            if n is not None:
                scan.gaps.append(position)
        elif n is not None:
            scan.gaps.append(position)
        if after_end >= lookahead:
            break
    return scan


def scan_file(path: Path | str, lookahead: int = 64) -> RecordScan:
    with open(path, "rb") as handle:
        return scan_stream(handle, lookahead)


def scan_stream(handle: BinaryIO, lookahead: int = 64, chunk: int = 1 << 20) -> RecordScan:
    return scan_records(iter_sectors(iter(lambda: handle.read(chunk), b"")), lookahead)


def scan_bytes(data: bytes, lookahead: int = 64) -> RecordScan:
    return scan_records(iter_sectors([data]), lookahead)


class NbdReader(Protocol):
    """What scan_nbd needs of a libnbd handle (``nbd.NBD``), or of anything else that reads ranges."""

    def get_size(self) -> int: ...

    def pread(self, count: int, offset: int, flags: int = 0) -> bytes: ...


def scan_nbd(handle: NbdReader, lookahead: int = 64, chunk: int = 1 << 20) -> RecordScan:
    """The records of a disk exported over NBD (e.g. a backup job's point-in-time export)."""
    size = handle.get_size()
    reads = (handle.pread(min(chunk, size - off), off) for off in range(0, size, chunk))
    return scan_records(iter_sectors(reads), lookahead)


@dataclass(frozen=True)
class ConsoleReport:
    """The guest's one machine-readable line, e.g.
    ``SEAWALL-GUEST host=kdb-01 ip=10.40.1.11/24 last_record=70 status=ready``."""

    host: str
    ip: str
    last_record: int
    status: str
    line: str

    @property
    def ready(self) -> bool:
        return self.status == "ready"


def parse_console_line(line: str) -> ConsoleReport | None:
    line = line.strip()
    if not line.startswith(CONSOLE_TAG + " "):
        return None
    fields = dict(part.partition("=")[::2] for part in line.split()[1:])
    try:
        return ConsoleReport(
            host=fields["host"],
            ip=fields["ip"],
            last_record=int(fields["last_record"]),
            status=fields["status"],
            line=line,
        )
    except (KeyError, ValueError):
        return None


def last_console_report(text: str) -> ConsoleReport | None:
    """The newest report in a console log (a log may span several boots)."""
    found = None
    for line in text.splitlines():
        report = parse_console_line(line)
        if report is not None:
            found = report
    return found
