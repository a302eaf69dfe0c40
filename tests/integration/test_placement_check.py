"""`seawall plan check` asks the target site whether a placement's names exist (the lab's dr vcsim)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from seawall.lab import LabInfo
from tests.integration import vcsim_shapes as vs
from tests.integration.replication_env import ROOT, write_inventory


def plan_check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seawall.cli", "plan", "check", str(path), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def test_placement_names_are_checked_against_the_site(
    lab: LabInfo, lab_state_dir: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    with vs.connect(lab, "dr") as si:
        made = vs.make_placement(si, suffix, lab_state_dir / f"ds-alt-{suffix}")
    path = write_inventory(tmp_path, lab_state_dir, s3_prefix=f"t-{suffix}/", lab=lab)
    data = yaml.safe_load(path.read_text())
    good = {"source": "primary", "target": "dr", **made}
    data["placements"] = [good]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ok = plan_check(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    data["placements"] = [
        {**good, "folder": f"dr-{suffix}/nope", "datastore": "ds-missing", "resource_pool": "rp-nope"}
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    bad = plan_check(path)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    lines = bad.stdout.splitlines()
    lines_of = {line.split(": ", 2)[1]: line for line in lines}
    assert set(lines_of) == {
        "placements[0].datastore",
        "placements[0].resource_pool",
        "placements[0].folder",
    }, lines
    text = path.read_text().splitlines()
    for field, line in lines_of.items():
        where = int(line.split(":")[1])
        assert text[where - 1].strip().startswith(field.rsplit(".", 1)[1]), (line, text[where - 1])
    assert "ds-missing" in lines_of["placements[0].datastore"] and "Traceback" not in bad.stdout + bad.stderr
    assert plan_check(path, "--offline").returncode == 0
