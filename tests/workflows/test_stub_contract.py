"""The stubs stand in for the real activities: same names, same input and result types."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities import schedules
from activities.checks import CheckActivities
from activities.cleanup import CleanupActivities
from activities.cycle_stop import CycleStopActivities
from activities.drills import DrillActivities
from activities.fence import FenceActivities
from activities.groups import GroupActivities
from activities.hooks import HookActivities
from activities.mirror import MirrorActivities
from activities.notify import NotifyActivities
from activities.probe import ProbeActivities
from activities.protection import InventoryActivities
from activities.recovery import OrchestrationActivities
from activities.replica import RetentionActivities
from activities.replication import ReplicationActivities
from activities.rpo import RpoActivities
from activities.target import RecoveryActivities
from activities.verify import VerifyActivities
from seawall.contract.names import Activity
from tests.workflows.stubs import Stubs


def _definitions(owners: list[Any]) -> dict[str, activity._Definition]:
    found: dict[str, activity._Definition] = {}
    for owner in owners:
        for _, member in inspect.getmembers(owner):
            defn = activity._Definition.from_callable(member) if callable(member) else None
            if defn is not None and defn.name is not None:
                found[defn.name] = defn
    return found


def _types(fn: Callable[..., Any]) -> tuple[list[Any] | None, Any]:
    defn = activity._Definition.must_from_callable(fn)
    return defn.arg_types, defn.ret_type


def test_every_real_activity_has_a_stub_with_its_signature() -> None:
    real = _definitions(
        [
            ProbeActivities,
            InventoryActivities,
            ReplicationActivities,
            RetentionActivities,
            MirrorActivities,
            RecoveryActivities,
            CheckActivities,
            CleanupActivities,
            HookActivities,
            FenceActivities,
            GroupActivities,
            OrchestrationActivities,
            VerifyActivities,
            NotifyActivities,
            DrillActivities,
            RpoActivities,
            CycleStopActivities,
            schedules,
        ]
    )
    stubs = {activity._Definition.must_from_callable(fn).name: fn for fn in Stubs().activities()}
    assert set(real) == set(stubs)
    for name, defn in real.items():
        # One input model each: a workflow never passes positional arguments.
        assert defn.arg_types is not None and len(defn.arg_types) == 1, name
        assert _types(stubs[name]) == (defn.arg_types, defn.ret_type), name


def test_every_activity_name_is_spelled_in_the_contract() -> None:
    spelled = {v for k, v in vars(Activity).items() if k.isupper()}
    assert {activity._Definition.must_from_callable(fn).name for fn in Stubs().activities()} == spelled
