"""The HTTP API over a fake Temporal client: role x endpoint x scope, problems, audit, idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from seawall.api.app import create_app
from seawall.api.auth import hash_token, parse_tokens
from seawall.api.deps import ApiSettings
from seawall.api.idempotency import MEMO_KEY, MEMO_REQUEST
from seawall.contract.messages import Approval, FailoverInput, RunReport
from seawall.contract.search import SA_MODE, SA_REQUEST, SA_RUN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"


# --- a fake Temporal client: just what the API calls, with the server's answers ------------------------


@dataclass
class FakeRun:
    id: str
    run_id: str
    mode: str
    memo: dict[str, Any]
    status: WorkflowExecutionStatus = WorkflowExecutionStatus.RUNNING
    pending_gate: str | None = "web-go-ahead"
    approvals: list[Approval] = field(default_factory=list)
    updates: list[tuple[str, Any]] = field(default_factory=list)
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_key: str | None = None  # the SeawallRequest search attribute it was started with


class FakeDescription:
    def __init__(self, run: FakeRun) -> None:
        self._run = run
        self.id, self.run_id, self.status = run.id, run.run_id, run.status
        self.start_time, self.close_time = run.start_time, None
        self.typed_search_attributes = TypedSearchAttributes(
            [SearchAttributePair(SA_MODE, run.mode), SearchAttributePair(SA_RUN, "20261126T010000Z-abcd1234")]
        )

    async def memo(self) -> dict[str, Any]:
        return dict(self._run.memo)


class FakeHandle:
    def __init__(self, client: FakeClient, workflow_id: str, run_id: str | None) -> None:
        self.client, self.id, self.run_id = client, workflow_id, run_id

    def _run(self) -> FakeRun:
        runs = self.client.runs.get(self.id, [])
        if self.run_id is not None:
            runs = [r for r in runs if r.run_id == self.run_id]
        if not runs:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
        return runs[-1]

    async def describe(self) -> FakeDescription:
        await asyncio.sleep(0)  # a server round trip: concurrent requests interleave here
        return FakeDescription(self._run())

    async def query(self, name: str, **_: Any) -> dict[str, Any]:
        run = self._run()
        return {
            "phase": f"waiting for approval: {run.pending_gate}" if run.pending_gate else "drill running",
            "vms": {"db-01": "healthy"},
            "pending_gate": run.pending_gate,
            "approvals": [a.model_dump() for a in run.approvals],
            "aborted": False,
        }

    async def execute_update(self, name: str, arg: Any = None, **_: Any) -> Any:
        run = self._run()
        if run.status != WorkflowExecutionStatus.RUNNING:
            raise RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
        run.updates.append((name, arg))
        if name == "approve":
            if arg.gate != run.pending_gate:
                raise WorkflowUpdateFailedError(ApplicationError(f"gate {arg.gate!r} is not the one waiting"))
            approval = Approval(gate=arg.gate, approved=True, by=arg.by, at="2026-11-26T01:00:00+00:00")
            run.approvals.append(approval)
            run.pending_gate = None
            return approval
        if name == "cleanup" and run.mode != "test":
            raise WorkflowUpdateFailedError(ApplicationError("only a test failover is cleaned up"))
        return f"{name} requested"


class FakeSchedule:
    def __init__(self, client: FakeClient, schedule_id: str) -> None:
        self.client, self.id = client, schedule_id

    async def trigger(self, overlap: Any = None) -> None:
        if self.id not in self.client.schedules:
            raise RPCError("schedule not found", RPCStatusCode.NOT_FOUND, b"")
        self.client.triggered.append(self.id)

    async def describe(self) -> Any:
        if self.id not in self.client.schedules:
            raise RPCError("schedule not found", RPCStatusCode.NOT_FOUND, b"")
        # As status reads it: its state, its interval (none here: the inventory's policy holds), its action.
        schedule = SimpleNamespace(
            state=SimpleNamespace(paused=False), spec=SimpleNamespace(intervals=[]), action=None
        )
        return SimpleNamespace(schedule=schedule, info=SimpleNamespace(created_at=None))


class FakeWorkflowService:
    """The raw service calls the API makes: DescribeTaskQueue (``/v1/sites``), no workers polling."""

    async def describe_task_queue(self, req: Any) -> Any:
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueResponse

        return DescribeTaskQueueResponse()


class FakeClient:
    namespace = "default"

    def __init__(self) -> None:
        self.workflow_service = FakeWorkflowService()
        self.runs: dict[str, list[FakeRun]] = {}
        self.schedules = {f"replicate/{vm}" for vm in ("db-01", "app-01", "app-02", "web-01", "web-02")}
        self.triggered: list[str] = []
        self.starts: list[FailoverInput] = []
        self.conflicts = 0
        self.start_barrier: asyncio.Barrier | None = None

    def running(
        self, plan: str = "erp-dr", mode: str = "test", memo: dict[str, Any] | None = None
    ) -> FakeRun:
        run = FakeRun(f"recover/{plan}", str(uuid.uuid4()), mode, memo or {})
        self.runs.setdefault(run.id, []).append(run)
        return run

    async def start_workflow(
        self,
        workflow: str,
        inp: FailoverInput,
        *,
        id: str,
        id_conflict_policy: Any,
        memo: Any,
        search_attributes: TypedSearchAttributes | None = None,
        **_: Any,
    ) -> Any:
        assert workflow == "RecoveryPlan" and id_conflict_policy == WorkflowIDConflictPolicy.FAIL
        if self.start_barrier is not None:  # a race on demand: every start is in flight at once
            await self.start_barrier.wait()
        existing = self.runs.get(id, [])
        if existing and existing[-1].status == WorkflowExecutionStatus.RUNNING:
            self.conflicts += 1
            raise WorkflowAlreadyStartedError(id, workflow)
        self.starts.append(inp)
        run = FakeRun(id, str(uuid.uuid4()), inp.mode, dict(memo))
        run.request_key = search_attributes.get(SA_REQUEST) if search_attributes is not None else None
        self.runs.setdefault(id, []).append(run)
        return SimpleNamespace(id=id, result_run_id=run.run_id)

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None, **_: Any) -> FakeHandle:
        return FakeHandle(self, workflow_id, run_id)

    def get_schedule_handle(self, schedule_id: str) -> FakeSchedule:
        return FakeSchedule(self, schedule_id)

    async def list_schedules(self) -> AsyncIterator[Any]:
        """The schedule listing the fleet's status starts from (as ``FakeSchedule.describe`` has them)."""

        async def listed() -> AsyncIterator[Any]:
            for sid in sorted(self.schedules):
                schedule = SimpleNamespace(
                    state=SimpleNamespace(paused=False), spec=SimpleNamespace(intervals=[])
                )
                yield SimpleNamespace(id=sid, schedule=schedule)

        return listed()

    def list_workflows(self, query: str, **_: Any) -> AsyncIterator[Any]:
        """Visibility, as far as the API asks it: runs of one workflow id carrying one request key."""
        wanted_id = re.search(r"WorkflowId = '([^']+)'", query)
        wanted_key = re.search(r"SeawallRequest = '([0-9a-f]+)'", query)
        since = re.search(r"StartTime > '([^']+)'", query)
        after = datetime.fromisoformat(since.group(1)) if since else datetime.min.replace(tzinfo=UTC)
        runs = self.runs.get(wanted_id.group(1), []) if wanted_id else []
        found = [
            r
            for r in reversed(runs)
            if wanted_key and r.request_key == wanted_key.group(1) and r.start_time > after
        ]

        async def listed() -> AsyncIterator[Any]:
            for run in found:
                yield SimpleNamespace(id=run.id, run_id=run.run_id)

        return listed()


