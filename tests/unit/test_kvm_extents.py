"""The KVM source's extent logic with fakes: dirty-bitmap answers to changed areas, disks from domain
XML, and which checkpoints a cycle's end deletes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from seawall.blockstore.source import ChangedArea, SourceError
from seawall.sites.kvm import backup, source
from seawall.sites.kvm.nbdsource import dirty_extents

MiB = 1024 * 1024


def fake_status(extents: list[tuple[int, int]], max_entries: int = 1000) -> Any:
    """A server over a disk described by ``extents`` [(length, flags)], answering like QEMU: from the
    asked offset, at most ``max_entries`` entries, possibly past the asked length."""
    starts = []
    pos = 0
    for length, flags in extents:
        starts.append((pos, length, flags))
        pos += length
    calls: list[tuple[int, int]] = []

    def status(offset: int, length: int) -> list[tuple[int, int]]:
        calls.append((offset, length))
        out = []
        for start, ln, flags in starts:
            if start + ln <= offset:
                continue
            skip = max(0, offset - start)
            out.append((ln - skip, flags))
            if len(out) == max_entries:
                break
        return out

    status.calls = calls  # type: ignore[attr-defined]
    return status


def test_dirty_extents_merge_adjacent_runs_and_skip_clean_ones() -> None:
    status = fake_status([(64 << 10, 1), (64 << 10, 1), (1 * MiB, 0), (64 << 10, 1), (MiB - (192 << 10), 0)])
    assert dirty_extents(status, 2 * MiB) == [
        ChangedArea(0, 128 << 10),
        ChangedArea(MiB + (128 << 10), 64 << 10),
    ]


def test_a_server_answering_less_than_asked_is_asked_again_from_where_it_stopped() -> None:
    extents = [(64 << 10, i % 2) for i in range(32)]  # alternate clean/dirty clusters, 2 MiB
    status = fake_status(extents, max_entries=3)
    areas = dirty_extents(status, 2 * MiB)
    assert areas == [ChangedArea(i * (64 << 10), 64 << 10) for i in range(1, 32, 2)]
    assert len(status.calls) > 5  # several partial answers were needed


def test_an_answer_past_the_request_is_clipped_to_it_and_spans_are_asked_in_turn() -> None:
    status = fake_status([(4 * MiB, 1)])
    assert dirty_extents(status, 4 * MiB, span=MiB) == [ChangedArea(0, 4 * MiB)]
    assert [c[0] for c in status.calls] == [0, MiB, 2 * MiB, 3 * MiB]


def test_a_server_that_describes_nothing_is_an_error_not_a_loop() -> None:
    with pytest.raises(SourceError, match="no extent at offset 0"):
        dirty_extents(lambda offset, length: [], MiB)


def test_a_clean_disk_has_no_changed_areas() -> None:
    assert dirty_extents(fake_status([(8 * MiB, 0)]), 8 * MiB) == []


DOMAIN = """<domain type='qemu'><name>kdb-01</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/p/sys.qcow2'/>
<target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso'/>
<target dev='sda' bus='sata'/></disk>
<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/sdz'/>
<target dev='vdb' bus='virtio'/></disk>
</devices></domain>"""


def test_domain_disks_are_named_by_position_and_cdroms_left_out() -> None:
    disks = backup.domain_disks(DOMAIN)
    assert [(d.replica_name, d.dev, d.fmt, d.path, d.bitmaps) for d in disks] == [
        ("disk0", "vda", "qcow2", "/p/sys.qcow2", True),
        ("disk1", "vdb", "raw", "/dev/sdz", False),
    ]


def test_job_sockets_are_short_and_distinct_per_domain_and_point(tmp_path: Any) -> None:
    a = backup.socket_path(tmp_path, "uuid-1", "seawall-20261201T000000Z-abc")
    b = backup.socket_path(tmp_path, "uuid-1", "seawall-20261201T000030Z-abc")
    c = backup.socket_path(tmp_path, "uuid-2", "seawall-20261201T000000Z-abc")
    assert len({a, b, c}) == 3 and all(len(p) < 107 for p in (a, b, c))
    with pytest.raises(Exception, match="too deep"):
        backup.socket_path(tmp_path / ("x" * 120), "u", "n")


@dataclass
class FakeDomain:
    """Checkpoints only: what ``settle`` reads and deletes."""

    cps: list[backup.Checkpoint]
    deleted: list[str] = field(default_factory=list)
    active: bool = True

    def isActive(self) -> int:
        return int(self.active)


def _settle(dom: FakeDomain, name: str, kept: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(backup, "checkpoints", lambda d: list(d.cps))

    def delete(d: FakeDomain, n: str) -> bool:
        d.deleted.append(n)
        d.cps = [c for c in d.cps if c.name != n]
        return True

    monkeypatch.setattr(backup, "delete_checkpoint", delete)
    return source.settle(dom, name, kept)  # type: ignore[arg-type]


def cp(name: str, created: int, ours: bool = True) -> backup.Checkpoint:
    return backup.Checkpoint(name=name, created=created, ours=ours, disks=frozenset({"vda"}))


def test_a_kept_point_deletes_every_older_checkpoint_of_ours_and_no_foreign_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dom = FakeDomain(
        [cp("seawall-a", 1), cp("other-tool", 2, ours=False), cp("seawall-b", 3), cp("seawall-c", 4)]
    )
    assert _settle(dom, "seawall-c", True, monkeypatch) == ["seawall-a", "seawall-b"]
    assert [c.name for c in dom.cps] == ["other-tool", "seawall-c"]


def test_a_point_not_kept_loses_its_own_checkpoint_and_the_parent_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dom = FakeDomain([cp("seawall-a", 1), cp("seawall-b", 3)])
    assert _settle(dom, "seawall-b", False, monkeypatch) == ["seawall-b"]
    assert [c.name for c in dom.cps] == ["seawall-a"]


def test_a_shut_off_domain_keeps_its_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    dom = FakeDomain([cp("seawall-a", 1), cp("seawall-b", 3)], active=False)
    assert _settle(dom, "seawall-c", True, monkeypatch) == []
    assert _settle(dom, "seawall-b", False, monkeypatch) == []
    assert dom.deleted == []


class FakeNbdModule:
    """libnbd's Python module as NbdSource uses it: one export with a dirty bitmap."""

    class Error(Exception):
        pass

    def __init__(self, data: bytes, dirty: list[tuple[int, int]], has_bitmap: bool = True) -> None:
        self.data, self.dirty, self.has_bitmap = data, dirty, has_bitmap
        self.requests: list[tuple[str, int, int]] = []
        module = self

        class NBD:
            def __init__(self) -> None:
                self.contexts: list[str] = []

            def add_meta_context(self, name: str) -> None:
                self.contexts.append(name)

            def set_export_name(self, name: str) -> None:
                self.export = name

            def connect_unix(self, path: str) -> None:
                if path != "/run/sock":
                    raise module.Error(f"connect: {path}: No such file or directory")

            def get_size(self) -> int:
                return len(module.data)

            def can_meta_context(self, name: str) -> bool:
                return module.has_bitmap and name in self.contexts

            def pread(self, count: int, offset: int) -> bytes:
                module.requests.append(("read", offset, count))
                return module.data[offset : offset + count]

            def block_status(self, length: int, offset: int, cb: Any) -> None:
                module.requests.append(("status", offset, length))
                entries: list[int] = []
                pos = 0
                for start, ln in [*module.dirty, (len(module.data), 0)]:
                    if start > pos:
                        entries += [start - pos, 0]
                    if ln:
                        entries += [ln, 1]
                    pos = start + ln
                cb(self.contexts[0], offset, entries, 0)

            def shutdown(self) -> None:
                pass

        self.NBD = NBD


