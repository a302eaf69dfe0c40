"""The vSphere target's pure parts: the restore-to-upload pipe, disk descriptors, run tags."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest
import requests

from seawall.sites.vsphere.datastorewrite import _head_size, _Pipe, _UploadAborted
from seawall.sites.vsphere.disks import descriptor_text
from seawall.sites.vsphere.target import RunTag

KiB = 1024


def _drain(pipe: _Pipe, writes: list[tuple[int, bytes]], error: BaseException | None = None) -> bytes:
    def produce() -> None:
        for offset, data in writes:
            pipe.write(offset, data)
        pipe.finish(error)

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        return b"".join(pipe)
    finally:
        pipe.abort()
        thread.join(5)


def test_gaps_and_the_tail_become_zeros_up_to_whole_kib() -> None:
    size = 10 * KiB + 100
    disk = bytearray(size)
    disk[0:4] = b"head"
    disk[5 * KiB : 5 * KiB + 4] = b"mid!"
    pipe = _Pipe(size, 11 * KiB)
    body = _drain(pipe, [(0, bytes(disk[:KiB])), (5 * KiB, bytes(disk[5 * KiB : 6 * KiB]))])
    assert body == bytes(disk) + bytes(11 * KiB - size)
    assert len(pipe) == pipe.sent == 11 * KiB
    assert pipe.sha.hexdigest() == hashlib.sha256(body).hexdigest()


def test_a_failed_restore_never_sends_the_last_piece() -> None:
    got: list[bytes] = []
    writes = [(0, b"a" * KiB), (KiB, b"b" * KiB), (2 * KiB, b"c" * KiB)]
    pipe = _Pipe(4 * KiB, 4 * KiB)

    def produce() -> None:
        for offset, data in writes:
            pipe.write(offset, data)
        pipe.finish(RuntimeError("digest mismatch"))

    thread = threading.Thread(target=produce)
    thread.start()
    with pytest.raises(RuntimeError, match="digest mismatch"):
        for piece in pipe:
            got.append(piece)
    thread.join(5)
    assert b"".join(got) == b"a" * KiB + b"b" * KiB, "the held-back piece and the tail are never sent"


def test_writes_must_move_forward_and_fit() -> None:
    pipe = _Pipe(2 * KiB, 2 * KiB)
    pipe._q.maxsize = 0  # unbounded: no consumer in this test
    pipe.write(KiB, b"x" * 10)
    with pytest.raises(ValueError, match="must move forward"):
        pipe.write(0, b"y")
    with pytest.raises(ValueError, match="past the disk's end"):
        pipe.write(2 * KiB - 1, b"zz")


def test_the_writer_stops_when_the_upload_stops_reading() -> None:
    pipe = _Pipe(64 * KiB, 64 * KiB, depth=1)
    pipe.write(0, b"1")
    pipe.abort()
    with pytest.raises(_UploadAborted):
        pipe.write(1, b"2")


def test_descriptor_names_the_extent_and_its_sectors() -> None:
    text = descriptor_text("web-01-flat.vmdk", 4 * 1024 * KiB)
    assert 'RW 8192 VMFS "web-01-flat.vmdk"' in text
    assert 'createType="vmfs"' in text and text.startswith("# Disk DescriptorFile\n")
    assert descriptor_text("a-flat.vmdk", 1024) == descriptor_text("a-flat.vmdk", 1024)
    with pytest.raises(ValueError, match="512-byte sectors"):
        descriptor_text("a-flat.vmdk", 1000)


def test_run_tag_round_trips_through_the_annotation() -> None:
    tag = RunTag(plan="erp", run="r-1", source_vm="db-01", extra={"mode": "test"})
    text = tag.annotation()
    assert text.splitlines()[0] == "Recovered by Seawall"
    assert RunTag.parse(text) == tag
    assert RunTag.parse("an operator's note") is None
    assert RunTag.parse(None) is None
    assert RunTag.parse("Recovered by Seawall\nseawall.plan=erp") is None
    keys = {o.key: o.value for o in tag.extra_config()}
    assert keys == {
        "seawall.plan": "erp",
        "seawall.run": "r-1",
        "seawall.vm": "db-01",
        "seawall.mode": "test",
    }


class _NoHead(http.server.BaseHTTPRequestHandler):
    """A file service that refuses HEAD and serves ranges, like some datastore proxies."""

    body = bytes(range(256)) * 40

    def do_HEAD(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes 0-0/{len(self.body)}")
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(self.body[:1])

    def log_message(self, *args: object) -> None:
        pass


def test_file_size_falls_back_to_a_ranged_get_without_head() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoHead)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with requests.Session() as session:
            assert _head_size(session, f"{base}/folder/a-flat.vmdk", 5) == len(_NoHead.body)
            assert _head_size(session, f"{base}/missing", 5) is None
    finally:
        server.shutdown()
        server.server_close()
