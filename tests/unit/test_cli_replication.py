from __future__ import annotations

from datetime import UTC, datetime

from seawall.cli.replication import _table, human_bytes
from seawall.control.status import VMStatus


def test_human_bytes() -> None:
    assert human_bytes(None) == "-"
    assert human_bytes(769) == "769 B"
    assert human_bytes(12 * 1024) == "12.0 KiB"
    assert human_bytes(3 * 2**20 + 2**19) == "3.5 MiB"
    assert human_bytes(5 * 2**40) == "5120.0 GiB"


def test_status_table_flags_a_breach_and_shows_progress() -> None:
    from rich.console import Console

    row = VMStatus(
        vm="db-01",
        source_site="primary",
        policy="rpo-30s",
        rpo_s=30,
        threshold_s=60,
        scheduled=True,
        paused=False,
        last_point="p1",
        last_point_at=datetime(2026, 1, 1, tzinfo=UTC),
        age_s=125,
        breach=True,
        last_bytes_shipped=4096,
        last_change_path="hash-compare",
        running=None,
        progress=None,
    )
    console = Console(width=200, record=True)
    console.print(_table([row]))
    text = console.export_text()
    assert "BREACH" in text and "0:02:05" in text and "4.0 KiB" in text and "hash-compare" in text
