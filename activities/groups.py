"""Consistency groups at the source site: freeze/thaw hooks, and the group point committed last.

The per-member steps (start, snapshot, ship, commit, verify, release, retention) are the single-VM
cycle's activities with the group point's id as each member's point id; what is here is what only a
group has.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio import activity

from activities.context import fatal
from activities.replica import ReplicaSite
from seawall.blockstore.errors import DataPathError
from seawall.blockstore.groups import new_group_point
from seawall.blockstore.stores.backend import StoreError
from seawall.contract.messages import (
    GroupPointRequest,
    GroupProtection,
    SnapshotHookOutcome,
    SnapshotHookRequest,
)
from seawall.contract.names import Activity
from seawall.model import ConsistencyGroup, Inventory
from seawall.runtime import failpoints


def resolve_group_for(
    inventory: Inventory, group_name: str, heartbeat_timeout_s: float = 120.0, gc_interval_s: float = 3600.0
) -> GroupProtection:
    try:
        group = inventory.consistency_group(group_name)
    except LookupError:
        known = ", ".join(g.name for g in inventory.consistency_groups) or "none"
        raise fatal(
            f"no consistency group {group_name!r} in the inventory (groups: {known})", "NotProtected"
        ) from None
    members = []
    for name in group.vms:
        try:
            members.append(inventory.protected_vm(name))
        except LookupError:
            raise fatal(
                f"consistency group {group.name!r}: VM {name!r} is not protected", "NotProtected"
            ) from None
    try:
        policy = inventory.policy(group.policy)
    except LookupError:
        raise fatal(
            f"consistency group {group.name!r}: no policy {group.policy!r}", "UnknownPolicy"
        ) from None
    sites = {m.source_site for m in members}
    stores = {m.replica_store for m in members}
    if len(sites) != 1 or len(stores) != 1:
        raise fatal(
            f"consistency group {group.name!r}: members must share one source site and replica store",
            "NotProtected",
        )
    site = inventory.site(sites.pop())
    store = stores.pop()
    return GroupProtection(
        group=group.name,
        source_site=site.name,
        source_kind=site.kind,
        vms=list(group.vms),
        policy=policy.name,
        interval_s=policy.interval.total_seconds(),
        store=store,
        mirror=inventory.replica_store(store).mirror,
        app_consistent=policy.app_consistent,
        freeze=group.freeze is not None,
        thaw=group.thaw is not None,
        freeze_timeout_s=group.freeze.timeout.total_seconds() if group.freeze else 0.0,
        thaw_timeout_s=group.thaw.timeout.total_seconds() if group.thaw else 0.0,
        heartbeat_timeout_s=heartbeat_timeout_s,
        gc_interval_s=gc_interval_s,
    )


def run_command(
    argv: list[str], timeout: float, env: dict[str, str], beat: Callable[[], None]
) -> tuple[bool, bool, str]:
    """Run ``argv`` without a shell; at ``timeout`` kill its whole process group (a hung freeze
    script's children too). Returns (ok, timed out, detail)."""
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
    except OSError as exc:
        return False, False, f"{type(exc).__name__}: {exc}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, _ = proc.communicate(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            text = out.decode(errors="replace").strip()[-500:]
            return proc.returncode == 0, False, f"exit {proc.returncode}: {text}"
        except subprocess.TimeoutExpired:
            beat()
            if time.monotonic() >= deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return False, True, f"timed out after {timeout:g}s: killed"


class GroupActivities(ReplicaSite):
    """At the source site: a consistency group's hooks and its group point."""

    def _group(self, name: str) -> ConsistencyGroup:
        try:
            return self.ctx.inventory.consistency_group(name)
        except LookupError:
            raise fatal(f"no consistency group {name!r} in the inventory", "NotProtected") from None

    @activity.defn(name=Activity.RUN_SNAPSHOT_HOOK)
    def run_snapshot_hook(self, req: SnapshotHookRequest) -> SnapshotHookOutcome:
        """Run the group's freeze or thaw command; a failure or timeout is reported, never raised:
        the workflow decides (a failed freeze makes a crash-consistent point; thaw always runs)."""
        group = self._group(req.group)
        hook = group.freeze if req.hook == "freeze" else group.thaw
        started = datetime.now(UTC).isoformat()
        if hook is None:
            return SnapshotHookOutcome(
                hook=req.hook,
                ok=True,
                timed_out=False,
                detail="none",
                started_at=started,
                finished_at=started,
            )
        env = {"SEAWALL_GROUP": group.name, "SEAWALL_POINT": req.point_id, "SEAWALL_HOOK": req.hook}
        ok, timed_out, detail = run_command(
            list(hook.command), hook.timeout.total_seconds(), env, lambda: activity.heartbeat(req.hook)
        )
        return SnapshotHookOutcome(
            hook=req.hook,
            ok=ok,
            timed_out=timed_out,
            detail=self.ctx.redact(detail),
            started_at=started,
            finished_at=datetime.now(UTC).isoformat(),
        )

    @activity.defn(name=Activity.COMMIT_GROUP_POINT)
    def commit_group_point(self, req: GroupPointRequest) -> str:
        """Write the group point once every member's point is committed and verified; idempotent."""
        repo = self._repository(req.vms[0])
        try:
            for vm in req.vms:
                found = {p.point_id: p for p in repo.list_points(vm)}
                member = found.get(req.point_id)
                if member is None or not member.verified:
                    raise fatal(
                        f"group {req.group} point {req.point_id}: {vm}'s point is not verified",
                        "MemberNotVerified",
                    )
            point = new_group_point(
                req.group,
                req.point_id,
                req.vms,
                req.app_consistent,
                (req.snapshots_started_at, req.snapshots_finished_at),
                req.notes,
            )
            stored, _ = repo.groups.commit(point)
            failpoints.hit("group.committed", {"point": stored.point_id})
            # Group points whose members retention has since removed are no longer recoverable.
            kept = {vm: {p.point_id for p in repo.list_points(vm)} for vm in req.vms}
            for old in repo.groups.list(req.group):
                if old.point_id != stored.point_id and any(
                    old.point_id not in kept.get(vm, set()) for vm in old.vms
                ):
                    repo.groups.delete(req.group, old.point_id)
        except (StoreError, DataPathError) as exc:
            raise self._store_error(req.vms[0], exc) from None
        return stored.point_id
