"""Signed intents inside the workflows: what someone at the Temporal frontend (as the UI does, with the
SDK here) can and cannot do when the orchestration worker holds intent keys.

Every attempt the issue names is tried against the real RecoveryPlan / CommitFailover workflows with
the real ``check_intent`` logic: unsigned, forged (another key), expired, wrong plan, wrong run,
replayed and role-too-low intents and approvals. Nothing is fenced or created before an admin's
correctly signed approval arrives; the same run then completes.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from seawall.contract.intents import AUTHORISE_GATE, SignedIntent, failover_options
from seawall.contract.messages import (
    AbortInput,
    ApproveInput,
    FailoverInput,
    PlanRunInput,
    RecoverVMInput,
    RunReport,
    UnprotectInput,
)
from seawall.contract.names import Activity as A
from seawall.security.intents import IntentKeys, install_verifier
from tests.workflows.conftest import Rig, progress_until
from tests.workflows.stubs import Stubs, group, plan_spec, vm_step
from workflows.after_failover import CommitFailoverWorkflow
from workflows.recover_vm import RecoverVMWorkflow
from workflows.recovery import RecoveryPlanWorkflow
from workflows.unprotect import UnprotectVMWorkflow

RIG = Callable[[Stubs], Any]
KEYS = IntentKeys([("k1", b"\x01" * 32)])
OTHER_KEYS = IntentKeys([("k1", b"\x02" * 32)])  # same id, another key: a forger's
# What the worker never does: the run's first steps a real failover takes against the sites.
SITE_EFFECTS = (A.PAUSE_SCHEDULES, A.FENCE_VM, A.CHOOSE_POINT, A.MATERIALIZE_DISKS, A.CREATE_TARGET_VM)


@asynccontextmanager
async def locked(rig_for: RIG, stubs: Stubs) -> AsyncIterator[Rig]:
    stubs.intent_keys = KEYS
    async with rig_for(stubs) as rig:
        install_verifier(rig.queue, KEYS)
        rig.stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("data", vm_step("db", "data")),
            group("apps", vm_step("app", "apps"), gate="go-apps"),
        )
        try:
            yield rig
        finally:
            install_verifier(rig.queue, None)


def intent(action: str = "failover", *, keys: IntentKeys = KEYS, **claims: Any) -> SignedIntent:
    fields: dict[str, Any] = {"plan": "erp", "user": "dr-admin", "role": "admin"}
    if action == "failover":
        fields |= {"mode": "planned", "direction": "failover"}
    return keys.issue(action=action, **(fields | claims))


async def start(
    rig: Rig, mode: str = "planned", signed: SignedIntent | None = None, **options: Any
) -> WorkflowHandle[Any, Any]:
    return await rig.start(
        RecoveryPlanWorkflow.run, FailoverInput(plan="erp", mode=mode, intent=signed, **options), "plan"
    )


async def rejected(handle: WorkflowHandle[Any, Any], update: Any, arg: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(update, arg)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


def approval(handle: WorkflowHandle[Any, Any], gate: str, **claims: Any) -> ApproveInput:
    signed = intent("approve", gate=gate, run=handle.result_run_id, **claims)
    return ApproveInput(gate=gate, by="typed-name", intent=signed)


async def keep_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With SEAWALL_RECORD_HISTORIES=<folder>: save the run's history for tests/replay (a new shape)."""
    folder = os.environ.get("SEAWALL_RECORD_HISTORIES")
    if folder:
        history = await handle.fetch_history()
        (Path(folder) / f"{name}.json").write_text(history.to_json())


def no_site_effects(stubs: Stubs) -> None:
    assert not set(SITE_EFFECTS) & set(stubs.names()), stubs.names()


