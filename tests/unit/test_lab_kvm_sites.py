"""Names, paths and command lines of the lab's KVM sites (no daemon started)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from seawall.lab import config as c
from seawall.lab import kvm, kvm_image, kvm_site


def test_each_site_has_its_own_directories_and_socket(tmp_path: Path) -> None:
    a, b = (kvm.site_dirs(tmp_path, site) for site in kvm.SITES)
    assert a.socket == tmp_path / "kvm" / "kvm-a" / "run" / "libvirt-sock"
    assert a.uri == f"qemu:///system?socket={a.socket}"
    assert not set(a.bound()) & set(b.bound())
    assert kvm.part_names() == ["virtlogd-kvm-a", "libvirtd-kvm-a", "virtlogd-kvm-b", "libvirtd-kvm-b"]


def test_daemon_runs_in_a_namespace_of_the_sites_directories(tmp_path: Path) -> None:
    dirs = kvm.site_dirs(tmp_path, "kvm-b")
    argv = kvm.daemon_argv(dirs, "libvirtd")
    assert argv[0] == kvm.LIBVIRTD and str(dirs.etc / "libvirtd.conf") in argv
    launch = kvm.launch_argv(dirs, argv)
    assert launch[:4] == ["unshare", "--mount", "--propagation", "private"]
    # The wrapper ends by exec'ing exactly the daemon's argv, which /proc then shows.
    assert launch[-len(argv) :] == argv
    assert launch[-len(argv) - 4 : -len(argv)] == [str(p) for p in dirs.bound()]
    assert "exec" in launch[launch.index("-c") + 1]


def test_config_files(tmp_path: Path) -> None:
    dirs = kvm.site_dirs(tmp_path, "kvm-a")
    first = kvm.write_config(dirs)
    assert first == kvm.write_config(dirs)
    assert 'security_driver = "none"' in (dirs.etc / "qemu.conf").read_text()
    assert "cgroup_controllers = [ ]" in (dirs.etc / "qemu.conf").read_text()
    assert 'auth_unix_rw = "none"' in (dirs.etc / "libvirtd.conf").read_text()
    assert dirs.pool.is_dir() and dirs.consoles.is_dir()


def test_bridge_names_are_short_and_differ_between_labs(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    names = {
        kvm_site.bridge_name(s, site, p) for s in (one, two) for site in kvm.SITES for p in ("prod", "drill")
    }
    assert len(names) == 8 and all(len(n) <= 15 for n in names)


def test_networks_and_guests_plan(tmp_path: Path) -> None:
    cfg = c.LabConfig(port_offset=300)
    for site in kvm.SITES:
        nets = kvm_site.networks(tmp_path, site)
        assert [n.name for n in nets] == [f"{site}-prod", f"{site}-drill"]
        assert [n.isolated for n in nets] == [False, True]
        for net in nets:
            assert ipaddress.IPv4Address(net.gateway) in ipaddress.IPv4Network(net.subnet)
    guests = kvm_site.guest_infos(tmp_path, cfg, "kvm-a")
    assert [g.name for g in guests] == list(c.KVM_GUESTS)
    assert [g.health_port for g in guests] == [9401, 9402, 9403]
    assert [g.address for g in guests] == ["10.40.1.11", "10.40.1.12", "10.40.1.13"]
    assert all(kvm_site.identity_of(g).cidr == f"{g.address}/24" for g in guests)
    assert kvm_site.guest_infos(tmp_path, cfg, "kvm-b") == []
    info = kvm_site.site_info(tmp_path, cfg, "kvm-b", kvm_site.Accel("tcg", "test"))
    assert info.domain_type == "qemu" and info.health_ports == [9421, 9440]
    assert info.drill_network == "kvm-b-drill" and info.pool == "kvm-b-pool"


def test_accel_forced_cached_and_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kvm_image, "shared_cache", lambda: tmp_path / "cache")
    state = tmp_path / "lab"
    monkeypatch.setenv(kvm_site.ENV_ACCEL, "kvm")
    assert kvm_site.decide_accel(state, None, tmp_path / "base.raw") == kvm_site.Accel(
        "kvm", "forced by SEAWALL_KVM_ACCEL"
    )
    assert json.loads((state / "kvm" / "accel.json").read_text())["key"] == "forced"
    assert not (tmp_path / "cache" / "kvm-accel.json").exists()
    monkeypatch.delenv(kvm_site.ENV_ACCEL)
    # A probe result of this host kernel and QEMU, made by another lab, is reused without a probe
    # (conn=None: a probe would fail); the forced record is not.
    shared = {"accel": "tcg", "reason": "probed elsewhere", "key": kvm_site._accel_key()}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "kvm-accel.json").write_text(json.dumps(shared))
    assert kvm_site.decide_accel(state, None, tmp_path / "base.raw") == kvm_site.Accel(
        "tcg", "probed elsewhere"
    )
    assert json.loads((state / "kvm" / "accel.json").read_text())["key"] == kvm_site._accel_key()
