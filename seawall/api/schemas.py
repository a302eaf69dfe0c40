"""The API's request and answer bodies, and the examples its OpenAPI document shows."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator

from seawall.contract.messages import Approval


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailoverRequest(_Body):
    mode: Literal["test", "planned", "unplanned"] = Field(
        description="test: a drill on the isolated network, cleaned up after; planned: stop, final "
        "sync, no data loss; unplanned: the source is gone, newest verified point"
    )
    point_time: datetime | None = Field(
        default=None, description="recover to the newest verified point at or before this time (with zone)"
    )
    ttl_hours: float | None = Field(
        default=None, gt=0, le=14 * 24, description="a drill's time to live (default: the plan's test_ttl)"
    )
    from_mirror: bool = Field(
        default=False,
        description="read every VM's point from its replica store's mirror even when the store answers "
        "(default: the mirror serves only when the store cannot be reached); refused before anything is "
        "done when a VM's store has no mirror",
    )

    @field_validator("point_time")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("point_time needs a time zone, e.g. 2026-11-26T01:00:00Z")
        return value

    def fingerprint(self) -> str:
        # from_mirror only when set: a key recorded before the field existed still matches.
        return hashlib.sha256(
            self.model_dump_json(exclude=None if self.from_mirror else {"from_mirror"}).encode()
        ).hexdigest()


class ApproveRequest(_Body):
    gate: str = Field(min_length=1, max_length=63, description="the gate the run is waiting on")
    comment: str = Field(default="", max_length=2000)


class AbortRequest(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class RetryRequest(_Body):
    comment: str = Field(default="", max_length=2000)


class RollbackRequest(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class CommitRequest(_Body):
    run: str = Field(
        pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$",
        description="the failover run to make final (its name, as the report and the run's state give it)",
    )


class ActionStarted(BaseModel):
    plan: str
    action: Literal["commit", "reprotect"]
    workflow_id: str
    run_id: str


class RunLinks(BaseModel):
    self: str
    ui: str
    current: str
    report: str


class FailoverStarted(BaseModel):
    plan: str
    mode: str
    workflow_id: str
    run_id: str
    links: RunLinks


class Progress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phase: str
    vms: dict[str, str]
    pending_gate: str | None
    pending_gate_role: str | None = Field(
        default=None, description="the least role that may approve the waiting gate (the run decides)"
    )
    approvals: list[Approval]
    aborted: bool
    gate_message: str | None = Field(
        default=None, description="what the waiting gate asks (a rollback's: exactly what it destroys)"
    )
    stopped: str | None = Field(
        default=None, description="why the run stopped and waits for the operator (retry, rollback, abort)"
    )
    deadline: str | None = Field(default=None, description="a drill's end (its time to live), ISO time")


class RunState(BaseModel):
    plan: str
    workflow_id: str
    run_id: str
    status: str = Field(description="RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, TIMED_OUT, ...")
    mode: str | None
    run: str | None = Field(description="the run's name, as its report is named")
    started_by: str | None
    started_at: datetime | None
    closed_at: datetime | None
    progress: Progress | None = Field(description="the live progress while it runs")
    links: RunLinks


class GroupView(BaseModel):
    name: str
    vms: list[str]
    gate: str | None
    gate_approvers: Literal["operator", "admin"] | None = Field(
        default=None,
        description="the least role that may approve the gate, as the plan says (none: an operator in a "
        "drill, an admin in a real failover)",
    )


class PlanSummary(BaseModel):
    name: str
    defined_in: str = Field(description='"inventory" or the plan file\'s name')
    valid: bool
    problems: list[str]
    description: str | None
    source_site: str | None
    target_site: str | None
    groups: list[GroupView]


class UpdateDone(BaseModel):
    plan: str
    workflow_id: str
    run_id: str
    result: str


class ApprovalDone(UpdateDone):
    approval: Approval


class PointView(BaseModel):
    point_id: str | None
    workflow_id: str
    run_id: str
    status: str
    started_at: datetime
    closed_at: datetime | None
    verified: bool | None
    change_path: str | None
    bytes_read: int | None
    bytes_shipped: int | None


class Triggered(BaseModel):
    vm: str
    schedule_id: str


class Health(BaseModel):
    ok: bool


RUN_EXAMPLE = {
    "plan": "erp-dr",
    "mode": "test",
    "workflow_id": "recover/erp-dr",
    "run_id": "0196f1a2-7c3e-7d2b-9a51-3f0c2d4e5a6b",
    "links": {
        "self": "/v1/plans/erp-dr/failovers/0196f1a2-7c3e-7d2b-9a51-3f0c2d4e5a6b",
        "ui": "http://127.0.0.1:8233/namespaces/default/workflows/recover%2Ferp-dr/"
        "0196f1a2-7c3e-7d2b-9a51-3f0c2d4e5a6b/history",
        "current": "/v1/plans/erp-dr/failovers/current",
        "report": "/v1/plans/erp-dr/report",
    },
}


STATE_EXAMPLE = {
    "plan": "erp-dr",
    "workflow_id": "recover/erp-dr",
    "run_id": RUN_EXAMPLE["run_id"],
    "status": "RUNNING",
    "mode": "test",
    "run": "20261126T013000Z-2d4e5a6b",
    "started_by": "dr-oncall",
    "started_at": "2026-11-26T01:30:00Z",
    "closed_at": None,
    "progress": {
        "phase": "waiting for approval: web-go-ahead (check the app tier)",
        "vms": {"db-01": "healthy", "app-01": "healthy", "app-02": "healthy"},
        "pending_gate": "web-go-ahead",
        "approvals": [],
        "aborted": False,
    },
    "links": RUN_EXAMPLE["links"],
}


def ok_example(example: Any, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


PlanName = Annotated[str, PathParam(description="a recovery plan's name", examples=["erp-dr"])]
VMName = Annotated[str, PathParam(description="a protected VM's name", examples=["db-01"])]
