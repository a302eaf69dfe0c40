"""Stub activities under the real activity names and input types, for workflow tests without a lab.

Each stub records what it was called with (and on which task queue) and returns a small canned result;
a test makes chosen calls fail (per VM) or block until cancelled. ``test_stub_contract`` checks that
every real activity has a stub with the same name, input type and result type.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.drills import DrillActivities
from activities.recovery import OrchestrationActivities
from seawall.contract.drills import (
    DriveDrillInput,
    DriveOutcome,
    NotifyRequest,
    NotifySent,
    RpoCheck,
    RpoWatchInput,
)
from seawall.contract.intents import Authority, IntentCheck
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
    GroupCycleInput,
    GroupPointRequest,
    GroupPointsChosen,
    GroupPointsRequest,
    GroupProtection,
    GroupScheduleRequest,
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
    SnapshotHookOutcome,
    SnapshotHookRequest,
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
from seawall.contract.verify import CORRUPT_REPLICA, PointVerdict, VerifyInput, VerifyReport
from seawall.runtime.config import Settings
from seawall.security.intents import IntentKeys

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
    # activity name -> seconds it runs whether cancelled or not (a site call that cannot be
    # interrupted); its end is recorded in ``finished`` with the number of calls made by then.
    uninterruptible: dict[str, float] = field(default_factory=dict)
    finished: list[tuple[str, int]] = field(default_factory=list)
    # activity name -> how many of its first attempts fail with a retryable error (then it succeeds).
    flaky: dict[str, int] = field(default_factory=dict)
    # cancel_failover_cycles' answer: the cycles that did not close in time.
    cycles_left: list[str] = field(default_factory=list)
    # check_rpo's answers in turn (the last one repeats).
    rpo_checks: list[RpoCheck] = field(default_factory=list)
    verify_ok: bool = True
    parent: str | None = None
    # Points whose materialize fails as corrupt data (CorruptReplica); choose_point with ``refused``
    # answers the next older point ``<point>-older``, or none when ``no_older`` is set.
    corrupt: set[str] = field(default_factory=set)
    no_older: bool = False
    # consistency groups: the members, and what the freeze hook does ("ok", "timeout", "fails")
    group_vms: list[str] = field(default_factory=lambda: ["db", "app", "web"])
    freeze: str = "ok"
    # VMs whose verify fails (the others verify)
    verify_fails_for: set[str] = field(default_factory=set)
    mirror: str | None = None
    # The replica store cannot be read: the choosing activities answer from the mirror.
    store_down: bool = False
    calls: list[Call] = field(default_factory=list)
    # (run, activity id, attempt) of each local activity recorded: see ``_enter``.
    _local_runs: set[tuple[str | None, str, int]] = field(default_factory=set, repr=False)
    # Signed intents: the orchestration worker's keys (None: not enforced) and its policy.
    intent_keys: IntentKeys | None = None
    unsigned_drills: bool = True
    confirm_wait_s: float = 3600.0

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
        info = activity.info()
        # A workflow task that ran local activities but could not be completed (a loaded server
        # refused it) is run again from its start, and its local activities with it, under the same
        # ids and attempts: one call the workflow made, recorded once. A retry is a new attempt.
        run = (info.workflow_run_id, info.activity_id, info.attempt)
        if not (info.is_local and run in self._local_runs):
            self.calls.append(Call(name, inp, info.task_queue))
        if info.is_local:
            self._local_runs.add(run)
        if info.attempt <= self.flaky.get(name, 0):
            raise ApplicationError(f"{name} attempt {info.attempt} failed", type="StubFlaky")
        vm = _vm_of(inp)
        if name in self.failing and (self.failing[name] is None or vm in (self.failing[name] or ())):
            raise ApplicationError(
                f"{name} failed for {vm}", type=self.failure_type.get(name, "StubFailure"), non_retryable=True
            )
        if name in self.uninterruptible:
            deadline = asyncio.get_running_loop().time() + self.uninterruptible[name]
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(left)
            self.finished.append((name, len(self.calls)))
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

    @activity.defn(name=A.CHECK_INTENT)
    async def check_intent(self, req: IntentCheck) -> Authority:
        """The real check (signature, claims, nonce reuse through visibility), with this rig's keys."""
        await self._enter(A.CHECK_INTENT, req)
        settings = Settings(
            intent_unsigned_drills=self.unsigned_drills, intent_confirm_wait_s=self.confirm_wait_s
        )
        real = OrchestrationActivities(settings)
        real.intent_keys = self.intent_keys
        return await real.check_intent(req)

    @activity.defn(name=A.PAUSE_SCHEDULES)
    async def pause_schedules(self, req: VMsRef) -> int:
        await self._enter(A.PAUSE_SCHEDULES, req)
        return len(req.vms)

    @activity.defn(name=A.WRITE_REPORT)
    async def write_report(self, report: RunReport) -> ReportWritten:
        await self._enter(A.WRITE_REPORT, report)
        return ReportWritten(json_path=f"/r/{report.run}.json", html_path=f"/r/{report.run}.html")

    @activity.defn(name=A.NOTIFY)
    async def notify(self, req: NotifyRequest) -> NotifySent:
        await self._enter(A.NOTIFY, req)
        return NotifySent(delivered=["stub"])

    @activity.defn(name=A.CHECK_RPO)
    async def check_rpo(self, inp: RpoWatchInput) -> RpoCheck:
        await self._enter(A.CHECK_RPO, inp)
        done = len(self.of(A.CHECK_RPO)) - 1
        return self.rpo_checks[min(done, len(self.rpo_checks) - 1)] if self.rpo_checks else RpoCheck(vms=[])

    @activity.defn(name=A.DRIVE_DRILL)
    async def drive_drill(self, inp: DriveDrillInput) -> DriveOutcome:
        # The real one: it only talks to Temporal (queries and updates of the drill run).
        await self._enter(A.DRIVE_DRILL, inp)
        return await DrillActivities().drive_drill(inp)

    @activity.defn(name=A.FENCE_VM)
    async def fence_vm(self, req: VMRef) -> str:
        await self._enter(A.FENCE_VM, req)
        return f"{req.vm}: powered off"

    @activity.defn(name=A.START_SOURCE)
    async def start_source(self, req: VMRef) -> str:
        await self._enter(A.START_SOURCE, req)
        return f"{req.vm}: powered on"

    @activity.defn(name=A.RESUME_SCHEDULES)
    async def resume_schedules(self, req: VMsRef) -> int:
        await self._enter(A.RESUME_SCHEDULES, req)
        return len(req.vms)

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
        if inp.refused:
            if self.no_older:
                raise ApplicationError(
                    f"{inp.vm} has no verified recovery point older than {inp.refused[-1]}",
                    type="NoRecoveryPoint",
                    non_retryable=True,
                )
            older = f"{inp.refused[-1]}-older"
            note = f"{older} is the newest older point and passed a full verify"
            return ChosenPoint(point_id=older, created_at=T0, disks=["disk0"], source_ips=[], note=note)
        store = inp.store or ((self.mirror or "far") if inp.from_mirror or self.store_down else "local")
        return ChosenPoint(
            point_id=inp.point_id or f"pt-{inp.vm}",
            created_at=T0,
            disks=["disk0"],
            source_ips=["10.0.0.9"],
            store=store,
        )

    @activity.defn(name=A.MATERIALIZE_DISKS)
    async def materialize_disks(self, req: PointRestore) -> Materialized:
        await self._enter(A.MATERIALIZE_DISKS, req)
        if req.point.point_id in self.corrupt:
            raise ApplicationError(
                f"point {req.point.point_id} of {req.target.vm} is corrupt: disk 'disk0' block 3: "
                "authentication failed [chunk 0123456789abcdef in pack fedcba9876543210 @ 4096]",
                type=CORRUPT_REPLICA,
                non_retryable=True,
            )
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
        ok = self.verify_ok and req.vm not in self.verify_fails_for
        problems = [] if ok else ["disk0 block 3 @ 196608: digest mismatch"]
        return VerifyOutcome(ok=ok, blocks_checked=16, bytes_checked=1 << 20, problems=problems)

    @activity.defn(name=A.MIRROR_POINTS)
    async def mirror_points(self, req: VMRef) -> MirrorOutcome:
        await self._enter(A.MIRROR_POINTS, req)
        return MirrorOutcome(vm=req.vm, mirror=self.mirror or "-", mirrored=["p"], bytes_copied=10, lag=0)

    @activity.defn(name=A.RELEASE_SNAPSHOT)
    async def release_snapshot(self, req: SnapshotRelease) -> int:
        await self._enter(A.RELEASE_SNAPSHOT, req)
        return 1

    @activity.defn(name=A.RELEASE_ORPHAN_SNAPSHOTS)
    async def release_orphan_snapshots(self, req: VMRef) -> list[str]:
        await self._enter(A.RELEASE_ORPHAN_SNAPSHOTS, req)
        return ["seawall-orphan"]

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

    @activity.defn(name=A.SCRUB_REPLICA)
    async def scrub_replica(self, req: VerifyInput) -> VerifyReport:
        await self._enter(A.SCRUB_REPLICA, req)
        points = [PointVerdict(point_id=p, ok=p not in self.corrupt) for p in req.points or [f"pt-{req.vm}"]]
        return VerifyReport(vm=req.vm, ok=all(p.ok for p in points), points=points)

    @activity.defn(name=A.DELETE_SCHEDULE)
    async def delete_schedule(self, req: VMRef) -> bool:
        await self._enter(A.DELETE_SCHEDULE, req)
        return True

    @activity.defn(name=A.CANCEL_CYCLES)
    async def cancel_cycles(self, req: VMRef) -> int:
        await self._enter(A.CANCEL_CYCLES, req)
        return 0

    @activity.defn(name=A.CANCEL_FAILOVER_CYCLES)
    async def cancel_failover_cycles(self, req: VMsRef) -> list[str]:
        await self._enter(A.CANCEL_FAILOVER_CYCLES, req)
        return list(self.cycles_left)

    # ---- consistency groups ------------------------------------------------------------------------

    @activity.defn(name=A.RESOLVE_GROUP)
    async def resolve_group(self, inp: GroupCycleInput) -> GroupProtection:
        await self._enter(A.RESOLVE_GROUP, inp)
        return GroupProtection(
            group=inp.group,
            source_site=self.source_site,
            source_kind=self.source_kind,
            vms=list(self.group_vms),
            policy="gold",
            interval_s=300,
            store="local",
            app_consistent=True,
            freeze=True,
            thaw=True,
            freeze_timeout_s=5,
            thaw_timeout_s=5,
            mirror=self.mirror,
        )

    @activity.defn(name=A.RUN_SNAPSHOT_HOOK)
    async def run_snapshot_hook(self, req: SnapshotHookRequest) -> SnapshotHookOutcome:
        await self._enter(A.RUN_SNAPSHOT_HOOK, req)
        if req.hook == "freeze" and self.freeze == "fails":
            raise ApplicationError("freeze: worker lost", type="StubFailure", non_retryable=True)
        if req.hook == "freeze" and self.freeze == "timeout":
            # What the real activity reports after killing a hung freeze command at its timeout.
            return SnapshotHookOutcome(
                hook="freeze",
                ok=False,
                timed_out=True,
                detail="timed out after 5s: killed",
                started_at=T0,
                finished_at=T0,
            )
        return SnapshotHookOutcome(
            hook=req.hook, ok=True, timed_out=False, detail="exit 0", started_at=T0, finished_at=T0
        )

    @activity.defn(name=A.COMMIT_GROUP_POINT)
    async def commit_group_point(self, req: GroupPointRequest) -> str:
        await self._enter(A.COMMIT_GROUP_POINT, req)
        return req.point_id

    @activity.defn(name=A.ENSURE_GROUP_SCHEDULE)
    async def ensure_group_schedule(self, req: GroupScheduleRequest) -> str:
        await self._enter(A.ENSURE_GROUP_SCHEDULE, req)
        return f"replicate-group/{req.group}"

    @activity.defn(name=A.CHOOSE_GROUP_POINTS)
    async def choose_group_points(self, req: GroupPointsRequest) -> GroupPointsChosen:
        await self._enter(A.CHOOSE_GROUP_POINTS, req)
        groups = {g: f"gp-{g}" for g in req.groups}
        # Like the real one: from the mirror when asked (or, here, when ``store_down`` says so).
        store = (self.mirror or "far") if req.from_mirror or self.store_down else "local"
        return GroupPointsChosen(
            groups=groups,
            points={vm: f"gp-{g}" for g, vms in req.groups.items() for vm in vms},
            stores={vm: store for vms in req.groups.values() for vm in vms},
        )


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
    gate_role: str | None = None,
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
        gate_role=gate_role,
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
    consistency_groups: dict[str, list[str]] | None = None,
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
        consistency_groups=consistency_groups or {},
    )
