"""seawall.control over a fake Temporal client: the ids, names and conflict policies each action uses,
and the domain errors it raises for each way Temporal refuses. The doors' wording of those errors is
tested with the doors (test_api_endpoints.py; the CLI's in the lab tests)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.client import (
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from seawall import reports
from seawall.contract.messages import (
    AbortInput,
    ApproveInput,
    FailoverInput,
    RetryInput,
    RollbackInput,
    RunReport,
)
from seawall.contract.search import SA_MODE
from seawall.control import recovery, replication
from seawall.control.errors import (
    AlreadyRunning,
    Failed,
    NoReport,
    NoSuchRun,
    NotProtected,
    NotRunning,
    Refused,
    Stuck,
)
from seawall.control.runs import describe_run, running_run


class FakeHandle:
    def __init__(self, client: FakeClient, workflow_id: str, run_id: str | None) -> None:
        self.client, self.id, self.run_id = client, workflow_id, run_id

    async def execute_update(self, name: str, arg: Any = None, **kw: Any) -> Any:
        self.client.calls.append(("update", self.id, self.run_id, name, arg, kw.get("rpc_timeout")))
        self.client.update_ids.append(kw.get("id"))
        if self.client.refuse_next:
            raise self.client.refuse_next.pop(0)
        if self.client.refuse is not None:
            raise self.client.refuse
        return "ok" if kw.get("result_type") is str else None

    async def describe(self) -> Any:
        if self.client.status is None:
            raise RPCError("bad run id", RPCStatusCode.INVALID_ARGUMENT, b"")
        return SimpleNamespace(
            id=self.id, run_id="r1", status=self.client.status, typed_search_attributes=self.client.attributes
        )

    async def query(self, name: str, **_: Any) -> Any:
        self.client.calls.append(("query", self.id, name))
        return self.client.progress

    async def result(self) -> Any:
        self.client.calls.append(("result", self.id))
        return None


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse: BaseException | None = None
        self.refuse_next: list[BaseException] = []  # raised once each, in turn, by the next updates
        self.update_ids: list[str | None] = []
        self.status: WorkflowExecutionStatus | None = WorkflowExecutionStatus.RUNNING
        self.attributes = TypedSearchAttributes([SearchAttributePair(SA_MODE, "unplanned")])
        self.progress: dict[str, Any] = {"phase": "recovering group db", "stopped": None}

    async def start_workflow(self, workflow: str, arg: Any, **kw: Any) -> Any:
        self.calls.append(("start", workflow, arg, kw))
        if self.refuse is not None:
            raise self.refuse
        return SimpleNamespace(id=kw["id"], result_run_id="r1")

    async def execute_workflow(self, workflow: str, arg: Any, **kw: Any) -> Any:
        self.calls.append(("execute", workflow, arg, kw))
        if self.refuse is not None:
            raise self.refuse
        return kw["result_type"]

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None, **_: Any) -> FakeHandle:
        return FakeHandle(self, workflow_id, run_id)

    def get_schedule_handle(self, schedule_id: str) -> Any:
        async def trigger(overlap: Any = None) -> None:
            self.calls.append(("trigger", schedule_id, overlap))
            if self.refuse is not None:
                raise self.refuse

        return SimpleNamespace(trigger=trigger)


def fake() -> Any:
    return FakeClient()


async def test_a_failover_starts_once_per_plan_with_the_policy_asked_for() -> None:
    client = fake()
    inp = FailoverInput(plan="erp-dr", mode="test")
    await recovery.start_failover(client, "q", inp, memo={"k": "v"})
    await recovery.start_failover(client, "q", inp, conflict=WorkflowIDConflictPolicy.USE_EXISTING)
    (_, workflow, arg, first), (_, _, _, second) = client.calls
    assert workflow == "RecoveryPlan" and arg is inp and first["id"] == "recover/erp-dr"
    assert first["task_queue"] == "q" and first["memo"] == {"k": "v"} and first["result_type"] is RunReport
    assert first["id_conflict_policy"] == WorkflowIDConflictPolicy.FAIL
    assert second["id_conflict_policy"] == WorkflowIDConflictPolicy.USE_EXISTING
    client.refuse = WorkflowAlreadyStartedError("recover/erp-dr", "RecoveryPlan")
    with pytest.raises(AlreadyRunning, match="a failover of erp-dr is already running"):
        await recovery.start_failover(client, "q", inp)


async def test_updates_go_to_the_plans_run_and_refusals_are_domain_errors() -> None:
    client = fake()
    approval = ApproveInput(gate="web", by="me")
    await recovery.approve(client, "erp-dr", approval)
    await recovery.abort(client, "erp-dr", AbortInput(by="me", reason="why"), run_id="r1")
    assert await recovery.cleanup(client, "erp-dr") == "ok"
    assert await recovery.extend_ttl(client, "erp-dr", 2.0) == "ok"
    assert [(c[1], c[2], c[3]) for c in client.calls] == [
        ("recover/erp-dr", None, "approve"),
        ("recover/erp-dr", "r1", "abort"),
        ("recover/erp-dr", None, "cleanup"),
        ("recover/erp-dr", None, "extend_ttl"),
    ]
    assert client.calls[0][4] is approval and client.calls[3][4] == 2.0
    client.refuse = WorkflowUpdateFailedError(ApplicationError("gate 'db' is not the one waiting"))
    with pytest.raises(Refused) as refused:
        await recovery.approve(client, "erp-dr", approval)
    assert refused.value.update == "approve" and str(refused.value) == "gate 'db' is not the one waiting"
    client.refuse = RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
    with pytest.raises(NotRunning, match="no failover of erp-dr is running"):
        await recovery.cleanup(client, "erp-dr")
    client.refuse = RPCError("down", RPCStatusCode.UNAVAILABLE, b"")
    with pytest.raises(RPCError):  # not a refusal: the door answers it as Temporal being away
        await recovery.cleanup(client, "erp-dr")


DROPPED = "Unable to perform workflow execution update due to unexpected workflow task failure."
FAILED_STATE = "Unable to perform workflow execution update due to Workflow Task in failed state."


async def test_an_update_a_failed_workflow_task_dropped_is_sent_again_under_its_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recovery, "UPDATE_RETRY_PAUSES_S", (0.0, 0.0, 0.0))
    client = fake()
    dropped = RPCError(DROPPED, RPCStatusCode.FAILED_PRECONDITION, b"")
    client.refuse_next = [dropped, dropped]
    assert await recovery.cleanup(client, "erp-dr") == "ok"
    assert len(client.update_ids) == 3 and len(set(client.update_ids)) == 1 and client.update_ids[0]
    # Dropped every time: after the last try, what the run's tasks say (Stuck), not an RPC error.
    client.update_ids.clear()
    client.refuse_next = [dropped] * 4
    with pytest.raises(Stuck):
        await recovery.abort(client, "erp-dr", AbortInput(by="me", reason="why"))
    assert len(client.update_ids) == 4
    # A run whose workflow task keeps failing is Stuck at once: nothing to wait for.
    client.update_ids.clear()
    client.refuse_next = [RPCError(FAILED_STATE, RPCStatusCode.FAILED_PRECONDITION, b"")]
    with pytest.raises(Stuck, match="in failed state"):
        await recovery.cleanup(client, "erp-dr")
    assert len(client.update_ids) == 1


async def test_retry_and_rollback_are_updates_of_the_plans_run() -> None:
    client = fake()
    retry, rollback = RetryInput(by="me", comment="fixed"), RollbackInput(by="me", reason="lost")
    assert await recovery.retry(client, "erp-dr", retry) == "ok"
    assert await recovery.rollback(client, "erp-dr", rollback, run_id="r1") == "ok"
    assert [(c[1], c[2], c[3], c[4]) for c in client.calls] == [
        ("recover/erp-dr", None, "retry", retry),
        ("recover/erp-dr", "r1", "rollback", rollback),
    ]
    client.refuse = WorkflowUpdateFailedError(ApplicationError("the run is not stopped"))
    with pytest.raises(Refused) as refused:
        await recovery.rollback(client, "erp-dr", rollback)
    assert refused.value.update == "rollback" and str(refused.value) == "the run is not stopped"


@pytest.mark.parametrize(
    ("action", "workflow", "workflow_id"),
    [
        (lambda c: recovery.commit(c, "q", "erp-dr", "run-1"), "CommitFailover", "commit/erp-dr"),
        (lambda c: recovery.reprotect(c, "q", "erp-dr"), "Reprotect", "reprotect/erp-dr"),
        (lambda c: recovery.cleanup_test(c, "q", "erp-dr", "run-1"), "CleanupTest", "cleanup/erp-dr"),
        (lambda c: replication.unprotect(c, "q", "db-01"), "UnprotectVM", "unprotect/db-01"),
    ],
)
async def test_workflows_run_to_their_end_attach_to_a_running_one_and_fail_plainly(
    action: Any, workflow: str, workflow_id: str
) -> None:
    client = fake()
    client.status = WorkflowExecutionStatus.COMPLETED  # no failover of the plan is running
    await action(client)
    [(_, name, _, kw)] = [c for c in client.calls if c[0] == "execute"]
    assert (name, kw["id"], kw["task_queue"]) == (workflow, workflow_id, "q")
    assert kw["id_conflict_policy"] == WorkflowIDConflictPolicy.USE_EXISTING
    client.refuse = WorkflowFailureError(cause=ApplicationError("no such run"))
    with pytest.raises(Failed, match="no such run"):
        await action(client)


async def test_protect_and_replicate_now() -> None:
    client = fake()
    await replication.start_protect(client, "q", "db-01", "rpo-30s")
    [(_, name, inp, kw)] = client.calls
    assert (name, kw["id"], inp.policy) == ("ProtectVM", "protect/db-01", "rpo-30s")
    assert kw["id_conflict_policy"] == WorkflowIDConflictPolicy.USE_EXISTING
    assert await replication.replicate_now(client, "db-01") == "replicate/db-01"
    # A cycle already running may have snapshotted before what the operator wants captured: the one
    # asked for is buffered behind it, never skipped.
    assert client.calls[-1] == ("trigger", "replicate/db-01", ScheduleOverlapPolicy.BUFFER_ONE)
    client.refuse = RPCError("schedule not found", RPCStatusCode.NOT_FOUND, b"")
    with pytest.raises(NotProtected, match="db-01 is not protected yet"):
        await replication.replicate_now(client, "db-01")


async def test_runs_not_started_not_running_or_not_a_run_id() -> None:
    client = fake()
    assert (await running_run(client, "erp-dr")).id == "recover/erp-dr"
    client.status = WorkflowExecutionStatus.COMPLETED
    with pytest.raises(NotRunning):
        await running_run(client, "erp-dr")
    client.status = None  # the server's answer to a run id that is no UUID
    with pytest.raises(NoSuchRun, match="no run nope of plan erp-dr"):
        await describe_run(client, "erp-dr", "nope")
    with pytest.raises(NotRunning):
        await running_run(client, "erp-dr")


def _report(run: str) -> RunReport:
    return RunReport(
        plan="erp-dr",
        run=run,
        mode="test",
        status="completed",
        started_at="2026-11-26T01:00:00+00:00",
        finished_at="2026-11-26T01:10:00+00:00",
        vms=[],
        failed_vms={"web-01": "health <check> failed"},
        hooks=[],
        approvals=[],
        groups=[],
    )


def test_reports_are_written_found_newest_first_and_rendered(tmp_path: Path) -> None:
    with pytest.raises(NoReport, match="no report of plan erp-dr yet") as none:
        reports.find(tmp_path, "erp-dr")
    assert none.value.folder == str(tmp_path / "erp-dr")
    for run in ("20261125T010000Z-aaaaaaaa", "20261126T010000Z-bbbbbbbb"):
        json_path, html_path = reports.write(tmp_path, _report(run))
        assert (json_path, html_path) == reports.paths(tmp_path, "erp-dr", run)
    path, newest = reports.read(tmp_path, "erp-dr")
    assert newest.run == "20261126T010000Z-bbbbbbbb" and path.with_suffix(".html").exists()
    assert reports.read(tmp_path, "erp-dr", "20261125T010000Z-aaaaaaaa")[1].run.endswith("aaaaaaaa")
    with pytest.raises(NoReport, match=r"run \.\./\.\./etc/passwd"):
        reports.find(tmp_path, "erp-dr", "../../etc/passwd")
    page = html_path.read_text()
    assert "plan erp-dr (test)" in page and "health &lt;check&gt; failed" in page
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_rolled_back_run_reports_what_it_destroyed_started_and_decided(tmp_path: Path) -> None:
    from seawall.contract.messages import CleanupOutcome, Resource, RollbackOutcome

    rolled = _report("20261126T010000Z-cccccccc").model_copy(
        update={
            "mode": "unplanned",
            "status": "rolled-back",
            "decisions": ["retry by erin at 01:05", "rollback requested by erin at 01:08: db <lost>"],
            "warnings": ["failure_policy rollback-test applies to drills only"],
            "rollback": RollbackOutcome(
                requested_by="erin",
                approved_by="frank",
                destroyed=CleanupOutcome(
                    removed=[Resource(kind="vm", id="app-01", site="dr")], dns_restored=[]
                ),
                sources_started=["app-01: powered on at primary"],
                schedules_resumed=1,
            ),
        }
    )
    _, html_path = reports.write(tmp_path, rolled)
    page = html_path.read_text()
    assert (
        "approved by frank" in page and "vm app-01 at dr" in page and "app-01: powered on at primary" in page
    )
    assert "db &lt;lost&gt;" in page and "rollback-test applies to drills only" in page
    assert reports.read(tmp_path, "erp-dr")[1].rollback == rolled.rollback


async def test_commit_ends_a_stopped_failover_first_and_refuses_a_running_one_or_a_drill() -> None:
    client = fake()  # a failover of the plan is running, recovering
    with pytest.raises(
        Refused, match=r"still running \(recovering group db\): let it end, or abort it first"
    ):
        await recovery.commit(client, "q", "erp-dr", "run-1", by="erin")
    assert not [c for c in client.calls if c[0] in ("update", "execute")]
    client.progress = {"phase": "stopped: failed: db-01; waiting", "stopped": "failed: db-01"}
    await recovery.commit(client, "q", "erp-dr", "run-1", by="erin")
    kinds = [c[0] for c in client.calls if c[0] in ("update", "result", "execute")]
    assert kinds == ["update", "result", "execute"]  # the stopped run ends as it is, then the commit
    (update,) = [c for c in client.calls if c[0] == "update"]
    assert update[3] == "abort" and update[4] == AbortInput(by="erin", reason="committed as it is")
    drill = fake()
    drill.attributes = TypedSearchAttributes([SearchAttributePair(SA_MODE, "test")])
    with pytest.raises(Refused, match="is a drill"):
        await recovery.commit(drill, "q", "erp-dr", "run-1")
