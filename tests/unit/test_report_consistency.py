"""The run report says how consistent each recovered point was and what cleanup did to DNS."""

from __future__ import annotations

from seawall.contract.messages import (
    CleanupOutcome,
    DnsChange,
    HealthOutcome,
    RecoverVMResult,
    RunReport,
)
from seawall.reports import render_html

T = "2026-12-01T10:00:00+00:00"


def _vm(name: str, app: bool, group: str | None) -> RecoverVMResult:
    return RecoverVMResult(
        vm=name,
        target_name=f"{name}-drill",
        point_id="20261201T095500Z-aaaaaaaaaaaa",
        point_created_at="2026-12-01T09:55:00+00:00",
        ips=["10.2.3.10"],
        dns=[],
        health=HealthOutcome(ok=True, checks=[], elapsed_s=1.0),
        resources=[],
        steps=[],
        started_at=T,
        healthy_at=T,
        app_consistent=app,
        consistency_group=group,
    )


def test_report_shows_consistency_and_dns_restored_by_cleanup() -> None:
    restored = DnsChange(
        name="db.corp.example.com",
        type="A",
        value="10.1.3.10",
        previous="10.2.3.10",
        zone="corp.example.com",
        outcome="restored",
        detail="db.corp.example.com A: 10.2.3.10 -> 10.1.3.10 (restored)",
    )
    report = RunReport(
        plan="erp-dr",
        run="r1",
        mode="test",
        status="completed",
        started_at=T,
        finished_at=T,
        vms=[_vm("db-01", True, "erp"), _vm("solo-01", False, None)],
        failed_vms={},
        hooks=[],
        approvals=[],
        groups=[],
        cleanup=CleanupOutcome(removed=[], dns_restored=[restored.detail], dns=[restored]),
    )
    html = render_html(report)
    assert "20261201T095500Z-aaaaaaaaaaaa (group erp)" in html
    assert html.count("app-consistent") == 1 and html.count("crash-consistent") == 1
    assert "DNS restored: db.corp.example.com A: 10.2.3.10 -&gt; 10.1.3.10 (restored)" in html
    back = RunReport.model_validate_json(report.model_dump_json())
    assert back.vms[0].app_consistent and back.cleanup is not None and back.cleanup.dns == [restored]
