"""One import for code that builds, re-identifies, boots and checks lab guests (recovery adapters, tests).

The pieces live in kvm_image (disks), kvm_records (formats), kvm_domain (XML, start) and kvm_site (the
lab's running guests); this module gathers what later code calls, plus reading a console file.
"""

from __future__ import annotations

from pathlib import Path

from seawall.lab.kvm_domain import GuestSpec, define_and_start, domain_xml, remove_domain, user_netdev
from seawall.lab.kvm_image import (
    DATA_DISK_MIB,
    PARTITION_OFFSET,
    build_base_image,
    make_data_disk,
    make_system_disk,
    read_identity,
    scan_image,
    write_identity,
)
from seawall.lab.kvm_records import (
    ConsoleReport,
    Identity,
    IdentityError,
    RecordScan,
    check_record,
    last_console_report,
    make_record,
    parse_console_line,
    scan_bytes,
    scan_file,
    scan_nbd,
    scan_records,
    scan_stream,
)
from seawall.lab.kvm_site import guest_health, wait_ready


def read_console(path: Path) -> ConsoleReport | None:
    """The guest's newest ``SEAWALL-GUEST ...`` line in its serial console file, None before it printed."""
    try:
        return last_console_report(path.read_text(errors="replace"))
    except FileNotFoundError:
        return None


__all__ = [
    "DATA_DISK_MIB",
    "PARTITION_OFFSET",
    "ConsoleReport",
    "GuestSpec",
    "Identity",
    "IdentityError",
    "RecordScan",
    "build_base_image",
    "check_record",
    "define_and_start",
    "domain_xml",
    "guest_health",
    "last_console_report",
    "make_data_disk",
    "make_record",
    "make_system_disk",
    "parse_console_line",
    "read_console",
    "read_identity",
    "remove_domain",
    "scan_bytes",
    "scan_file",
    "scan_image",
    "scan_nbd",
    "scan_records",
    "scan_stream",
    "user_netdev",
    "wait_ready",
    "write_identity",
]
