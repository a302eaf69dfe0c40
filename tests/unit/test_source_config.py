"""Source configurations: sealed beside the manifest, scrubbed, deleted with the point; the shape logic."""

from __future__ import annotations

import pytest

from activities.shape import DEFAULT_CPUS, DEFAULT_MEMORY_MIB, NO_CONFIG, vm_shape
from seawall.blockstore.errors import CorruptObjectError, MissingObjectError, WrongKeyError
from seawall.blockstore.keys import KeyMaterial
from seawall.blockstore.layout import config_key, point_key
from seawall.blockstore.repository import Repository
from seawall.model import PlanVM, TargetSize
from seawall.model.sourceconfig import SCRUBBED, MachineConfig, SourceConfig, guest_family, scrub
from tests.datapath_scenario import BytesSource, FakeClock, MemoryStore

KEY = KeyMaterial("test-key", bytes(range(32)))
OTHER = KeyMaterial("other-key", bytes(range(1, 33)))

CONFIG = SourceConfig(
    kind="vsphere",
    document={"graphics": {"passwd": "hunter2"}, "extra": [{"guestinfo.password": "x", "ok": "kept"}]},
    machine=MachineConfig(
        guest_id="windows2019srv_64Guest",
        guest_family="windows",
        firmware="efi",
        secure_boot=True,
        cpus=4,
        cores_per_socket=2,
        memory_mib=8192,
        annotation="erp database, owner team-db",
    ),
)


def commit(repo: Repository, point: str, config: SourceConfig | None, shipped: object = None) -> object:
    shipped = shipped or repo.ship(BytesSource(b"\1" * 65536), "vm", "d0")  # type: ignore[arg-type]
    raw = None if config is None else (config.kind, config.scrubbed().model_dump_json().encode())
    repo.commit_point("vm", point, [shipped], meta={"snapshot": "s"}, source_config=raw)  # type: ignore[list-item]
    return shipped


def test_config_round_trips_sealed_and_scrubbed() -> None:
    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock())  # type: ignore[arg-type]
    commit(repo, "p1", CONFIG)
    blob = store.objects[config_key("vm", "p1")]
    # Sealed: neither the annotation nor the guest id is readable in the store.
    assert b"erp database" not in blob and b"windows2019" not in blob
    back = SourceConfig.model_validate_json(repo.read_source_config("vm", "p1") or b"")
    assert back.machine == CONFIG.machine
    assert back.document["graphics"]["passwd"] == SCRUBBED
    assert back.document["extra"][0] == {"guestinfo.password": SCRUBBED, "ok": "kept"}
    assert repo.read_manifest("vm", "p1").meta["source_config"] == "vsphere"


def test_commit_retry_is_idempotent_and_never_rewrites_a_committed_config() -> None:
    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock())  # type: ignore[arg-type]
    shipped = commit(repo, "p1", CONFIG)
    before = store.objects[config_key("vm", "p1")]
    commit(repo, "p1", CONFIG, shipped)  # a retried commit activity
    assert store.objects[config_key("vm", "p1")] == before


def test_old_point_without_config_reads_none_and_a_lost_one_is_an_error() -> None:
    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock())  # type: ignore[arg-type]
    commit(repo, "old", None)
    assert repo.read_source_config("vm", "old") is None
    commit(repo, "new", CONFIG)
    del store.objects[config_key("vm", "new")]
    with pytest.raises(MissingObjectError):
        repo.read_source_config("vm", "new")


def test_config_moved_to_another_point_or_key_fails() -> None:
    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock())  # type: ignore[arg-type]
    commit(repo, "p1", CONFIG)
    commit(repo, "p2", CONFIG.model_copy(update={"kind": "vsphere"}))
    store.objects[config_key("vm", "p2")] = store.objects[config_key("vm", "p1")]
    with pytest.raises(CorruptObjectError):
        repo.read_source_config("vm", "p2")
    other = Repository(store, OTHER, clock=FakeClock())  # type: ignore[arg-type]
    with pytest.raises((WrongKeyError, CorruptObjectError)):
        other.read_source_config("vm", "p1")


def test_forget_point_removes_config_with_manifest() -> None:
    store = MemoryStore()
    repo = Repository(store, KEY, clock=FakeClock())  # type: ignore[arg-type]
    commit(repo, "p1", CONFIG)
    repo.forget_point("vm", "p1")
    assert point_key("vm", "p1") not in store.objects
    assert config_key("vm", "p1") not in store.objects


def test_scrub_and_guest_family() -> None:
    assert scrub({"a": {"Password": 1, "api_key": 2, "b": [{"token": 3}]}}) == {
        "a": {"Password": SCRUBBED, "api_key": SCRUBBED, "b": [{"token": SCRUBBED}]}
    }
    assert guest_family("windows2019srv_64Guest") == "windows"
    assert guest_family("rhel8_64Guest") == "linux"
    assert guest_family("otherGuest") == "other"
    assert guest_family(None) == "other"


# ---- the shape: the plan overrides only what it names -------------------------------------------


def test_shape_copies_the_source_when_the_plan_names_nothing() -> None:
    shape = vm_shape(PlanVM(name="db"), "db", CONFIG)
    assert (shape.cpus, shape.memory_mib, shape.cores_per_socket) == (4, 8192, 2)
    assert shape.source is CONFIG and shape.notes == ()
    assert shape.hostname == "db"


def test_shape_plan_overrides_only_what_it_names() -> None:
    shape = vm_shape(PlanVM(name="db", size=TargetSize(memory_mib=16384)), "db", CONFIG)
    assert (shape.cpus, shape.memory_mib, shape.cores_per_socket) == (4, 16384, 2)
    shape = vm_shape(PlanVM(name="db", size=TargetSize(cpus=6)), "db", CONFIG)
    assert (shape.cpus, shape.memory_mib, shape.cores_per_socket) == (6, 8192, 2)
    odd = vm_shape(PlanVM(name="db", size=TargetSize(cpus=3)), "db", CONFIG)
    assert odd.cores_per_socket == 1 and any("cores per socket" in n for n in odd.notes)


def test_shape_without_config_falls_back_and_says_so() -> None:
    shape = vm_shape(PlanVM(name="db"), "db", None)
    assert (shape.cpus, shape.memory_mib) == (DEFAULT_CPUS, DEFAULT_MEMORY_MIB)
    assert shape.notes[0] == NO_CONFIG and len(shape.notes) == 3
    planned = vm_shape(PlanVM(name="db", size=TargetSize(cpus=8, memory_mib=2048)), "db", None)
    assert (planned.cpus, planned.memory_mib) == (8, 2048) and planned.notes == (NO_CONFIG,)


def test_a_mirrored_point_carries_its_configuration() -> None:
    """A recovery from the mirror alone re-creates the machine: the configuration is copied too."""
    from seawall.blockstore.mirror import mirror_point

    primary = Repository(MemoryStore(), KEY, clock=FakeClock())  # type: ignore[arg-type]
    far = Repository(MemoryStore(), KEY, clock=FakeClock())  # type: ignore[arg-type]
    commit(primary, "p1", CONFIG)
    done = mirror_point(primary, far, "vm", "p1")
    assert done.verified, done.errors
    back = SourceConfig.model_validate_json(far.read_source_config("vm", "p1") or b"")
    assert back.machine == CONFIG.machine
    # A point without one mirrors without one (and reads back as none).
    commit(primary, "p2", None)
    assert mirror_point(primary, far, "vm", "p2").verified
    assert far.read_source_config("vm", "p2") is None
