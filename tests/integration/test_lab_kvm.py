"""The lab's KVM sites against the real libvirtd/QEMU: guests that boot, say who they are, and write.

Uses the lab's own three guests at kvm-a (booted by `lab up`); boots nothing new.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seawall.lab import LabInfo
from seawall.lab import config as lab_config
from seawall.lab.info import KvmGuestInfo, KvmSiteInfo
from seawall.lab.kvm import connect, daemon_names, site_dirs
from seawall.lab.kvm_image import read_identity, scan_image
from seawall.lab.kvm_records import ConsoleReport, Identity, scan_nbd
from seawall.lab.kvm_site import guest_health, wait_ready
from seawall.lab.procs import read_tracked

SEAWALL = str(Path(sys.executable).parent / "seawall")
BOOT_TIMEOUT = 180.0  # TCG on a busy 2-core machine; unloaded a guest is ready in ~8 s


@pytest.fixture(scope="module")
def kvm_a(lab: LabInfo) -> KvmSiteInfo:
    assert set(lab.kvm) == {"kvm-a", "kvm-b"}, "lab.json has no KVM sites: run `seawall lab up`"
    return lab.kvm["kvm-a"]


@pytest.fixture(scope="module")
def kvm_b(lab: LabInfo) -> KvmSiteInfo:
    return lab.kvm["kvm-b"]


@pytest.fixture(scope="module")
def reports(kvm_a: KvmSiteInfo) -> dict[str, ConsoleReport]:
    """Each guest's console line, waited for once per module."""
    return {g.name: wait_ready(g, timeout=BOOT_TIMEOUT) for g in kvm_a.guests}


