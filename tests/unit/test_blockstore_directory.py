"""The directory ObjectStore: key validation, crash-safe writes, no-fsync and no-hard-link modes.

The ObjectStore contract itself runs for every backend in tests/integration/test_store_conformance.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.blockstore.stores.backend import StoreError
from seawall.blockstore.stores.directory import DirectoryStore


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