# --- the app under test -------------------------------------------------------------------------------

TOKENS = {
    (role, scope): f"tok-{role}-{scope}"
    for role in (VIEWER, OPERATOR, ADMIN)
    for scope in ("all", "web")  # "web": scoped to the web-dr plan only
}


def token_file() -> str:
    entries = [
        {
            "name": f"{role}-{scope}",
            "sha256": hash_token(tok),
            "role": role,
            "plans": "*" if scope == "all" else ["web-dr"],
        }
        for (role, scope), tok in TOKENS.items()
    ]
    return yaml.safe_dump({"tokens": entries})


def write_plans(folder: Path) -> Path:
    """erp-dr as shipped, and web-dr: its web tier alone (a department's own plan, for scopes)."""
    folder.mkdir(parents=True, exist_ok=True)
    erp = yaml.safe_load((EXAMPLES / "erp-dr.yaml").read_text())
    erp["inventory"] = str(EXAMPLES / "inventory.yaml")
    (folder / "erp-dr.yaml").write_text(yaml.safe_dump(erp, sort_keys=False))
    web = dict(erp, name="web-dr", groups=[g for g in erp["groups"] if g["name"] == "web"])
    for vm in web["groups"][0]["vms"]:
        vm.pop("depends_on", None)
    (folder / "web-dr.yaml").write_text(yaml.safe_dump(web, sort_keys=False))
    return folder