async def test_a_ui_started_planned_failover_waits_for_an_admins_signed_approval(rig_for: RIG) -> None:
    """Attack 1 replayed: started unsigned, a made-up approver, then the real admin."""
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        handle = await start(rig)  # as from the Temporal UI: no intent
        progress = await progress_until(handle, lambda p: p["pending_gate"] == AUTHORISE_GATE)
        assert progress["pending_gate_role"] == "admin"
        # A forged approval under a made-up name, unsigned: refused, nothing recorded.
        forged = ApproveInput(gate=AUTHORISE_GATE, by="dr-admin")
        assert (
            "needs an intent signed" in (await rejected(handle, RecoveryPlanWorkflow.approve, forged)).message
        )
        attempts = {
            "forged key": approval(handle, AUTHORISE_GATE, keys=OTHER_KEYS),
            "operator": approval(handle, AUTHORISE_GATE, user="oncall", role="operator"),
            "wrong plan": approval(handle, AUTHORISE_GATE, plan="other"),
            "wrong run": ApproveInput(
                gate=AUTHORISE_GATE, by="x", intent=intent("approve", gate=AUTHORISE_GATE, run="another-run")
            ),
            "expired": ApproveInput(
                gate=AUTHORISE_GATE,
                by="x",
                intent=intent(
                    "approve", gate=AUTHORISE_GATE, run=handle.result_run_id, now=time.time() - 600, ttl_s=60
                ),
            ),
            "another gate's": approval(handle, "go-apps"),
        }
        reasons = {}
        for name, attempt in attempts.items():
            reasons[name] = (await rejected(handle, RecoveryPlanWorkflow.approve, attempt)).message
        assert "does not verify" in reasons["forged key"]
        assert "role operator; this needs admin" in reasons["operator"]
        assert "plan 'other'" in reasons["wrong plan"]
        assert "run 'another-run'" in reasons["wrong run"]
        assert "expired" in reasons["expired"]
        progress = await handle.query(RecoveryPlanWorkflow.progress)
        assert progress["approvals"] == [] and progress["pending_gate"] == AUTHORISE_GATE
        no_site_effects(stubs)
        # The admin's signed approval: the same run goes on and completes.
        good = approval(handle, AUTHORISE_GATE)
        done = await handle.execute_update(RecoveryPlanWorkflow.approve, good)
        assert done.by == "dr-admin" and done.verified and done.role == "admin"
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        # Replaying the used approval (same nonce) is refused even where its gate would match.
        replay = await rejected(handle, RecoveryPlanWorkflow.approve, good)
        assert "not the one waiting" in replay.message
        await handle.execute_update(RecoveryPlanWorkflow.approve, approval(handle, "go-apps"))
        report: RunReport = await handle.result()
        await keep_history(handle, "recovery_plan_authorised")
    assert report.status == "completed" and [v.vm for v in report.vms] == ["db", "app"]
    assert [(a.gate, a.by, a.role, a.verified) for a in report.approvals] == [
        (AUTHORISE_GATE, "dr-admin", "admin", True),
        ("go-apps", "dr-admin", "admin", True),
    ]
    assert report.authorised_by is None  # started unsigned: the authorising approval is the evidence


@pytest.mark.parametrize(
    ("case", "make", "reason"),
    [
        ("forged", lambda: intent(keys=OTHER_KEYS), "does not verify"),
        ("expired", lambda: intent(now=time.time() - 900, ttl_s=300), "expired"),
        ("wrong plan", lambda: intent(plan="other"), "plan 'other'"),
        ("wrong mode", lambda: intent(mode="test"), "mode 'test'"),
        ("operator", lambda: intent(role="operator"), "this needs admin"),
        ("an approval", lambda: intent("approve", gate="go-apps"), "action 'approve'"),
    ],
)
async def test_a_bad_intent_fails_the_run_before_anything_is_fenced(
    rig_for: RIG, case: str, make: Callable[[], SignedIntent], reason: str
) -> None:
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        handle = await start(rig, signed=make())
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "IntentRefused", repr(cause)
    assert reason in cause.message and "nothing was done" in cause.message, cause.message
    no_site_effects(stubs)
    assert A.LOAD_PLAN_SPEC not in stubs.names()


async def test_a_signed_start_runs_records_who_and_cannot_be_replayed(rig_for: RIG) -> None:
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        signed = intent(user="alice")
        first = await start(rig, signed=signed)
        await progress_until(first, lambda p: p["pending_gate"] == "go-apps")
        # A gate of a real run needs admin: a signed operator approval is refused.
        low = approval(first, "go-apps", user="oncall", role="operator")
        assert "this needs admin" in (await rejected(first, RecoveryPlanWorkflow.approve, low)).message
        await first.execute_update(RecoveryPlanWorkflow.approve, approval(first, "go-apps"))
        report: RunReport = await first.result()
        assert report.authorised_by is not None and report.authorised_by.by == "alice"
        assert report.authorised_by.verified and report.authorised_by.role == "admin"
        calls = len(stubs.of(A.FENCE_VM))
        # The same intent again (the first run has ended, so the id is free): a replay, refused.
        second = await start(rig, signed=signed)
        with pytest.raises(WorkflowFailureError) as failed:
            await second.result()
    assert "already used" in str(failed.value.cause)
    assert len(stubs.of(A.FENCE_VM)) == calls


