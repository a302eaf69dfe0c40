"""The API as a door that signs: what a token holder may do reaches the workflow as a signed intent
for exactly that plan, mode, run and gate, under the token's name and role; a workflow's refusal of
an intent (role too low, forged) is a 403, and the audit line names the intent."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from seawall.api.app import create_app
from seawall.api.auth import parse_tokens
from seawall.contract.intents import DEFAULT_OPTIONS, IntentRefused, failover_options, verify
from seawall.security.intents import IntentKeys
from tests.unit.test_api_endpoints import ADMIN, OPERATOR, Api, FakeClient, auth, make_settings, token_file


@pytest.fixture
async def signing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Api, IntentKeys]]:
    monkeypatch.setenv("TEST_INTENT_KEY", "ab" * 32)
    keys = IntentKeys.from_refs("env:TEST_INTENT_KEY#k1")
    fake = FakeClient()
    settings = make_settings(tmp_path).model_copy(update={"intent_keys": "env:TEST_INTENT_KEY#k1"})

    async def factory() -> Any:
        return fake

    app = create_app(settings, parse_tokens(token_file()), factory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield Api(http, fake, settings), keys


async def test_a_start_is_signed_for_the_token_holder_plan_and_mode(signing: tuple[Api, IntentKeys]) -> None:
    api, keys = signing
    started = await api.http.post("/v1/plans/erp-dr/failovers", json={"mode": "planned"}, headers=auth(ADMIN))
    assert started.status_code == 202, started.text
    [inp] = api.fake.starts
    claims = verify(
        inp.intent, keys.by_id, time.time(), action="failover", plan="erp-dr", mode="planned", needs="admin"
    )
    assert (claims.user, claims.role, claims.direction) == ("admin-all", "admin", "failover")
    assert claims.expires_at - claims.issued_at == pytest.approx(300)
    [line] = api.audit()
    assert line["intent_nonce"] == claims.nonce and line["who"] == "admin-all"


async def test_a_start_signs_the_point_and_copy_it_asks_for(signing: tuple[Api, IntentKeys]) -> None:
    api, keys = signing
    body = {"mode": "unplanned", "point_time": "2026-11-30T12:00:00Z", "from_mirror": True}
    started = await api.http.post("/v1/plans/erp-dr/failovers", json=body, headers=auth(ADMIN))
    assert started.status_code == 202, started.text
    [inp] = api.fake.starts
    options = failover_options(inp.point_time, True)
    assert inp.point_time is not None and inp.point_time.startswith("2026-11-30T12:00:00")
    claims = verify(inp.intent, keys.by_id, time.time(), action="failover", plan="erp-dr", options=options)
    assert claims.options == options
    with pytest.raises(IntentRefused):
        verify(inp.intent, keys.by_id, time.time(), action="failover", plan="erp-dr", options=DEFAULT_OPTIONS)


async def test_an_approval_is_signed_for_this_run_and_gate(signing: tuple[Api, IntentKeys]) -> None:
    api, keys = signing
    run = api.fake.running(mode="planned")
    ok = await api.http.post("/v1/plans/erp-dr/approve", json={"gate": "web-go-ahead"}, headers=auth(ADMIN))
    assert ok.status_code == 200, ok.text
    sent = run.updates[-1][1]
    claims = verify(
        sent.intent,
        keys.by_id,
        time.time(),
        action="approve",
        plan="erp-dr",
        gate="web-go-ahead",
        run=run.run_id,
    )
    assert (claims.user, claims.role) == ("admin-all", "admin")


async def test_a_refused_intent_is_a_403_with_the_workflows_reason(
    signing: tuple[Api, IntentKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = signing
    api.fake.running(mode="planned")
    # The API's own role check passes (an admin); the run refuses the intent it was signed with.
    refusal = ApplicationError("intent expired at 2026-12-01T10:00:00Z", type="IntentRefused")

    async def refuse(*_: Any, **__: Any) -> Any:
        raise WorkflowUpdateFailedError(refusal)

    monkeypatch.setattr("tests.unit.test_api_endpoints.FakeHandle.execute_update", refuse)
    low = await api.http.post("/v1/plans/erp-dr/approve", json={"gate": "web-go-ahead"}, headers=auth(ADMIN))
    assert low.status_code == 403 and low.json()["detail"] == refusal.message
    assert [(x["who"], x["status"]) for x in api.audit()] == [("admin-all", 403)]
    # An operator is refused by the API itself before the run is asked: a real run's gate needs admin.
    op = await api.http.post(
        "/v1/plans/erp-dr/approve", json={"gate": "web-go-ahead"}, headers=auth(OPERATOR)
    )
    assert op.status_code == 403 and "needs admin" in op.json()["detail"]
