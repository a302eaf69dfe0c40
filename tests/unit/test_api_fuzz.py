"""schemathesis against the API's own OpenAPI document, over the fake Temporal client: no 5xx, answers as
documented. Bounded for CI: at most 20 generated examples per operation."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

from seawall.api.app import create_app
from seawall.api.auth import parse_tokens
from tests.unit.test_api_endpoints import (
    ADMIN,
    TOKENS,
    FakeClient,
    auth,
    make_settings,
    token_file,
    write_report,
)

_fake = FakeClient()
# Something for every read to find: a running drill (approvals, cleanup, abort reach the workflow) and
# a report of erp-dr.
_fake.running("erp-dr")
_tmp = Path(tempfile.mkdtemp(prefix="seawall-api-fuzz-"))
atexit.register(shutil.rmtree, _tmp, True)
_settings = make_settings(_tmp)
write_report(_settings.reports_dir, "erp-dr", "20261126T010000Z-abcd1234")


async def _factory() -> Any:
    return _fake


app = create_app(_settings, parse_tokens(token_file()), _factory)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
# No deadline: a timed assertion fails on a loaded machine (a 95 ms case took 2.9 s at load 10),
# and the fuzz is about answers, not speed.
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_as_documented(case: schemathesis.Case) -> None:
    # An admin token reaches every operation; the ignored_auth check sends the same calls without it.
    # A negative case generated without the Authorization header (it is required) is sent as it is:
    # adding the token to it made an invalid request valid, and its 200 a false "accepted" (ST201).
    headers = case.headers or {}
    if (
        case.meta is not None
        and case.meta.is_negative_at(ParameterLocation.HEADER)
        and not any(name.lower() == "authorization" for name in headers)
    ):
        case.call_and_validate()
    else:
        case.call_and_validate(headers=auth(ADMIN))


def test_the_tokens_cover_every_role() -> None:
    assert {role for role, _ in TOKENS} == {"viewer", "operator", "admin"}
