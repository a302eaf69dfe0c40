"""BandwidthCoordinator: one per limit scope (a site's or a store's total), shared by every worker process
that ships under it, on whichever hosts they run.

Each process that ships calls the ``claim_bandwidth`` update every couple of seconds ("process P is
shipping", with the scope's limit now) and gets its share back: the limit over the live claimers. A
process that stops renewing drops out after ``EXPIRE_S``; the others' next renewal gets the larger
share. No activities, no timers per claim: the run waits for continue-as-new (suggested by the server,
or after ``CLAIMS_PER_RUN`` claims) or for ``IDLE_S`` without a claim, when it ends; the next claimer
starts it again (update-with-start). Deterministic: only ``workflow.now()`` is read.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from seawall.contract.bandwidth import (
        CLAIMS_PER_RUN,
        EXPIRE_S,
        IDLE_S,
        BandwidthClaim,
        BandwidthGrant,
        CoordinatorState,
        Member,
        apply_claim,
        grant_for,
        live,
    )
    from seawall.contract.names import Update, Workflow
    from workflows.inputs import decode_input


@workflow.defn(name=Workflow.BANDWIDTH_COORDINATOR)
class BandwidthCoordinatorWorkflow:
    @workflow.init
    def __init__(self, raw: Any = None) -> None:
        # The state is read here, not in run: a claim can arrive with the start (update-with-start, or
        # right after continue-as-new), and its handler runs before run does.
        try:
            state: CoordinatorState | None = CoordinatorState.model_validate(raw)
        except ValueError:
            state = None  # run fails the run with the field named
        self._scope = state.scope if state else ""
        self._max_claims = state.max_claims if state else CLAIMS_PER_RUN
        self._expire_s = state.expire_s if state else EXPIRE_S
        self._idle_s = state.idle_s if state else IDLE_S
        self._members: dict[str, Member] = {m.member: m for m in state.members} if state else {}
        self._claims = 0
        self._claimed_since_wake = False

    @workflow.run
    async def run(self, raw: Any = None) -> CoordinatorState:
        decode_input(CoordinatorState, raw)
        while True:
            self._claimed_since_wake = False
            try:
                await workflow.wait_condition(
                    lambda: (
                        workflow.info().is_continue_as_new_suggested() or self._claims >= self._max_claims
                    ),
                    timeout=timedelta(seconds=self._idle_s),
                )
            except TimeoutError:
                if self._claimed_since_wake:
                    continue
                # Nobody shipped for idle_s: end; finish any claim being answered first.
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._claimed_since_wake:
                    continue
                return self._state()
            # Answer every claim in flight before handing the members to the next run.
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self._state())

    def _state(self) -> CoordinatorState:
        members = live(self._members, workflow.now(), self._expire_s)
        return CoordinatorState(
            scope=self._scope,
            members=list(members.values()),
            max_claims=self._max_claims,
            expire_s=self._expire_s,
            idle_s=self._idle_s,
        )

    @workflow.update(name=Update.CLAIM_BANDWIDTH)
    def claim(self, claim: BandwidthClaim) -> BandwidthGrant:
        self._members = apply_claim(self._members, claim, workflow.now(), self._expire_s)
        self._claims += 1
        self._claimed_since_wake = True
        return grant_for(self._members, claim)

    @claim.validator
    def _check(self, claim: BandwidthClaim) -> None:
        # The converter already checked the fields; a claim that could not be shared is refused here,
        # before it enters the history.
        if claim.shipping and claim.limit is None and claim.seed_limit is None:
            raise ValueError("a shipping claim names the scope's limit or its seed limit")
