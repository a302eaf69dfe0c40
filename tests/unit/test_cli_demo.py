"""`seawall demo up` when an operation of the demo fails: its reason in one line, exit 1, no traceback."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from seawall.cli import app
from seawall.control.errors import Failed


def test_a_failed_protect_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import seawall.lab
    from seawall.lab import demo

    def start(_: Any) -> dict[str, int]:
        raise Failed("replica of 'app-02': points/app-02/p.json is encrypted with key id 'k-1'")

    monkeypatch.setattr(seawall.lab, "load_lab", lambda: object())
    monkeypatch.setattr(demo, "start", start)
    result = CliRunner().invoke(app, ["demo", "up"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "demo: replica of 'app-02': points/app-02/p.json is encrypted with key id 'k-1'" in said
    assert "seawall demo down" in said
    assert isinstance(result.exception, SystemExit)  # the exit, not the Failed: no traceback


def test_the_demo_writes_its_reports_where_seawall_report_and_the_api_look() -> None:
    from seawall.lab import demo
    from seawall.runtime.config import Settings

    default = Settings.model_fields["reports_dir"].default
    assert demo.REPO / default == demo.REPORTS_DIR  # `seawall report` from the checkout finds them