@dataclass
class Api:
    http: httpx.AsyncClient
    fake: FakeClient
    settings: ApiSettings

    def audit(self) -> list[dict[str, Any]]:
        path = self.settings.audit_log
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def make_settings(tmp: Path) -> ApiSettings:
    return ApiSettings(
        inventory=EXAMPLES / "inventory.yaml",
        plans_dir=write_plans(tmp / "plans"),
        reports_dir=tmp / "reports",
        audit_log=tmp / "audit.log",
        orchestration_queue="test-queue",
    )


def write_report(reports: Path, plan: str, run: str) -> None:
    report = RunReport(
        plan=plan,
        run=run,
        mode="test",
        status="completed",
        started_at="2026-11-26T01:00:00+00:00",
        finished_at="2026-11-26T01:10:00+00:00",
        vms=[],
        failed_vms={},
        hooks=[],
        approvals=[],
        groups=[],
    )
    (reports / plan).mkdir(parents=True, exist_ok=True)
    (reports / plan / f"{run}.json").write_text(report.model_dump_json())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    fake = FakeClient()
    settings = make_settings(tmp_path)

    async def factory() -> Any:
        return fake

    app = create_app(settings, parse_tokens(token_file()), factory)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield Api(http, fake, settings)


def auth(role: str, scope: str = "all") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[(role, scope)]}"}


# --- role x endpoint x scope -----------------------------------------------------------------------------

RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    need: str  # the least role that may call it
    body: dict[str, Any] | None = None
    ok: int = 200
    subject: str | None = None  # the plan (or a VM's plan) a scope must include; None: a list, filtered
    running: bool = True  # a run of the plan is going when the call is made

    @property
    def id(self) -> str:
        mode = f"[{self.body['mode']}]" if self.body and "mode" in self.body else ""
        return f"{self.method} {self.path}{mode}"


ENDPOINTS = [
    Endpoint("GET", "/v1/plans", VIEWER),
    Endpoint("GET", "/v1/vms", VIEWER),
    Endpoint("GET", "/v1/plans/erp-dr/failovers/current", VIEWER, subject="erp-dr"),
    Endpoint("GET", "/v1/plans/erp-dr/report", VIEWER, subject="erp-dr"),
    Endpoint("GET", "/v1/vms/db-01/points", VIEWER, subject="erp-dr"),
    Endpoint("POST", "/v1/plans/erp-dr/failovers", OPERATOR, {"mode": "test"}, 202, "erp-dr", running=False),
    Endpoint("POST", "/v1/plans/erp-dr/failovers", ADMIN, {"mode": "planned"}, 202, "erp-dr", running=False),
    Endpoint(
        "POST", "/v1/plans/erp-dr/failovers", ADMIN, {"mode": "unplanned"}, 202, "erp-dr", running=False
    ),
    Endpoint("POST", "/v1/plans/erp-dr/approve", OPERATOR, {"gate": "web-go-ahead"}, subject="erp-dr"),
    Endpoint("POST", "/v1/plans/erp-dr/cleanup", OPERATOR, subject="erp-dr"),
    Endpoint("POST", "/v1/plans/erp-dr/abort", ADMIN, {"reason": "source is back"}, subject="erp-dr"),
    Endpoint("POST", "/v1/plans/erp-dr/retry", ADMIN, {"comment": "db fixed"}, subject="erp-dr"),
    Endpoint("POST", "/v1/plans/erp-dr/rollback", ADMIN, {"reason": "db is lost"}, subject="erp-dr"),
    Endpoint("POST", "/v1/vms/db-01/replicate", OPERATOR, ok=202, subject="erp-dr"),
    # The same, on the plan (and a VM) the scoped tokens hold.
    Endpoint("GET", "/v1/plans/web-dr/failovers/current", VIEWER, subject="web-dr"),
    Endpoint("GET", "/v1/vms/web-01/points", VIEWER, subject="web-dr"),
    Endpoint("POST", "/v1/plans/web-dr/failovers", OPERATOR, {"mode": "test"}, 202, "web-dr", running=False),
    Endpoint(
        "POST", "/v1/plans/web-dr/failovers", ADMIN, {"mode": "unplanned"}, 202, "web-dr", running=False
    ),
    Endpoint("POST", "/v1/plans/web-dr/approve", OPERATOR, {"gate": "web-go-ahead"}, subject="web-dr"),
    Endpoint("POST", "/v1/plans/web-dr/abort", ADMIN, {"reason": "drill over"}, subject="web-dr"),
    Endpoint("POST", "/v1/vms/web-02/replicate", OPERATOR, ok=202, subject="web-dr"),
]
CALLERS = [*TOKENS, ("none", ""), ("bad", "")]


