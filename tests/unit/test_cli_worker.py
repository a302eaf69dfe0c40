"""`seawall worker`: what it refuses before it connects (exit 2), and an unreachable Temporal (exit 3),
each in one line that says what to fix, never a traceback. The worker runs as a process here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def worker(*args: str, **env: str) -> tuple[int, str]:
    environ = {
        **os.environ,
        "SEAWALL_INVENTORY": str(EXAMPLES / "inventory.yaml"),
        "SEAWALL_TEMPORAL_ADDRESS": "127.0.0.1:1",  # nothing listens: only the exit-3 test gets that far
        "SEAWALL_METRICS_PORT": "0",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "seawall.cli", "worker", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr.strip()


def test_a_site_the_inventory_does_not_name_is_refused_with_the_sites_it_has() -> None:
    code, err = worker("--site", "primary", "--site", "prod")
    assert code == 2
    assert err == f"--site: 'prod' is not a site of {EXAMPLES / 'inventory.yaml'} (sites: primary, dr, aws)"


def test_an_invalid_inventory_is_refused_naming_file_line_and_field(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text((EXAMPLES / "inventory.yaml").read_text() + "protected_vms: [\n")
    code, err = worker("--site", "primary", SEAWALL_INVENTORY=str(inventory))
    assert code == 2 and err.startswith(f"{inventory}:") and "invalid YAML" in err, err


def test_an_unreachable_temporal_is_exit_3_in_one_line() -> None:
    code, err = worker("--site", "dr", "--no-orchestration")
    assert code == 3, err
    assert err.splitlines()[-1].startswith("cannot reach Temporal at 127.0.0.1:1: "), err
