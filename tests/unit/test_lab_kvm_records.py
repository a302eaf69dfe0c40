"""The lab guest's formats: identity file, records, console line (seawall.lab.kvm_records)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from seawall.lab.kvm_records import (
    RECORD_SIZE,
    Identity,
    IdentityError,
    check_record,
    iter_sectors,
    last_console_report,
    make_record,
    parse_console_line,
    scan_bytes,
    scan_nbd,
    scan_records,
    scan_stream,
)

ZERO = bytes(RECORD_SIZE)


def _disk(*sectors: bytes, tail: int = 8) -> bytes:
    return b"".join(sectors) + ZERO * tail


def test_identity_round_trip() -> None:
    ident = Identity("kdb-01", "10.40.1.11", 24, "10.40.1.1")
    text = ident.render().decode()
    assert text == "hostname=kdb-01\naddress=10.40.1.11\nprefix=24\ngateway=10.40.1.1\n"
    assert Identity.parse(text) == ident
    assert ident.cidr == "10.40.1.11/24" and str(ident.network) == "10.40.1.0/24"


def test_identity_parse_takes_first_value_and_ignores_noise() -> None:
    text = "# seed\r\nhostname=kweb-01\r\naddress=10.9.0.5\nprefix=16\ngateway=10.9.0.1\nhostname=evil\n"
    assert Identity.parse(text) == Identity("kweb-01", "10.9.0.5", 16, "10.9.0.1")


@pytest.mark.parametrize(
    ("hostname", "address", "prefix", "gateway"),
    [
        ("KDB-01", "10.0.0.5", 24, "10.0.0.1"),  # the guest accepts lower case only
        ("kdb;reboot", "10.0.0.5", 24, "10.0.0.1"),
        ("kdb-01", "10.0.0.5", 24, "10.0.1.1"),  # gateway outside the subnet
        ("kdb-01", "10.0.0.1", 24, "10.0.0.1"),  # the guest is its gateway
        ("kdb-01", "10.0.0.0", 24, "10.0.0.1"),  # network address
        ("kdb-01", "10.0.0.5", 30, "10.0.0.6"),  # no room for QEMU's user-mode addresses
        ("kdb-01", "10.0.0.300", 24, "10.0.0.1"),
    ],
)
def test_identity_refuses_what_the_guest_would(
    hostname: str, address: str, prefix: int, gateway: str
) -> None:
    with pytest.raises(IdentityError):
        Identity(hostname, address, prefix, gateway)


def test_identity_parse_missing_key() -> None:
    with pytest.raises(IdentityError):
        Identity.parse("hostname=a\naddress=10.0.0.5\n")


def test_record_layout() -> None:
    rec = make_record(7, host="kdb-01", ip="10.40.1.11", up="12.5")
    assert len(rec) == RECORD_SIZE
    assert rec.startswith(b"SWREC 0000000007 ") and rec.endswith(b"\n")
    assert rec[50:].startswith(b"n=7 host=kdb-01 ip=10.40.1.11 up=12.5 ")
    assert check_record(rec) == 7


def test_check_record_refuses_damage() -> None:
    rec = bytearray(make_record(3))
    assert check_record(bytes(rec)) == 3
    rec[100] ^= 0x01
    assert check_record(bytes(rec)) is None
    # A valid record moved to another number's header: the body's own number disagrees.
    other = bytearray(make_record(3))
    other[6:16] = b"0000000004"
    assert check_record(bytes(other)) is None
    assert check_record(ZERO) is None
    assert check_record(make_record(3)[:-1]) is None


def test_scan_contiguous() -> None:
    scan = scan_bytes(_disk(*(make_record(n) for n in range(1, 101))))
    assert scan.last == 100 and scan.contiguous and not scan.torn


def test_scan_empty_disk() -> None:
    scan = scan_bytes(ZERO * 64)
    assert scan.last == 0 and scan.contiguous and not scan.torn


def test_scan_torn_last_record_is_accepted() -> None:
    torn = bytearray(make_record(6))
    torn[300:] = bytes(len(torn) - 300)  # half written
    scan = scan_bytes(_disk(*(make_record(n) for n in range(1, 6)), bytes(torn)))
    assert scan.last == 5 and scan.torn and scan.contiguous


def test_scan_hole_is_not_contiguous() -> None:
    sectors = [make_record(n) for n in range(1, 11)]
    sectors[4] = ZERO
    scan = scan_bytes(_disk(*sectors))
    assert scan.last == 4 and not scan.contiguous and scan.gaps == list(range(6, 11))


def test_scan_corrupt_middle_record() -> None:
    sectors = [make_record(n) for n in range(1, 11)]
    bad = bytearray(sectors[4])
    bad[200] ^= 0xFF
    sectors[4] = bytes(bad)
    scan = scan_bytes(_disk(*sectors))
    assert scan.last == 4 and scan.torn and not scan.contiguous


def test_scan_stream_any_chunking() -> None:
    data = _disk(*(make_record(n) for n in range(1, 40)))
    for size in (1, 100, 511, 512, 4096, 1 << 20):
        assert scan_stream(io.BytesIO(data), chunk=size).last == 39
    chunks = [data[i : i + 333] for i in range(0, len(data), 333)]
    assert scan_records(iter_sectors(chunks)).last == 39


def test_scan_stops_reading_after_lookahead() -> None:
    def sectors() -> Iterator[bytes]:
        yield make_record(1)
        while True:
            yield ZERO

    assert scan_records(sectors(), lookahead=16).last == 1


def test_console_line() -> None:
    line = "SEAWALL-GUEST host=kdb-01 ip=10.40.1.11/24 last_record=70 status=ready"
    report = parse_console_line(line + "\r")
    assert report is not None and report.ready
    assert (report.host, report.ip, report.last_record) == ("kdb-01", "10.40.1.11/24", 70)
    assert parse_console_line("SEAWALL-GUEST host=x status=ready") is None
    assert parse_console_line("SYSLINUX 6.04") is None


def test_last_console_report_of_several_boots() -> None:
    text = "\r\nSYSLINUX 6.04\r\n"
    text += "SEAWALL-GUEST host=a ip=10.0.0.5/24 last_record=3 status=ready\r\n"
    text += "[ 1.0] kernel noise\r\nSEAWALL-GUEST host=a ip=10.0.0.6/24 last_record=9 status=corrupt\r\n"
    report = last_console_report(text)
    assert report is not None and report.ip == "10.0.0.6/24" and not report.ready
    assert last_console_report("nothing here") is None


class _FakeNbd:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def get_size(self) -> int:
        return len(self.data)

    def pread(self, count: int, offset: int, flags: int = 0) -> bytes:
        self.reads.append((offset, count))
        return self.data[offset : offset + count]


def test_scan_nbd_reads_ranges_until_the_data_ends() -> None:
    data = _disk(*(make_record(n) for n in range(1, 3000)), tail=20000)
    handle = _FakeNbd(data)
    scan = scan_nbd(handle, chunk=64 * 1024)
    assert scan.last == 2999 and scan.contiguous
    # The scan stops a little after the records: the ~10 MiB of zeros behind them are not read.
    assert sum(count for _, count in handle.reads) < 3000 * RECORD_SIZE + 2 * 64 * 1024