def expected(endpoint: Endpoint, role: str, scope: str) -> int:
    if role in ("none", "bad"):
        return 401
    if RANK[role] < RANK[endpoint.need]:
        return 403
    if scope == "web" and endpoint.subject not in (None, "web-dr"):
        return 404  # out of scope answers exactly as unknown
    return endpoint.ok


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: "-".join(filter(None, c)))
async def test_role_and_scope_matrix(api: Api, endpoint: Endpoint, caller: tuple[str, str]) -> None:
    role, scope = caller
    for plan in ("erp-dr", "web-dr"):
        write_report(api.settings.reports_dir, plan, "20261126T010000Z-abcd1234")
        if endpoint.running:
            api.fake.running(plan)
    headers = (
        {} if role == "none" else {"Authorization": "Bearer nope"} if role == "bad" else auth(role, scope)
    )
    response = await api.http.request(endpoint.method, endpoint.path, json=endpoint.body, headers=headers)
    want = expected(endpoint, role, scope)
    assert response.status_code == want, response.text
    if want in (401, 403):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"], "a denial says why"
    if want == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    mutating = endpoint.method == "POST"
    assert len(api.audit()) == (1 if mutating and want < 400 else 0), api.audit()


async def test_scoped_lists_are_filtered(api: Api) -> None:
    everything = await api.http.get("/v1/plans", headers=auth(VIEWER))
    assert {p["name"] for p in everything.json()} == {"erp-dr", "web-dr"}
    plans = await api.http.get("/v1/plans", headers=auth(VIEWER, "web"))
    assert [p["name"] for p in plans.json()] == ["web-dr"]
    assert plans.json()[0]["groups"] == [
        {"name": "web", "vms": ["web-01", "web-02"], "gate": "web-go-ahead", "gate_approvers": None}
    ]
    vms = await api.http.get("/v1/vms", headers=auth(VIEWER, "web"))
    assert [v["vm"] for v in vms.json()] == ["web-01", "web-02"]
    all_vms = await api.http.get("/v1/vms", headers=auth(VIEWER))
    assert [v["vm"] for v in all_vms.json()] == ["db-01", "app-01", "app-02", "web-01", "web-02"]
    # No cycles yet while protected: the worst breach (no verified point at all).
    assert all(v["scheduled"] and v["breach"] and v["last_point"] is None for v in all_vms.json())


