"""The CLI's wording of seawall.control's refusals: one line on stderr and the exit code scripts rely
on (2: the input names something not there or not in that state; 1: the operation ran and failed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner

from seawall.cli import after_failover as after_failover_cmd
from seawall.cli import app
from seawall.cli import decisions as decisions_cmd
from seawall.cli import failover as failover_cmd
from seawall.cli import replication as replication_cmd

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Refusing:
    """A Temporal client that refuses every call with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def start_workflow(self, *_: Any, **__: Any) -> Any:
        raise self.error

    def get_workflow_handle(self, *_: Any, **__: Any) -> Any:
        async def execute_update(*_: Any, **__: Any) -> Any:
            raise self.error

        return SimpleNamespace(execute_update=execute_update)

    def get_schedule_handle(self, *_: Any) -> Any:
        async def trigger(overlap: Any = None) -> None:
            raise self.error

        return SimpleNamespace(trigger=trigger)


def run(monkeypatch: pytest.MonkeyPatch, error: BaseException, *argv: str) -> Any:
    async def client(_: Any) -> Refusing:
        return Refusing(error)

    for module in (failover_cmd, decisions_cmd, after_failover_cmd):
        monkeypatch.setattr(module, "temporal_client", client)
    monkeypatch.setattr(replication_cmd, "temporal_client", client)
    monkeypatch.setenv("SEAWALL_INVENTORY", str(EXAMPLES / "inventory.yaml"))
    monkeypatch.setenv("SEAWALL_PLANS_DIR", str(EXAMPLES))
    return CliRunner().invoke(app, list(argv))


NOT_FOUND = RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")


@pytest.mark.parametrize(
    ("error", "argv", "code", "line"),
    [
        (
            WorkflowUpdateFailedError(ApplicationError("gate 'db' is not the one waiting")),
            ("approve", "erp-dr", "--gate", "db"),
            2,
            "approve refused: gate 'db' is not the one waiting",
        ),
        (NOT_FOUND, ("cleanup", "erp-dr"), 2, "no failover of erp-dr is running"),
        (NOT_FOUND, ("abort", "erp-dr", "--reason", "back"), 2, "no failover of erp-dr is running"),
        (
            WorkflowAlreadyStartedError("recover/erp-dr", "RecoveryPlan"),
            ("failover", "erp-dr", "--mode", "test"),
            1,
            "a failover of erp-dr is already running: see `seawall report erp-dr`",
        ),
        (
            NOT_FOUND,
            ("replicate-now", "db-01"),
            2,
            "db-01 is not protected yet: run `seawall protect db-01` first",
        ),
    ],
)
def test_a_refusal_is_one_line_and_an_exit_code(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, argv: tuple[str, ...], code: int, line: str
) -> None:
    result = run(monkeypatch, error, *argv)
    assert result.exit_code == code, result.output
    assert line in " ".join(result.output.split())


def test_no_report_names_the_folder_it_looked_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEAWALL_REPORTS_DIR", str(tmp_path))
    result = run(monkeypatch, NOT_FOUND, "report", "erp-dr", "--run", "r1")
    assert result.exit_code == 2
    assert f"no report for plan 'erp-dr' run r1 in {tmp_path / 'erp-dr'}" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("retry", "erp-dr"), "retry refused: the run is not stopped"),
        (("rollback", "erp-dr", "--reason", "db lost"), "rollback refused: the run is not stopped"),
    ],
)
def test_retry_and_rollback_word_a_refusal(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], line: str
) -> None:
    refused = WorkflowUpdateFailedError(ApplicationError("the run is not stopped"))
    result = run(monkeypatch, refused, *argv)
    assert result.exit_code == 2, result.output
    assert line in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("point", "line"),
    [
        ("yesterday", "--point: 'yesterday' is not an ISO time"),
        ("2026-11-26T01:00:00", "--point: '2026-11-26T01:00:00' needs a time zone"),
    ],
)
def test_a_bad_point_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, point: str, line: str
) -> None:
    started: list[Any] = []

    async def start(*args: Any, **_: Any) -> Any:
        started.append(args)
        raise AssertionError("nothing may start")

    monkeypatch.setattr(failover_cmd.recovery, "start_failover", start)
    result = run(monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "unplanned", "--point", point)
    assert result.exit_code == 2 and started == []
    assert line in " ".join(result.output.split())


