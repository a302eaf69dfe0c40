"""vSphere disk reading without vSphere: datastore paths and URLs, range planning, and the HTTP reader
against a small local server that can ignore Range, fail, expire sessions or serve a short file."""

from __future__ import annotations

import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from seawall.blockstore.source import ChangedArea, DiskSource, SourceError
from seawall.blockstore.stores.retrying import RetryPolicy
from seawall.sites.vsphere.client import CbtStatus, VSphereConnection
from seawall.sites.vsphere.diskpaths import (
    DiskInfo,
    build_datastore_url,
    flat_extent_path,
    parse_datastore_path,
)
from seawall.sites.vsphere.ranges import coalesce_ranges, parse_content_range
from seawall.sites.vsphere.session import VSphereTaskError
from seawall.sites.vsphere.source import VSphereDiskSource

# -- pure pieces -----------------------------------------------------------------------------------


def test_parse_datastore_path() -> None:
    assert parse_datastore_path("[ds-primary] web-01/web-01.vmdk") == ("ds-primary", "web-01/web-01.vmdk")
    assert parse_datastore_path("[LocalDS_0]   a b/c.vmdk") == ("LocalDS_0", "a b/c.vmdk")
    assert parse_datastore_path("[ds] vm.vmx") == ("ds", "vm.vmx")
    for bad in ("ds/web.vmdk", "[] x.vmdk", "[ds x.vmdk"):
        with pytest.raises(ValueError):
            parse_datastore_path(bad)


def test_flat_extent_path() -> None:
    assert flat_extent_path("web-01/web-01.vmdk") == "web-01/web-01-flat.vmdk"
    assert flat_extent_path("web-01/web-01_1.vmdk") == "web-01/web-01_1-flat.vmdk"
    assert flat_extent_path("web-01/web-01-flat.vmdk") == "web-01/web-01-flat.vmdk"
    with pytest.raises(ValueError):
        flat_extent_path("web-01/web-01.vmx")


def test_build_datastore_url() -> None:
    url = build_datastore_url("http://127.0.0.1:8989", "[ds-primary] web-01/web-01.vmdk", "dc-primary")
    assert url == "http://127.0.0.1:8989/folder/web-01/web-01-flat.vmdk?dcPath=dc-primary&dsName=ds-primary"
    nested = build_datastore_url("https://vc.example:443/", "[SAN LUN 1] my vm/my vm.vmdk", "EU/Frankfurt DC")
    assert nested == (
        "https://vc.example:443/folder/my%20vm/my%20vm-flat.vmdk?dcPath=EU%2FFrankfurt+DC&dsName=SAN+LUN+1"
    )
    descriptor = build_datastore_url("http://h:1", "[ds] a/b.vmdk", "dc", flat=False)
    assert descriptor == "http://h:1/folder/a/b.vmdk?dcPath=dc&dsName=ds"


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 10-19/1024") == (10, 19, 1024)
    assert parse_content_range("bytes */1024") == (None, None, 1024)
    assert parse_content_range("bytes 0-9/*") == (0, 9, None)
    assert parse_content_range(None) == (None, None, None)
    assert parse_content_range("items 1-2/3") == (None, None, None)


def test_coalesce_ranges_merges_adjacent_and_respects_limits() -> None:
    plans = coalesce_ranges([(100, 10), (0, 50), (50, 50), (300, 10)])
    assert [(p.offset, p.length) for p in plans] == [(0, 110), (300, 10)]
    assert plans[0].parts == ((0, 50), (50, 50), (100, 10))
    # A gap closes a request unless max_gap allows reading across it.
    assert [(p.offset, p.length) for p in coalesce_ranges([(0, 10), (20, 10)])] == [(0, 10), (20, 10)]
    assert [(p.offset, p.length) for p in coalesce_ranges([(0, 10), (20, 10)], max_gap=10)] == [(0, 30)]
    # Overlaps merge; requests stop growing at max_request; empty ranges vanish.
    assert [(p.offset, p.length) for p in coalesce_ranges([(0, 10), (5, 10), (7, 0)])] == [(0, 15)]
    capped = coalesce_ranges([(i * 10, 10) for i in range(10)], max_request=30)
    assert [(p.offset, p.length) for p in capped] == [(0, 30), (30, 30), (60, 30), (90, 10)]
    assert [(p.offset, p.length) for p in coalesce_ranges([(0, 100)], max_request=30)] == [(0, 100)]