def _conn(site: KvmSiteInfo) -> Iterator[Any]:
    conn = connect(site.uri, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def conn_a(kvm_a: KvmSiteInfo) -> Iterator[Any]:
    yield from _conn(kvm_a)


@pytest.fixture
def conn_b(kvm_b: KvmSiteInfo) -> Iterator[Any]:
    yield from _conn(kvm_b)


def test_three_guests_boot_ready_with_their_identity(
    kvm_a: KvmSiteInfo, reports: dict[str, ConsoleReport]
) -> None:
    assert [g.name for g in kvm_a.guests] == list(lab_config.KVM_GUESTS)
    assert len({g.address for g in kvm_a.guests}) == 3
    assert len({g.health_port for g in kvm_a.guests}) == 3
    for guest in kvm_a.guests:
        report = reports[guest.name]
        assert report.status == "ready", report.line
        assert report.host == guest.hostname
        assert report.ip == f"{guest.address}/{guest.prefix}"
        # The identity the guest configured is the one in its own disk's identity file.
        assert read_identity(guest.system_disk) == Identity(
            guest.hostname, guest.address, guest.prefix, guest.gateway
        )


def test_health_port_answers_the_same_facts(kvm_a: KvmSiteInfo, reports: dict[str, ConsoleReport]) -> None:
    for guest in kvm_a.guests:
        health = guest_health(guest, timeout=10)
        report = reports[guest.name]
        assert health["hostname"] == report.host == guest.hostname
        assert health["ip"] == report.ip
        assert health["gateway"] == guest.gateway
        assert health["ready"] is True and health["status"] == "ready"
        assert health["boot_last_record"] == report.last_record
        assert health["last_record"] >= report.last_record


def test_records_grow_and_a_copy_of_the_data_disk_is_contiguous(
    kvm_a: KvmSiteInfo, reports: dict[str, ConsoleReport]
) -> None:
    guest = kvm_a.guest("kdb-01")
    before = guest_health(guest, timeout=10)["last_record"]
    # One record a second when the guest gets its core; make test runs six lab runs beside it on two
    # cores, and on a busy host (123 CPU-s of steal in one run) kdb-01 wrote 2 in 30 s.
    deadline = time.monotonic() + 90
    while (now := guest_health(guest, timeout=10)["last_record"]) < before + 3:
        assert time.monotonic() < deadline, f"{guest.name} wrote {now - before} records in 90 s"
        time.sleep(0.5)
    # Read while the guest writes (qemu-img -U): every record the guest reported as fsynced is there,
    # numbered 1..n without a hole, each with a valid checksum; at most the one being written is torn.
    scan = scan_image(guest.data_disk)
    assert scan.contiguous, scan
    assert scan.last >= now


def test_data_disk_read_over_nbd(
    kvm_a: KvmSiteInfo, reports: dict[str, ConsoleReport], tmp_path: Path
) -> None:
    """The same records through libnbd (Debian's bindings in the venv) from a read-only qemu-nbd export."""
    import nbd

    guest = kvm_a.guest("kapp-01")
    before = guest_health(guest, timeout=10)["last_record"]
    sock = tmp_path / "nbd.sock"
    # qemu-nbd 7.2 has no --force-share: the running QEMU's lock is skipped with file.locking=off.
    image = f"driver=qcow2,file.driver=file,file.filename={guest.data_disk},file.locking=off"
    server = subprocess.Popen(
        ["qemu-nbd", "--read-only", "--image-opts", "--persistent", "--export-name=data",
         f"--socket={sock}", image],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline, "qemu-nbd did not start"
            time.sleep(0.05)
        handle = nbd.NBD()
        handle.set_export_name("data")
        handle.connect_unix(str(sock))
        try:
            scan = scan_nbd(handle)
        finally:
            handle.shutdown()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert scan.contiguous and scan.last >= before


def test_sites_see_only_their_own_objects(
    kvm_a: KvmSiteInfo, kvm_b: KvmSiteInfo, conn_a: Any, conn_b: Any
) -> None:
    a_domains = {d.name() for d in conn_a.listAllDomains(0)}
    assert {g.name for g in kvm_a.guests} <= a_domains
    assert not {d.name() for d in conn_b.listAllDomains(0)} & a_domains
    assert {n.name() for n in conn_a.listAllNetworks(0)} == {n.name for n in kvm_a.networks}
    assert {n.name() for n in conn_b.listAllNetworks(0)} == {n.name for n in kvm_b.networks}
    assert [p.name() for p in conn_a.listAllStoragePools(0)] == [kvm_a.pool]
    assert [p.name() for p in conn_b.listAllStoragePools(0)] == [kvm_b.pool]
    a_volumes = set(conn_a.storagePoolLookupByName(kvm_a.pool).listVolumes())
    assert {v for g in kvm_a.guests for v in (g.system_volume, g.data_volume)} <= a_volumes
    assert not set(conn_b.storagePoolLookupByName(kvm_b.pool).listVolumes()) & a_volumes
    assert kvm_a.uri != kvm_b.uri and kvm_a.socket.parent != kvm_b.socket.parent


def test_guest_disks_are_qcow2_volumes_of_the_pool(kvm_a: KvmSiteInfo, conn_a: Any) -> None:
    pool = conn_a.storagePoolLookupByName(kvm_a.pool)
    for guest in kvm_a.guests:
        for name, path in ((guest.system_volume, guest.system_disk), (guest.data_volume, guest.data_disk)):
            vol = ET.fromstring(pool.storageVolLookupByName(name).XMLDesc(0))
            assert vol.find("target/format").get("type") == "qcow2"  # type: ignore[union-attr]
            assert vol.findtext("target/path") == str(path)
        dom = ET.fromstring(conn_a.lookupByName(guest.name).XMLDesc(0))
        sources = [d.find("source").get("file") for d in dom.findall("devices/disk")]  # type: ignore[union-attr]
        assert sources == [str(guest.system_disk), str(guest.data_disk)]
        assert dom.get("type") == kvm_a.domain_type
        iface = dom.find("devices/interface/source")
        assert iface is not None and iface.get("network") == kvm_a.production_network


def _addresses(bridge: str) -> list[Any]:
    out = subprocess.run(
        ["ip", "-j", "addr", "show", "dev", bridge], capture_output=True, text=True, check=True
    )
    return [a for link in json.loads(out.stdout) for a in link.get("addr_info", [])]


def test_networks_have_no_host_address(
    kvm_a: KvmSiteInfo, kvm_b: KvmSiteInfo, conn_a: Any, conn_b: Any
) -> None:
    for site, conn in ((kvm_a, conn_a), (kvm_b, conn_b)):
        assert {n.purpose for n in site.networks} == {"production", "drill"}
        assert site.network(site.drill_network).isolated
        for info in site.networks:
            net = conn.networkLookupByName(info.name)
            assert net.isActive()
            xml = ET.fromstring(net.XMLDesc(0))
            assert xml.find("ip") is None and xml.find("forward") is None, info.name
            assert xml.find("bridge").get("name") == info.bridge  # type: ignore[union-attr]
            assert _addresses(info.bridge) == [], info.bridge  # no IPv4, and no IPv6 link-local either
    bridges = [n.bridge for s in (kvm_a, kvm_b) for n in s.networks]
    assert len(set(bridges)) == len(bridges) and all(len(b) <= 15 for b in bridges)


def test_daemons_are_the_labs_own(lab: LabInfo, kvm_a: KvmSiteInfo, kvm_b: KvmSiteInfo) -> None:
    own_ns = os.readlink("/proc/self/ns/mnt")
    for site in (kvm_a, kvm_b):
        dirs = site_dirs(lab.state_dir, site.site)
        assert site.socket == dirs.socket and site.socket.is_socket()
        assert str(site.socket).startswith(str(lab.state_dir))
        for name in daemon_names(site.site):
            tracked = read_tracked(lab.state_dir, name)
            assert tracked is not None, name
            # Its own mount namespace: /etc/libvirt, /run/libvirt ... are the site's directories.
            assert os.readlink(f"/proc/{tracked.pid}/ns/mnt") != own_ns
            assert str(dirs.root) in " ".join(tracked.argv)


def test_status_says_kvm_or_tcg(lab: LabInfo, kvm_a: KvmSiteInfo, lab_env: dict[str, str]) -> None:
    result = subprocess.run(
        [SEAWALL, "lab", "status", "--json"], env=lab_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["kvm"]["accel"] in ("kvm", "tcg")
    assert report["kvm"]["accel"] == kvm_a.accel == ("kvm" if kvm_a.domain_type == "kvm" else "tcg")
    assert report["kvm"]["accel_reason"]
    guests = {g["name"]: g for g in report["kvm"]["guests"]}
    assert set(guests) == {g.name for g in kvm_a.guests}
    assert all(g["running"] for g in guests.values())
    parts = {p["name"]: p for p in report["parts"]}
    assert parts["libvirtd-kvm-a"]["detail"].startswith(kvm_a.accel)


def test_guest_info_paths(kvm_a: KvmSiteInfo, kvm_b: KvmSiteInfo) -> None:
    guest: KvmGuestInfo = kvm_a.guest("kweb-01")
    assert guest.health_url == f"http://127.0.0.1:{guest.health_port}/cgi-bin/health"
    assert guest.console_log.parent == kvm_a.console_dir and guest.console_log.is_file()
    assert kvm_a.base_image.is_file() and kvm_b.guests == []
    first, last = kvm_b.health_ports
    assert first <= last and not {g.health_port for g in kvm_a.guests} & set(range(first, last + 1))


def test_up_again_leaves_the_guests_alone(
    lab: LabInfo, kvm_a: KvmSiteInfo, conn_a: Any, lab_env: dict[str, str], reports: dict[str, ConsoleReport]
) -> None:
    before = {g.name: (conn_a.lookupByName(g.name).ID(), g.console_log.read_text()) for g in kvm_a.guests}
    result = subprocess.run(
        [SEAWALL, "lab", "up", "--json"], env=lab_env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    again = LabInfo.model_validate_json(result.stdout)
    assert again.kvm["kvm-a"] == kvm_a
    for guest in kvm_a.guests:
        dom_id, console = before[guest.name]
        # Same running domain (a restart would get a new id) and a console that was not started over.
        assert conn_a.lookupByName(guest.name).ID() == dom_id, guest.name
        assert guest.console_log.read_text().startswith(console), guest.name


def test_up_resumes_a_paused_guest(
    kvm_a: KvmSiteInfo, conn_a: Any, lab_env: dict[str, str], reports: dict[str, ConsoleReport]
) -> None:
    """`make test` pauses guests no test needs (QEMU in software costs a core's tenth each): the
    next `lab up` must give a running lab again, the same boot going on."""
    import libvirt

    guest = kvm_a.guests[0]
    dom = conn_a.lookupByName(guest.name)
    dom_id = dom.ID()
    dom.suspend()
    try:
        assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        result = subprocess.run(
            [SEAWALL, "lab", "up", "--json"], env=lab_env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and dom.ID() == dom_id
        assert guest_health(guest, timeout=10)["hostname"] == guest.hostname
    finally:
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
