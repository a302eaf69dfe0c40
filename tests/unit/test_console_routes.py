"""The console's /v1/console endpoints and page over a fake Temporal client: roles, scopes, the report
page's headers, no traversal, the static assets and their packaging, the scripts' rendering rules."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from seawall.api.app import create_app
from seawall.api.auth import parse_tokens
from seawall.console.routes import run_steps
from seawall.console.views import STRIP_CELLS
from seawall.contract.messages import CycleResult
from seawall.contract.search import SA_RUN, SA_VM
from tests.unit.test_api_endpoints import ADMIN, OPERATOR, VIEWER, auth, make_settings, token_file
from tests.unit.test_console_views import NOW, run_report, write_run

# --- the endpoints ----------------------------------------------------------------------------------------


@dataclass
class Cycle:
    vm: str
    start: datetime
    seconds: float = 4.0


class ConsoleFake:
    """Just what the console's reads call: schedules, the cycle list (by VM, status, start time), results."""

    def __init__(self, cycles: list[Cycle], protected: set[str]) -> None:
        self.cycles = cycles
        self.protected = protected

    def get_schedule_handle(self, schedule_id: str) -> Any:
        async def describe() -> Any:
            if schedule_id.removeprefix("replicate/") not in self.protected:
                raise RPCError("schedule not found", RPCStatusCode.NOT_FOUND, b"")
            schedule = SimpleNamespace(
                state=SimpleNamespace(paused=False), spec=SimpleNamespace(intervals=[]), action=None
            )
            return SimpleNamespace(schedule=schedule, info=SimpleNamespace(created_at=None))

        return SimpleNamespace(describe=describe)

    async def list_schedules(self) -> AsyncIterator[Any]:
        async def entries() -> AsyncIterator[Any]:
            for vm in sorted(self.protected):
                schedule = SimpleNamespace(
                    state=SimpleNamespace(paused=False), spec=SimpleNamespace(intervals=[]), action=None
                )
                yield SimpleNamespace(id=f"replicate/{vm}", schedule=schedule)

        return entries()

    def list_workflows(self, query: str, limit: int | None = None, **_: Any) -> AsyncIterator[Any]:
        # Per VM (``SeawallVM = ...``) or, as the fleet's listings ask, every VM's cycles at once.
        vm = re.search(r'SeawallVM = "([^"]+)"', query)
        after = re.search(r'StartTime > "([^"]+)"', query)
        before = re.search(r'StartTime <= "([^"]+)"', query)
        closed_after = re.search(r'CloseTime > "([^"]+)"', query)
        found = sorted(
            (c for c in self.cycles if "ReplicationCycle" in query and (not vm or c.vm == vm.group(1))),
            key=lambda c: c.start,
            reverse=True,
        )
        if after:
            found = [c for c in found if c.start > datetime.fromisoformat(after.group(1))]
        if before:
            found = [c for c in found if c.start <= datetime.fromisoformat(before.group(1))]
        if closed_after:
            since = datetime.fromisoformat(closed_after.group(1))
            found = [c for c in found if c.start + timedelta(seconds=c.seconds) > since]

        async def items() -> AsyncIterator[Any]:
            for c in found[:limit]:
                yield SimpleNamespace(
                    id=f"replicate/{c.vm}-{c.start.isoformat()}",
                    run_id=c.start.isoformat(),
                    status=WorkflowExecutionStatus.COMPLETED,
                    start_time=c.start,
                    close_time=c.start + timedelta(seconds=c.seconds),
                    typed_search_attributes=TypedSearchAttributes([SearchAttributePair(SA_VM, c.vm)]),
                )

        return items()

    def get_workflow_handle(self, workflow_id: str, *, run_id: str, **_: Any) -> Any:
        vm = workflow_id.removeprefix("replicate/").split("-20")[0]
        started = datetime.fromisoformat(run_id)

        async def result() -> CycleResult:
            return CycleResult(
                vm=vm,
                point_id=f"{vm}-{run_id}",
                parent=None,
                started_at=started.isoformat(),
                finished_at=started.isoformat(),
                change_path="hash",
                bytes_read=4096,
                bytes_shipped=2048,
                verified=True,
                retention_deleted=[],
            )

        return SimpleNamespace(result=result)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    now = datetime.now(UTC).replace(microsecond=0)
    cycles = [Cycle("db-01", now - timedelta(seconds=20 + 30 * i), seconds=3) for i in range(5)]
    cycles += [Cycle("web-01", now - timedelta(hours=2), seconds=9)]  # old: a 25-minute threshold breached
    fake = ConsoleFake(cycles, protected={"db-01", "app-01", "web-01"})
    settings = make_settings(tmp_path)
    write_run(
        settings.reports_dir, run_report("erp-dr", "20261201T100000Z-aaaa1111", NOW - timedelta(hours=2))
    )
    write_run(
        settings.reports_dir, run_report("web-dr", "20261201T110000Z-bbbb2222", NOW - timedelta(hours=1))
    )

    async def factory() -> Any:
        return fake

    app = create_app(settings, parse_tokens(token_file()), factory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http


@pytest.mark.parametrize(
    ("role", "actions"),
    [
        (VIEWER, []),
        (OPERATOR, ["drill", "approve", "cleanup"]),
        (ADMIN, ["drill", "failover", "approve", "cleanup", "abort", "commit", "reprotect"]),
    ],
)
async def test_session_offers_the_buttons_of_the_role(
    console: httpx.AsyncClient, role: str, actions: list[str]
) -> None:
    answer = await console.get("/v1/console/session", headers=auth(role))
    assert answer.status_code == 200
    assert answer.json() | {"temporal_ui_url": None} == {
        "name": f"{role}-all",
        "role": role,
        "plans": "*",
        "actions": actions,
        "temporal_ui_url": None,
    }
    scoped = (await console.get("/v1/console/session", headers=auth(role, "web"))).json()
    assert scoped["plans"] == ["web-dr"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/console/session",
        "/v1/console/protection",
        "/v1/console/plans",
        "/v1/console/reports",
        "/v1/console/vms/db-01/strip",
        "/v1/console/plans/erp-dr/steps",
        "/v1/console/reports/erp-dr/20261201T100000Z-aaaa1111",
    ],
)
async def test_every_console_read_needs_a_token(console: httpx.AsyncClient, path: str) -> None:
    assert (await console.get(path)).status_code == 401
    assert (await console.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_protection_rows(console: httpx.AsyncClient) -> None:
    rows = {r["vm"]: r for r in (await console.get("/v1/console/protection", headers=auth(VIEWER))).json()}
    assert list(rows) == ["db-01", "app-01", "app-02", "web-01", "web-02"]
    db = rows["db-01"]
    assert db["state"] == "protected" and db["store"] == "local" and db["plans"] == ["erp-dr"]
    assert db["last_bytes_shipped"] == 2048 and db["last_cycle_s"] == 3.0 and 19 <= db["age_s"] < 60
    # No cycle for two hours at a 15-minute interval: nobody works on it (stalled), and it is late.
    assert rows["web-01"]["state"] == "stalled" and rows["web-01"]["breach"]
    assert rows["web-01"]["plans"] == ["erp-dr", "web-dr"]
    assert rows["app-01"]["state"] == "breach" and rows["app-01"]["last_point"] is None
    assert rows["app-02"]["state"] == "not-protected" and rows["web-02"]["store"] == "azure"
    scoped = (await console.get("/v1/console/protection", headers=auth(VIEWER, "web"))).json()
    assert [r["vm"] for r in scoped] == ["web-01", "web-02"]


async def test_strip_and_its_scope(console: httpx.AsyncClient) -> None:
    strip = (await console.get("/v1/console/vms/db-01/strip", headers=auth(VIEWER))).json()
    assert strip["vm"] == "db-01" and strip["threshold_s"] == 60.0 and len(strip["cells"]) == STRIP_CELLS
    assert strip["cells"][-1]["worst_age_s"] is not None and strip["cells"][0]["worst_age_s"] is None
    # Unknown and out of scope answer alike: a scoped token learns no other VM's name.
    for vm, who in (("db-01", auth(VIEWER, "web")), ("nope-01", auth(VIEWER))):
        answer = await console.get(f"/v1/console/vms/{vm}/strip", headers=who)
        assert answer.status_code == 404 and "in your scope" in answer.json()["detail"]


async def test_plans_readiness(console: httpx.AsyncClient) -> None:
    plans = {p["plan"]: p for p in (await console.get("/v1/console/plans", headers=auth(OPERATOR))).json()}
    erp = plans["erp-dr"]
    assert erp["valid"] and not erp["ready"] and erp["last_drill"]["run"] == "20261201T100000Z-aaaa1111"
    assert erp["vms_without_point"] == ["app-01", "app-02", "web-02"] and erp["vms_in_breach"] == ["web-01"]
    assert erp["last_drill"]["time_to_healthy_s"] == 42.0 and erp["rto_target_s"] is None
    scoped = (await console.get("/v1/console/plans", headers=auth(OPERATOR, "web"))).json()
    assert [p["plan"] for p in scoped] == ["web-dr"]


async def test_reports_list_and_page(console: httpx.AsyncClient) -> None:
    listed = (await console.get("/v1/console/reports", headers=auth(VIEWER))).json()
    assert [(r["plan"], r["vms"]) for r in listed] == [("web-dr", 1), ("erp-dr", 1)]
    scoped = (await console.get("/v1/console/reports", headers=auth(VIEWER, "web"))).json()
    assert [r["plan"] for r in scoped] == ["web-dr"]

    page = await console.get("/v1/console/reports/erp-dr/20261201T100000Z-aaaa1111", headers=auth(VIEWER))
    assert page.status_code == 200 and page.text == "<html><body>report</body></html>"
    assert page.headers["content-type"].startswith("text/html")
    # Opened on its own, the page still runs nothing.
    assert page.headers["content-security-policy"].startswith("sandbox;")
    assert page.headers["x-content-type-options"] == "nosniff"
    missing = [
        ("erp-dr/20261201T100000Z-aaaa1111", auth(VIEWER, "web")),  # out of scope
        ("erp-dr/nope", auth(VIEWER)),
        ("erp-dr/..%2F..%2Faudit", auth(VIEWER)),
        ("..%2Fweb-dr/20261201T110000Z-bbbb2222", auth(VIEWER)),
        ("nope-dr/x", auth(VIEWER)),
    ]
    for tail, who in missing:
        answer = await console.get(f"/v1/console/reports/{tail}", headers=who)
        assert answer.status_code == 404, (tail, answer.status_code)


async def test_the_page_and_assets_are_served_with_a_strict_policy(console: httpx.AsyncClient) -> None:
    page = await console.get("/console")
    assert page.status_code == 200 and "<title>Seawall console</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert "<script>" not in page.text and "http://" not in page.text and "https://" not in page.text
    for asset in (
        "console.css",
        "js/app.js",
        "js/api.js",
        "js/dom.js",
        "js/plans.js",
        "js/run.js",
        "js/reports.js",
    ):
        answer = await console.get(f"/console/assets/{asset}")
        assert answer.status_code == 200 and answer.headers["x-content-type-options"] == "nosniff", asset
    assert (await console.get("/console/", follow_redirects=False)).headers["location"] == "/console"
    # The console's data stays out of the public API document (its shapes serve this page).
    spec = (await console.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p.startswith("/v1/console")]


def test_the_scripts_never_write_markup() -> None:
    """Data from config (VM, plan, gate names, report text) is rendered as text nodes only."""
    static = Path(__file__).resolve().parents[2] / "seawall" / "console" / "static"
    for script in static.glob("js/*.js"):
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (script.name, sink)
        # The token travels in a header, never in a URL or in local (persistent) storage.
        assert "localStorage" not in text and "?token" not in text and "access_token" not in text, script.name


class StepsFake:
    """A running drill of erp-dr: its progress, and the step query of each VM's child workflow."""

    def __init__(self, status: WorkflowExecutionStatus | None) -> None:
        self.status = status
        self.queried: list[tuple[str, str]] = []

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> Any:
        async def describe() -> Any:
            if self.status is None:
                raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
            attrs = TypedSearchAttributes([SearchAttributePair(SA_RUN, "20261201T120000Z-abcd1234")])
            return SimpleNamespace(status=self.status, typed_search_attributes=attrs)

        async def query(name: str, **_: Any) -> Any:
            self.queried.append((workflow_id, name))
            if name == "progress":
                return {"vms": {"db-01": "healthy", "app-01": "recovering", "app-02": "recovering"}}
            if workflow_id.endswith("/app-02"):  # not picked up by a worker yet
                raise RPCError("no poller", RPCStatusCode.DEADLINE_EXCEEDED, b"")
            return "materialize disks"

        return SimpleNamespace(describe=describe, query=query)


async def test_run_steps_asks_each_recovering_vm() -> None:
    fake = StepsFake(WorkflowExecutionStatus.RUNNING)
    found = await run_steps(fake, "erp-dr")  # type: ignore[arg-type]
    assert found.run == "20261201T120000Z-abcd1234" and found.steps == {"app-01": "materialize disks"}
    assert ("recover/erp-dr/20261201T120000Z-abcd1234/app-01", "step") in fake.queried
    assert not [q for q in fake.queried if q[0].endswith("/db-01")]  # a healthy VM is not asked
    for status in (None, WorkflowExecutionStatus.COMPLETED):
        assert (await run_steps(StepsFake(status), "erp-dr")).model_dump() == {"run": None, "steps": {}}  # type: ignore[arg-type]


async def test_steps_endpoint_keeps_to_the_scope(console: httpx.AsyncClient) -> None:
    answer = await console.get("/v1/console/plans/erp-dr/steps", headers=auth(VIEWER, "web"))
    assert answer.status_code == 404


def test_a_wheel_ships_every_asset() -> None:
    """pyproject's package-data patterns cover every file of the console's static folder."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "seawall"
    ]
    package = root / "seawall"
    for asset in (package / "console" / "static").rglob("*"):
        if asset.is_file():
            relative = asset.relative_to(package).as_posix()
            # setuptools' "*" does not cross a "/": compare folder by folder.
            assert any(
                fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns
            ), relative


async def test_the_fleets_strips_in_one_answer_and_its_scope(console: httpx.AsyncClient) -> None:
    answer = await console.get("/v1/console/strips", headers=auth(VIEWER))
    assert answer.status_code == 200 and answer.headers["X-Seawall-As-Of"]
    strips = {s["vm"]: s for s in answer.json()}
    assert list(strips) == ["db-01", "app-01", "app-02", "web-01", "web-02"]
    one = (await console.get("/v1/console/vms/db-01/strip", headers=auth(VIEWER))).json()
    # The same cells as the VM's own strip (computed a moment apart: compare the ages, not the starts).
    assert [c["worst_age_s"] is None for c in strips["db-01"]["cells"]] == [
        c["worst_age_s"] is None for c in one["cells"]
    ]
    assert strips["web-01"]["cells"][-1]["worst_age_s"] is not None  # its 2-hour-old point, in force
    assert all(c["worst_age_s"] is None for c in strips["app-01"]["cells"])  # protected, no point yet
    scoped = (await console.get("/v1/console/strips", headers=auth(VIEWER, "web"))).json()
    assert [s["vm"] for s in scoped] == ["web-01", "web-02"]


async def test_the_protection_answer_says_how_old_it_is(console: httpx.AsyncClient) -> None:
    answer = await console.get("/v1/console/protection", headers=auth(VIEWER))
    as_of = datetime.fromisoformat(answer.headers["X-Seawall-As-Of"])
    assert abs((datetime.now(UTC) - as_of).total_seconds()) < 30 and int(answer.headers["Age"]) >= 0
    # Within the few seconds it is kept, another token's request is answered from the same read.
    again = await console.get("/v1/console/protection", headers=auth(OPERATOR))
    assert again.headers["X-Seawall-As-Of"] == answer.headers["X-Seawall-As-Of"]