def nbd_source(monkeypatch: pytest.MonkeyPatch, fake: FakeNbdModule, **kwargs: Any) -> Any:
    from seawall.sites.kvm import nbdsource

    monkeypatch.setattr(nbdsource, "_nbd", lambda: fake)
    return nbdsource.NbdSource("/run/sock", "vdb", **kwargs)


def test_nbd_source_answers_from_the_bitmap_only_for_the_jobs_base(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNbdModule(
        bytes(4 * MiB), [(MiB, 64 << 10), (MiB + (64 << 10), 64 << 10), (3 * MiB, 128 << 10)]
    )
    src = nbd_source(monkeypatch, fake, change_id="cp2@20", bitmap="b-vdb", since="cp1@10")
    assert (src.size, src.change_id) == (4 * MiB, "cp2@20")
    assert src.changed_areas("cp1@10") == [ChangedArea(MiB, 128 << 10), ChangedArea(3 * MiB, 128 << 10)]
    assert src.dirty_bytes == 256 << 10
    assert src.changed_areas("cp1@11") is None  # the same name made again later: not the job's base
    assert src.changed_areas("other@10") is None
    src.close()
    src.close()  # idempotent


def test_nbd_source_without_a_bitmap_hash_compares_and_reads_in_bounded_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bytes(range(256)) * (160 * 1024)  # 40 MiB
    fake = FakeNbdModule(data, [], has_bitmap=False)
    src = nbd_source(monkeypatch, fake, change_id="cp1@10", bitmap="b-vdb", since="cp0@1")
    assert src.changed_areas("cp0@1") is None  # the export has no bitmap (a full backup of this disk)
    assert src.read(len(data) - 10, 100) == data[-10:]  # clipped at the end of the disk
    assert src.read(0, 40 * MiB) == data
    assert max(n for kind, _, n in fake.requests if kind == "read") <= 32 * MiB  # QEMU's request limit
    assert src.bytes_read == 10 + 40 * MiB
    src.close()
    with pytest.raises(SourceError, match="closed"):
        src.read(0, 1)


def test_an_export_that_is_gone_is_a_source_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from seawall.sites.kvm import nbdsource

    fake = FakeNbdModule(bytes(MiB), [])
    monkeypatch.setattr(nbdsource, "_nbd", lambda: fake)
    with pytest.raises(SourceError, match=r"vdb.*/gone/sock"):
        nbdsource.NbdSource("/gone/sock", "vdb", change_id=None)


def test_the_data_path_reads_nbd_dirty_runs_without_merging_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    from seawall.blockstore.manifest import DiskManifest
    from seawall.blockstore.scan import cbt_runs
    from seawall.blockstore.table import BLOCK

    # Every other block dirty: a source with the default gap would read the clean ones between too.
    dirty = [(i * BLOCK, BLOCK) for i in range(0, 16, 2)]
    fake = FakeNbdModule(bytes(16 * BLOCK), dirty)
    src = nbd_source(monkeypatch, fake, change_id="cp2@20", bitmap="b", since="cp1@10")
    parent = DiskManifest.model_construct(size=16 * BLOCK, change_id="cp1@10")
    runs = cbt_runs(src, parent, 16)
    assert runs == [(i, i + 1) for i in range(0, 16, 2)]
    assert sum(b1 - b0 for b0, b1 in runs) * BLOCK == src.dirty_bytes
