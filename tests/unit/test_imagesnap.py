from __future__ import annotations

import os
from pathlib import Path

import pytest

from seawall.blockstore.source import SourceError
from seawall.sites.directory import imagesnap


def make_vm(root: Path, vm: str, disks: dict[str, bytes]) -> None:
    (root / vm).mkdir(parents=True)
    for name, data in disks.items():
        (root / vm / name).write_bytes(data)


def test_snapshot_is_a_stable_copy_the_guest_can_keep_writing_past(tmp_path: Path) -> None:
    data = os.urandom(1 << 20) + bytes(3 << 20)  # a used head and an empty tail
    make_vm(tmp_path, "vm1", {"disk0.img": data, "disk1.img": b"b" * 8192})
    snap, method = imagesnap.create_snapshot(tmp_path, "vm1", "s1", ["disk0.img", "disk1.img"])
    assert method in ("reflink", "copy")
    (tmp_path / "vm1" / "disk0.img").write_bytes(b"x" * len(data))  # the guest writes on
    assert (snap / "disk0.img").read_bytes() == data
    assert (snap / "disk1.img").read_bytes() == b"b" * 8192
    # Sparse: the empty tail takes no blocks in the copy.
    if method == "copy":
        assert os.stat(snap / "disk0.img").st_blocks * 512 < len(data)


def test_snapshot_is_idempotent_and_redoes_a_half_made_copy(tmp_path: Path) -> None:
    make_vm(tmp_path, "vm1", {"disk0.img": b"a" * 4096})
    half = imagesnap.snapshot_path(tmp_path, "vm1", "s1")
    half.mkdir(parents=True)
    (half / "disk0.img").write_bytes(b"partial")  # a crash mid-copy: no .complete marker
    snap, _ = imagesnap.create_snapshot(tmp_path, "vm1", "s1", ["disk0.img"])
    assert (snap / "disk0.img").read_bytes() == b"a" * 4096
    again, _ = imagesnap.create_snapshot(tmp_path, "vm1", "s1", ["disk0.img"])
    assert again == snap
    assert imagesnap.list_snapshots(tmp_path, "vm1") == ["s1"]


def test_remove_is_idempotent_and_leaves_no_trace(tmp_path: Path) -> None:
    make_vm(tmp_path, "vm1", {"disk0.img": b"a" * 4096})
    imagesnap.create_snapshot(tmp_path, "vm1", "s1", ["disk0.img"])
    assert imagesnap.remove_snapshot(tmp_path, "vm1", "s1") is True
    assert imagesnap.remove_snapshot(tmp_path, "vm1", "s1") is False
    assert not (tmp_path / "vm1" / imagesnap.SNAPSHOT_DIR).exists()


def test_disks_are_listed_and_filtered_with_clear_errors(tmp_path: Path) -> None:
    make_vm(tmp_path, "vm1", {"b.img": b"1", "a.img": b"2", ".hidden": b"3"})
    assert imagesnap.list_disks(tmp_path, "vm1") == ["a.img", "b.img"]
    assert imagesnap.list_disks(tmp_path, "vm1", ["b.img"]) == ["b.img"]
    with pytest.raises(SourceError, match="no disk"):
        imagesnap.list_disks(tmp_path, "vm1", ["c.img"])
    with pytest.raises(SourceError, match="no VM folder"):
        imagesnap.list_disks(tmp_path, "vm2")


def test_unprotects_sweep_removes_only_seawalls_snapshots(tmp_path: Path) -> None:
    from seawall.model import DirectorySite
    from seawall.sites.directory.adapter import DirectoryAdapter

    make_vm(tmp_path, "vm1", {"disk0.img": b"a" * 4096})
    for name in ("seawall-20261202T100137Z-010f42813e8e", "seawall-older", "operator-copy"):
        imagesnap.create_snapshot(tmp_path, "vm1", name, ["disk0.img"])
    adapter = DirectoryAdapter(DirectorySite(name="disks", path=str(tmp_path)))
    assert sorted(adapter.release_orphan_snapshots("vm1")) == [
        "seawall-20261202T100137Z-010f42813e8e",
        "seawall-older",
    ]
    assert imagesnap.list_snapshots(tmp_path, "vm1") == ["operator-copy"]  # not Seawall's: left alone
    assert adapter.release_orphan_snapshots("vm1") == []
    assert adapter.release_orphan_snapshots("no-such-vm") == []
    assert (tmp_path / "vm1" / "disk0.img").read_bytes() == b"a" * 4096