# --- bad input: problem+json, never a 500 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v1/plans/payroll/failovers", {"mode": "test"}, 404, "no recovery plan named 'payroll'"),
        ("GET", "/v1/plans/payroll/report", None, 404, "no recovery plan named 'payroll'"),
        ("POST", "/v1/plans/erp-dr/failovers", {"mode": "sideways"}, 422, "mode"),
        ("POST", "/v1/plans/erp-dr/failovers", {"mode": "test", "ttl_hours": -1}, 422, "ttl_hours"),
        ("POST", "/v1/plans/erp-dr/failovers", {"mode": "test", "ttl_hours": "x"}, 422, "ttl_hours"),
        (
            "POST",
            "/v1/plans/erp-dr/failovers",
            {"mode": "test", "point_time": "yesterday"},
            422,
            "point_time",
        ),
        (
            "POST",
            "/v1/plans/erp-dr/failovers",
            {"mode": "test", "point_time": "2026-11-26T01:00:00"},
            422,
            "zone",
        ),
        ("POST", "/v1/plans/erp-dr/failovers", {"mode": "test", "extra": 1}, 422, "extra"),
        ("POST", "/v1/plans/erp-dr/failovers", {}, 422, "mode"),
        ("POST", "/v1/plans/erp-dr/failovers", [1, 2], 422, ""),
        ("POST", "/v1/plans/erp-dr/approve", {"gate": ""}, 422, "gate"),
        ("POST", "/v1/plans/erp-dr/abort", {"reason": ""}, 422, "reason"),
        ("GET", "/v1/vms/nope/points", None, 404, "no protected VM named 'nope'"),
        ("GET", "/v1/vms/db-01/points?limit=0", None, 422, "limit"),
        ("GET", "/v1/plans/erp-dr/failovers/current", None, 404, "no failover of erp-dr has been started"),
        ("GET", "/v1/plans/erp-dr/failovers/not-a-run", None, 404, "no run not-a-run"),
        (
            "POST",
            "/v1/plans/erp-dr/approve",
            {"gate": "web-go-ahead"},
            409,
            "no failover of erp-dr is running",
        ),
        ("POST", "/v1/plans/erp-dr/cleanup", None, 409, "no failover of erp-dr is running"),
        ("GET", "/v1/plans/erp-dr/report", None, 404, "no report"),
        ("GET", "/v1/nothing-here", None, 404, "Not Found"),
        ("DELETE", "/v1/plans", None, 405, "Method Not Allowed"),
    ],
)
async def test_bad_input_is_a_problem(
    api: Api, method: str, path: str, body: Any, status: int, needle: str
) -> None:
    response = await api.http.request(method, path, json=body, headers=auth(ADMIN))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("urn:seawall:problem:")
    assert needle in problem["detail"], problem


async def test_malformed_json_and_oversize_bodies(api: Api) -> None:
    headers = {**auth(ADMIN), "Content-Type": "application/json"}
    bad = await api.http.post("/v1/plans/erp-dr/failovers", content=b'{"mode": "te', headers=headers)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    big = json.dumps({"mode": "test", "pad": "x" * 70_000}).encode()
    over = await api.http.post("/v1/plans/erp-dr/failovers", content=big, headers=headers)
    assert over.status_code == 413 and over.json()["title"] == "Body too large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"x" * 8192

    chunked = await api.http.post("/v1/plans/erp-dr/failovers", content=chunks(), headers=headers)
    assert chunked.status_code == 413
    # A stranger's malformed body is refused for want of a token, before anything reads it as JSON.
    stranger = await api.http.post(
        "/v1/plans/erp-dr/failovers", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert stranger.status_code == 401
    assert api.fake.starts == [] and api.audit() == []


async def test_unknown_query_parameters_are_refused(api: Api) -> None:
    """A misspelt parameter must not silently mean its default (the newest report, the newest point)."""
    bad = await api.http.get("/v1/plans/erp-dr/report?rnu=20261126T010000Z-abcd1234", headers=auth(VIEWER))
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert "'rnu'" in bad.json()["detail"] and "run" in bad.json()["detail"]
    empty = await api.http.get("/v1/plans/erp-dr/report?=0.0", headers=auth(VIEWER))
    assert empty.status_code == 400
    ok = await api.http.get("/v1/plans", headers=auth(VIEWER))
    assert ok.status_code == 200


async def test_wrong_role_for_the_mode_says_why(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="seawall.api")
    response = await api.http.post(
        "/v1/plans/erp-dr/failovers", json={"mode": "planned"}, headers=auth(OPERATOR)
    )
    assert response.status_code == 403
    assert "a planned failover needs admin" in response.json()["detail"]
    scoped = await api.http.get("/v1/plans/erp-dr/report", headers=auth(ADMIN, "web"))
    unknown = await api.http.get("/v1/plans/payroll/report", headers=auth(ADMIN, "web"))
    assert scoped.status_code == unknown.status_code == 404
    # Out of scope and unknown are the same answer, naming no other plan.
    assert scoped.json() == {**unknown.json(), "detail": "no recovery plan named 'erp-dr'"}
    assert "web-dr" not in scoped.text and "web-dr" not in unknown.text
    stranger = await api.http.get("/v1/plans", headers={"Authorization": "Bearer guessed-token-1234"})
    assert stranger.status_code == 401
    # Denials are logged for whoever watches for intrusions, without the presented token.
    assert "403 POST /v1/plans/erp-dr/failovers for operator-all: role operator may start" in caplog.text
    assert "401 GET /v1/plans from" in caplog.text and "guessed-token-1234" not in caplog.text


async def test_temporal_unreachable_is_503(tmp_path: Path) -> None:
    async def down() -> Any:
        raise RuntimeError("Failed client connect: connection refused")

    app = create_app(make_settings(tmp_path), parse_tokens(token_file()), down)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        response = await http.get("/v1/vms", headers=auth(VIEWER))
        assert response.status_code == 503 and "cannot reach Temporal" in response.json()["detail"]
        start = await http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=auth(ADMIN))
        assert start.status_code == 503
        # Allowed but failed: still audited, with the outcome.
        [line] = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
        assert line["status"] == 503 and line["who"] == "admin-all"


