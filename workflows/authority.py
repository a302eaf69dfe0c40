"""Authorisation inside the workflows: no door (the Temporal UI and frontend included) bypasses it.

At start, ``check`` runs the ``check_intent`` activity on the orchestration worker, which holds the
intent keys: its answer (enforced or not, who signed, the worker's policy) is recorded in history, so
replay needs no key. Update validators call ``check_update``: the pure verification of
``seawall.contract.intents`` with the keys the worker registered for its task queue and
``workflow.now()`` — sound because validators never run on replay (``seawall.security.intents``
explains it). Histories recorded before this existed replay unchanged: ``PATCH`` guards the activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import quick

with workflow.unsafe.imports_passed_through():
    from activities.recovery import OrchestrationActivities
    from seawall.contract.intents import (
        Authority,
        IntentCheck,
        IntentClaims,
        IntentRefused,
        SignedIntent,
        verify,
    )
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
