"""Fixtures every test directory may use. Subdirectories add their own conftest.py for the rest.

The lab is never skipped: a test that asks for ``lab`` and finds it down fails and says how to start it,
so a green run always means the integration tests really ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seawall.lab import LabInfo, LabNotUpError, load_lab
from seawall.lab import config as lab_config

REPO_ROOT = Path(__file__).resolve().parents[1]

_HOW_TO_START = "start it with `make test` (runs the whole suite) or `.venv/bin/seawall lab up`"


# Lab tests that stop and start a part every other lab test uses (Temporal, moto): they run alone.
_LAB_EXCLUSIVE = {
    "test_temporal_restart",
    "test_status_truth",
    "test_mirror_failover",
    "test_mirror_group_failover",
}
# Lab tests that touch no vSphere VM, no Route53 record and no site task queue of the shared
# namespace: replica stores under prefixes of their own, EC2 objects tagged with their own run, a
# private second lab. Like the KVM tests (their own VMs, plans and queues), they run beside the rest.
_LAB_SELF_CONTAINED = {
    "test_backend_azure",
    "test_backend_s3",
    "test_bandwidth",
    "test_bandwidth_processes",
    "test_codec_server",
    "test_datapath_directory",
    "test_kms_keys",
    "test_lab_lifecycle",
    "test_mirror_groups",
    "test_mirror_lock",
    "test_object_lock",
    "test_store_conformance",
    "test_target_aws",
}


# Lab tests of the vSphere and cloud sites that `make test` runs on a second lab (`lab_b`) and a third
# (`lab_c`; the exclusive ones follow them there), each lab with its own state dir and ports
# (`scripts/test.sh`), beside those on the first: on every lab, one test at a time uses its VMs, zone
# and queues.
_LAB_B = {
    "test_capacity",
    "test_metrics",
    "test_recovery",
    "test_crash_cost",
    "test_recovery_planned",
    "test_recovery_point",
    "test_notify_crash",
    "test_api",
    "test_dns_rfc2136",
    "test_dns_route53",
    "test_lab_cloud",
    "test_drill_schedule",
}
_LAB_C = {
    "test_recovery_crash",
    "test_replication_crash",
    "test_group_crash",
    "test_windows_customization_crash",
    "test_unprotect_sweep",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not lab"` then runs exactly the tests that do not need the running lab; scripts/test.sh
    # runs the `lab_side` ones in a pytest of their own beside the others.
    for item in items:
        if "lab" not in getattr(item, "fixturenames", ()) and not item.get_closest_marker("lab"):
            continue
        item.add_marker(pytest.mark.lab)
        module = str(getattr(getattr(item, "module", None), "__name__", "")).rsplit(".", 1)[-1]
        if module in _LAB_EXCLUSIVE:
            item.add_marker(pytest.mark.lab_exclusive)
        elif "kvm" in module or module in _LAB_SELF_CONTAINED:
            item.add_marker(pytest.mark.lab_side)
            if "kvm" in module:
                item.add_marker(pytest.mark.lab_kvm)
        elif module in _LAB_B:
            item.add_marker(pytest.mark.lab_b)
        elif module in _LAB_C:
            item.add_marker(pytest.mark.lab_c)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def lab_state_dir() -> Path:
    """The lab this session talks to: ``$SEAWALL_LAB_DIR`` or the checkout's ``.seawall/lab``."""
    return lab_config.state_dir()


@pytest.fixture(scope="session")
def lab(lab_state_dir: Path) -> LabInfo:
    """The running lab's endpoints, after checking that every part is healthy."""
    try:
        info = load_lab(lab_state_dir)
    except LabNotUpError as exc:
        pytest.fail(f"the lab is not up: {exc}; {_HOW_TO_START}", pytrace=False)
    # Imported here: it pulls in pyvmomi, boto3 and temporalio, which unit-only runs need not pay for.
    from seawall.lab.manager import status as lab_status

    unhealthy = [p for p in lab_status(lab_state_dir) if not p.healthy]
    if unhealthy:
        lines = "\n".join(f"  {p.name}: {p.detail} (log: {p.log})" for p in unhealthy)
        pytest.fail(f"the lab at {lab_state_dir} is not healthy:\n{lines}\n{_HOW_TO_START}", pytrace=False)
    return info


@pytest.fixture(scope="session")
def lab_env(lab: LabInfo) -> dict[str, str]:
    """os.environ plus the lab's client settings (dummy AWS keys, endpoints), for subprocesses."""
    return {**os.environ, **lab.env()}
