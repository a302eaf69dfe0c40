"""Authorisation inside the workflows: no door (the Temporal UI and frontend included) bypasses it.

At start, ``check`` runs the ``check_intent`` activity on the orchestration worker, which holds the
intent keys: its answer (enforced or not, who signed, the worker's policy) is recorded in history, so
replay needs no key. Update validators call ``check_update``: the pure verification of
``seawall.contract.intents`` with the keys the worker registered for its task queue and
``workflow.now()`` — sound because validators never run on replay (``seawall.security.intents``
explains it). Histories recorded before this existed replay unchanged: ``PATCH`` guards the activity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import quick

with workflow.unsafe.imports_passed_through():
    from activities.recovery import OrchestrationActivities
    from seawall.contract.intents import (
        AUTHORISE_GATE,
        FENCING_GATE,
        Authority,
        IntentCheck,
        IntentClaims,
        IntentRefused,
        SignedIntent,
        failover_options,
        verify,
    )
    from seawall.contract.messages import AbortInput, Approval, ApproveInput, FailoverInput, GroupStep
    from seawall.contract.search import SA_INTENT
    from seawall.security.intents import verifier_keys

PATCH = "signed-intents"
REFUSED = "IntentRefused"
_RETRY = quick([REFUSED])


async def check(
    intent: SignedIntent | None,
    action: str,
    plan: str,
    *,
    needs: str,
    mode: str | None = None,
    direction: str | None = None,
    run: str | None = None,
    options: str | None = None,
) -> Authority:
    """Verify the intent a workflow was started with; a forged, expired, misdirected, replayed or
    role-too-low one fails the workflow here, before it has done anything."""
    info = workflow.info()
    try:
        auth = await workflow.execute_activity_method(
            OrchestrationActivities.check_intent,
            IntentCheck(
                intent=intent,
                action=action,
                plan=plan,
                mode=mode,
                direction=direction,
                run=run,
                options=options,
                needs=needs,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
            ),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
    except ActivityError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == REFUSED:
            raise refused(f"{action} of plan {plan} refused: {cause.message}; nothing was done") from None
        raise
    if auth.verified and auth.nonce:
        # The nonce is spent: check_intent of any later run finds it here and refuses the replay.
        workflow.upsert_search_attributes([SA_INTENT.value_set(auth.nonce)])
    return auth


def require_verified(auth: Authority, action: str, plan: str) -> None:
    if auth.enforced and not auth.verified:
        raise refused(
            f"{action} of plan {plan} needs an intent signed by a Seawall door (seawall CLI or API); "
            "none was given: nothing was done"
        )


def refused(message: str) -> ApplicationError:
    return ApplicationError(message, type=REFUSED, non_retryable=True)


def check_update(
    intent: SignedIntent | None,
    *,
    action: str,
    plan: str,
    needs: str,
    used: set[str],
    gate: str | None = None,
) -> IntentClaims:
    """In a validator: the verified claims of an update's intent, bound to this very run."""
    keys = verifier_keys(workflow.info().task_queue)
    if not keys:
        raise refused("this worker has no intent keys (SEAWALL_INTENT_KEYS): it cannot verify the update")
    try:
        return verify(
            intent,
            keys,
            workflow.now().timestamp(),
            action=action,
            plan=plan,
            gate=gate,
            run=workflow.info().run_id,
            needs=needs,
            used=used,
        )
    except IntentRefused as exc:
        raise refused(str(exc)) from None


