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
    assert "BREACH" in text and "2m05s" in text and "4.0 KiB" in text


def _row(vm: str, **kw: object) -> VMStatus:
    base: dict[str, object] = {
        "vm": vm,
        "source_site": "primary-datacenter",
        "policy": "rpo-30s",
        "rpo_s": 30,
        "threshold_s": 60,
        "scheduled": True,
        "paused": False,
        "last_point": "20261126T010000Z-0123456789abcdef",
        "last_point_at": datetime(2026, 1, 1, tzinfo=UTC),
        "age_s": 12,
        "breach": False,
        "last_bytes_shipped": 123 * 2**20,
        "last_change_path": "hash-compare",
        "running": None,
        "progress": None,
    }
    return VMStatus.model_validate(base | kw)


def test_status_fits_80_columns_and_marks_a_vm_that_is_not_protected() -> None:
    from rich.console import Console

    rows = [
        _row("db-01"),
        _row("a-very-long-vm-name-for-the-estate-01", age_s=400_000, breach=True),
        # Unprotected: no schedule, no point; the old breach column said "ok" for it.
        _row("web-02", scheduled=False, last_point=None, last_point_at=None, age_s=None, breach=False),
        _row("app-01", paused=True),
    ]
    console = Console(width=80, record=True)
    console.print(_table(rows))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    text = "\n".join(lines)
    web = next(line for line in lines if line.startswith("web-02"))
    assert "NOT-PROTECTED" in web and " ok" not in web
    assert "BREACH" in next(line for line in lines if line.startswith("a-very"))
    assert "protected" in next(line for line in lines if line.startswith("db-01"))
    assert "paused" in next(line for line in lines if line.startswith("app-01"))
    assert "4d15h" in text and "12s" in text  # point ages, still readable