# --- starting, idempotency, updates, audit ------------------------------------------------------------------


async def test_start_returns_the_run_and_links(api: Api) -> None:
    response = await api.http.post(
        "/v1/plans/erp-dr/failovers",
        json={"mode": "test", "ttl_hours": 2, "point_time": "2026-11-26T01:00:00Z"},
        headers=auth(OPERATOR),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    run_id = api.fake.runs["recover/erp-dr"][-1].run_id
    assert body["workflow_id"] == "recover/erp-dr" and body["run_id"] == run_id and body["mode"] == "test"
    assert body["links"]["self"] == f"/v1/plans/erp-dr/failovers/{run_id}"
    assert body["links"]["ui"].endswith(f"/workflows/recover%2Ferp-dr/{run_id}/history")
    [inp] = api.fake.starts
    assert inp.ttl_s == 7200 and inp.point_time == "2026-11-26T01:00:00+00:00"
    again = await api.http.get(body["links"]["self"], headers=auth(VIEWER))
    assert again.json()["run_id"] == run_id and again.json()["started_by"] == "operator-all"
    [line] = api.audit()
    assert line["who"] == "operator-all" and line["mode"] == "test" and line["run_id"] == run_id
    assert line["method"] == "POST" and line["path"] == "/v1/plans/erp-dr/failovers" and line["status"] == 202
    assert datetime.fromisoformat(line["at"]).tzinfo is not None and line["plan"] == "erp-dr"


async def test_start_from_the_mirror_reaches_the_run(api: Api) -> None:
    from seawall.api.schemas import FailoverRequest

    response = await api.http.post(
        "/v1/plans/erp-dr/failovers", json={"mode": "test", "from_mirror": True}, headers=auth(OPERATOR)
    )
    assert response.status_code == 202, response.text
    [inp] = api.fake.starts
    assert inp.from_mirror
    # The same request with and without the mirror is not the same request (idempotency keys).
    plain, mirrored = FailoverRequest(mode="test"), FailoverRequest(mode="test", from_mirror=True)
    assert plain.fingerprint() != mirrored.fingerprint()
    # A request recorded before the field existed fingerprints as it did then.
    assert (
        plain.fingerprint()
        == hashlib.sha256(b'{"mode":"test","point_time":null,"ttl_hours":null}').hexdigest()
    )


async def test_idempotency_key_returns_the_same_run(api: Api) -> None:
    headers = {**auth(OPERATOR), "Idempotency-Key": "incident-4711"}
    first = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=headers)
    second = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["run_id"] == second.json()["run_id"]
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert len(api.fake.starts) == 1
    # The key lives in the memo hashed (with the token's name), never as given.
    memo = api.fake.runs["recover/erp-dr"][-1].memo
    assert "incident-4711" not in json.dumps(memo) and len(memo[MEMO_KEY]) == 64 and memo[MEMO_REQUEST]
    # Another key or no key: a second failover, refused.
    for other in ({**auth(OPERATOR), "Idempotency-Key": "incident-4712"}, auth(OPERATOR)):
        conflict = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=other)
        assert conflict.status_code == 409
        assert conflict.json()["detail"] == "a failover of erp-dr is already running"
    # Another token with the same key neither attaches to nor learns of that run.
    foreign = await api.http.post(
        "/v1/plans/erp-dr/failovers",
        json={"mode": "test"},
        headers={**auth(ADMIN), "Idempotency-Key": "incident-4711"},
    )
    assert foreign.status_code == 409 and "another caller" in foreign.json()["detail"]
    assert first.json()["run_id"] not in foreign.text
    # The same key with another request is a client error, not a replay.
    changed = await api.http.post(
        "/v1/plans/erp-dr/failovers", json={"mode": "test", "ttl_hours": 1}, headers=headers
    )
    assert changed.status_code == 422 and "different request" in changed.json()["detail"]
    # After the run has ended, a late retry still gets that run back rather than a new failover.
    api.fake.runs["recover/erp-dr"][-1].status = WorkflowExecutionStatus.COMPLETED
    late = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=headers)
    assert late.status_code == 202 and late.json()["run_id"] == first.json()["run_id"]
    assert len(api.fake.starts) == 1
    assert [line["status"] for line in api.audit()] == [202, 202, 409, 409, 409, 422, 202]


