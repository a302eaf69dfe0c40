"""The state of one ``RecoveryPlan`` run and how it waits: the phase, a drill's end, an abort, the
operator's decisions, approval gates, notifications. ``PlanRunSteps`` (``workflows.recovery_steps``)
adds the steps; the workflow class adds the messages and the order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow

from workflows import authority
from workflows.notify import BACKGROUND, event_key, notify

with workflow.unsafe.imports_passed_through():
    from seawall.contract.drills import NotifyRequest
    from seawall.contract.messages import (
        AbortInput,
        Approval,
        GroupStep,
        HookOutcome,
        PlanSpec,
        RecoverVMResult,
        RetryInput,
        RollbackInput,
        RollbackOutcome,
        StepTime,
    )


Waited = Literal["ok", "timeout", "halted"]


@dataclass
class Evidence:
    """What a run has done so far: the report's content, gathered as the groups recover."""

    hooks: list[HookOutcome] = field(default_factory=list)
    groups: list[StepTime] = field(default_factory=list)
    fencing: list[str] = field(default_factory=list)
    results: dict[str, RecoverVMResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    status: str = "completed"
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rollback: RollbackOutcome | None = None
    # A hook that failed (not continue_on_failure): the run stops at it like at a failed VM.
    problem: str | None = None


# Notifications (gate waiting, run started / completed / failed) added to the command sequence.
NOTIFY_PATCH = "notify-events"


class PlanRunState:
    """State of one ``RecoveryPlan`` run: what it waits for, the gate it waits at, who it tells."""

    def __init__(self) -> None:
        self._phase = "starting"
        self._vm_state: dict[str, str] = {}
        self._pending_gate: str | None = None
        self._gate_message: str | None = None
        self._gate_decision: Approval | None = None
        self._approvals: list[Approval] = []
        self._aborted: AbortInput | None = None
        self._cleanup_requested = False
        self._ttl_extension_s = 0.0
        self._mode = ""
        self._done = False
        # Since the recovery-stops-safely patch: a drill's deadline counts from its start and ends it in
        # any phase; a stopped run waits for the operator (retry, rollback, end) instead of ending.
        self._safe = False
        self._deadline: datetime | None = None
        self._expired = False
        self._stopped: str | None = None
        self._end_requested: AbortInput | None = None
        self._retry: RetryInput | None = None
        self._rollback_req: RollbackInput | None = None
        self._rolling_back = False
        self._failback = False
        # What the rollback update describes: set once the plan is loaded.
        self._spec: PlanSpec | None = None
        self._run = ""
        self._ev: Evidence | None = None
        # Who may start, approve and abort (workflows/authority.py).
        self._auth = authority.RunAuthority()
        # VM -> the point of its consistency group's chosen group point (one for all members).
        self._group_points: dict[str, str] = {}
        # VM -> the store its group point was chosen from (its store, or the mirror).
        self._group_stores: dict[str, str] = {}
        # Read every VM from its store's mirror (the operator's or the plan's choice).
        self._from_mirror = False
        # Who notifications are about (set once the plan is loaded).
        self._plan = ""
        self._site: str | None = None

    # ---- state -----------------------------------------------------------------------------------

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        workflow.set_current_details(phase)

    def _drill_over(self) -> bool:
        """A drill ends on ``cleanup`` or at its time to live, whatever it is doing (since the patch)."""
        return self._safe and self._mode == "test" and (self._cleanup_requested or self._expired)

    def _halted(self) -> bool:
        """Should the step under way stop? Running: an abort (or a drill's end). Stopped (waiting for
        the operator): only an explicit end, since the abort that stopped it is already answered."""
        if self._stopped is not None:
            return self._end_requested is not None or self._drill_over()
        return self._aborted is not None or self._drill_over()

    async def _until(self, cond: Callable[[], bool], timeout: timedelta | None = None) -> Waited:
        """Wait for ``cond``; ``halted`` as soon as the run is halted (a drill's time to live included,
        which ``extend_ttl`` may move while this waits); ``timeout`` when ``timeout`` passed first."""
        limit = workflow.now() + timeout if timeout is not None else None
        while True:
            if cond():
                return "ok"
            if self._halted():
                return "halted"
            now = workflow.now()
            deadline = self._deadline if self._mode == "test" else None
            if deadline is not None and now >= deadline:
                self._expired = True
                return "halted"
            if limit is not None and now >= limit:
                return "timeout"
            nearest = min((t for t in (limit, deadline) if t is not None), default=None)
            seen = deadline
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda seen=seen: cond() or self._halted() or self._deadline != seen,  # type: ignore[misc]
                    timeout=nearest - now if nearest is not None else None,
                )

    # ---- gates -----------------------------------------------------------------------------------

    async def _gate(self, group: GroupStep) -> Approval:
        """Wait for the gate's approval; an abort (a drill's end) refuses it, its timeout decides it."""
        assert group.gate is not None
        self._pending_gate = group.gate
        self._gate_message = group.gate_message
        self._auth.pending_role = self._auth.gate_role(group)
        self._gate_decision = None
        self._set_phase(f"waiting for approval: {group.gate} ({group.gate_message})")
        if workflow.patched(NOTIFY_PATCH):
            # In the background: the gate waits for a person, not for the message to be delivered.
            self._tell(
                "gate-waiting",
                group.gate,
                f"gate {group.gate} waits for approval",
                {"message": group.gate_message or "", "approvers": self._auth.pending_role or "operator"},
            )
        timeout = timedelta(seconds=group.gate_timeout_s) if group.gate_timeout_s else None
        waited = await self._until(lambda: self._gate_decision is not None, timeout)
        now = workflow.now().isoformat()
        if waited == "ok" and self._gate_decision is not None:
            decision = self._gate_decision
        elif waited == "timeout":
            decision = Approval(
                gate=group.gate, approved=group.gate_on_timeout == "approve", by="timeout", at=now
            )
        else:
            by = "time to live" if self._expired else "cleanup" if self._cleanup_requested else "abort"
            decision = Approval(gate=group.gate, approved=False, by=by, at=now)
        self._pending_gate = None
        self._gate_message = None
        self._approvals.append(decision)
        return decision

    # ---- notifications ---------------------------------------------------------------------------

    def _tell(
        self, event: str, what: str, summary: str, facts: dict[str, str], give_up: timedelta = BACKGROUND
    ) -> asyncio.Task[None]:
        """Notify the people configured for ``event`` about this run (``notify`` activity, retried;
        keyed by this run and ``what``, so one event is one message however often it is retried)."""
        req = NotifyRequest(
            event=event,
            key=event_key(event, *([what] if what else [])),
            plan=self._plan,
            site=self._site,
            run=self._run or None,
            summary=summary,
            facts={"mode": self._mode, **facts},
        )
        return asyncio.ensure_future(notify(req, give_up))
