"""Every chaos module on the lab's vSphere site leaves the source VMs without a Seawall snapshot.

A leaked replication snapshot costs the source a growing delta disk: the module whose crash leaked it
must fail, not a later test that happens to count snapshots on the same VM.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seawall.lab import LabInfo
from tests.chaos.snapshots import seawall_snapshots


@pytest.fixture(scope="module", autouse=True)
def no_snapshot_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Checked around the whole module: a module may protect VMs for all of its tests (their cycles
    hold snapshots while they run), and its own teardown unprotects them; set up before the module's
    other fixtures, this one is torn down after them."""
    selected = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    uses_lab = any("lab" in getattr(item, "fixturenames", ()) for item in selected)
    if not uses_lab or "kvm" in request.module.__name__:
        yield
        return
    lab: LabInfo = request.getfixturevalue("lab")
    before = seawall_snapshots(lab)
    yield
    after = seawall_snapshots(lab)
    left = {vm: [n for n in names if n not in before.get(vm, [])] for vm, names in after.items()}
    left = {vm: names for vm, names in left.items() if names}
    assert not left, f"Seawall snapshots left on the source VMs after {request.module.__name__}: {left}"
