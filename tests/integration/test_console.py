"""The console in real headless Chromium against the lab, through `seawall api serve` and a real worker:
an operator sees the five ERP VMs with their real states, starts a drill of erp-dr, approves its gate on
the page, cleans it up and opens its report; a viewer gets no controls and a forced request is refused;
an admin's real failover is not requested until the typed confirmation matches. Screenshots go to
.seawall/artifacts/console/."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    Response,
    Route,
    async_playwright,
    expect,
)

from seawall.lab import LabInfo
from tests.integration.console_stack import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESCRIPTION,
    GATE_MESSAGE,
    Stack,
    console_stack,
    token_of,
)
from tests.integration.test_recovery import PLAN, VMS

GATE = "web-go-ahead"


@pytest.fixture(scope="module")
async def stack(
    lab: LabInfo, lab_state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with console_stack(lab, lab_state_dir, tmp_path_factory.mktemp("console")) as found:
        yield found


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def signed_in(browser: Browser, stack: Stack, who: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1440, "height": 960})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{stack.url}/console")
    await page.get_by_label("API token").fill(token_of(who))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who-name")).to_have_text(who)
    # The token lives in this tab's sessionStorage and travels as a header: never in the URL or page.
    assert token_of(who) not in page.url and token_of(who) not in await page.content()
    assert await page.evaluate("sessionStorage.getItem('seawall.token')") == token_of(who)
    assert not errors, errors
    return context, page


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def forced_post(page: Page, path: str, body: dict[str, Any]) -> int:
    """A request the page would not offer, made from the page with its own token: the server decides."""
    status = await page.evaluate(
        """async ([path, body]) => {
            const r = await fetch(path, {method: "POST", body: JSON.stringify(body), headers: {
                "Content-Type": "application/json",
                Authorization: `Bearer ${sessionStorage.getItem("seawall.token")}`}});
            return r.status;
        }""",
        [path, body],
    )
    return int(status)


@pytest.mark.timeout(600)
async def test_a_drill_from_the_console(stack: Stack, browser: Browser) -> None:
    operator_ctx, page = await signed_in(browser, stack, "oncall")

    # Protection: the five lab VMs with the states Temporal reports (each has its first verified point).
    rows = page.locator("#protection tbody tr[data-vm]")
    await expect(rows).to_have_count(len(VMS), timeout=30_000)
    assert sorted(await rows.evaluate_all("rs => rs.map(r => r.dataset.vm)")) == sorted(VMS)
    states = await rows.evaluate_all("rs => rs.map(r => r.dataset.state)")
    assert set(states) <= {"protected", "replicating"}, states
    await expect(page.locator(".strip").first).to_be_visible(timeout=20_000)
    # Live: the rows are fetched again every few seconds without a reload.
    updated = page.locator(".page-head .small")
    before = await updated.text_content()
    await expect(updated).not_to_have_text(before or "", timeout=15_000)
    await page.locator("#f-state").select_option("not-protected")
    await expect(rows).to_have_count(0)
    await page.locator("#f-state").select_option("")
    await shot(page, "protection")

    # Plans: an operator may drill but not fail over for real.
    await page.get_by_role("link", name="Recovery plans").click()
    card = page.locator(f'.plan-card[data-plan="{PLAN}"]')
    await expect(card.get_by_role("button", name="Start drill")).to_be_visible(timeout=20_000)
    await expect(card.get_by_role("button", name="Failover…")).to_have_count(0)
    await expect(card.locator(".plan-head .readiness")).to_have_text("not ready")  # never drilled yet
    # The plan's free text is shown as written, never parsed as markup.
    await expect(card.locator(".plan-head .muted")).to_contain_text(DESCRIPTION)
    await expect(card.locator("img")).to_have_count(0)
    await shot(page, "plans-before")
    await card.get_by_role("button", name="Start drill").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Time to live (hours, optional)").fill("1")
    await dialog.get_by_role("button", name="Start drill").click()

    # The run, live: the gate waits with an Approve button for this operator.
    await expect(page).to_have_url(f"{stack.url}/console#/run/{PLAN}")
    approve = page.get_by_role("button", name=f"Approve {GATE}")
    await expect(approve).to_be_visible(timeout=240_000)
    for vm in ("db-01", "app-01", "app-02"):
        await expect(page.locator(f'.vm-steps li[data-vm="{vm}"] .step')).to_have_text("healthy")
    ui_link = page.get_by_role("link", name="Temporal UI ↗")
    # The run's page in the Temporal UI: that UI's own address, with no token in it.
    href = await ui_link.get_attribute("href") or ""
    assert href.startswith(stack.temporal_ui) and "/workflows/recover%2Ferp-dr/" in href, href
    await expect(page.locator(".gate")).to_contain_text(GATE_MESSAGE)
    assert await page.evaluate("window.__xss") is None
    await shot(page, "run-gate")

    # A viewer sees the same run with no controls, and a forced request is refused by the server.
    viewer_ctx, viewer = await signed_in(browser, stack, "board")
    await viewer.goto(f"{stack.url}/console#/run/{PLAN}")
    await expect(viewer.locator(".gate")).to_contain_text("Your role may not approve gates.", timeout=20_000)
    for name in (f"Approve {GATE}", "Abort", "Clean up drill"):
        await expect(viewer.get_by_role("button", name=name)).to_have_count(0)
    await viewer.get_by_role("link", name="Recovery plans").click()
    await expect(viewer.locator(f'.plan-card[data-plan="{PLAN}"]')).to_be_visible(timeout=20_000)
    await expect(viewer.locator(".plan-card button")).to_have_count(0)
    assert await forced_post(viewer, f"/v1/plans/{PLAN}/approve", {"gate": GATE}) == 403
    assert await forced_post(viewer, f"/v1/plans/{PLAN}/failovers", {"mode": "test"}) == 403
    await shot(viewer, "viewer-plans")
    await viewer_ctx.close()

    # Approve on the page: the rest of the plan recovers and the drill stands until cleaned up.
    comment = page.get_by_label("Comment")
    await comment.fill("batch jobs checked")
    # The page refreshes every 2 s; what is typed in the gate's comment box survives it.
    await page.wait_for_timeout(2500)
    await expect(comment).to_have_value("batch jobs checked")
    await approve.click()
    await expect(page.locator('.vm-steps li[data-vm="web-01"] .step')).not_to_have_text(
        "waiting", timeout=30_000
    )
    await shot(page, "run-recovering")
    await expect(page.locator("#phase")).to_contain_text("drill running", timeout=240_000)
    await expect(page.locator('.vm-steps li[data-state="healthy"]')).to_have_count(len(VMS))
    await expect(page.locator("#approvals")).to_contain_text("approved by oncall — batch jobs checked")
    await shot(page, "run-drill-up")

    await page.get_by_role("button", name="Clean up drill").click()
    await page.get_by_role("dialog").get_by_role("button", name="Cleanup").click()
    await expect(page.locator(".run-status .pill")).to_have_text("COMPLETED", timeout=240_000)
    await page.get_by_role("link", name="Open report").click()
    report = page.frame_locator("iframe.report-frame")
    await expect(report.locator("h1")).to_contain_text(f"plan {PLAN} (test) — completed", timeout=20_000)
    await expect(report.locator("table tr")).to_have_count(len(VMS) + 1)
    # Judged against the plan's targets (none set here: the run itself), on a time axis.
    await expect(report.locator("#verdict")).to_have_text("Result: PASS")
    await expect(report.locator("table tr td.verdict")).to_have_count(len(VMS))
    assert await report.locator("svg.timeline text.tick").count() >= 2
    await expect(report.locator("svg.timeline text.tick").first).to_have_text("0:00")
    # The frame is sandboxed: the report's own page could run nothing.
    assert await page.locator("iframe.report-frame").get_attribute("sandbox") == ""
    await shot(page, "report")

    await page.get_by_role("link", name="All reports").click()
    await expect(page.locator("#reports tbody tr[data-run]")).to_have_count(1)
    await page.get_by_role("link", name="Recovery plans").click()
    await expect(page.locator(f'.plan-card[data-plan="{PLAN}"] .plan-head .readiness')).to_have_text(
        "ready", timeout=20_000
    )
    # The badge: time since the last passed drill.
    await expect(page.locator(f'.plan-card[data-plan="{PLAN}"] .drill-age')).to_have_text(
        "drill passed under a minute ago"
    )
    await shot(page, "plans-after")
    await operator_ctx.close()

    # Audit: every change came through the ordinary /v1 endpoints as the signed-in token (the viewer's
    # refused calls stop at the role check, before anything is attempted or audited).
    audit = [json.loads(line) for line in (stack.tmp / "audit.log").read_text().splitlines()]
    assert [(a["who"], a["path"].rsplit("/", 1)[-1], a["status"]) for a in audit] == [
        ("oncall", "failovers", 202),
        ("oncall", "approve", 200),
        ("oncall", "cleanup", 200),
    ]
    for log in (stack.api_log, stack.tmp / "worker.log", stack.tmp / "audit.log"):
        assert "console-token-of" not in log.read_text(), log


@pytest.mark.timeout(120)
async def test_a_real_failover_needs_the_typed_confirmation(stack: Stack, browser: Browser) -> None:
    context, page = await signed_in(browser, stack, "commander")
    sent: list[Request] = []

    # The real request would fence the lab's VMs: it is caught here and answered as the API would
    # answer a failover it cannot start, so this test proves only what the page sends, and when.
    async def catch(route: Route) -> None:
        sent.append(route.request)
        await route.fulfill(
            status=409,
            content_type="application/problem+json",
            body=json.dumps(
                {
                    "type": "urn:seawall:problem:already-running",
                    "title": "Already running",
                    "status": 409,
                    "detail": "caught by the test",
                }
            ),
        )

    await page.route(f"**/v1/plans/{PLAN}/failovers", catch)
    await page.get_by_role("link", name="Recovery plans").click()
    card = page.locator(f'.plan-card[data-plan="{PLAN}"]')
    await card.get_by_role("button", name="Failover…").click(timeout=20_000)
    dialog = page.get_by_role("dialog")
    confirm = dialog.get_by_role("button", name="Fail over")
    typed = dialog.get_by_label("to confirm")
    await expect(confirm).to_be_disabled()
    await expect(dialog.locator("#failover-expected")).to_have_text(f"{PLAN} planned")
    for attempt in ("erp-dr", f"{PLAN} unplanned", "ERP-DR PLANNED"):
        await typed.fill(attempt)
        await expect(confirm).to_be_disabled()
        await typed.press("Enter")  # submitting the form by keyboard is held back too
    await dialog.get_by_label("Mode").select_option("unplanned")
    await typed.fill(f"{PLAN} planned")  # the mode it names must be the mode chosen
    await expect(confirm).to_be_disabled()
    await shot(page, "failover-confirm")
    assert sent == []
    await typed.fill(f"{PLAN} unplanned")
    await expect(confirm).to_be_enabled()
    await confirm.click()
    await expect(page.locator("#toast")).to_contain_text("caught by the test")
    assert len(sent) == 1 and sent[0].method == "POST"
    assert json.loads(sent[0].post_data or "{}") == {"mode": "unplanned"}
    assert sent[0].headers["authorization"] == f"Bearer {token_of('commander')}"
    assert sent[0].headers.get("idempotency-key")
    await context.close()


def completed_failover(run: str) -> dict[str, Any]:
    """What /failovers/current would say after a completed planned failover (the lab's VMs are not
    fenced for this test: the page is shown one, the clicks go to the real API)."""
    return {
        "plan": PLAN,
        "workflow_id": f"recover/{PLAN}",
        "run_id": "5f0c7a56-0000-4000-8000-000000000001",
        "status": "COMPLETED",
        "mode": "planned",
        "run": run,
        "started_by": "commander",
        "started_at": "2026-11-26T01:00:00Z",
        "closed_at": "2026-11-26T01:20:00Z",
        "progress": None,
        "links": {"self": "", "ui": "http://127.0.0.1:8233/", "current": "", "report": ""},
    }


def posted_to(response: Response, verb: str) -> bool:
    return response.request.method == "POST" and response.url.endswith(f"/{verb}")


@pytest.mark.timeout(180)
async def test_commit_and_reprotect_buttons_go_through_the_api_and_its_checks(
    stack: Stack, browser: Browser
) -> None:
    run = "20261126T010000Z-0a1b2c3d"
    sent: list[tuple[str, dict[str, Any] | None, int]] = []

    async def shown_a_failover(route: Route) -> None:
        await route.fulfill(
            status=200, content_type="application/json", body=json.dumps(completed_failover(run))
        )

    # The operator: a completed real failover shows no Commit or Reprotect (admin actions).
    operator_ctx, operator = await signed_in(browser, stack, "oncall")
    await operator.route(f"**/v1/plans/{PLAN}/failovers/current", shown_a_failover)
    await operator.get_by_role("link", name="Recovery plans").click()
    card = operator.locator(f'.plan-card[data-plan="{PLAN}"]')
    await expect(card.get_by_role("link", name="Last run")).to_be_visible(timeout=20_000)
    for name in ("Commit", "Reprotect"):
        await expect(card.get_by_role("button", name=name)).to_have_count(0)
    assert await forced_post(operator, f"/v1/plans/{PLAN}/commit", {"run": run}) == 403
    assert await forced_post(operator, f"/v1/plans/{PLAN}/reprotect", {}) == 403
    await operator_ctx.close()

    # The admin: both buttons, each behind a confirmation, each one real request to the real API,
    # which refuses: the plan's newest run in Temporal is the drill, not a failover to commit.
    context, page = await signed_in(browser, stack, "commander")
    await page.route(f"**/v1/plans/{PLAN}/failovers/current", shown_a_failover)
    page.on(
        "request",
        lambda r: (
            sent.append((r.url.rsplit("/", 1)[-1], json.loads(r.post_data) if r.post_data else None, 0))
            if r.method == "POST"
            else None
        ),
    )
    await page.get_by_role("link", name="Recovery plans").click()
    card = page.locator(f'.plan-card[data-plan="{PLAN}"]')
    await card.get_by_role("button", name="Commit").click(timeout=20_000)
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Make the failover final")
    await shot(page, "commit-confirm")
    # Both refusals show the same toast, so each click waits for its own request's answer: the
    # commit's toast still showing must not stand in for the reprotect's.
    async with page.expect_response(lambda r: posted_to(r, "commit")) as commit_answer:
        await dialog.get_by_role("button", name="Commit").click()
    assert (await commit_answer.value).status == 409
    await expect(page.locator("#toast")).to_contain_text("not a real failover")
    await card.get_by_role("button", name="Reprotect").click()
    async with page.expect_response(lambda r: posted_to(r, "reprotect")) as reprotect_answer:
        await page.get_by_role("dialog").get_by_role("button", name="Reprotect").click()
    assert (await reprotect_answer.value).status == 409
    await expect(page.locator("#toast")).to_contain_text("not a real failover")
    await shot(page, "reprotect-refused")
    await context.close()
    assert [(path, body) for path, body, _ in sent] == [("commit", {"run": run}), ("reprotect", None)]
    audit = [json.loads(line) for line in (stack.tmp / "audit.log").read_text().splitlines()]
    assert [(a["who"], a["path"].rsplit("/", 1)[-1], a["status"]) for a in audit[-2:]] == [
        ("commander", "commit", 409),
        ("commander", "reprotect", 409),
    ]
