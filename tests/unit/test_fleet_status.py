"""The fleet's status read in a few listings says what each VM's own queries say, and asks per VM only
for the VMs the listings cannot answer for (over the console's fake Temporal client)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from seawall.control import fleet
from seawall.control.status import vm_status
from seawall.plans import load_inventory
from tests.unit.test_api_endpoints import EXAMPLES
from tests.unit.test_console_routes import ConsoleFake, Cycle


class Counting(ConsoleFake):
    """Counts the per-VM reads: schedule describes and listings naming one VM."""

    def __init__(self, cycles: list[Cycle], protected: set[str]) -> None:
        super().__init__(cycles, protected)
        self.per_vm: list[str] = []

    def get_schedule_handle(self, schedule_id: str) -> Any:
        self.per_vm.append(schedule_id.removeprefix("replicate/"))
        return super().get_schedule_handle(schedule_id)

    def list_workflows(self, query: str, limit: int | None = None, **kw: Any) -> Any:
        if "SeawallVM =" in query:
            self.per_vm.append(query.split('SeawallVM = "', 1)[1].split('"', 1)[0])
        return super().list_workflows(query, limit, **kw)


async def test_the_fleet_listing_agrees_with_each_vms_own_status() -> None:
    inventory = load_inventory(EXAMPLES / "inventory.yaml")
    now = datetime.now(UTC).replace(microsecond=0)
    cycles = [Cycle("db-01", now - timedelta(seconds=20 + 30 * i), seconds=3) for i in range(5)]
    cycles += [Cycle("app-02", now - timedelta(minutes=3 + 10 * i), seconds=7) for i in range(3)]
    cycles += [Cycle("web-01", now - timedelta(hours=2), seconds=9)]  # older than the listing's horizon
    names = [p.name for p in inventory.protected_vms]
    fake = Counting(cycles, protected={"db-01", "app-01", "app-02", "web-01"})

    together = await fleet.statuses(fake, inventory, names, now)  # type: ignore[arg-type]
    asked = set(fake.per_vm)
    one_by_one = [await vm_status(fake, inventory, n, now) for n in names]  # type: ignore[arg-type]

    assert [s.model_dump() for s in together] == [s.model_dump() for s in one_by_one]
    by_vm = {s.vm: s for s in together}
    assert by_vm["db-01"].last_cycle_s == 3.0 and by_vm["app-02"].last_cycle_s == 7.0
    assert by_vm["web-01"].stalled and by_vm["app-01"].last_point is None
    # Recent verified points: answered by the listings alone. An old point, no point, no schedule: asked.
    assert "db-01" not in asked and "app-02" not in asked
    assert {"web-01", "app-01", "web-02"} <= asked


async def test_no_vm_no_call() -> None:
    inventory = load_inventory(EXAMPLES / "inventory.yaml")
    assert await fleet.statuses(ConsoleFake([], set()), inventory, []) == []  # type: ignore[arg-type]
