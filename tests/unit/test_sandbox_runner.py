"""The worker's sandbox runner validates each workflow class once per process, and still sandboxes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio import workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from seawall.runtime.sandbox import ValidatedOnceRunner, sandbox_runner
from workflows.catalog import ALL_WORKFLOWS
from workflows.probe import ProbeSiteWorkflow


def _defn(cls: type) -> Any:
    return workflow._Definition.must_from_class(cls)


def test_a_class_is_validated_once_and_a_failure_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[type] = []
    fail = {"next": True}

    def prepare(self: SandboxedWorkflowRunner, defn: Any) -> None:
        calls.append(defn.cls)
        if fail["next"]:
            fail["next"] = False
            raise RuntimeError("import failed in the sandbox")

    monkeypatch.setattr(SandboxedWorkflowRunner, "prepare_workflow", prepare)
    runner = ValidatedOnceRunner()
    with pytest.raises(RuntimeError, match="import failed"):
        runner.prepare_workflow(_defn(ProbeSiteWorkflow))
    runner.prepare_workflow(_defn(ProbeSiteWorkflow))  # tried again after the failure
    runner.prepare_workflow(_defn(ProbeSiteWorkflow))  # remembered
    assert calls == [ProbeSiteWorkflow, ProbeSiteWorkflow]
    # Another runner has its own memory.
    ValidatedOnceRunner().prepare_workflow(_defn(ProbeSiteWorkflow))
    assert calls == [ProbeSiteWorkflow] * 3


def test_every_seawall_workflow_passes_the_real_sandbox_validation() -> None:
    async def validate() -> None:  # the sandbox's validation needs a running loop, as in a Worker
        runner = ValidatedOnceRunner()
        for cls in ALL_WORKFLOWS:
            runner.prepare_workflow(_defn(cls))
        assert runner._validated == set(ALL_WORKFLOWS)

    asyncio.run(validate())


def test_the_process_shares_one_runner_with_the_default_restrictions() -> None:
    runner = sandbox_runner()
    assert isinstance(runner, SandboxedWorkflowRunner) and runner is sandbox_runner()
    assert runner.restrictions is SandboxedWorkflowRunner().restrictions
