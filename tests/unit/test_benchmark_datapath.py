"""Smoke test of the data-path benchmark: it runs, prints one JSON object, and is correct.

Timing ratios are reported by the benchmark, not asserted here (a shared CI machine is noisy);
correctness ratios are asserted, and so is the shape of what the peers (restic, borg) report:
figures that add up, or an explicit error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import datapath, peers

SIZE_MIB = 16

KEYS = {
    "size_bytes",
    "changed_bytes",
    "raw_read_s",
    "zstd1_s",
    "seed_s",
    "incremental_s",
    "verify_s",
    "restore_s",
    "restore_mb_s",
    "stored_bytes_incremental",
    "rsync_s",
    "rsync_b4096_s",
    "rsync_bytes_sent",
    "rsync_b4096_bytes_sent",
    "incremental_vs_raw_read",
    "rsync_fastest_vs_incremental",
    "stored_vs_changed",
    "seed_vs_zstd1_throughput",
    "restore_chain_bound",
    "restore_chain_layers",
    "restore_identical",
    "verify_ok",
    "targets_met",
    "targets_issue17",
    "restic",
    "borg",
}
PEER_FIGURES = {
    "seed_s",
    "incremental_s",
    "seed_cpu_s",
    "incremental_cpu_s",
    "seed_stored_bytes",
    "stored_bytes_incremental",
    "runs",
    "version",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    repo_root = Path(__file__).resolve().parents[2]
    workdir = tmp_path_factory.mktemp("datapath")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.datapath",
        "--json",
        "--size-mib",
        str(SIZE_MIB),
        "--repeat",
        "1",
    ]
    proc = subprocess.run(
        [*cmd, "--workdir", str(workdir)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    out: dict[str, Any] = json.loads(lines[0])
    # The peers' repositories are gone; only the images (and Seawall's store) stay in a given workdir.
    assert not [p.name for p in workdir.iterdir() if p.name.startswith("peer-")]
    return out


def test_seawall_figures_are_correct(result: dict[str, Any]) -> None:
    size = SIZE_MIB * 1024 * 1024
    assert result.keys() >= KEYS
    assert result["size_bytes"] == size
    assert result["changed_bytes"] == round(size / 4096 / 100) * 4096
    assert result["incremental_change_path"] == "hash-compare"
    assert result["incremental_bytes_changed_detected"] == result["changed_bytes"]
    assert result["stored_vs_changed"] <= 1.25
    assert result["restore_identical"] is True and result["verify_ok"] is True
    assert result["restore_chain_layers"] <= result["restore_chain_bound"]
    assert result["rsync_bytes_sent"] > 0 and result["rsync_b4096_bytes_sent"] > 0
    # The CBT cycle reads only the reported extents and arrives at the very same disk.
    assert result["incremental_cbt_same_digest"] is True
    assert result["incremental_cbt_bytes_read"] < result["size_bytes"] / 2


@pytest.mark.parametrize("name", peers.PEERS)
def test_peer_has_figures_or_an_explicit_error(result: dict[str, Any], name: str) -> None:
    peer = result[name]
    if "error" in peer:  # e.g. "not installed" on a machine without the set-up
        assert isinstance(peer["error"], str) and peer["error"]
        assert result[f"incremental_speedup_vs_{name}"] is None
        assert result["targets_issue17"][f"incremental_speedup_vs_{name}"]["pass"] is None
        return
    assert peer.keys() >= PEER_FIGURES
    assert peer["seed_s"] > 0 and peer["incremental_s"] > 0 and peer["runs"] == 1
    assert peer["seed_cpu_s"] > 0 and peer["incremental_cpu_s"] > 0
    # Both images went in: something stored for each, and no more than the image plus overhead.
    assert 0 < peer["seed_stored_bytes"] <= 1.2 * result["size_bytes"]
    assert 0 < peer["stored_bytes_incremental"] <= 1.2 * result["size_bytes"]
    # Scattered 4 KiB writes touch (nearly) every content-defined chunk: far more than Seawall stores.
    assert peer["stored_bytes_incremental"] > result["stored_bytes_incremental"]
    # Ratios come from unrounded times; the reported times are rounded to 0.1 ms.
    speedup = pytest.approx(peer["incremental_s"] / result["incremental_s"], rel=5e-3)
    assert result[f"incremental_speedup_vs_{name}"] == speedup
    assert result[f"seed_speedup_vs_{name}"] == pytest.approx(peer["seed_s"] / result["seed_s"], rel=5e-3)
    # CPU seconds are rounded to 1 ms, a large share of a tiny run's: the ratio within those bounds.
    ours, theirs = result["incremental_cpu_s"], peer["incremental_cpu_s"]
    low, high = (theirs - 5e-4) / (ours + 5e-4), (theirs + 5e-4) / max(ours - 5e-4, 1e-9)
    assert low * 0.999 <= result[f"incremental_cpu_speedup_vs_{name}"] <= high * 1.001
    stored = result[f"stored_incremental_vs_{name}"]
    assert stored == round(result["stored_bytes_incremental"] / peer["stored_bytes_incremental"], 5)


def test_issue17_targets_carry_measured_figures(result: dict[str, Any]) -> None:
    targets = result["targets_issue17"]
    assert targets.keys() == datapath.TARGETS_ISSUE17.keys()
    for key, t in targets.items():
        assert t["measured"] == result[key]
        op, bound = datapath.TARGETS_ISSUE17[key]
        assert t["target"] == f"{op} {bound}"
        if t["measured"] is not None:
            assert t["pass"] is (t["measured"] <= bound if op == "<=" else t["measured"] >= bound)
    table = datapath.table(result)
    assert table.splitlines()[0].startswith("| | Seawall | restic | borg |")
    assert "stored for the incremental" in table


def test_missing_peer_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(os.urandom(4096))
    new.write_bytes(os.urandom(4096))
    for name in peers.PEERS:
        assert peers.measure(name, old, new, tmp_path) == {"error": "not installed"}
    assert peers.measure("tar", old, new, tmp_path) == {"error": "unknown peer 'tar'"}