OLDER = "2026-11-30T12:00:00+00:00"


@pytest.mark.parametrize(
    ("case", "signed_for", "run_with", "refused"),
    [
        ("an older point than signed", {}, {"point_time": OLDER}, True),
        ("the mirror, not signed", {}, {"from_mirror": True}, True),
        ("the newest point, older signed", {"options": failover_options(OLDER, False)}, {}, True),
        (
            "exactly as signed",
            {"options": failover_options(OLDER, True)},
            {"point_time": OLDER, "from_mirror": True},
            False,
        ),
    ],
)
async def test_a_failover_runs_only_with_the_point_and_copy_its_intent_signs(
    rig_for: RIG, case: str, signed_for: dict[str, Any], run_with: dict[str, Any], refused: bool
) -> None:
    """An input changed at the Temporal frontend (an older point, the mirror) cannot ride on an intent
    a door signed for another choice."""
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        handle = await start(rig, signed=intent(**signed_for), **run_with)
        if not refused:
            await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
            assert A.CHOOSE_POINT in stubs.names() or A.FENCE_VM in stubs.names(), stubs.names()
            await handle.terminate("the test saw what it needed")
            return
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "IntentRefused", repr(cause)
    assert "signed for a run with options" in cause.message and "nothing was done" in cause.message
    no_site_effects(stubs)


async def test_gate_roles_a_drill_is_open_an_operator_gate_and_the_fencing_gate(rig_for: RIG) -> None:
    stubs = Stubs(failing={A.FENCE_VM: {"db"}})
    async with locked(rig_for, stubs) as rig:
        assert rig.stubs.spec is not None
        rig.stubs.spec = plan_spec(
            "erp",
            rig.source,
            rig.target,
            group("data", vm_step("db", "data")),
            group("apps", vm_step("app", "apps"), gate="go-apps", gate_role="operator"),
        )
        handle = await start(rig, "unplanned", intent(mode="unplanned"))
        await progress_until(handle, lambda p: p["pending_gate"] == "source-fenced")
        # "Confirm it is down" needs admin, whatever the plan says of other gates.
        low = approval(handle, "source-fenced", user="oncall", role="operator")
        assert "this needs admin" in (await rejected(handle, RecoveryPlanWorkflow.approve, low)).message
        await handle.execute_update(RecoveryPlanWorkflow.approve, approval(handle, "source-fenced"))
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        # The plan lets an operator approve this one.
        await handle.execute_update(
            RecoveryPlanWorkflow.approve, approval(handle, "go-apps", user="oncall", role="operator")
        )
        report: RunReport = await handle.result()
    assert [(a.gate, a.by) for a in report.approvals] == [
        ("source-fenced", "dr-admin"),
        ("go-apps", "oncall"),
    ]


async def test_an_unsigned_abort_of_a_real_run_is_refused(rig_for: RIG) -> None:
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        handle = await start(rig, signed=intent())
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        unsigned = AbortInput(by="mallory", reason="x")
        assert "needs an intent" in (await rejected(handle, RecoveryPlanWorkflow.abort, unsigned)).message
        signed = AbortInput(by="typed", reason="stop", intent=intent("abort", run=handle.result_run_id))
        said = await handle.execute_update(RecoveryPlanWorkflow.abort, signed)
        # A real failover stops where it is; a second (signed) abort ends it as it is.
        assert said.startswith("abort requested by dr-admin: the failover stops where it is"), said
        await progress_until(handle, lambda p: p["stopped"] is not None)
        assert "needs an intent" in (await rejected(handle, RecoveryPlanWorkflow.abort, unsigned)).message
        again = AbortInput(by="typed", reason="end", intent=intent("abort", run=handle.result_run_id))
        said = await handle.execute_update(RecoveryPlanWorkflow.abort, again)
        assert said.startswith("abort requested by dr-admin: the run ends as it is"), said
        report: RunReport = await handle.result()
    assert report.status == "aborted" and [v.vm for v in report.vms] == ["db"]


