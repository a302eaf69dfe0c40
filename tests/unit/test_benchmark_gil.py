"""benchmarks.gil: it runs, prints one JSON object, and tells a GIL-holding call from a releasing one.

The two verdicts asserted are the clear-cut ones (a 4 MiB bytes compare is one memcmp under the
GIL; zstd compresses 4 MiB with the GIL released); throughputs are reported, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks import gil


def test_probe_tells_holding_from_releasing() -> None:
    prims = gil.primitives(4 * 1024 * 1024)
    holds = gil.probe(prims["bytes_compare"], 0.3, 4 * 1024 * 1024)
    assert holds["releases_gil"] is False
    assert float(holds["parallel"]) <= 1.05  # type: ignore[arg-type]  # turns, whatever the load
    releases = gil.probe(prims["zstd1_compress"], 0.3, 4 * 1024 * 1024)
    assert releases["releases_gil"] is True, releases
    assert float(releases["mb_s_cpu"]) > 0  # type: ignore[arg-type]


def test_cli_prints_one_json_object_with_every_primitive_and_size() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gil", "--json", "--seconds", "0.05"],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout)
    names = set(gil.primitives(4096))
    for size in gil.SIZES:
        for name in names:
            r = res[f"{name}@{size // 1024}KiB"]
            assert set(r) >= {"mb_s_cpu", "parallel", "releases_gil"}
