"""The data-path scenario on the local-directory backend (S3 and Azure run the same helper)."""

from __future__ import annotations

from pathlib import Path

from seawall.blockstore.stores.directory import DirectoryStore
from tests.datapath_scenario import run_datapath_scenario


def test_seed_three_incrementals_verify_restore_retention_gc(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    report = run_datapath_scenario(store, tmp_path / "work")
    assert report.change_paths == ["full", "hash-compare", "hash-compare", "hash-compare"]
    # Incrementals ship about what changed (plus tables; cycle 2 grew the disk: a full table).
    for changed, shipped in zip(report.bytes_changed[1:], report.bytes_shipped[1:], strict=True):
        assert shipped <= 1.25 * changed + 64 * 1024, (changed, shipped)
    assert report.deleted == ["p0", "p1"]
    # Nothing is left behind by the ships themselves: no leases after commit, no temp files.
    assert not list(store.list("sessions/"))
    assert store.sweep_temp() == 0
