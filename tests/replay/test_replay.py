"""Every recorded history must replay with the current workflow code (determinism, compatibility)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.catalog import ALL_WORKFLOWS

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_there_is_a_history_for_every_workflow() -> None:
    types = set()
    for path in HISTORIES:
        events = json.loads(path.read_text())["events"]
        types.add(events[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])
    defined = {wf.__temporal_workflow_definition.name for wf in ALL_WORKFLOWS}  # type: ignore[attr-defined]
    assert defined <= types, f"no recorded history for {sorted(defined - types)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_with_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter)
    # Raises NondeterminismError (failing the test) when the code no longer matches what ran.
    await replayer.replay_workflow(history)
