"""WatchRpo against a stub check_rpo: a breach is told once however many checks see it, its recovery
once, under keys that name the VM and point (stable across retries and continue-as-new)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from seawall.contract.drills import NotifyRequest, RpoCheck, RpoWatchInput, VmRpo
from seawall.contract.names import Activity as A
from tests.workflows.conftest import WAIT_S
from tests.workflows.stubs import Stubs
from workflows.rpo import WatchRpoWorkflow

RIG = Callable[[Stubs], Any]


def check(**breach: tuple[bool, str | None]) -> RpoCheck:
    return RpoCheck(
        vms=[
            VmRpo(
                vm=vm,
                site="primary",
                breach=b,
                last_point=p,
                age_s=None if p is None else 90.0,
                threshold_s=45,
            )
            for vm, (b, p) in breach.items()
        ]
    )


async def test_a_breach_and_its_recovery_are_each_told_once(rig_for: RIG) -> None:
    checks = [
        check(db=(False, "p1"), web=(False, "p1")),
        check(db=(True, "p1"), web=(False, "p2")),
        check(db=(True, "p1"), web=(True, None)),
        check(db=(True, "p1"), web=(True, None)),
        check(db=(False, "p3"), web=(True, None)),
    ]
    async with rig_for(Stubs(rpo_checks=checks)) as rig:
        handle = await rig.start(WatchRpoWorkflow.run, RpoWatchInput(interval_s=5), "rpo")
        for n in range(1, len(checks) + 1):
            async with asyncio.timeout(WAIT_S):
                while len(rig.stubs.of(A.CHECK_RPO)) < n:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # its notifications, then the timer
            await rig.env.fast_forward(handle, timedelta(seconds=6))  # type: ignore[attr-defined]
        sent = [r for r in rig.stubs.inputs(A.NOTIFY) if isinstance(r, NotifyRequest)]
        assert len(rig.stubs.of(A.CHECK_RPO)) >= 5
        assert [(r.event, r.key) for r in sent] == [
            ("rpo-breach", "rpo/db/breach/p1"),
            ("rpo-breach", "rpo/web/breach/none"),
            ("rpo-recovered", "rpo/db/recovered/p1"),
        ]
        assert sent[0].facts["age"] == "90s" and sent[1].facts["newest point"] == "none"
        await handle.terminate("test done")
