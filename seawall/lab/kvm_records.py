"""What the lab guest writes and says, as pure functions: its identity file, its records, its console line.

The guest's init (``seawall/lab/guest/init.sh``) and this module describe the same formats; the tests
and later recovery code use this side to check a guest independently of what it claims.

A record is one 512-byte sector; record ``n`` (from 1) sits at byte ``(n - 1) * 512`` of the data disk::

    SWREC <n, 10 digits> <md5 of bytes 50..511, 32 hex> <body: "n=<n> host=.. ip=.. up=..", padded>\\n

The body repeats the number, so the checksum binds the number too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

# The identity seed and the console line are the contract between Seawall and a recovered guest: product
# code (seawall.sites.kvm); the lab's guest implements them and re-exports them here for its callers.
from seawall.sites.kvm.console import CONSOLE_TAG as CONSOLE_TAG
from seawall.sites.kvm.console import ConsoleReport as ConsoleReport
from seawall.sites.kvm.console import last_console_report as last_console_report
from seawall.sites.kvm.console import parse_console_line as parse_console_line
from seawall.sites.kvm.identity import IDENTITY_FILE as IDENTITY_FILE
from seawall.sites.kvm.identity import Identity as Identity
from seawall.sites.kvm.identity import IdentityError as IdentityError

RECORD_SIZE = 512
MAGIC = b"SWREC "
_BODY_START = 50
_BODY_WIDTH = RECORD_SIZE - _BODY_START - 1  # the body is padded to this, then "\n"


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