class RunAuthority:
    """RecoveryPlan's authorisation state and checks, kept out of the workflow's own module.

    Holds what history determines (the start's ``Authority``, the nonces of accepted updates, the
    least role the waiting gate needs); its ``check_*`` methods are for validators only.
    """

    def __init__(self) -> None:
        self.plan = ""
        self.mode = ""
        # None: a run from before signed intents (or not checked yet).
        self.authority: Authority | None = None
        self.pending_role = "operator"
        self.used_nonces: set[str] = set()

    @property
    def enforced(self) -> bool:
        return self.authority is not None and self.authority.enforced

    @property
    def open_drill(self) -> bool:
        """A drill on a worker whose policy lets drills (and their gates) go unsigned."""
        return self.mode == "test" and self.authority is not None and self.authority.unsigned_drills

    async def start(self, inp: FailoverInput, gate: Callable[[GroupStep], Awaitable[Approval]]) -> None:
        """Before anything is fenced or created: a real run needs an admin's signed intent (or, started
        without one, e.g. from the Temporal UI, an admin's signed approval at AUTHORISE_GATE)."""
        self.plan, self.mode = inp.plan, inp.mode
        real = inp.mode != "test"
        needs = "admin" if real else "operator"
        auth = self.authority = await check(
            inp.intent,
            "failover",
            inp.plan,
            needs=needs,
            mode=inp.mode,
            direction=inp.direction,
            options=failover_options(inp.point_time, inp.from_mirror),
        )
        if not auth.enforced or auth.verified or self.open_drill:
            return
        what = f"{inp.mode} {inp.direction} of plan {inp.plan}"
        if not real or auth.confirm_wait_s <= 0:
            raise refused(f"{what} was started without an intent signed by a Seawall door")
        decision = await gate(authorise_gate(inp.mode, auth.confirm_wait_s, inp))
        if not decision.approved:
            raise refused(
                f"{what} was started without a signed intent and no admin approved {AUTHORISE_GATE} "
                "with a signed approval: nothing was fenced or created"
            )

    def gate_role(self, group: GroupStep) -> str:
        """The least role that may approve: the plan's ``role`` for the gate, else admin for the gates a
        real run (or an unreachable source) raises, operator for a drill's."""
        if group.gate in (FENCING_GATE, AUTHORISE_GATE):
            return "admin"
        if group.gate_role:
            return group.gate_role
        return "operator" if self.mode == "test" else "admin"

    def check_approve(self, inp: ApproveInput) -> None:
        if not self.enforced or (inp.intent is None and self.open_drill and inp.gate != AUTHORISE_GATE):
            return
        check_update(
            inp.intent,
            action="approve",
            plan=self.plan,
            gate=inp.gate,
            needs=self.pending_role,
            used=self.used_nonces,
        )

    def check_abort(self, inp: AbortInput) -> None:
        if not self.enforced or (inp.intent is None and self.open_drill):
            return
        needs = "operator" if self.mode == "test" else "admin"
        check_update(inp.intent, action="abort", plan=self.plan, needs=needs, used=self.used_nonces)

    def _accepted(self, intent: SignedIntent | None) -> IntentClaims | None:
        """In a handler (also on replay): the claims the validator verified, their nonce now spent."""
        claims = intent.claims if intent is not None and self.enforced else None
        if claims is not None:
            self.used_nonces.add(claims.nonce)
        return claims

    def approval(self, inp: ApproveInput) -> Approval:
        """The approval as recorded: the signed identity, never the ``by`` the caller typed."""
        claims = self._accepted(inp.intent)
        return Approval(
            gate=inp.gate,
            approved=True,
            by=claims.user if claims else inp.by,
            at=workflow.now().isoformat(),
            comment=inp.comment,
            role=claims.role if claims else None,
            verified=claims is not None,
        )

    def abort_input(self, inp: AbortInput) -> AbortInput:
        claims = self._accepted(inp.intent)
        return AbortInput(by=claims.user, reason=inp.reason, intent=inp.intent) if claims else inp

    def started_by(self, at: str) -> Approval | None:
        auth = self.authority
        if auth is None or not auth.verified or auth.user is None:
            return None
        return Approval(gate="start", approved=True, by=auth.user, at=at, role=auth.role, verified=True)


def authorise_gate(mode: str, wait_s: float, inp: FailoverInput | None = None) -> GroupStep:
    """A real run started without an intent waits here for an admin's signed approval; the message
    names what the approval lets the run do (an older point, the mirrors)."""
    chosen = []
    if inp is not None and inp.point_time:
        chosen.append(f"the newest point at or before {inp.point_time}")
    if inp is not None and inp.from_mirror:
        chosen.append("read from the replica stores' mirrors")
    what = f"a {mode} failover" + (f" ({'; '.join(chosen)})" if chosen else "")
    return GroupStep(
        name="authorisation",
        boot_delay_s=0,
        vms=[],
        pre_hooks=[],
        post_hooks=[],
        gate=AUTHORISE_GATE,
        gate_message=f"{what} was started without a signed intent: an admin approves it "
        "with `seawall approve` or the API before anything is fenced",
        gate_timeout_s=wait_s,
        gate_on_timeout="abort",
        gate_role="admin",
    )