class FakeTask:
    _moId = "task-7"


class ScriptedConnection(VSphereConnection):
    """A connection whose property reads replay a script of task states (no server)."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        super().__init__("vc.example", "u", "p", port=443)
        self.states = states
        self.reads = 0

    def properties(self, obj: Any, paths: Any) -> dict[str, Any]:
        self.reads += 1
        return self.states[min(self.reads, len(self.states)) - 1]


def test_wait_for_task_returns_the_result() -> None:
    conn = ScriptedConnection([{"info.state": "running"}, {"info.state": "success", "info.result": "snap-1"}])
    assert conn.wait_for_task(FakeTask(), timeout=5) == "snap-1"
    assert conn.reads == 2


def test_wait_for_task_times_out_naming_the_task() -> None:
    conn = ScriptedConnection([{"info.state": "running"}])
    with pytest.raises(VSphereTaskError, match=r"create snapshot did not finish within 0s .*task-7.*running"):
        conn.wait_for_task(FakeTask(), timeout=0.2, what="create snapshot")


def test_wait_for_task_reports_the_fault() -> None:
    from pyVmomi import vim

    fault = vim.fault.InvalidPowerState(msg="The attempted operation cannot be performed")
    conn = ScriptedConnection([{"info.state": "error", "info.error": fault}])
    with pytest.raises(
        VSphereTaskError, match=r"power off failed on https://vc\.example:443: .*InvalidPowerState"
    ):
        conn.wait_for_task(FakeTask(), what="power off")


class PagedCbtVm:
    """Answers QueryChangedDiskAreas the way ESXi does: one page per call, from the asked offset."""

    def __init__(
        self, pages: dict[int, tuple[int, list[tuple[int, int]]]], fault: Exception | None = None
    ) -> None:
        self.pages = pages
        self.fault = fault
        self.calls: list[int] = []

    def QueryChangedDiskAreas(self, snapshot: Any, deviceKey: int, startOffset: int, changeId: str) -> Any:
        from pyVmomi import vim

        self.calls.append(startOffset)
        if self.fault is not None:
            raise self.fault
        length, extents = self.pages[startOffset]
        return vim.VirtualMachine.DiskChangeInfo(
            startOffset=startOffset,
            length=length,
            changedArea=[
                vim.VirtualMachine.DiskChangeInfo.DiskChangeExtent(start=a, length=n) for a, n in extents
            ],
        )


def test_changed_areas_follow_the_pages_to_the_end_of_the_disk() -> None:
    conn = VSphereConnection("vc.example", "u", "p")
    vm = PagedCbtVm({0: (1000, [(0, 64), (512, 64)]), 1000: (1000, []), 2000: (48, [(2000, 48)])})
    areas = conn.query_changed_disk_areas(vm, "snap", 2000, 0, "52 aa/1", disk_size=2048)
    assert areas == [ChangedArea(0, 64), ChangedArea(512, 64), ChangedArea(2000, 48)]
    assert vm.calls == [0, 1000, 2000]


def test_changed_areas_stop_on_an_empty_page() -> None:
    conn = VSphereConnection("vc.example", "u", "p")
    vm = PagedCbtVm({0: (0, [])})
    assert conn.query_changed_disk_areas(vm, "snap", 2000, 0, "52 aa/1", disk_size=4096) == []
    assert vm.calls == [0]


@pytest.mark.parametrize("fault_name", ["MethodNotFound", "NotImplemented", "NotSupported", "FileFault"])
def test_changed_areas_are_none_when_the_server_cannot_answer(fault_name: str) -> None:
    from pyVmomi import vim, vmodl

    fault = getattr(vmodl.fault, fault_name, None) or getattr(vim.fault, fault_name)
    conn = VSphereConnection("vc.example", "u", "p")
    vm = PagedCbtVm({}, fault=fault())
    assert conn.query_changed_disk_areas(vm, "snap", 2000, 0, "52 aa/1", disk_size=4096) is None


def test_other_cbt_faults_are_errors() -> None:
    from pyVmomi import vim

    from seawall.sites.vsphere.session import VSphereError

    conn = VSphereConnection("vc.example", "u", "p")
    vm = PagedCbtVm({}, fault=vim.fault.InvalidState(msg="the VM is busy"))
    with pytest.raises(VSphereError, match=r"QueryChangedDiskAreas .* failed: .*the VM is busy"):
        conn.query_changed_disk_areas(vm, "snap", 2000, 0, "52 aa/1", disk_size=4096)


# -- the HTTP reader against a local datastore service ---------------------------------------------

RANGE = re.compile(r"bytes=(\d+)-(\d+)")


@dataclass
class Behaviour:
    content: bytes = b""
    honour_range: bool = True
    fail_first: int = 0  # answer 503 to this many requests
    drop_first: int = 0  # close the connection without answering this many requests
    valid_cookie: str | None = None  # require this session cookie (401 otherwise)
    status: int | None = None  # always answer with this status
    missing_ranges: set[str] = field(default_factory=set)  # answer 404 to these Range headers
    requests: list[str | None] = field(default_factory=list)
    cookies: list[str | None] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour: Behaviour

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        b = self.behaviour
        b.requests.append(self.headers.get("Range"))
        b.cookies.append(self.headers.get("Cookie"))
        if b.drop_first > 0:
            b.drop_first -= 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if b.fail_first > 0:
            b.fail_first -= 1
            self._send(503, b"busy")
            return
        if b.status is not None or self.headers.get("Range") in b.missing_ranges:
            self._send(b.status or 404, b"nope")
            return
        if (
            b.valid_cookie is not None
            and self.headers.get("Cookie") != f'vmware_soap_session="{b.valid_cookie}"'
        ):
            self._send(401, b"unauthorized")
            return
        m = RANGE.fullmatch(self.headers.get("Range") or "")
        if not b.honour_range or m is None:
            self._send(200, b.content)
            return
        first, last = int(m.group(1)), int(m.group(2))
        size = len(b.content)
        if first >= size:
            self._send(416, b"invalid range", {"Content-Range": f"bytes */{size}"})
            return
        last = min(last, size - 1)
        self._send(206, b.content[first : last + 1], {"Content-Range": f"bytes {first}-{last}/{size}"})


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    handler = type("BoundHandler", (Handler,), {"behaviour": behaviour})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", behaviour
    httpd.shutdown()
    httpd.server_close()


class FakeConnection:
    """Just what VSphereDiskSource asks of a VSphereConnection."""

    verify_tls = True

    def __init__(self, base: str, capacity: int, *, cbt: bool = False) -> None:
        self.base = base
        self.capacity = capacity
        self.cbt = cbt
        self.cookie = "session-1"
        self.renewals = 0
        self.cbt_queries: list[tuple[int, str]] = []

    def describe(self) -> str:
        return self.base

    def vm_name(self, vm: Any) -> str:
        return "web-01"

    def find_snapshot(self, vm: Any, name: str) -> Any:
        return "snapshot-1" if name == "seawall-1" else None

    def snapshot_disks(self, snapshot: Any) -> list[DiskInfo]:
        return [
            DiskInfo(
                key=2000,
                label="Hard disk 1",
                capacity_bytes=self.capacity,
                file_name="[ds] web-01/web-01.vmdk",
                datastore="ds",
                change_id="52 aa/3" if self.cbt else None,
                is_delta=False,
                backing_type="vim.vm.device.VirtualDisk.FlatVer2BackingInfo",
            ),
            DiskInfo(
                key=2001,
                label="Hard disk 2",
                capacity_bytes=self.capacity,
                file_name="[ds] web-01/web-01-000001.vmdk",
                datastore="ds",
                change_id=None,
                is_delta=True,
                backing_type="vim.vm.device.VirtualDisk.FlatVer2BackingInfo",
            ),
        ]

    def datastore_url(self, datastore_path: str) -> str:
        return build_datastore_url(self.base, datastore_path, "dc")

    def cbt_status(self, vm: Any) -> CbtStatus:
        return CbtStatus(enabled=self.cbt, supported=self.cbt)

    def session_cookie(self) -> str:
        return self.cookie

    def ensure_session(self) -> None:
        self.renewals += 1
        self.cookie = f"session-{self.renewals + 1}"

    def query_changed_disk_areas(
        self, vm: Any, snapshot: Any, key: int, start: int, change_id: str, *, disk_size: int
    ) -> list[ChangedArea]:
        self.cbt_queries.append((key, change_id))
        return [ChangedArea(0, 4096)]


def no_sleep(_: float) -> None:
    pass


def make_source(base: str, capacity: int, **kwargs: Any) -> tuple[VSphereDiskSource, FakeConnection]:
    conn = FakeConnection(base, capacity, cbt=kwargs.pop("cbt", False))
    kwargs.setdefault("sleep", no_sleep)
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0))
    src = VSphereDiskSource(conn, "vm-1", "seawall-1", 2000, **kwargs)  # type: ignore[arg-type]
    return src, conn


def test_reads_ranges_with_the_session_cookie(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(256 * 1024)
    src, _ = make_source(base, len(b.content), readahead=0)
    assert isinstance(src, DiskSource)
    assert src.size == len(b.content)
    assert src.read(1000, 5000) == b.content[1000:6000]
    assert src.read(len(b.content) - 10, 100) == b.content[-10:]
    assert src.read(len(b.content), 10) == b""
    assert b.requests == ["bytes=1000-5999", f"bytes={len(b.content) - 10}-{len(b.content) - 1}"]
    assert b.cookies[0] == 'vmware_soap_session="session-1"'
    assert "web-01@seawall-1" in src.describe() and "session-1" not in src.describe()
    src.close()
    with pytest.raises(SourceError, match="closed"):
        src.read(0, 1)


def test_readahead_serves_small_sequential_reads_from_one_request(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(512 * 1024)
    src, _ = make_source(base, len(b.content), readahead=256 * 1024)
    out = b"".join(src.read(off, 64 * 1024) for off in range(0, len(b.content), 64 * 1024))
    assert out == b.content
    assert len(b.requests) == 2


def test_read_ranges_coalesces_adjacent_ranges(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(100_000)
    src, _ = make_source(base, len(b.content), readahead=0)
    got = dict(src.read_ranges([(8192, 4096), (0, 4096), (4096, 4096), (50_000, 100), (99_990, 100)]))
    assert set(got) == {0, 4096, 8192, 50_000, 99_990}
    for off, data in got.items():
        assert data == b.content[off : off + len(data)]
    assert len(got[99_990]) == 10
    assert b.requests == ["bytes=0-12287", "bytes=50000-50099", "bytes=99990-99999"]


def test_server_that_ignores_range_is_sliced(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(3 * 1024 * 1024 + 17)
    b.honour_range = False
    src, _ = make_source(base, len(b.content), readahead=0)
    assert src.read(1_500_000, 70_000) == b.content[1_500_000:1_570_000]
    assert src.read(len(b.content) - 5, 5) == b.content[-5:]


def test_file_shorter_than_capacity_reads_as_zeros(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = b"\x01" * 1000
    src, _ = make_source(base, 64 * 1024, readahead=0)
    assert src.read(990, 20) == b"\x01" * 10 + b"\0" * 10
    assert src.read(5000, 100) == b"\0" * 100


def test_transient_failures_are_retried(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(10_000)
    b.fail_first = 2
    b.drop_first = 1
    src, _ = make_source(base, len(b.content), readahead=0)
    assert src.read(0, 10_000) == b.content
    assert len(b.requests) == 4


def test_gives_up_with_a_source_error(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = b"x" * 100
    b.fail_first = 100
    src, _ = make_source(base, 100, readahead=0)
    with pytest.raises(SourceError, match="gave up after 4 attempts"):
        src.read(0, 10)


def test_expired_session_is_renewed_once(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(1000)
    b.valid_cookie = "session-2"
    src, conn = make_source(base, 1000, readahead=0)
    assert src.read(0, 1000) == b.content
    assert conn.renewals == 1
    b.valid_cookie = "someone-else"
    with pytest.raises(SourceError, match="refused access"):
        src.read(0, 10)


def test_missing_file_is_not_retried(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.status = 404
    src, _ = make_source(base, 1000, readahead=0)
    with pytest.raises(SourceError, match="not found"):
        src.read(0, 10)
    assert len(b.requests) == 1


def test_changed_areas_only_with_cbt(server: tuple[str, Behaviour]) -> None:
    base, _ = server
    plain, conn = make_source(base, 8192)
    assert plain.change_id is None
    assert plain.changed_areas("52 aa/1") is None
    assert conn.cbt_queries == []
    tracked, conn = make_source(base, 8192, cbt=True)
    assert tracked.change_id == "52 aa/3"
    assert tracked.changed_areas("52 aa/1") == [ChangedArea(0, 4096)]
    assert conn.cbt_queries == [(2000, "52 aa/1")]


def test_refuses_missing_snapshot_unknown_disk_and_delta_disks(server: tuple[str, Behaviour]) -> None:
    base, _ = server
    conn = FakeConnection(base, 1000)
    with pytest.raises(SourceError, match="no snapshot named 'other'"):
        VSphereDiskSource(conn, "vm-1", "other", 2000)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match=r"no disk with device key 9 \(disks: 2000 \(Hard disk 1\)"):
        VSphereDiskSource(conn, "vm-1", "seawall-1", 9)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="already a delta disk"):
        VSphereDiskSource(conn, "vm-1", "seawall-1", 2001)  # type: ignore[arg-type]


def test_sequential_large_reads_are_fetched_ahead(server: tuple[str, Behaviour]) -> None:
    base, b = server
    block = 64 * 1024
    b.content = os.urandom(6 * block)
    src, _ = make_source(base, len(b.content), readahead=0, prefetch=2)
    out = b"".join(src.read(off, block) for off in range(0, len(b.content), block))
    assert out == b.content
    # Every block fetched exactly once, none past the end, though most came from the prefetcher.
    assert sorted(r or "" for r in b.requests) == sorted(
        f"bytes={o}-{o + block - 1}" for o in range(0, len(b.content), block)
    )
    src.close()


def test_random_reads_do_not_fetch_ahead(server: tuple[str, Behaviour]) -> None:
    base, b = server
    b.content = os.urandom(400_000)
    src, _ = make_source(base, len(b.content), readahead=0, prefetch=3)
    for off in (0, 200_000, 50_000, 300_000):
        assert src.read(off, 10_000) == b.content[off : off + 10_000]
    assert len(b.requests) == 4
    src.close()


def test_a_failed_prefetch_surfaces_when_its_range_is_read(server: tuple[str, Behaviour]) -> None:
    base, b = server
    block = 32 * 1024
    b.content = os.urandom(8 * block)
    b.missing_ranges = {f"bytes={2 * block}-{3 * block - 1}"}
    src, _ = make_source(base, len(b.content), readahead=0, prefetch=2)
    assert src.read(0, block) == b.content[:block]
    assert src.read(block, block) == b.content[block : 2 * block]
    with pytest.raises(SourceError, match="not found"):
        src.read(2 * block, block)
    assert b.requests.count(f"bytes={2 * block}-{3 * block - 1}") == 1, "fetched once, by the prefetcher"
    assert src.read(3 * block, block) == b.content[3 * block : 4 * block]
    src.close()
