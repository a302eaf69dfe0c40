"""Every chaos test on the lab's vSphere site leaves the source VMs without a Seawall snapshot.

A leaked replication snapshot costs the source a growing delta disk: the test whose crash leaked it
must fail, not a later test that happens to count snapshots on the same VM.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seawall.lab import LabInfo
from tests.chaos.snapshots import seawall_snapshots


@pytest.fixture(autouse=True)
def no_snapshot_left(request: pytest.FixtureRequest) -> Iterator[None]:
    if "lab" not in request.fixturenames or "kvm" in request.module.__name__:
        yield
        return
    lab: LabInfo = request.getfixturevalue("lab")
    before = seawall_snapshots(lab)
    yield
    after = seawall_snapshots(lab)
    left = {vm: [n for n in names if n not in before.get(vm, [])] for vm, names in after.items()}
    left = {vm: names for vm, names in left.items() if names}
    assert not left, f"Seawall snapshots left on the source VMs after this test: {left}"
