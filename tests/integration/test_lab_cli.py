"""`seawall lab status --json` and `seawall lab up` against the running lab."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from seawall.lab import LabInfo
from seawall.lab.manager import PART_NAMES
from seawall.lab.procs import read_cmdline, read_tracked

SEAWALL = [str(Path(sys.executable).parent / "seawall")]


def _run(args: list[str], lab_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEAWALL, *args], env=lab_env, capture_output=True, text=True, timeout=120)


def _pids_running(argv: list[str]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and read_cmdline(int(entry.name)) == argv:
            pids.append(int(entry.name))
    return pids


def test_status_json_all_healthy(lab: LabInfo, lab_env: dict[str, str]) -> None:
    result = _run(["lab", "status", "--json"], lab_env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    parts = {p["name"]: p for p in report["parts"]}
    assert set(parts) == set(PART_NAMES)
    for name, part in parts.items():
        assert part["healthy"] is True, (name, part["detail"])
        assert isinstance(part["pid"], int)
    quiet = _run(["lab", "status", "--quiet"], lab_env)
    assert quiet.returncode == 0 and quiet.stdout == ""


@pytest.mark.lab_exclusive  # `lab up` starts a lab guest a KVM test may have fenced on purpose
def test_up_again_leaves_one_of_each(lab: LabInfo, lab_env: dict[str, str]) -> None:
    before = {name: read_tracked(lab.state_dir, name) for name in PART_NAMES}
    result = _run(["lab", "up", "--json"], lab_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["vsphere"]["primary"]["datacenter"] == "dc-primary"
    for name, tracked in before.items():
        assert tracked is not None, name
        again = read_tracked(lab.state_dir, name)
        assert again is not None and again.pid == tracked.pid, name
        assert _pids_running(tracked.argv) == [tracked.pid], name


def test_temporal_ui_answers(lab: LabInfo) -> None:
    assert lab.temporal.ui_url == f"http://127.0.0.1:{lab.temporal.port + 1000}"
    settings = requests.get(f"{lab.temporal.ui_url}/api/v1/settings", timeout=5)
    assert settings.status_code == 200


def test_credentials_and_key_files(lab: LabInfo) -> None:
    expected = {
        site.credentials_file: {"user": site.user, "password": site.password} for site in lab.vsphere.values()
    }
    expected[lab.aws.credentials_file] = {
        "aws_access_key_id": lab.aws.access_key_id,
        "aws_secret_access_key": lab.aws.secret_access_key,
    }
    expected[lab.azure.credentials_file] = {
        "account_name": lab.azure.account_name,
        "account_key": lab.azure.account_key,
    }
    assert {p.name for p in expected} == {"primary.json", "dr.json", "aws.json", "azure.json"}
    for path, data in expected.items():
        assert json.loads(path.read_text()) == data
        assert path.stat().st_mode & 0o077 == 0
    key = lab.replica_key_file.read_text().strip()
    assert len(bytes.fromhex(key)) == 32
    assert lab.replica_key_file.stat().st_mode & 0o077 == 0


def test_temporal_database_is_a_write_ahead_log(lab: LabInfo) -> None:
    """The lab's Temporal writes through SQLite's write-ahead log (``seawall.lab.temporal``): with the
    default rollback journal every commit waited on a sync of the disk the labs share."""
    db = lab.state_dir / "temporal.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal", (
        f"{db} is in journal mode {mode!r}: its Temporal was started without the lab's SQLite pragmas "
        "(by an older Seawall?); `seawall lab down` then `seawall lab up` starts it with them"
    )