def test_point_reaches_the_failover_as_a_zoned_time(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []

    async def start(client: Any, queue: str, inp: Any, **_: Any) -> Any:
        started.append(inp)
        return SimpleNamespace(id="recover/erp-dr", result_run_id="r1")

    monkeypatch.setattr(failover_cmd.recovery, "start_failover", start)
    result = run(
        monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "unplanned", "--point", "2026-11-26T01:00:00Z"
    )
    assert result.exit_code == 0, result.output
    (inp,) = started
    assert (inp.mode, inp.point_time) == ("unplanned", "2026-11-26T01:00:00+00:00")


def test_from_mirror_reaches_the_failover_and_is_refused_for_a_failback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[Any] = []

    async def start(client: Any, queue: str, inp: Any, **_: Any) -> Any:
        started.append(inp)
        return SimpleNamespace(id="recover/erp-dr", result_run_id="r1")

    monkeypatch.setattr(failover_cmd.recovery, "start_failover", start)
    result = run(monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "test", "--from-mirror")
    assert result.exit_code == 0, result.output
    result = run(monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "test")
    assert result.exit_code == 0, result.output
    assert [i.from_mirror for i in started] == [True, False]
    refused = run(
        monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "planned", "--failback", "--from-mirror"
    )
    assert refused.exit_code == 2 and len(started) == 2
    assert "never a mirror" in " ".join(refused.output.split())


def never_started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every start the failover, commit and reprotect verbs ask for (the tests want none)."""
    started: list[Any] = []

    async def start(*args: Any, **_: Any) -> Any:
        started.append(args)
        raise AssertionError("nothing may start")

    for name in ("start_failover", "commit", "reprotect"):
        monkeypatch.setattr(failover_cmd.recovery, name, start)
    return started


@pytest.mark.parametrize(
    "argv",
    [
        ("failover", "erp-dx", "--mode", "test"),
        ("failover", "erp-dx", "--mode", "planned", "--failback"),
        ("commit", "erp-dx", "--run", "r1"),
        ("reprotect", "erp-dx"),
    ],
)
def test_a_plan_the_files_do_not_define_is_refused_with_the_plans_there_are(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]
) -> None:
    started = never_started(monkeypatch)
    result = run(monkeypatch, NOT_FOUND, *argv)
    assert result.exit_code == 2 and started == [], result.output
    assert "no recovery plan named 'erp-dx' (plans: erp-aws, erp-dr, kvm-dr in " in " ".join(
        result.output.split()
    )


def test_an_invalid_plan_or_inventory_is_refused_naming_file_line_and_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = never_started(monkeypatch)
    for f in ("inventory.yaml", "erp-dr.yaml"):
        (tmp_path / f).write_text((EXAMPLES / f).read_text())
    plan_file = tmp_path / "erp-dr.yaml"
    lines = plan_file.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("failure_policy:"))
    lines[at] = "failure_policy: maybe"
    plan_file.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(failover_cmd, "Settings", lambda: _settings(tmp_path))
    result = run(monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "test")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and started == [], result.output
    assert f"plan 'erp-dr' is invalid: {plan_file}:{at + 1}: failure_policy: " in said, said
    (tmp_path / "inventory.yaml").write_text("kind: Inventory\nprotected_vms: [\n")
    result = run(monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "test")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and started == [], result.output
    assert f"{tmp_path / 'inventory.yaml'} is invalid: {tmp_path / 'inventory.yaml'}:" in said, said


def test_where_the_files_are_not_the_worker_decides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An operator's CLI away from the workers' files starts the run; the worker looks the plan up."""
    started: list[Any] = []

    async def start(client: Any, queue: str, inp: Any, **_: Any) -> Any:
        started.append(inp)
        return SimpleNamespace(id="recover/elsewhere", result_run_id="r1")

    monkeypatch.setattr(failover_cmd.recovery, "start_failover", start)
    monkeypatch.setattr(failover_cmd, "Settings", lambda: _settings(tmp_path / "not-here"))
    result = run(monkeypatch, NOT_FOUND, "failover", "elsewhere", "--mode", "test")
    assert result.exit_code == 0, result.output
    assert [i.plan for i in started] == ["elsewhere"]
    assert "test failover of elsewhere started: run r1" in " ".join(result.output.split())


def _settings(folder: Path) -> Any:
    from seawall.runtime.config import Settings

    return Settings(inventory=folder / "inventory.yaml", plans_dir=folder)


@pytest.mark.parametrize("hours", ["-1", "0", "nan", "inf", "337"])
def test_a_drill_time_to_live_out_of_range_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, hours: str
) -> None:
    started = never_started(monkeypatch)
    result = run(monkeypatch, NOT_FOUND, "failover", "erp-dr", "--mode", "test", "--ttl-hours", hours)
    assert result.exit_code == 2 and started == [], result.output
    assert "--ttl-hours: " in result.output and "at most 336 (14 days)" in result.output


def test_an_argument_its_input_model_refuses_is_one_line_naming_the_field() -> None:
    """The CLI's entry point as a process: a model's refusal of an argument is exit 2, no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SEAWALL_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "seawall.cli", "rollback", "erp-dr", "--reason", ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip() == "invalid input: reason: String should have at least 1 character"
