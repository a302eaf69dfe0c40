"""Commit and reprotect over the API (admin; only after a completed real failover), and approvals
checked against the role the plan's gate asks for — over the fake Temporal client of
test_api_endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy

from seawall.api.app import create_app
from seawall.api.auth import parse_tokens
from tests.unit.test_api_endpoints import (
    ADMIN,
    OPERATOR,
    VIEWER,
    Api,
    FakeClient,
    auth,
    make_settings,
    token_file,
)

RUN = "20261126T010000Z-abcd1234"  # the run name FakeDescription gives every run


class Fake(FakeClient):
    """Also starts the after-failover workflows (the API's commit and reprotect)."""

    def __init__(self) -> None:
        super().__init__()
        self.after: list[tuple[str, Any, dict[str, Any]]] = []

    async def start_workflow(self, workflow: str, inp: Any, **kw: Any) -> Any:
        if workflow in ("CommitFailover", "Reprotect"):
            self.after.append((workflow, inp, kw))
            return SimpleNamespace(id=kw["id"], result_run_id="after-run-1")
        return await super().start_workflow(workflow, inp, **kw)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    fake = Fake()
    settings = make_settings(tmp_path)

    async def factory() -> Any:
        return fake

    app = create_app(settings, parse_tokens(token_file()), factory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield Api(http, fake, settings)


def failed_over(
    api: Api, mode: str = "planned", status: WorkflowExecutionStatus = WorkflowExecutionStatus.COMPLETED
) -> None:
    run = api.fake.running(mode=mode)
    run.status = status


async def test_commit_and_reprotect_start_their_workflows_after_a_real_failover(api: Api) -> None:
    failed_over(api)
    fake: Fake = api.fake  # type: ignore[assignment]
    committed = await api.http.post("/v1/plans/erp-dr/commit", json={"run": RUN}, headers=auth(ADMIN))
    assert committed.status_code == 202, committed.text
    assert committed.json() == {
        "plan": "erp-dr",
        "action": "commit",
        "workflow_id": "commit/erp-dr",
        "run_id": "after-run-1",
    }
    again = await api.http.post("/v1/plans/erp-dr/reprotect", headers=auth(ADMIN))
    assert again.status_code == 202 and again.json()["workflow_id"] == "reprotect/erp-dr"
    assert [(w, i.plan, getattr(i, "run", None)) for w, i, _ in fake.after] == [
        ("CommitFailover", "erp-dr", RUN),
        ("Reprotect", "erp-dr", None),
    ]
    # A repeat attaches to the one running instead of starting a second.
    assert all(kw["id_conflict_policy"] == WorkflowIDConflictPolicy.USE_EXISTING for _, _, kw in fake.after)
    assert [(a["path"].rsplit("/", 1)[-1], a["status"], a.get("run")) for a in api.audit()] == [
        ("commit", 202, RUN),
        ("reprotect", 202, None),
    ]


@pytest.mark.parametrize(
    ("mode", "status", "why"),
    [
        ("test", WorkflowExecutionStatus.COMPLETED, "was a test run, not a real failover"),
        # commit: "is still running (phase)" (one not stopped for the operator); reprotect: "is running".
        ("planned", WorkflowExecutionStatus.RUNNING, "running"),
        ("unplanned", WorkflowExecutionStatus.FAILED, "is failed, not a completed failover"),
    ],
)
async def test_commit_and_reprotect_are_refused_unless_the_newest_run_is_a_completed_failover(
    api: Api, mode: str, status: WorkflowExecutionStatus, why: str
) -> None:
    failed_over(api, mode, status)
    for path, body in (("commit", {"run": RUN}), ("reprotect", None)):
        answer = await api.http.post(f"/v1/plans/erp-dr/{path}", json=body, headers=auth(ADMIN))
        assert answer.status_code == 409, answer.text
        assert why in answer.json()["detail"]
    assert api.fake.after == []  # type: ignore[attr-defined]


async def test_commit_names_the_run_it_makes_final(api: Api) -> None:
    failed_over(api)
    other = "20261126T020000Z-0000ffff"
    answer = await api.http.post("/v1/plans/erp-dr/commit", json={"run": other}, headers=auth(ADMIN))
    assert answer.status_code == 409 and f"run {other} is not its newest failover" in answer.json()["detail"]
    bad = await api.http.post("/v1/plans/erp-dr/commit", json={"run": "../../etc"}, headers=auth(ADMIN))
    assert bad.status_code == 422
    none = await api.http.post("/v1/plans/erp-dr/commit", json={"run": RUN}, headers=auth(ADMIN))
    assert none.status_code == 202  # the same run, once it is the newest completed failover


async def test_only_an_admin_in_scope_commits_or_reprotects(api: Api) -> None:
    failed_over(api)
    for role in (VIEWER, OPERATOR):
        for path, body in (("commit", {"run": RUN}), ("reprotect", None)):
            answer = await api.http.post(f"/v1/plans/erp-dr/{path}", json=body, headers=auth(role))
            assert answer.status_code == 403, (role, path)
    scoped = await api.http.post("/v1/plans/erp-dr/reprotect", headers=auth(ADMIN, "web"))
    assert scoped.status_code == 404  # out of scope answers as unknown
    assert api.fake.after == []  # type: ignore[attr-defined]


async def test_a_gate_for_admins_is_refused_to_an_operator(api: Api) -> None:
    plan_file = api.settings.plans_dir / "erp-dr.yaml"
    data = yaml.safe_load(plan_file.read_text())
    data["gates"][0]["role"] = "admin"
    plan_file.write_text(yaml.safe_dump(data, sort_keys=False))
    api.settings.api_plans_check_s = 0
    run = api.fake.running()
    refused = await api.http.post(
        "/v1/plans/erp-dr/approve", json={"gate": "web-go-ahead"}, headers=auth(OPERATOR)
    )
    assert refused.status_code == 403 and "needs admin" in refused.json()["detail"]
    assert run.updates == []  # nothing reached the run
    ok = await api.http.post("/v1/plans/erp-dr/approve", json={"gate": "web-go-ahead"}, headers=auth(ADMIN))
    assert ok.status_code == 200, ok.text
    plans = await api.http.get("/v1/plans", headers=auth(VIEWER))
    web = [g for p in plans.json() if p["name"] == "erp-dr" for g in p["groups"] if g["gate"]]
    assert web[0]["gate_approvers"] == "admin"


async def test_confirming_a_fenced_source_is_for_an_admin(api: Api) -> None:
    run = api.fake.running(mode="unplanned")
    run.pending_gate = "source-fenced"
    refused = await api.http.post(
        "/v1/plans/erp-dr/approve", json={"gate": "source-fenced"}, headers=auth(OPERATOR)
    )
    assert refused.status_code == 403
    ok = await api.http.post("/v1/plans/erp-dr/approve", json={"gate": "source-fenced"}, headers=auth(ADMIN))
    assert ok.status_code == 200