async def test_drills_stay_open_to_the_ui_only_when_configured(rig_for: RIG) -> None:
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        handle = await start(rig, "test")
        await progress_until(handle, lambda p: p["pending_gate"] == "go-apps")
        done = await handle.execute_update(
            RecoveryPlanWorkflow.approve, ApproveInput(gate="go-apps", by="ui")
        )
        assert not done.verified  # recorded as a claim, not an identity
        await handle.execute_update(RecoveryPlanWorkflow.cleanup)
    closed = Stubs(unsigned_drills=False)
    async with locked(rig_for, closed) as rig:
        handle = await start(rig, "test")
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "without an intent signed" in str(failed.value.cause)
    assert A.LOAD_PLAN_SPEC not in closed.names()


async def test_an_unsigned_real_run_is_refused_at_once_without_a_wait(rig_for: RIG) -> None:
    stubs = Stubs(confirm_wait_s=0)
    async with locked(rig_for, stubs) as rig:
        handle = await start(rig)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "started without an intent signed" in str(failed.value.cause)
    no_site_effects(stubs)


async def test_commit_needs_an_admins_signed_intent(rig_for: RIG) -> None:
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        unsigned = await rig.start(CommitFailoverWorkflow.run, PlanRunInput(plan="erp", run="r1"), "commit")
        with pytest.raises(WorkflowFailureError) as failed:
            await unsigned.result()
        assert "needs an intent signed" in str(failed.value.cause)
        assert A.DELETE_SCHEDULE not in stubs.names()
        signed = PlanRunInput(plan="erp", run="r1", intent=intent("commit", run="r1"))
        done = await rig.start(CommitFailoverWorkflow.run, signed, "commit2")
        outcome = await done.result()
        await keep_history(done, "commit_failover_signed")
    assert outcome.plan == "erp" and set(outcome.schedules_deleted) == {"db", "app"}


async def test_a_real_recover_vm_started_on_its_own_is_refused(rig_for: RIG) -> None:
    """RecoverVM is a plan's step: from the UI in a real mode it would skip fencing and authorisation."""
    stubs = Stubs()
    async with rig_for(stubs) as rig:
        inp = RecoverVMInput(plan="erp", run="r1", mode="planned", vm="db", target_site=rig.target)
        handle = await rig.start(RecoverVMWorkflow.run, inp, "lone-vm")
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "IntentRefused"
    assert stubs.calls == []


async def test_unprotect_from_the_ui_is_refused_and_deleting_points_needs_an_admin(rig_for: RIG) -> None:
    """Stopping protection (or deleting a VM's points) from the Temporal UI would make a disaster
    worse: without a door's signed intent nothing is done."""
    stubs = Stubs()
    async with locked(rig_for, stubs) as rig:
        for n, inp in enumerate(
            [
                UnprotectInput(vm="web", delete_replica=True),
                # An operator may stop protection, but not delete the points.
                UnprotectInput(
                    vm="web", delete_replica=True, intent=intent("unprotect", plan="web", role="operator")
                ),
                # Signed for another VM.
                UnprotectInput(vm="web", intent=intent("unprotect", plan="db")),
            ]
        ):
            with pytest.raises(WorkflowFailureError) as failed:
                await rig.client.execute_workflow(
                    UnprotectVMWorkflow.run, inp, id=rig.wid(f"unprotect-{n}"), task_queue=rig.queue
                )
            assert getattr(failed.value.cause, "type", None) == "IntentRefused", failed.value.cause
        assert A.DELETE_SCHEDULE not in stubs.names() and A.DELETE_REPLICA not in stubs.names()
        signed = UnprotectInput(vm="web", delete_replica=True, intent=intent("unprotect", plan="web"))
        deleted = await rig.client.execute_workflow(
            UnprotectVMWorkflow.run, signed, id=rig.wid("unprotect-ok"), task_queue=rig.queue
        )
    assert deleted == 7 and stubs.names()[-1] == A.DELETE_REPLICA
