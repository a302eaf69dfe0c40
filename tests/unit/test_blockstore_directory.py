"""The directory ObjectStore: atomic, idempotent, crash-safe writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.blockstore.stores.backend import ObjectNotFound, ObjectStore, StoreError
from seawall.blockstore.stores.directory import DirectoryStore


def test_is_an_object_store(tmp_path: Path) -> None:
    assert isinstance(DirectoryStore(tmp_path), ObjectStore)


def test_put_is_write_once(tmp_path: Path) -> None:
    s = DirectoryStore(tmp_path)
    assert s.put("chunks/ab/abc", b"one") is True
    assert s.put("chunks/ab/abc", b"two") is False  # existing key: a no-op
    assert s.get("chunks/ab/abc") == b"one"
    s.put_overwrite("chunks/ab/abc", b"three")
    assert s.get("chunks/ab/abc") == b"three"


def test_get_exists_delete(tmp_path: Path) -> None:
    s = DirectoryStore(tmp_path)
    with pytest.raises(ObjectNotFound) as ei:
        s.get("nope")
    assert ei.value.key == "nope"
    assert not s.exists("a/b")
    s.put("a/b", b"")
    assert s.exists("a/b") and s.get("a/b") == b""
    s.delete("a/b")
    s.delete("a/b")  # deleting an absent key succeeds
    assert not s.exists("a/b")
    assert not s.exists("a")  # a directory is not an object


def test_list_by_prefix(tmp_path: Path) -> None:
    s = DirectoryStore(tmp_path)
    keys = ["points/vm1/p1.json", "points/vm1/p2.json", "points/vm10/p1.json", "packs/aa/aa01", "top"]
    for k in keys:
        s.put(k, b"x")
    assert sorted(s.list("")) == sorted(keys)
    assert sorted(s.list("points/vm1/")) == ["points/vm1/p1.json", "points/vm1/p2.json"]
    assert sorted(s.list("points/vm1")) == ["points/vm1/p1.json", "points/vm1/p2.json", "points/vm10/p1.json"]
    assert list(s.list("missing/")) == []


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/", "./a", "x.seawall-tmp"])
def test_invalid_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError):
        DirectoryStore(tmp_path).put(key, b"x")


def test_temp_files_of_a_crash_are_invisible_and_swept(tmp_path: Path) -> None:
    s = DirectoryStore(tmp_path)
    s.put("packs/aa/1", b"x")
    (tmp_path / "packs" / "aa" / ".2.deadbeef.seawall-tmp").write_bytes(b"half")
    assert list(s.list("packs/")) == ["packs/aa/1"]
    assert s.sweep_temp() == 1
    assert s.describe().startswith("dir://")


def test_no_fsync_mode_still_works(tmp_path: Path) -> None:
    s = DirectoryStore(tmp_path, fsync=False)
    s.put("k", b"v")
    assert s.get("k") == b"v"


def test_put_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    s = DirectoryStore(tmp_path)
    assert s.put("a/b", b"1") is True
    assert s.put("a/b", b"2") is False
    assert s.get("a/b") == b"1"
    assert list(s.list("a/")) == ["a/b"]
