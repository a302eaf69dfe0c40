"""Stub activities under the real activity names and input types, for workflow tests without a lab.

Each stub records what it was called with (and on which task queue) and returns a small canned result;
a test makes chosen calls fail (per VM) or block until cancelled. ``test_stub_contract`` checks that
every real activity has a stub with the same name, input type and result type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from seawall.contract.messages import (
    ChosenPoint,
    CleanupOutcome,
    CleanupRequest,
    CommitRequest,
    CreateTargetRequest,
    CycleStart,
    DiskRef,
    DnsChange,
    GcInput,
    GcOutcome,
    GcScheduleRequest,
    GroupStep,
    HealthOutcome,
    HookOutcome,
    HookRequest,
    Materialized,
    MirrorOutcome,
    PlanSpec,
    PlanSpecRequest,
    PointRestore,
    ProbeSiteInput,
    ProtectInput,
    Protection,
    RecoveredVM,
    RecoverVMInput,
    ReportWritten,
    Resource,
    RetentionOutcome,
    RunReport,
    ScheduleRequest,
    ShipOutcome,
    ShippedDiskRef,
    ShipRequest,
    SiteProbe,
    SnapshotRelease,
    SnapshotRequest,
    SnapshotTaken,
    TargetVM,
    VerifyOutcome,
    VMPoint,
    VMRef,
    VMsRef,
    VMStep,
)
from seawall.contract.names import Activity as A

T0 = "2026-11-30T10:00:00+00:00"


@dataclass(frozen=True)
class Call:
    name: str
    inp: Any
    queue: str

    @property
    def vm(self) -> str | None:
        return _vm_of(self.inp)


def _vm_of(inp: Any) -> str | None:
    for attr in ("vm", "target"):
        value = getattr(inp, attr, None)
        if isinstance(value, str):
            return value
        if isinstance(value, RecoverVMInput):
            return value.vm
    return None


@dataclass
class Stubs:
    """The canned world: one plan shape, one protected VM kind, and what should go wrong."""

    spec: PlanSpec | None = None
    source_site: str = "src"
    source_kind: str = "vsphere"
    # activity name -> the VMs it fails for (None: every call); failures are non-retryable.
    failing: dict[str, set[str] | None] = field(default_factory=dict)
    # activity name -> the error type it fails with (default StubFailure).
    failure_type: dict[str, str] = field(default_factory=dict)
    blocking: set[str] = field(default_factory=set)
    verify_ok: bool = True
    parent: str | None = None
    mirror: str | None = None
    calls: list[Call] = field(default_factory=list)

    # ---- what a test reads back --------------------------------------------------------------------

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def inputs(self, name: str) -> list[Any]:
        return [c.inp for c in self.of(name)]

    def vms(self, name: str) -> list[str | None]:
        return [c.vm for c in self.of(name)]

    def report(self) -> RunReport:
        (report,) = self.inputs(A.WRITE_REPORT)
        return report  # type: ignore[no-any-return]

    async def called(self, name: str, timeout: float = 10.0) -> None:
        """Wait until ``name`` has been called (for a blocking stub: until it is running)."""
        async with asyncio.timeout(timeout):
            while name not in self.names():
                await asyncio.sleep(0.05)

    # ---- the common path of every stub -------------------------------------------------------------

    async def _enter(self, name: str, inp: BaseModel) -> None:
        self.calls.append(Call(name, inp, activity.info().task_queue))
        vm = _vm_of(inp)
        if name in self.failing and (self.failing[name] is None or vm in (self.failing[name] or ())):
            raise ApplicationError(
                f"{name} failed for {vm}", type=self.failure_type.get(name, "StubFailure"), non_retryable=True
            )
        if name in self.blocking:
            # Until cancelled: a heartbeat is how an activity learns of its cancellation.
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.1)

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            getattr(self, attr)
            for attr in dir(type(self))
            if hasattr(getattr(type(self), attr), "__temporal_activity_definition")
        ]

    # ---- orchestration -----------------------------------------------------------------------------

    @activity.defn(name=A.LOAD_PLAN_SPEC)
    async def load_plan_spec(self, req: PlanSpecRequest) -> PlanSpec:
        await self._enter(A.LOAD_PLAN_SPEC, req)
        assert self.spec is not None
        return self.spec

    @activity.defn(name=A.PAUSE_SCHEDULES)
    async def pause_schedules(self, req: VMsRef) -> int:
        await self._enter(A.PAUSE_SCHEDULES, req)
        return len(req.vms)

    @activity.defn(name=A.WRITE_REPORT)
    async def write_report(self, report: RunReport) -> ReportWritten:
        await self._enter(A.WRITE_REPORT, report)
        return ReportWritten(json_path=f"/r/{report.run}.json", html_path=f"/r/{report.run}.html")

    @activity.defn(name=A.FENCE_VM)
    async def fence_vm(self, req: VMRef) -> str:
        await self._enter(A.FENCE_VM, req)
        return f"{req.vm}: powered off"

    @activity.defn(name=A.RUN_HOOK)
    async def run_hook(self, req: HookRequest) -> HookOutcome:
        await self._enter(A.RUN_HOOK, req)
        return HookOutcome(name=req.name, ok=True, detail="exit 0", started_at=T0, finished_at=T0)

    @activity.defn(name=A.CLEANUP_RUN)
    async def cleanup_run(self, req: CleanupRequest) -> CleanupOutcome:
        await self._enter(A.CLEANUP_RUN, req)
        return CleanupOutcome(
            removed=[Resource(kind="vm", id=f"drill-{req.run}", site="dst")], dns_restored=[]
        )

    # ---- recovery at the target --------------------------------------------------------------------

    @activity.defn(name=A.CHOOSE_POINT)
    async def choose_point(self, inp: RecoverVMInput) -> ChosenPoint:
        await self._enter(A.CHOOSE_POINT, inp)
        return ChosenPoint(point_id=f"pt-{inp.vm}", created_at=T0, disks=["disk0"], source_ips=["10.0.0.9"])

    @activity.defn(name=A.MATERIALIZE_DISKS)
    async def materialize_disks(self, req: PointRestore) -> Materialized:
        await self._enter(A.MATERIALIZE_DISKS, req)
        made = Resource(kind="datastore-dir", id=f"{req.target.vm}-dir", site=req.target.target_site)
        return Materialized(point=req.point, disks=["{}"], resources=[made])

    @activity.defn(name=A.RESTORE_IN_PLACE)
    async def restore_in_place(self, req: PointRestore) -> TargetVM:
        await self._enter(A.RESTORE_IN_PLACE, req)
        return TargetVM(name=req.target.vm, ips=["10.0.0.9"], resources=[])

    @activity.defn(name=A.CREATE_TARGET_VM)
    async def create_target_vm(self, req: CreateTargetRequest) -> TargetVM:
        await self._enter(A.CREATE_TARGET_VM, req)
        name = f"{req.target.vm}-new"
        return TargetVM(name=name, ips=["10.1.0.9"], resources=[Resource(kind="vm", id=name, site="dst")])

    @activity.defn(name=A.CHECK_HEALTH)
    async def check_health(self, req: RecoveredVM) -> HealthOutcome:
        await self._enter(A.CHECK_HEALTH, req)
        return HealthOutcome(ok=True, checks=["tcp: ok"], elapsed_s=0.1)

    @activity.defn(name=A.UPDATE_DNS)
    async def update_dns(self, req: RecoveredVM) -> list[DnsChange]:
        await self._enter(A.UPDATE_DNS, req)
        ip = req.vm.ips[0]
        return [DnsChange(name=f"{req.target.vm}.lab.", type="A", value=ip, previous=None, zone="lab.")]

    # ---- replication -------------------------------------------------------------------------------

    @activity.defn(name=A.PROBE_SITE)
    async def probe_site(self, inp: ProbeSiteInput) -> SiteProbe:
        await self._enter(A.PROBE_SITE, inp)
        return SiteProbe(site=inp.site, kind="vsphere", reachable=True, detail="ok", elapsed_ms=1, worker="w")

    @activity.defn(name=A.RESOLVE_PROTECTION)
    async def resolve_protection(self, inp: ProtectInput) -> Protection:
        await self._enter(A.RESOLVE_PROTECTION, inp)
        return Protection(
            vm=inp.vm,
            source_site=inp.source_site or self.source_site,
            source_kind=self.source_kind,
            policy="gold",
            interval_s=300,
            grace_s=150,
            store="local",
            app_consistent=True,
            retention_count=5,
            retention_hours=None,
            heartbeat_timeout_s=60,
            gc_interval_s=3600,
            mirror=self.mirror,
        )

    @activity.defn(name=A.ENABLE_CBT)
    async def enable_cbt(self, req: VMRef) -> bool:
        await self._enter(A.ENABLE_CBT, req)
        return True

    @activity.defn(name=A.START_CYCLE)
    async def start_cycle(self, req: VMPoint) -> CycleStart:
        await self._enter(A.START_CYCLE, req)
        return CycleStart(
            point_id=req.point_id,
            snapshot=f"seawall-{req.point_id}",
            parent=self.parent,
            parent_created_at=T0 if self.parent else None,
        )

    @activity.defn(name=A.CREATE_SNAPSHOT)
    async def create_snapshot(self, req: SnapshotRequest) -> SnapshotTaken:
        await self._enter(A.CREATE_SNAPSHOT, req)
        disks = [DiskRef(key="2000", label="Hard disk 1", size=1 << 20, name="disk0")]
        return SnapshotTaken(snapshot=req.snapshot, disks=disks, cbt=True, guest_ips=["10.0.0.9"])

    @activity.defn(name=A.SHIP_DISKS)
    async def ship_disks(self, req: ShipRequest) -> ShipOutcome:
        await self._enter(A.SHIP_DISKS, req)
        path = "cbt" if req.parent else "full"
        return ShipOutcome(
            disks=[
                ShippedDiskRef(
                    disk=d.replica_name, shipped={}, bytes_read=100, bytes_shipped=10, change_path=path
                )
                for d in req.disks
            ]
        )

    @activity.defn(name=A.COMMIT_POINT)
    async def commit_point(self, req: CommitRequest) -> str:
        await self._enter(A.COMMIT_POINT, req)
        return req.point_id

    @activity.defn(name=A.VERIFY_POINT)
    async def verify_point(self, req: VMPoint) -> VerifyOutcome:
        await self._enter(A.VERIFY_POINT, req)
        problems = [] if self.verify_ok else ["disk0 block 3 @ 196608: digest mismatch"]
        return VerifyOutcome(ok=self.verify_ok, blocks_checked=16, bytes_checked=1 << 20, problems=problems)

    @activity.defn(name=A.MIRROR_POINTS)
    async def mirror_points(self, req: VMRef) -> MirrorOutcome:
        await self._enter(A.MIRROR_POINTS, req)
        return MirrorOutcome(vm=req.vm, mirror=self.mirror or "-", mirrored=["p"], bytes_copied=10, lag=0)

    @activity.defn(name=A.RELEASE_SNAPSHOT)
    async def release_snapshot(self, req: SnapshotRelease) -> int:
        await self._enter(A.RELEASE_SNAPSHOT, req)
        return 1

    @activity.defn(name=A.APPLY_RETENTION)
    async def apply_retention(self, req: VMRef) -> RetentionOutcome:
        await self._enter(A.APPLY_RETENTION, req)
        return RetentionOutcome(kept=5, deleted=["old-point"])

    @activity.defn(name=A.COLLECT_GARBAGE)
    async def collect_garbage(self, req: GcInput) -> GcOutcome:
        await self._enter(A.COLLECT_GARBAGE, req)
        return GcOutcome(store=req.store, packs_deleted=1, tables_deleted=0, condemned=0, live_sessions=0)

    @activity.defn(name=A.PRUNE_POINTS)
    async def prune_points(self, req: VMRef) -> list[str]:
        await self._enter(A.PRUNE_POINTS, req)
        return [f"{req.vm}-old"]

    @activity.defn(name=A.DELETE_REPLICA)
    async def delete_replica(self, req: VMRef) -> int:
        await self._enter(A.DELETE_REPLICA, req)
        return 7

    @activity.defn(name=A.ENSURE_SCHEDULE)
    async def ensure_schedule(self, req: ScheduleRequest) -> str:
        await self._enter(A.ENSURE_SCHEDULE, req)
        return f"replicate/{req.vm}"

    @activity.defn(name=A.ENSURE_GC_SCHEDULE)
    async def ensure_gc_schedule(self, req: GcScheduleRequest) -> str:
        await self._enter(A.ENSURE_GC_SCHEDULE, req)
        return f"gc/{req.store}"

    @activity.defn(name=A.DELETE_SCHEDULE)
    async def delete_schedule(self, req: VMRef) -> bool:
        await self._enter(A.DELETE_SCHEDULE, req)
        return True

    @activity.defn(name=A.CANCEL_CYCLES)
    async def cancel_cycles(self, req: VMRef) -> int:
        await self._enter(A.CANCEL_CYCLES, req)
        return 0


def vm_step(vm: str, group: str, depends_on: Sequence[str] = (), boot_delay_s: float = 0) -> VMStep:
    return VMStep(vm=vm, group=group, depends_on=list(depends_on), boot_delay_s=boot_delay_s)


def group(
    name: str,
    *vms: VMStep,
    gate: str | None = None,
    gate_timeout_s: float | None = None,
    gate_on_timeout: str = "abort",
    pre_hooks: Sequence[str] = (),
    post_hooks: Sequence[str] = (),
) -> GroupStep:
    return GroupStep(
        name=name,
        boot_delay_s=0,
        vms=list(vms),
        pre_hooks=list(pre_hooks),
        post_hooks=list(post_hooks),
        gate=gate,
        gate_message=f"check {name}" if gate else None,
        gate_timeout_s=gate_timeout_s,
        gate_on_timeout=gate_on_timeout,
    )


def plan_spec(
    plan: str,
    source: str,
    target: str,
    *groups: GroupStep,
    failure_policy: str = "stop",
    test_ttl_s: float = 4 * 3600,
    pre_hooks: Sequence[str] = (),
    post_hooks: Sequence[str] = (),
) -> PlanSpec:
    return PlanSpec(
        plan=plan,
        source_site=source,
        target_site=target,
        target_kind="vsphere",
        failure_policy=failure_policy,
        test_ttl_s=test_ttl_s,
        pre_hooks=list(pre_hooks),
        post_hooks=list(post_hooks),
        groups=list(groups),
    )
