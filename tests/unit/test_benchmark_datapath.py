"""Smoke test of the data-path benchmark: it runs, prints one JSON object, and is correct.

Timing ratios are reported by the benchmark, not asserted here (a shared CI machine is noisy);
correctness ratios are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

KEYS = {
    "size_bytes",
    "changed_bytes",
    "raw_read_s",
    "zstd1_s",
    "seed_s",
    "incremental_s",
    "verify_s",
    "restore_s",
    "stored_bytes_incremental",
    "rsync_s",
    "rsync_b4096_s",
    "rsync_bytes_sent",
    "incremental_vs_raw_read",
    "rsync_fastest_vs_incremental",
    "stored_vs_changed",
    "seed_vs_zstd1_throughput",
    "restore_chain_bound",
    "restore_chain_layers",
    "restore_identical",
    "verify_ok",
    "targets_met",
}


def test_benchmark_runs_at_64_mib(tmp_path: Path) -> None:
    repo_root = Path(__file__).resolve().parents[2]
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.datapath",
        "--json",
        "--size-mib",
        "64",
        "--workdir",
        str(tmp_path),
    ]
    proc = subprocess.run(
        cmd,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    assert result.keys() >= KEYS
    assert result["size_bytes"] == 64 * 1024 * 1024
    assert result["changed_bytes"] == round(64 * 1024 * 1024 / 4096 / 100) * 4096
    assert result["incremental_change_path"] == "hash-compare"
    assert result["incremental_bytes_changed_detected"] == result["changed_bytes"]
    assert result["stored_vs_changed"] <= 1.25
    assert result["restore_identical"] is True and result["verify_ok"] is True
    assert result["restore_chain_layers"] <= result["restore_chain_bound"]
    assert result["rsync_bytes_sent"] > 0
    # The CBT cycle reads only the reported extents and arrives at the very same disk.
    assert result["incremental_cbt_same_digest"] is True
    assert result["incremental_cbt_bytes_read"] < result["size_bytes"] / 2