async def test_a_key_names_its_run_whatever_ran_after_it(api: Api) -> None:
    """Issue #14: K1 starts run A, K2 starts run B, a retry of K1 replays A (not B, not a new run)."""
    k1 = {**auth(OPERATOR), "Idempotency-Key": "change-1"}
    k2 = {**auth(OPERATOR), "Idempotency-Key": "change-2"}
    run_a = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=k1)
    assert run_a.status_code == 202
    api.fake.runs["recover/erp-dr"][-1].status = WorkflowExecutionStatus.COMPLETED
    run_b = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=k2)
    assert run_b.status_code == 202 and run_b.json()["run_id"] != run_a.json()["run_id"]
    retry = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=k1)
    assert retry.status_code == 202 and retry.json()["run_id"] == run_a.json()["run_id"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert len(api.fake.starts) == 2
    # The key is on the run hashed, never as given.
    assert all(r.request_key and "change-1" not in r.request_key for r in api.fake.runs["recover/erp-dr"])


async def test_approve_names_the_token_and_refusals_are_409(api: Api) -> None:
    run = api.fake.running()
    wrong = await api.http.post("/v1/plans/erp-dr/approve", json={"gate": "db"}, headers=auth(OPERATOR))
    assert wrong.status_code == 409 and "not the one waiting" in wrong.json()["detail"]
    ok = await api.http.post(
        "/v1/plans/erp-dr/approve",
        json={"gate": "web-go-ahead", "comment": "batch ok"},
        headers=auth(OPERATOR),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["approval"]["by"] == "operator-all" and ok.json()["run_id"] == run.run_id
    assert run.updates[-1][1].by == "operator-all" and run.updates[-1][1].comment == "batch ok"
    current = await api.http.get("/v1/plans/erp-dr/failovers/current", headers=auth(VIEWER))
    assert current.json()["progress"]["approvals"][0]["gate"] == "web-go-ahead"
    assert current.json()["mode"] == "test" and current.json()["status"] == "RUNNING"
    lines = api.audit()
    assert [(x["gate"], x["status"], x["run_id"]) for x in lines] == [
        ("db", 409, run.run_id),
        ("web-go-ahead", 200, run.run_id),
    ]


async def test_cleanup_of_a_real_failover_is_refused(api: Api) -> None:
    api.fake.running(mode="unplanned")
    response = await api.http.post("/v1/plans/erp-dr/cleanup", headers=auth(ADMIN))
    assert response.status_code == 409 and "only a test failover" in response.json()["detail"]


async def test_replicate_triggers_the_schedule(api: Api) -> None:
    response = await api.http.post("/v1/vms/db-01/replicate", headers=auth(OPERATOR))
    assert response.status_code == 202 and response.json() == {
        "vm": "db-01",
        "schedule_id": "replicate/db-01",
    }
    assert api.fake.triggered == ["replicate/db-01"]
    api.fake.schedules.clear()
    unprotected = await api.http.post("/v1/vms/db-01/replicate", headers=auth(OPERATOR))
    assert unprotected.status_code == 409 and "not protected" in unprotected.json()["detail"]
    assert [(x["vm"], x["status"]) for x in api.audit()] == [("db-01", 202), ("db-01", 409)]


async def test_report_newest_or_by_run(api: Api) -> None:
    for run in ("20261125T010000Z-aaaaaaaa", "20261126T010000Z-bbbbbbbb"):
        write_report(api.settings.reports_dir, "erp-dr", run)
    newest = await api.http.get("/v1/plans/erp-dr/report", headers=auth(VIEWER))
    assert newest.json()["run"] == "20261126T010000Z-bbbbbbbb"
    older = await api.http.get("/v1/plans/erp-dr/report?run=20261125T010000Z-aaaaaaaa", headers=auth(VIEWER))
    assert older.json()["run"] == "20261125T010000Z-aaaaaaaa"
    traversal = await api.http.get(
        "/v1/plans/erp-dr/report", params={"run": "../../etc/passwd"}, headers=auth(VIEWER)
    )
    assert traversal.status_code == 404


async def test_openapi_is_complete(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from the API's token file (stored there as its SHA-256).",
    }
    operations = [
        (m, p, op) for p, item in spec["paths"].items() for m, op in item.items() if p.startswith("/v1")
    ]
    assert len(operations) == 16  # retry, rollback, commit, reprotect and sites included
    for method, path, op in operations:
        assert op.get("security") == [{"bearer": []}], (method, path)
        assert op["summary"] and op["tags"] in (["recovery"], ["replication"]), (method, path)
        ok = next(code for code in op["responses"] if code.startswith("2"))
        assert "example" in op["responses"][ok]["content"]["application/json"], (method, path)
        for code in ("401", "403"):
            assert "example" in op["responses"][code]["content"]["application/problem+json"], (
                method,
                path,
                code,
            )
        if "requestBody" in op:
            assert op["requestBody"]["content"]["application/json"]["examples"], (method, path)
    assert spec["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]


async def test_an_idempotency_key_is_remembered_for_a_day(api: Api) -> None:
    headers = {**auth(OPERATOR), "Idempotency-Key": "weekly-drill"}
    first = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=headers)
    old = api.fake.runs["recover/erp-dr"][-1]
    old.status = WorkflowExecutionStatus.COMPLETED
    old.start_time -= timedelta(hours=25)
    # A runbook that hard-codes its key starts a new drill next week instead of getting the old run.
    later = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=headers)
    assert later.status_code == 202 and later.json()["run_id"] != first.json()["run_id"]
    assert "idempotent-replayed" not in later.headers and len(api.fake.starts) == 2


async def test_the_real_connect_to_a_closed_port_is_503(tmp_path: Path) -> None:
    import socket

    from seawall.runtime.temporal import connect

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(tmp_path).model_copy(update={"temporal_address": f"127.0.0.1:{port}"})

    async def factory() -> Any:
        return await connect(settings)

    app = create_app(settings, parse_tokens(token_file()), factory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        response = await http.get("/v1/plans/erp-dr/failovers/current", headers=auth(VIEWER))
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == f"cannot reach Temporal at 127.0.0.1:{port}"


async def test_racing_retries_with_one_key_share_one_run(api: Api) -> None:
    headers = {**auth(OPERATOR), "Idempotency-Key": "chatops-retry"}
    api.fake.start_barrier = asyncio.Barrier(5)
    answers = await asyncio.gather(
        *(
            api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "test"}, headers=headers)
            for _ in range(5)
        )
    )
    assert [a.status_code for a in answers] == [202] * 5
    assert len({a.json()["run_id"] for a in answers}) == 1 and len(api.fake.starts) == 1
    # All five looked before any had started: the losers of the start found the winner's run by its key.
    assert api.fake.conflicts == 4
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 4
    assert sum(1 for line in api.audit() if line.get("idempotent_replay")) == 4
